"""Server-rendered web UI (Jinja2)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the web UI's routes and static files on the app."""
    from stowage.web.routes import install as install_routes

    install_routes(app)
