"""The ASGI application: API v1 (and the web UI when present)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from stowage import __version__
from stowage.api import errors
from stowage.api.errors import error_body
from stowage.api.routes import router
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
                await _send_json(send, 413, error_body("too_large", f"Request bodies are limited to {self.limit} bytes."))
                return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    import json

    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
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

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit)
    return app
