"""API v1 for agents: the job protocol shared by backups and restores.

``claim`` takes a job handed out in a heartbeat and starts its lease, ``progress`` renews the lease and carries
log lines (and, for restores, item results), ``complete`` reports the end once, and ``credentials`` vends a
restore's own job-scoped credentials (read the one backup, write the restore's files).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from stowage.api.agents import NO_STORE, AgentDep, container_json
from stowage.api.backups import BackupOut
from stowage.api.restores import RestoreOut
from stowage.api.schemas import CamelModel, ErrorOut
from stowage.domain.backups import BackupOutcome, BackupPhase, VolumeSnapshotRecord
from stowage.domain.restores import ItemResult, RestoreOutcome, RestorePhase
from stowage.services.backups import item_messages
from stowage.services.runtime import Runtime

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["agent"])

Text = Annotated[str, Field(max_length=8192)]
Name = Annotated[str, Field(max_length=253)]


class AgentLogLine(CamelModel):
    """A log line from the agent."""

    at: datetime
    level: Annotated[str, Field(max_length=16)] = "info"
    message: Annotated[str, Field(max_length=8192)]


class JobClaimOut(CamelModel):
    """A claimed job: renew the lease (progress reports) at least every ``leaseSeconds / 4``."""

    id: str
    kind: str
    location_id: str
    lease_seconds: int
    params: dict[str, Any]


class RestoreItemIn(CamelModel):
    """What happened (or would happen, in a preview) to one item of a restore."""

    api_version: Name
    kind: Name
    namespace: Name | None = None
    name: Name
    action: Literal["created", "updated", "skipped", "failed", "create", "update", "skip", "conflict"]
    reason: Text | None = None

    def to_result(self) -> ItemResult:
        """The service's item result."""
        return ItemResult(self.api_version, self.kind, self.namespace, self.name, self.action, self.reason)


class JobProgressIn(CamelModel):
    """Progress of a running job (also the job's heartbeat); ``itemsRestored``/``items`` for restores."""

    total_items: Annotated[int, Field(ge=0)] = 0
    items_backed_up: Annotated[int, Field(ge=0)] = 0
    items_restored: Annotated[int, Field(ge=0)] = 0
    logs: Annotated[list[AgentLogLine], Field(max_length=5000)] = Field(default_factory=list)
    items: Annotated[list[RestoreItemIn], Field(max_length=5000)] = Field(default_factory=list)


class JobProgressOut(CamelModel):
    """Keep going (lease renewed) or cancel."""

    cancel: bool
    lease_seconds: int


class SnapshotIn(CamelModel):
    """An EBS snapshot the agent took."""

    pv_name: Annotated[str, Field(max_length=253)]
    snapshot_id: Annotated[str, Field(max_length=64)]
    volume_id: Annotated[str, Field(max_length=64)]
    availability_zone: Annotated[str, Field(max_length=64)] | None = None
    region: Annotated[str, Field(max_length=64)]


class ItemMessageIn(CamelModel):
    """A warning or error about one item."""

    message: Annotated[str, Field(max_length=8192)]
    namespace: Annotated[str, Field(max_length=253)] | None = None
    resource: Annotated[str, Field(max_length=253)] | None = None
    name: Annotated[str, Field(max_length=253)] | None = None


class JobCompleteIn(CamelModel):
    """How a job ended (backup fields, or the restore's ``itemsRestored``, ``summary``, ``problems``, ``items``)."""

    phase: Literal["Completed", "PartiallyFailed", "Failed"]  # the same names for backups and restores
    failure_reason: Annotated[str, Field(max_length=8192)] | None = None
    total_items: Annotated[int, Field(ge=0)] = 0
    items_backed_up: Annotated[int, Field(ge=0)] = 0
    size_bytes: Annotated[int, Field(ge=0)] = 0
    warnings: Annotated[list[ItemMessageIn], Field(max_length=1000)] = Field(default_factory=list)
    errors: Annotated[list[ItemMessageIn], Field(max_length=1000)] = Field(default_factory=list)
    volume_snapshots: Annotated[list[SnapshotIn], Field(max_length=10000)] = Field(default_factory=list)
    logs: Annotated[list[AgentLogLine], Field(max_length=5000)] = Field(default_factory=list)
    items_restored: Annotated[int, Field(ge=0)] = 0
    summary: Annotated[dict[Annotated[str, Field(max_length=32)], int], Field(max_length=32)] = Field(
        default_factory=dict
    )
    problems: Annotated[list[dict[str, Any]], Field(max_length=500)] = Field(default_factory=list)
    items: Annotated[list[RestoreItemIn], Field(max_length=5000)] = Field(default_factory=list)

    def to_restore_outcome(self) -> RestoreOutcome:
        """The restore's outcome."""
        return RestoreOutcome(
            phase=RestorePhase(self.phase),
            failure_reason=self.failure_reason,
            total_items=self.total_items,
            items_restored=self.items_restored,
            summary=self.summary,
            problems=[_clipped(p) for p in self.problems],
        )

    def to_outcome(self) -> BackupOutcome:
        """The domain outcome."""
        return BackupOutcome(
            phase=BackupPhase(self.phase),
            failure_reason=self.failure_reason,
            total_items=self.total_items,
            items_backed_up=self.items_backed_up,
            size_bytes=self.size_bytes,
            warnings=item_messages([w.model_dump() for w in self.warnings]),
            errors=item_messages([e.model_dump() for e in self.errors]),
            snapshots=tuple(
                VolumeSnapshotRecord(
                    pv_name=s.pv_name,
                    snapshot_id=s.snapshot_id,
                    volume_id=s.volume_id,
                    availability_zone=s.availability_zone,
                    region=s.region,
                )
                for s in self.volume_snapshots
            ),
        )


def _lines(logs: list[AgentLogLine]) -> list[tuple[datetime, str, str]]:
    return [(line.at, line.level, line.message) for line in logs]


def _clipped(problem: dict[str, Any]) -> dict[str, Any]:
    """A preview problem as stored: JSON of bounded size (it is free-form by design)."""
    text = json.dumps(problem)[:4000]
    try:
        value: dict[str, Any] = json.loads(text)
        return value
    except ValueError:
        return {"message": str(problem.get("message", ""))[:2000]}


def _is_restore(runtime: Runtime, job_id: str) -> bool:
    return runtime.restores.owns(job_id)


# -- the protocol ------------------------------------------------------------------------------------------
@router.post("/agent/jobs/{job_id}/claim", response_model=JobClaimOut)
async def claim_job(job_id: str, agent: AgentDep, request: Request) -> JobClaimOut:
    """Take a job handed out in a heartbeat; 409 when another attempt has it or it is no longer New."""
    runtime: Runtime = request.app.state.runtime

    def claim() -> JobClaimOut:
        if _is_restore(runtime, job_id):
            got = runtime.restores.claim(agent, job_id)
            kind = "restore"
        else:
            got = runtime.backups.claim(agent, job_id)  # type: ignore[assignment]
            kind = "backup"
        return JobClaimOut(
            id=job_id, kind=kind, location_id=got.location_id, lease_seconds=got.lease_seconds, params=got.params
        )

    return await run_in_threadpool(claim)


@router.post("/agent/jobs/{job_id}/progress", response_model=JobProgressOut)
async def job_progress(job_id: str, body: JobProgressIn, agent: AgentDep, request: Request) -> JobProgressOut:
    """Report progress and log lines; renews the lease; ``cancel`` says to stop (deletion was asked)."""
    runtime: Runtime = request.app.state.runtime

    def report() -> JobProgressOut:
        if _is_restore(runtime, job_id):
            lease = runtime.restores.report(
                agent,
                job_id,
                total_items=body.total_items,
                items_restored=body.items_restored,
                lines=_lines(body.logs),
                items=[i.to_result() for i in body.items],
            )
            return JobProgressOut(cancel=False, lease_seconds=lease)
        answer = runtime.backups.report(
            agent, job_id, total_items=body.total_items, items_backed_up=body.items_backed_up, lines=_lines(body.logs)
        )
        return JobProgressOut(cancel=answer.cancel, lease_seconds=answer.lease_seconds)

    return await run_in_threadpool(report)


@router.post("/agent/jobs/{job_id}/complete", response_model=BackupOut | RestoreOut)
async def complete_job(job_id: str, body: JobCompleteIn, agent: AgentDep, request: Request) -> BackupOut | RestoreOut:
    """Report how the job ended (once): the Backup or the Restore as it now is."""
    runtime: Runtime = request.app.state.runtime

    def complete() -> BackupOut | RestoreOut:
        if _is_restore(runtime, job_id):
            view = runtime.restores.complete(
                agent,
                job_id,
                body.to_restore_outcome(),
                lines=_lines(body.logs),
                items=[i.to_result() for i in body.items],
            )
            return RestoreOut.of(view)
        return BackupOut.of(runtime.backups.complete(agent, job_id, body.to_outcome(), lines=_lines(body.logs)))

    return await run_in_threadpool(complete)


@router.get(
    "/agent/jobs/{job_id}/credentials",
    response_model=None,
    responses={200: {"description": "AWS container-credentials shape", "content": {"application/json": {}}}},
)
async def job_credentials(job_id: str, agent: AgentDep, request: Request) -> Response:
    """Credentials confined to one running restore: read its backup, write its own files, nothing else."""
    runtime: Runtime = request.app.state.runtime

    def vend() -> bytes:
        location_id = runtime.restores.location_of(job_id)

        def policy_of(spec: Any, partition: str) -> dict[str, Any]:
            return runtime.restores.session_policy(
                agent,
                job_id,
                bucket=spec.bucket,
                partition=partition,
                snapshots=spec.ec2_checks_apply,
                kms_key_arn=spec.kms_key_arn,
            )

        return container_json(runtime.vending.job_credentials(agent, location_id, policy_of))

    return Response(content=await run_in_threadpool(vend), media_type="application/json", headers=NO_STORE)
