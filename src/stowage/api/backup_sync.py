"""API v1: sync a cluster's backups from the bucket, and verify a backup against its SHA-256 manifest."""

from __future__ import annotations

from fastapi import APIRouter

from stowage.api.backups import BASE, ERRORS, BackupOut
from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.schemas import CamelModel
from stowage.domain.backup_sync import IntegrityReport
from stowage.services.backup_sync import SyncResult

router = APIRouter(prefix="/api/v1", responses=ERRORS)


class SkippedOut(CamelModel):
    """A folder of the bucket that was not imported, and why."""

    name: str
    reason: str
    location_name: str


class FailedLocationOut(CamelModel):
    """A location whose bucket could not be read."""

    location_id: str
    location_name: str
    reason: str


class SyncOut(CamelModel):
    """What a sync imported, skipped (with the reason) and found known already."""

    imported: list[BackupOut]
    skipped: list[SkippedOut]
    known: int
    failed_locations: list[FailedLocationOut]

    @classmethod
    def of(cls, result: SyncResult) -> SyncOut:
        """Build from the service's result."""
        return cls(
            imported=[BackupOut.of(v) for v in result.imported],
            skipped=[SkippedOut(name=s.name, reason=s.reason, location_name=s.location_name) for s in result.skipped],
            known=result.known,
            failed_locations=[
                FailedLocationOut(location_id=f.location_id, location_name=f.location_name, reason=f.reason)
                for f in result.failed_locations
            ],
        )


class ProblemOut(CamelModel):
    """One integrity problem: ``problem`` is missing, extra, size mismatch, hash mismatch, no manifest, or
    manifest unreadable; ``message`` says it in a sentence."""

    key: str
    problem: str
    message: str
    expected_sha256: str | None
    actual_sha256: str | None
    expected_size: int | None
    actual_size: int | None


class VerifyOut(CamelModel):
    """The result of re-reading every object of a backup."""

    ok: bool
    checked_objects: int
    problems: list[ProblemOut]

    @classmethod
    def of(cls, found: IntegrityReport) -> VerifyOut:
        """Build from the domain's report."""
        return cls(
            ok=found.ok,
            checked_objects=found.checked_objects,
            problems=[
                ProblemOut(
                    key=p.key,
                    problem=p.problem,
                    message=p.message,
                    expected_sha256=p.expected_sha256,
                    actual_sha256=p.actual_sha256,
                    expected_size=p.expected_size,
                    actual_size=p.actual_size,
                )
                for p in found.problems
            ],
        )


@router.post(f"{BASE}/backups/sync", response_model=SyncOut, tags=["backups"])
def sync_backups(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> SyncOut:
    """Import the cluster's backups found in the project's buckets that Stowage did not record (editors).

    Unfinished backups (no ``velero-backup.json``) are never imported; known ones are not duplicated."""
    return SyncOut.of(runtime.backup_sync.sync_cluster(principal, project, cluster))


@router.post(f"{BASE}/backups/{{name}}/verify", response_model=VerifyOut, tags=["backups"])
def verify_backup(project: str, cluster: str, name: str, principal: PrincipalDep, runtime: RuntimeDep) -> VerifyOut:
    """Re-read every object of the backup (streamed) and check it against its SHA-256 manifest."""
    return VerifyOut.of(runtime.backup_sync.verify(principal, project, cluster, name))
