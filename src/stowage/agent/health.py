"""The agent's optional health port: ``/livez`` while the process runs, ``/healthz`` while it is connected.

``/healthz`` answers 200 while the agent's loop runs and its last heartbeat is at most ``intervals`` heartbeat
intervals old or a job is running (jobs report on their own), 503 once it has been disconnected for longer (the
rule the control plane uses to show a cluster as disconnected); use it for readiness and alerts.
``/livez`` answers 200 until the agent stops: a restart does not bring a control plane back, so liveness must
not depend on it.
``/metrics`` answers the agent's own Prometheus metrics (``stowage.agent.metrics``) when it is given one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from stowage.agent.metrics import CONTENT_TYPE, AgentMetrics

DEFAULT_INTERVALS = 3


class LoopState(Protocol):
    """What the health port reads from the runner."""

    started_at: float
    last_contact: float | None
    interval: float
    working: bool
    stop: threading.Event


def status(
    state: LoopState, *, intervals: int = DEFAULT_INTERVALS, now: float | None = None
) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` answer: (HTTP status, JSON body)."""
    now = time.monotonic() if now is None else now
    since = state.last_contact if state.last_contact is not None else state.started_at
    silent = max(0.0, now - since)
    limit = intervals * state.interval
    body: dict[str, Any] = {
        "connected": state.last_contact is not None and silent <= limit,
        "secondsSinceHeartbeat": None if state.last_contact is None else round(silent, 1),
        "limitSeconds": limit,
    }
    if state.stop.is_set():
        return 503, {**body, "status": "stopping"}
    if state.working:
        return 200, {**body, "status": "working"}
    if silent > limit:
        return 503, {**body, "status": "disconnected"}
    return 200, {**body, "status": "ok"}


def serve(
    state: LoopState,
    host: str,
    port: int,
    *,
    intervals: int = DEFAULT_INTERVALS,
    metrics: AgentMetrics | None = None,
) -> ThreadingHTTPServer:
    """Start the health port in a daemon thread; ``shutdown()`` the returned server to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                self._answer(200, metrics.render(), CONTENT_TYPE)
                return
            if path == "/healthz":
                code, body = status(state, intervals=intervals)
            elif path == "/livez":
                code, body = (503, {"status": "stopping"}) if state.stop.is_set() else (200, {"status": "ok"})
            else:
                code, body = 404, {"status": "not found"}
            self._answer(code, json.dumps(body).encode(), "application/json")

        def _answer(self, code: int, payload: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every few seconds would drown the agent's own log lines.
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="stowage-agent-health", daemon=True)
    thread.start()
    return server


def closing(server: ThreadingHTTPServer | None) -> Callable[[], None]:
    """A callable that stops ``server`` (or does nothing)."""

    def close() -> None:
        if server is not None:
            server.shutdown()
            server.server_close()

    return close
