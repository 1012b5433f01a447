"""``stowage serve``: start the control plane."""

from __future__ import annotations

import logging
import sys

import typer
import uvicorn

from stowage.config import Settings


def serve(
    host: str = typer.Option(None, help="Address to bind (default STOWAGE_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default STOWAGE_PORT or 8080)."),
) -> None:
    """Start the Stowage control plane (API and web UI)."""
    from stowage.api.app import create_app
    from stowage.services.runtime import Runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    runtime = Runtime.start(settings)
    if runtime.generated_admin_token:
        # Printed once: only its hash is kept in the database.
        print(
            f"\nAdmin token (shown once, also saved to {settings.data_dir / 'admin-token'}):\n"
            f"  {runtime.generated_admin_token}\n",
            file=sys.stderr,
            flush=True,
        )
    print(f"Stowage listening on http://{settings.host}:{settings.port}  (data: {settings.data_dir})",
          file=sys.stderr, flush=True)
    uvicorn.run(create_app(runtime), host=settings.host, port=settings.port, log_level="warning")
