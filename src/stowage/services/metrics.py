"""Prometheus metrics of one control-plane process: every metric is defined here, in one registry.

The registry belongs to the ``Runtime`` (``Runtime.metrics``), not to the process: tests and benchmarks start
several runtimes in one process, and prometheus-client's default registry refuses a metric name twice. The
process collectors (CPU, memory, file descriptors, GC) are registered in the same registry, so ``/metrics``
shows what the default registry would.

Services get the ``Metrics`` object (or one of its bound methods) as a collaborator and call the small
methods below at the point where the thing happens; nothing here does I/O.

For the backups and restores engine (issue 9/10): call ``backup_finished(phase, seconds, objects)`` and
``restore_finished(phase, seconds, objects)`` once per request when it reaches a final phase (Completed,
PartiallyFailed, Failed), and ``backup_deleted(phase)`` when a deletion ends.
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

# Validations take a few round trips (100 ms..seconds) and end at the validation timeout (30 s by default).
_VALIDATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Backups and restores run from seconds to hours.
_JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)


class Metrics:
    """The metrics of one Stowage runtime and the one registry they live in."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self.validations = Counter(
            "stowage_validations",
            "Location validations by result (ok: every check passed; failed: at least one check failed).",
            ["result"],
            registry=reg,
        )
        self.validation_seconds = Histogram(
            "stowage_validation_duration_seconds",
            "Duration of one location validation (static and live checks).",
            buckets=_VALIDATION_BUCKETS,
            registry=reg,
        )
        self.validation_checks_failed = Counter(
            "stowage_validation_checks_failed",
            "Failed validation checks, by check id (s3:PutObject, assume-role, s3-url, ...).",
            ["check"],
            registry=reg,
        )
        self.vending_requests = Counter(
            "stowage_vending_requests",
            "Credential vending requests from agents, by how they were answered (cached, issued, refused).",
            ["result"],
            registry=reg,
        )
        self.vending_cache = Counter(
            "stowage_vending_cache",
            "Vending cache lookups on the agents' hot path (hit: answered from memory without I/O).",
            ["outcome"],
            registry=reg,
        )
        self.sts_calls = Counter(
            "stowage_sts_assume_role_calls",
            "sts:AssumeRole calls made by the control plane, by result (ok or the error class).",
            ["result"],
            registry=reg,
        )
        self.sts_seconds = Histogram(
            "stowage_sts_assume_role_duration_seconds",
            "Duration of one sts:AssumeRole call (including the wait for the STS rate limit).",
            buckets=_STS_BUCKETS,
            registry=reg,
        )
        self.agent_heartbeats = Counter(
            "stowage_agent_heartbeats", "Heartbeats received from cluster agents.", registry=reg
        )
        self.backups = Counter(
            "stowage_backups", "Backups that reached a final phase, by phase.", ["phase"], registry=reg
        )
        self.backup_seconds = Histogram(
            "stowage_backup_duration_seconds",
            "Duration of finished backups, by final phase.",
            ["phase"],
            buckets=_JOB_BUCKETS,
            registry=reg,
        )
        self.backup_objects = Counter(
            "stowage_backup_objects", "Kubernetes objects written into finished backups.", registry=reg
        )
        self.backup_objects_per_second = Gauge(
            "stowage_backup_last_objects_per_second",
            "Objects per second of the last finished backup.",
            registry=reg,
        )
        self.backup_deletions = Counter(
            "stowage_backup_deletions", "Backup deletions that ended, by result phase.", ["phase"], registry=reg
        )
        self.restores = Counter(
            "stowage_restores", "Restores that reached a final phase, by phase.", ["phase"], registry=reg
        )
        self.restore_seconds = Histogram(
            "stowage_restore_duration_seconds",
            "Duration of finished restores, by final phase.",
            ["phase"],
            buckets=_JOB_BUCKETS,
            registry=reg,
        )
        self.restore_objects = Counter(
            "stowage_restore_objects", "Kubernetes objects handled by finished restores.", registry=reg
        )
        self.restore_objects_per_second = Gauge(
            "stowage_restore_last_objects_per_second",
            "Objects per second of the last finished restore.",
            registry=reg,
        )

    # -- recorded by the services ---------------------------------------------------------------------
    def validation_finished(self, *, ok: bool, seconds: float, failed_checks: list[str]) -> None:
        """One validation ended (asked for, or a scheduled re-validation)."""
        self.validations.labels(result="ok" if ok else "failed").inc()
        self.validation_seconds.observe(seconds)
        for check in failed_checks:
            self.validation_checks_failed.labels(check=check).inc()

    def vending_request(self, result: str) -> None:
        """One credential request of an agent answered: ``cached``, ``issued`` or ``refused``."""
        self.vending_requests.labels(result=result).inc()

    def vending_cache_lookup(self, *, hit: bool) -> None:
        """One lookup in the vending cache."""
        self.vending_cache.labels(outcome="hit" if hit else "miss").inc()

    def sts_call(self, result: str, seconds: float) -> None:
        """One sts:AssumeRole call ended (``result``: ok, or the error's class such as access_denied)."""
        self.sts_calls.labels(result=result).inc()
        self.sts_seconds.observe(seconds)

    def agent_heartbeat(self) -> None:
        """One agent heartbeat received."""
        self.agent_heartbeats.inc()

    def backup_finished(self, phase: str, seconds: float, objects: int) -> None:
        """A backup reached a final phase after ``seconds`` with ``objects`` items written."""
        self.backups.labels(phase=phase).inc()
        self.backup_seconds.labels(phase=phase).observe(max(0.0, seconds))
        self.backup_objects.inc(max(0, objects))
        if seconds > 0:
            self.backup_objects_per_second.set(objects / seconds)

    def backup_deleted(self, phase: str) -> None:
        """A backup deletion ended (``Deleted`` or ``Failed``)."""
        self.backup_deletions.labels(phase=phase).inc()

    def restore_finished(self, phase: str, seconds: float, objects: int) -> None:
        """A restore reached a final phase after ``seconds`` with ``objects`` items handled."""
        self.restores.labels(phase=phase).inc()
        self.restore_seconds.labels(phase=phase).observe(max(0.0, seconds))
        self.restore_objects.inc(max(0, objects))
        if seconds > 0:
            self.restore_objects_per_second.set(objects / seconds)

    # -- exposition -------------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
