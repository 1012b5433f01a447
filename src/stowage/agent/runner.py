"""The agent's main loop: heartbeat, run the work handed back, sleep; back off while the server is away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from stowage import __version__
from stowage.agent.backoff import Backoff
from stowage.agent.client import AgentRejected, ControlPlane, ServerUnavailable
from stowage.agent.jsonlog import JsonLog
from stowage.agent.metrics import AgentMetrics

WorkHandler = Callable[[Mapping[str, Any]], None]
DEFAULT_INTERVAL_SECONDS = 30.0
# Never heartbeat faster than this, whatever a (misconfigured) server asks.
MIN_INTERVAL_SECONDS = 1.0


class AgentRunner:
    """Runs until ``stop`` is set; ``run`` returns the process exit code."""

    def __init__(
        self,
        control: ControlPlane,
        *,
        log: JsonLog,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        handlers: Mapping[str, WorkHandler] | None = None,
        version: str = __version__,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.control = control
        self.log = log
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.handlers: dict[str, WorkHandler] = dict(handlers or {})
        self.version = version
        self.metrics = metrics or AgentMetrics()
        self.connected = False
        self.heartbeats = 0
        # Read by the optional health port (stowage.agent.health): monotonic times and the current interval.
        self.started_at = time.monotonic()
        self.last_contact: float | None = None
        self.interval = DEFAULT_INTERVAL_SECONDS
        # A job runs inside a tick and reports on its own: no heartbeats then, but not disconnected either.
        self.working = False

    def run(self, *, once: bool = False) -> int:
        """Heartbeat until stopped (or once); 0 on a clean stop, 1 when ``once`` failed."""
        self.log.info("agent.start", server=self.control.server, version=self.version)
        while not self.stop.is_set():
            delay = self.tick()
            if once:
                break
            # Event.wait wakes at once on SIGTERM: shutting down never waits out a heartbeat interval.
            self.stop.wait(delay)
        self.log.info("agent.stop", heartbeats=self.heartbeats)
        return 0 if (self.connected or not once) else 1

    def tick(self) -> float:
        """One heartbeat and its work; returns how long to wait before the next one."""
        try:
            answer = self.control.heartbeat(self.version)
        except ServerUnavailable as exc:
            self.metrics.heartbeat("unreachable")
            return self._retry("agent.unreachable", str(exc))
        except AgentRejected as exc:
            self.metrics.heartbeat("rejected")
            # A revoked or rotated token: keep trying (a mounted token file may be updated), but slowly.
            return self._retry("agent.rejected", exc.message, status=exc.status, code=exc.code)
        self.heartbeats += 1
        self.metrics.heartbeat("ok")
        self.last_contact = time.monotonic()
        if not self.connected:
            self.log.info(
                "agent.connected",
                cluster=answer.get("clusterName"),
                clusterId=answer.get("clusterId"),
                project=answer.get("project"),
                afterAttempts=self.backoff.attempt,
            )
        else:
            self.log.debug("agent.heartbeat", work=len(answer.get("work") or []))
        self.connected = True
        self.backoff.reset()
        for item in answer.get("work") or []:
            self._dispatch(item)
        interval = answer.get("intervalSeconds")
        self.interval = max(MIN_INTERVAL_SECONDS, float(interval) if isinstance(interval, int | float) else 30.0)
        return self.interval

    def _retry(self, event: str, error: str, **fields: Any) -> float:
        delay = self.backoff.next()
        level = "warning" if event == "agent.unreachable" else "error"
        if self.connected:
            self.log.warning("agent.disconnected", error=error)
        self.connected = False
        self.log.log(level, event, error=error, attempt=self.backoff.attempt, retryInSeconds=round(delay, 2), **fields)
        return delay

    def _dispatch(self, item: Mapping[str, Any]) -> None:
        kind = str(item.get("kind", ""))
        handler = self.handlers.get(kind)
        if handler is None:
            self.log.warning("agent.work.unsupported", workId=item.get("id"), kind=kind)
            return
        self.log.info("agent.work.start", workId=item.get("id"), kind=kind)
        self.working = True
        try:
            handler(item)
        except Exception as exc:  # noqa: BLE001 - one failed job must not stop the agent
            self.log.error("agent.work.failed", workId=item.get("id"), kind=kind, error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.working = False
        self.log.info("agent.work.done", workId=item.get("id"), kind=kind)
