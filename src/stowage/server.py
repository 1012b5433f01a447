"""The ASGI application: composes the API and web adapters (which never import each other)."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from stowage import __version__, logs, web
from stowage.api import errors
from stowage.api.agents import router as agents_router
from stowage.api.backup_sync import router as backup_sync_router
from stowage.api.backups import router as backups_router
from stowage.api.errors import error_body
from stowage.api.jobs import router as jobs_router
from stowage.api.restores import router as restores_router
from stowage.api.routes import router
from stowage.api.workspaces import router as workspaces_router
from stowage.config import Settings
from stowage.services import health, metrics
from stowage.services.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Refuse request bodies over a limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http":
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                await _send_json(
                    send, 413, error_body("too_large", f"Request bodies are limited to {self.limit} bytes.")
                )
                return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    import json

    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def create_app(runtime: Runtime) -> FastAPI:
    """Build the app around an already started runtime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime.settings.scheduler_enabled:
            await runtime.scheduler.start()
        try:
            yield
        finally:
            if runtime.settings.scheduler_enabled:
                await runtime.scheduler.stop()
            runtime.close()

    app = FastAPI(title="Stowage", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(router)
    app.include_router(agents_router)
    app.include_router(backups_router)
    app.include_router(backup_sync_router)
    app.include_router(restores_router)
    app.include_router(workspaces_router)
    app.include_router(jobs_router)
    web.install(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        # Sync on purpose: FastAPI runs it in the thread pool, so a slow database never blocks the event loop.
        answer = health.readiness(runtime.db)
        return JSONResponse(answer.body(), status_code=200 if answer.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(runtime.metrics.render(), media_type=metrics.CONTENT_TYPE)

    app.add_middleware(BodyLimit)
    # Outermost of ours: every answer (a 413 too) carries the request id, and every line logged under it.
    app.add_middleware(logs.RequestIds)
    return app


def serve(
    host: str = typer.Option(None, help="Address to bind (default STOWAGE_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default STOWAGE_PORT or 8080)."),
) -> None:
    """Start the Stowage control plane (API and web UI)."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    log = logging.getLogger("stowage.server")
    if host:
        settings.host = host
    if port:
        settings.port = port
    runtime = Runtime.start(settings)
    if runtime.generated_admin_token:
        token_file = settings.data_dir / "admin-token"
        if sys.stderr.isatty():
            # A person is watching: show it once. Only its hash is kept in the database.
            print(
                f"\nAdmin token (shown once, also saved to {token_file}):\n  {runtime.generated_admin_token}\n",
                file=sys.stderr,
                flush=True,
            )
        # Never into a collected log: the line says where the token is, not what it is.
        log.warning("admin token generated", extra={"file": str(token_file)})
    log.info(
        "listening",
        extra={
            "url": f"http://{settings.host}:{settings.port}",
            "dataDir": str(settings.data_dir),
            "version": __version__,
        },
    )
    # log_config=None: uvicorn keeps its loggers as logs.configure left them (JSON, redacted, request ids).
    uvicorn.run(
        create_app(runtime),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=True,
    )
