"""Prometheus metrics of one agent process, in a registry the agent owns, served on its health port.

The registry is the ``AgentMetrics`` object's, not prometheus-client's global one: tests run several agents'
runners in one process, and the global registry refuses a metric name twice. The runner counts heartbeats, the
job handlers count jobs, items, bytes and the credential sessions they open; ``GET /metrics`` on the health
port (``stowage.agent.health``) renders the registry. Nothing here does I/O.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The control plane's buckets (services.metrics): backups and restores run from seconds to hours.
_JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)


class AgentMetrics:
    """The metrics of one agent and the one registry they live in."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self.heartbeats = Counter(
            "stowage_agent_heartbeats",
            "Heartbeats by result (ok: answered; unreachable: no answer; rejected: the token was refused).",
            ["result"],
            registry=reg,
        )
        self.connected = Gauge(
            "stowage_agent_connected", "1 while the last heartbeat was answered, else 0.", registry=reg
        )
        self.last_heartbeat = Gauge(
            "stowage_agent_last_heartbeat_timestamp_seconds",
            "Unix time of the last answered heartbeat (0: none yet).",
            registry=reg,
        )
        self.jobs = Counter(
            "stowage_agent_jobs",
            "Jobs this agent ran, by kind (backup, restore, preview) and final phase.",
            ["kind", "phase"],
            registry=reg,
        )
        self.job_seconds = Histogram(
            "stowage_agent_job_duration_seconds",
            "Duration of one job, claim to completion.",
            ["kind"],
            buckets=_JOB_BUCKETS,
            registry=reg,
        )
        self.objects_backed_up = Counter(
            "stowage_agent_objects_backed_up", "Kubernetes objects written by finished backups.", registry=reg
        )
        self.objects_restored = Counter(
            "stowage_agent_objects_restored", "Kubernetes objects created or updated by restores.", registry=reg
        )
        self.bytes_uploaded = Counter(
            "stowage_agent_bytes_uploaded", "Bytes finished backups wrote to the bucket.", registry=reg
        )
        self.credential_fetches = Counter(
            "stowage_agent_credential_fetches",
            "Credential sessions opened for jobs (brokered: one vending request; direct: one AssumeRole), by result.",
            ["result"],
            registry=reg,
        )
        # Labelled series appear at 0 from the start, so rate() and absent() work before the first event.
        for result in ("ok", "unreachable", "rejected"):
            self.heartbeats.labels(result=result)
        for result in ("ok", "failed"):
            self.credential_fetches.labels(result=result)

    def heartbeat(self, result: str, *, now: float | None = None) -> None:
        """One heartbeat: ``ok`` (answered at ``now``, Unix time) or why not."""
        self.heartbeats.labels(result=result).inc()
        self.connected.set(1 if result == "ok" else 0)
        if result == "ok":
            if now is None:
                self.last_heartbeat.set_to_current_time()
            else:
                self.last_heartbeat.set(now)

    def job_finished(self, kind: str, phase: str, seconds: float, *, objects: int = 0, size_bytes: int = 0) -> None:
        """A job reached its final phase: ``objects`` backed up or restored, ``size_bytes`` uploaded."""
        self.jobs.labels(kind=kind, phase=phase).inc()
        self.job_seconds.labels(kind=kind).observe(max(0.0, seconds))
        if kind == "backup":
            self.objects_backed_up.inc(max(0, objects))
            self.bytes_uploaded.inc(max(0, size_bytes))
        elif kind == "restore":
            self.objects_restored.inc(max(0, objects))

    def credentials(self, ok: bool) -> None:
        """A job opened (or failed to open) a credential session."""
        self.credential_fetches.labels(result="ok" if ok else "failed").inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return bytes(generate_latest(self.registry))
