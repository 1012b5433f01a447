"""The agent's side of the job protocol: claim a backup, run it, keep its lease alive, report how it ended.

A reporter thread sends progress and buffered log lines at least every quarter of the lease, so the control
plane knows the job is alive even while one list call or upload takes long; when the control plane is away
the job keeps going and the reports (and finally the completion) are retried until it is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from stowage.agent.access import AccessProblem, open_location
from stowage.agent.backoff import Backoff
from stowage.agent.client import AgentRejected, ControlPlane, ServerUnavailable
from stowage.agent.jsonlog import JsonLog
from stowage.agent.metrics import AgentMetrics
from stowage.domain.backups import BackupOutcome, BackupPhase, BackupRequest

# Give up reporting the end of a job after this long without the control plane (its lease has long expired
# and the backup is Failed there; the objects without velero-backup.json never look complete).
COMPLETE_GIVE_UP_SECONDS = 3600.0
MAX_BUFFERED_LINES = 5000
# The control plane takes at most this many item results per report (restores).
MAX_ITEMS_PER_REPORT = 5000


class JobReporter:
    """Progress, log lines and the cancel flag of one running job, sent by a background thread.

    ``kind`` names the job in the agent's own log events (``backup.log``, ``restore.log``) and picks the
    progress field (``itemsBackedUp`` or ``itemsRestored``); restores also queue item results, sent at most
    ``MAX_ITEMS_PER_REPORT`` a report (a full batch wakes the thread rather than waiting for the interval).
    """

    def __init__(
        self, control: ControlPlane, job_id: str, *, lease_seconds: float, log: JsonLog, kind: str = "backup"
    ) -> None:
        self._control = control
        self._job_id = job_id
        self._interval = max(1.0, lease_seconds / 4)
        self._log = log
        self._kind = kind
        self._done_field = "itemsRestored" if kind == "restore" else "itemsBackedUp"
        self._lock = threading.Lock()
        self._lines: list[dict[str, str]] = []
        self._items: list[dict[str, Any]] = []
        self._progress = (0, 0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stowage-job-{job_id[:8]}", daemon=True)
        self.lost: str | None = None

    def start(self) -> None:
        """Start reporting."""
        self._thread.start()

    def progress(self, items_backed_up: int, total_items: int) -> None:
        """Remember the latest progress (sent with the next report)."""
        with self._lock:
            self._progress = (items_backed_up, total_items)

    def line(self, level: str, message: str) -> None:
        """Queue a live log line (also written to the agent's own log)."""
        self._log.log(
            level if level in ("debug", "info", "warning", "error") else "info",
            f"{self._kind}.log",
            job=self._job_id,
            message=message,
        )
        with self._lock:
            if len(self._lines) < MAX_BUFFERED_LINES:
                self._lines.append({"at": _now(), "level": level, "message": message})

    def items(self, results: list[dict[str, Any]]) -> None:
        """Queue item results (restores); a full report's worth wakes the reporter thread."""
        with self._lock:
            self._items.extend(results)
            full = len(self._items) >= MAX_ITEMS_PER_REPORT
        if full:
            self._wake.set()

    def pending_items(self) -> int:
        """Item results not sent yet."""
        with self._lock:
            return len(self._items)

    def take_items(self) -> list[dict[str, Any]]:
        """The item results not sent yet (for the completion), emptying the queue."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def cancelled(self) -> bool:
        """True once the control plane asked to stop (deletion requested) or gave the job up."""
        return self._cancel.is_set()

    def stop(self) -> list[dict[str, str]]:
        """Stop the thread; returns the lines not sent yet (they go with the completion)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.send()

    def send(self) -> bool:
        """One progress report; lines and items are kept for the next try when the control plane is away.

        Returns whether the control plane took it.
        """
        with self._lock:
            lines, self._lines = self._lines, []
            items, self._items = self._items[:MAX_ITEMS_PER_REPORT], self._items[MAX_ITEMS_PER_REPORT:]
            done, total = self._progress
        body: dict[str, Any] = {"totalItems": total, self._done_field: done, "logs": lines}
        if items:
            body["items"] = items
        try:
            answer = self._control.job_progress(self._job_id, body)
        except ServerUnavailable as exc:
            with self._lock:
                self._lines = (lines + self._lines)[:MAX_BUFFERED_LINES]
                self._items = items + self._items
            self._log.warning(f"{self._kind}.report.unreachable", job=self._job_id, error=str(exc))
            return False
        except AgentRejected as exc:
            # The control plane gave this job up (lease expired, or the job is gone): stop working on it.
            self.lost = exc.message
            self._cancel.set()
            self._log.error(f"{self._kind}.report.rejected", job=self._job_id, error=exc.message)
            return False
        if answer.get("cancel"):
            self._cancel.set()
        return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


KubeFactory = Callable[[], Any]


class BackupJobs:
    """The handler of ``backup`` work items."""

    def __init__(
        self,
        control: ControlPlane,
        *,
        log: JsonLog,
        kube: KubeFactory,
        base_session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.control = control
        self.log = log
        self.kube = kube
        self.base_session = base_session
        self.metrics = metrics or AgentMetrics()
        self._sleep = sleep

    def __call__(self, item: Mapping[str, Any]) -> None:
        """Claim the job; run it when the claim is ours."""
        job_id = str(item["id"])
        try:
            claim = self.control.claim_job(job_id)
        except AgentRejected as exc:
            self.log.info("backup.claim.refused", job=job_id, status=exc.status, error=exc.message)
            return
        params: Mapping[str, Any] = claim["params"]
        reporter = JobReporter(self.control, job_id, lease_seconds=float(claim["leaseSeconds"]), log=self.log)
        reporter.start()
        started = time.monotonic()
        try:
            outcome = self._run(params, str(claim["locationId"]), reporter)
        except Exception as exc:  # noqa: BLE001 - whatever happened, the control plane must hear how it ended
            outcome = BackupOutcome(
                phase=BackupPhase.FAILED,
                failure_reason=f"The agent failed unexpectedly: {type(exc).__name__}: {exc}. See the agent's log.",
            )
        if reporter.lost:
            outcome = BackupOutcome(phase=BackupPhase.FAILED, failure_reason=reporter.lost)
        lines = reporter.stop()
        self.metrics.job_finished(
            "backup",
            outcome.phase.value,
            time.monotonic() - started,
            objects=outcome.items_backed_up,
            size_bytes=outcome.size_bytes,
        )
        self.log.info(
            "backup.finished",
            job=job_id,
            backup=params.get("backupName"),
            phase=outcome.phase.value,
            items=outcome.items_backed_up,
            seconds=round(time.monotonic() - started, 3),
        )
        self._complete(job_id, outcome, lines)

    def _run(self, params: Mapping[str, Any], location_id: str, reporter: JobReporter) -> BackupOutcome:
        # Imported here: the engine pulls in the Kubernetes client, which only backup jobs need.
        from stowage.agent.backup_engine import BackupJob, run_backup
        from stowage.agent.volumes import Snapshotter
        from stowage.aws.snapshots import ec2_client

        request = BackupRequest.from_json(params["request"])
        name = str(params["backupName"])
        reporter.line("info", f"Backup {name} claimed by the agent; opening location {params.get('locationName')}.")
        try:
            access = open_location(self.control, location_id, base_session=self.base_session)
        except AccessProblem as exc:
            self.metrics.credentials(ok=False)
            return BackupOutcome(phase=BackupPhase.FAILED, failure_reason=str(exc))
        except (AgentRejected, ServerUnavailable) as exc:
            return BackupOutcome(phase=BackupPhase.FAILED, failure_reason=str(exc))
        self.metrics.credentials(ok=True)
        region = str(access.location.get("region") or "us-east-1")
        snapshotter = None
        if request.include_all_disks:
            if access.location.get("volumeSnapshots") and access.location.get("provider") == "aws":
                snapshotter = Snapshotter(
                    ec2_client(access.session, region),
                    region=region,
                    backup_uid=str(params["backupUid"]),
                    location_name=str(params.get("locationName") or ""),
                )
            else:
                reporter.line(
                    "warning",
                    "includeAllDisks is set but the location has volume snapshots switched off (or is not AWS): "
                    "no EBS snapshots are taken. Turn on volume snapshots on the location to back up disks.",
                )
        job = BackupJob(
            backup_name=name,
            backup_uid=str(params["backupUid"]),
            cluster_prefix=str(params["clusterPrefix"]),
            bucket=access.bucket,
            location_name=str(params.get("locationName") or ""),
            request=request,
            created_at=datetime.fromisoformat(str(params["createdAt"])),
            expires_at=datetime.fromisoformat(str(params["expiresAt"])),
            labels=dict(params.get("labels") or {}),
        )
        try:
            api = self.kube()
        except Exception as exc:  # noqa: BLE001 - a bad kubeconfig is a failed backup with a reason
            return BackupOutcome(
                phase=BackupPhase.FAILED,
                failure_reason=(
                    f"The agent cannot reach the Kubernetes API: {exc}. Run it in the cluster (in-cluster "
                    "config) or give it --kubeconfig."
                ),
            )
        return run_backup(
            job,
            api=api,
            s3=access.s3(),
            snapshotter=snapshotter,
            progress=reporter.progress,
            log=reporter.line,
            cancelled=reporter.cancelled,
        )

    def _complete(self, job_id: str, outcome: BackupOutcome, lines: list[dict[str, str]]) -> None:
        body = completion_body(outcome, lines)
        backoff = Backoff(1.0, 30.0)
        deadline = time.monotonic() + COMPLETE_GIVE_UP_SECONDS
        while True:
            try:
                self.control.complete_job(job_id, body)
                return
            except AgentRejected as exc:
                self.log.error("backup.complete.rejected", job=job_id, error=exc.message)
                return
            except ServerUnavailable as exc:
                if time.monotonic() > deadline:
                    self.log.error("backup.complete.gave_up", job=job_id, error=str(exc))
                    return
                delay = backoff.next()
                self.log.warning("backup.complete.retry", job=job_id, error=str(exc), retryInSeconds=round(delay, 2))
                self._sleep(delay)


def completion_body(outcome: BackupOutcome, lines: list[dict[str, str]]) -> dict[str, Any]:
    """The JSON of ``POST /agent/jobs/{id}/complete``."""
    return {
        "phase": outcome.phase.value,
        "failureReason": outcome.failure_reason,
        "totalItems": outcome.total_items,
        "itemsBackedUp": outcome.items_backed_up,
        "sizeBytes": outcome.size_bytes,
        "warnings": [m.to_json() for m in outcome.warnings[:1000]],
        "errors": [m.to_json() for m in outcome.errors[:1000]],
        "volumeSnapshots": [
            {
                "pvName": s.pv_name,
                "snapshotId": s.snapshot_id,
                "volumeId": s.volume_id,
                "availabilityZone": s.availability_zone,
                "region": s.region,
            }
            for s in outcome.snapshots
        ],
        "logs": lines[-5000:],
    }
