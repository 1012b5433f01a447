"""The agent's side of restore jobs: claim a restore (or preview), run it with job-scoped credentials, report.

The job protocol is the backups' one (``JobReporter``: progress with ``itemsRestored`` and item results, the
lease renewed at least every quarter of it, a completion retried while the control plane is away). The
credentials are the restore's own: ``params.credentialsPath`` vends a session that may read the one source
backup and write the restore's folder, nothing else (the control plane applies the session policy).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from stowage import errors
from stowage.agent.access import LocationAccess
from stowage.agent.backoff import Backoff
from stowage.agent.client import AgentRejected, ControlPlane, ServerUnavailable
from stowage.agent.jobs import COMPLETE_GIVE_UP_SECONDS, MAX_ITEMS_PER_REPORT, JobReporter, KubeFactory
from stowage.agent.jsonlog import JsonLog
from stowage.agent.metrics import AgentMetrics
from stowage.domain.restores import ItemResult, RestoreOutcome, RestorePhase, RestoreRequest

# How many progress reports may carry the item results left at the end before the completion goes anyway.
FLUSH_ATTEMPTS = 20


def item_json(item: ItemResult) -> dict[str, Any]:
    """One item result as the job protocol carries it."""
    return {
        "apiVersion": item.api_version,
        "kind": item.kind,
        "namespace": item.namespace,
        "name": item.name,
        "action": item.action,
        "reason": item.reason[:8000] if item.reason else None,
    }


def completion_body(
    outcome: RestoreOutcome, lines: list[dict[str, str]], items: list[dict[str, Any]]
) -> dict[str, Any]:
    """The JSON of ``POST /agent/jobs/{id}/complete`` for a restore."""
    return {
        "phase": outcome.phase.value,
        "failureReason": outcome.failure_reason,
        "totalItems": outcome.total_items,
        "itemsRestored": outcome.items_restored,
        "summary": dict(outcome.summary or {}),
        "problems": [dict(p) for p in outcome.problems][:500],
        "items": items[:MAX_ITEMS_PER_REPORT],
        "logs": lines[-5000:],
    }


class RestoreJobs:
    """The handler of ``restore`` work items."""

    def __init__(
        self,
        control: ControlPlane,
        *,
        log: JsonLog,
        kube: KubeFactory,
        sleep: Any = time.sleep,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.control = control
        self.log = log
        self.kube = kube
        self.metrics = metrics or AgentMetrics()
        self._sleep = sleep

    def __call__(self, item: Mapping[str, Any]) -> None:
        """Claim the job; run it when the claim is ours."""
        job_id = str(item["id"])
        try:
            claim = self.control.claim_job(job_id)
        except AgentRejected as exc:
            self.log.info("restore.claim.refused", job=job_id, status=exc.status, error=exc.message)
            return
        params: Mapping[str, Any] = claim["params"]
        reporter = JobReporter(
            self.control, job_id, lease_seconds=float(claim["leaseSeconds"]), log=self.log, kind="restore"
        )
        reporter.start()
        started = time.monotonic()
        try:
            outcome = self._run(params, str(claim["locationId"]), reporter)
        except Exception as exc:  # noqa: BLE001 - whatever happened, the control plane must hear how it ended
            outcome = RestoreOutcome(
                phase=RestorePhase.FAILED,
                failure_reason=f"The agent failed unexpectedly: {type(exc).__name__}: {exc}. See the agent's log.",
            )
        if reporter.lost:
            outcome = RestoreOutcome(phase=RestorePhase.FAILED, failure_reason=reporter.lost)
        # Item results beyond one report's worth go with progress reports before the completion.
        attempts = 0
        while reporter.pending_items() > MAX_ITEMS_PER_REPORT and attempts < FLUSH_ATTEMPTS and not reporter.lost:
            attempts += 1
            if not reporter.send():
                self._sleep(min(30.0, 2.0**attempts))
        lines = reporter.stop()
        items = reporter.take_items()
        self.metrics.job_finished(
            "preview" if (params.get("request") or {}).get("dryRun") else "restore",
            outcome.phase.value,
            time.monotonic() - started,
            objects=outcome.items_restored,
        )
        self.log.info(
            "restore.finished",
            job=job_id,
            restore=params.get("restoreName"),
            phase=outcome.phase.value,
            items=outcome.items_restored,
            seconds=round(time.monotonic() - started, 3),
        )
        self._complete(job_id, completion_body(outcome, lines, items))

    def _run(self, params: Mapping[str, Any], location_id: str, reporter: JobReporter) -> RestoreOutcome:
        # Imported here: the engine pulls in the Kubernetes client, which only jobs need.
        from stowage.agent.restore_engine import RestoreJob, run_restore
        from stowage.aws import agent_sessions
        from stowage.aws.snapshots import ec2_client

        request = RestoreRequest.from_json(params["request"])
        name = str(params["restoreName"])
        what = "Preview" if request.dry_run else "Restore"
        reporter.line("info", f"{what} {name} of backup {params.get('backupName')} claimed by the agent.")
        try:
            location = self.control.location(location_id)
        except (AgentRejected, ServerUnavailable) as exc:
            return RestoreOutcome(phase=RestorePhase.FAILED, failure_reason=f"Reading the location failed: {exc}")
        if location.get("agentAccess") == "direct":
            return RestoreOutcome(
                phase=RestorePhase.FAILED,
                failure_reason=(
                    f"Location '{location.get('name')}' uses direct agent access, and restores do not support it yet: "
                    "a restore needs credentials scoped to one backup and its own folder, which only the control "
                    "plane vends. Switch the location's agentAccess to brokered for the restore."
                ),
            )
        region = str(location.get("region") or "us-east-1")
        try:
            session = agent_sessions.brokered_session(
                self.control.server + str(params["credentialsPath"]), self.control.token, region
            )
        except errors.StowageError as exc:
            self.metrics.credentials(ok=False)
            return RestoreOutcome(
                phase=RestorePhase.FAILED,
                failure_reason=(
                    f"Getting the restore's credentials failed: {exc}. Check that the location validates and that the "
                    "agent reaches the control plane, then restore again."
                ),
            )
        self.metrics.credentials(ok=True)
        access = LocationAccess(session, location)
        ec2 = None
        if location.get("volumeSnapshots") and location.get("provider", "aws") == "aws":
            ec2 = ec2_client(session, region)
        job = RestoreJob(
            restore_name=name,
            restore_uid=str(params["restoreId"]),
            backup_name=str(params["backupName"]),
            backup_prefix=str(params["backupPrefix"]),
            restore_prefix=str(params["restorePrefix"]),
            bucket=access.bucket,
            request=request,
            region=region,
        )
        try:
            api = self.kube()
        except Exception as exc:  # noqa: BLE001 - a bad kubeconfig is a failed restore with a reason
            return RestoreOutcome(
                phase=RestorePhase.FAILED,
                failure_reason=(
                    f"The agent cannot reach the Kubernetes API: {exc}. Run it in the cluster (in-cluster config) "
                    "or give it --kubeconfig."
                ),
            )
        return run_restore(
            job,
            api=api,
            s3=access.s3(),
            ec2=ec2,
            progress=reporter.progress,
            log=reporter.line,
            items=lambda results: reporter.items([item_json(i) for i in results]),
            cancelled=reporter.cancelled,
        )

    def _complete(self, job_id: str, body: dict[str, Any]) -> None:
        backoff = Backoff(1.0, 30.0)
        deadline = time.monotonic() + COMPLETE_GIVE_UP_SECONDS
        while True:
            try:
                self.control.complete_job(job_id, body)
                return
            except AgentRejected as exc:
                self.log.error("restore.complete.rejected", job=job_id, error=exc.message)
                return
            except ServerUnavailable as exc:
                if time.monotonic() > deadline:
                    self.log.error("restore.complete.gave_up", job=job_id, error=str(exc))
                    return
                delay = backoff.next()
                self.log.warning("restore.complete.retry", job=job_id, error=str(exc), retryInSeconds=round(delay, 2))
                self._sleep(delay)
