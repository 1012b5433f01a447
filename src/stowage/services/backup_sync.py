"""Backup sync (backups found in the bucket that Stowage did not record) and integrity checks of a backup.

Sync lists ``<location prefix>/clusters/<cluster id>/backups/`` of every location of a cluster's project with a
delimiter, and imports each folder that holds a finished ``velero-backup.json`` and is not known yet (same
cluster and name). A folder without that file is an unfinished backup and is never imported. Several servers
may sync at once: the unique (cluster, name) constraint lets exactly one insert win; the others count the
backup as known.

Verification re-reads every object of a backup through SHA-256 (streamed, bounded memory) and compares the
bucket with the backup's ``<name>-stowage-manifest.json``.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.backup_sync import (
    BACKUP_JSON,
    MAX_BACKUP_JSON_BYTES,
    ORIGIN_SYNC,
    ORIGIN_VELERO,
    FoundBackup,
    IntegrityProblem,
    IntegrityReport,
    NotImportable,
    StoredObject,
    hash_problem,
    listing_problems,
    manifest_name,
    no_manifest,
    parse_manifest,
    read_backup_document,
    report,
    result_messages,
    snapshot_records,
    unreadable_manifest,
)
from stowage.domain.backups import (
    BACKUPS_DIR,
    DEFAULT_DURATION_HOURS,
    BackupPhase,
    BackupRequest,
    backup_prefix,
)
from stowage.domain.clusters import cluster_prefix
from stowage.domain.locations import LocationSpec
from stowage.services.backups import BackupView, load_backup, load_cluster
from stowage.services.tenancy import require
from stowage.store.database import Database
from stowage.store.tables import Backup, Cluster, Location, Project, utcnow

log = logging.getLogger("stowage.backup_sync")
# Side files are small; a gzip bigger than this once inflated is not read (a zip bomb must not fill memory).
MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
VERIFIABLE = (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED)


class LocationSource(Protocol):
    """Reads a saved location with its secrets (``LocationService.spec_for_agent``)."""

    def spec_for_agent(self, location_id: str) -> tuple[LocationSpec, str, str, str]:
        """Spec, project id, project name, External ID."""
        ...


class SyncStorage(Protocol):
    """What sync and verification need of a bucket (``stowage.aws.backup_storage.BackupStorage``)."""

    def read(self, ref: Any, key: str) -> bytes | None:
        """One object's bytes, or None."""
        ...

    def list_folders(self, ref: Any, prefix: str) -> list[str]:
        """Folder names directly under a prefix."""
        ...

    def list_objects(self, ref: Any, prefix: str) -> list[tuple[str, int]]:
        """Objects under a prefix: key relative to it, size."""
        ...

    def hash_objects(self, ref: Any, keys: Sequence[str]) -> dict[str, tuple[int, str] | None]:
        """Size and SHA-256 of each object (streamed); None when gone."""
        ...


RefFactory = Callable[[LocationSpec, str, str], Any]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A folder that was not imported, and why."""

    name: str
    reason: str
    location_name: str


@dataclass(frozen=True, slots=True)
class LocationFailure:
    """A location whose bucket could not be read during a sync."""

    location_id: str
    location_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync of a cluster found: imported backups, skipped folders, how many were known already."""

    imported: list[BackupView]
    skipped: list[Skipped]
    known: int
    failed_locations: list[LocationFailure]


@dataclass(frozen=True, slots=True)
class _Target:
    """One (cluster, location) pair of a project: where a cluster's backups may lie."""

    project_id: str
    project_name: str
    cluster_id: str
    cluster_name: str
    location_id: str
    location_name: str
    location_prefix: str | None
    region: str


class BackupSyncService:
    """Use cases: sync a cluster's backups from its project's buckets (on demand and periodically); verify one."""

    def __init__(
        self,
        *,
        db: Database,
        locations: LocationSource,
        storage: SyncStorage,
        ref_factory: RefFactory,
        default_duration_hours: int = DEFAULT_DURATION_HOURS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._locations = locations
        self._storage = storage
        self._ref = ref_factory
        self._default_hours = default_duration_hours
        self._clock = clock

    # -- sync ----------------------------------------------------------------------------------------------
    def sync_cluster(self, principal: Principal, project_ref: str, cluster_ref: str) -> SyncResult:
        """Import the backups of a cluster found in any location of its project that Stowage did not record."""
        require(principal, Permission.RUN_BACKUPS)
        with self._db.session() as session:
            _, cluster = load_cluster(session, principal, project_ref, cluster_ref)
            targets = self._targets(session, select(Cluster).where(Cluster.id == cluster.id))
        return self._sync(targets)

    def sync_all(self) -> dict[str, int]:
        """The periodic sync: every cluster of every project, in every location of its project."""
        with self._db.session() as session:
            targets = self._targets(session, select(Cluster))
        result = self._sync(targets)
        for failure in result.failed_locations:
            log.warning("backup sync could not read location %s: %s", failure.location_name, failure.reason)
        if result.imported:
            log.info("backup sync imported %d backup(s)", len(result.imported))
        return {
            "imported": len(result.imported),
            "skipped": len(result.skipped),
            "known": result.known,
            "failedLocations": len(result.failed_locations),
        }

    def _targets(self, session: Any, clusters_query: Any) -> list[_Target]:
        clusters = list(session.scalars(clusters_query.order_by(Cluster.created_at)))
        project_ids = {c.project_id for c in clusters}
        if not project_ids:
            return []
        projects = {p.id: p for p in session.scalars(select(Project).where(Project.id.in_(project_ids)))}
        by_project: dict[str, list[Location]] = {}
        for location in session.scalars(
            select(Location).where(Location.project_id.in_(project_ids)).order_by(Location.created_at)
        ):
            by_project.setdefault(location.project_id, []).append(location)
        return [
            _Target(
                project_id=c.project_id,
                project_name=projects[c.project_id].name,
                cluster_id=c.id,
                cluster_name=c.name,
                location_id=loc.id,
                location_name=loc.name,
                location_prefix=loc.prefix,
                region=loc.region,
            )
            for c in clusters
            for loc in by_project.get(c.project_id, [])
        ]

    def _sync(self, targets: Sequence[_Target]) -> SyncResult:
        imported: list[BackupView] = []
        skipped: list[Skipped] = []
        failures: list[LocationFailure] = []
        known = 0
        failed_locations: set[str] = set()
        for target in targets:
            if target.location_id in failed_locations:
                continue  # one failure per location is enough to report; its other clusters would fail alike
            try:
                found, skips, known_here = self._sync_target(target)
            except errors.StowageError as exc:
                failed_locations.add(target.location_id)
                failures.append(LocationFailure(target.location_id, target.location_name, exc.message))
                continue
            imported += found
            skipped += skips
            known += known_here
        return SyncResult(imported=imported, skipped=skipped, known=known, failed_locations=failures)

    def _sync_target(self, target: _Target) -> tuple[list[BackupView], list[Skipped], int]:
        ref = self._location_ref(target.location_id)
        own_prefix = cluster_prefix(target.location_prefix, target.cluster_id)
        names = self._storage.list_folders(ref, f"{own_prefix}/{BACKUPS_DIR}")
        if not names:
            return [], [], 0
        with self._db.session() as session:
            recorded = set(session.scalars(select(Backup.name).where(Backup.cluster_id == target.cluster_id)))
        imported: list[BackupView] = []
        skipped: list[Skipped] = []
        known = 0
        for name in names:
            if name in recorded:
                known += 1
                continue
            try:
                found, origin, extra = self._read_folder(ref, own_prefix, name, target.region)
            except NotImportable as exc:
                skipped.append(Skipped(name, str(exc), target.location_name))
                continue
            view = self._insert(target, own_prefix, found, origin, extra)
            if view is None:
                known += 1  # another server imported it at the same moment
            else:
                imported.append(view)
        return imported, skipped, known

    def _read_folder(
        self, ref: Any, own_prefix: str, name: str, region: str
    ) -> tuple[FoundBackup, str, dict[str, Any]]:
        """Read a backup folder; ``NotImportable`` when it is unfinished, malformed or already expired."""
        folder = backup_prefix(own_prefix, name)
        objects = dict(self._storage.list_objects(ref, folder))
        if BACKUP_JSON not in objects:
            raise NotImportable(
                f"unfinished: no {BACKUP_JSON} (the backup is still being written, or its writer stopped before the "
                "end); it is never imported"
            )
        if objects[BACKUP_JSON] > MAX_BACKUP_JSON_BYTES:
            raise NotImportable(f"{BACKUP_JSON} is {objects[BACKUP_JSON]} bytes: too big to be a Backup object")
        raw = self._storage.read(ref, f"{folder}/{BACKUP_JSON}")
        if raw is None:
            raise NotImportable(f"unfinished: {BACKUP_JSON} disappeared while it was read")
        snapshots_raw = self._side_file(ref, folder, f"{name}-volumesnapshots.json.gz", objects)
        records = snapshot_records(snapshots_raw, region)
        found = read_backup_document(raw, name, has_snapshots=bool(records), default_hours=self._default_hours)
        now = self._clock()
        if found.expires_at <= now:
            raise NotImportable(
                f"expired on {found.expires_at.isoformat(timespec='seconds')}: not imported, because Stowage would "
                "delete it at once; delete it in the bucket, or change status.expiration to keep it"
            )
        warnings, errors_ = result_messages(self._side_file(ref, folder, f"{name}-results.gz", objects))
        extra: dict[str, Any] = {
            "size": sum(objects.values()),
            "warnings": [m.to_json() for m in warnings],
            "errors": [m.to_json() for m in errors_],
            "snapshots": [
                {
                    "pvName": r.pv_name,
                    "snapshotId": r.snapshot_id,
                    "volumeId": r.volume_id,
                    "availabilityZone": r.availability_zone,
                    "region": r.region,
                }
                for r in records
            ],
        }
        origin = ORIGIN_SYNC if manifest_name(name) in objects else ORIGIN_VELERO
        return found, origin, extra

    def _side_file(self, ref: Any, folder: str, relative: str, objects: dict[str, int]) -> Any:
        """A gzipped JSON side file, or None when absent or unreadable (side files only enrich the record)."""
        if relative not in objects or objects[relative] > MAX_SIDE_FILE_BYTES:
            return None
        raw = self._storage.read(ref, f"{folder}/{relative}")
        if raw is None:
            return None
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as handle:
                data = handle.read(MAX_SIDE_FILE_BYTES + 1)
            if len(data) > MAX_SIDE_FILE_BYTES:
                return None
            return json.loads(data)
        except (OSError, EOFError, ValueError):
            return None

    def _insert(
        self, target: _Target, own_prefix: str, found: FoundBackup, origin: str, extra: dict[str, Any]
    ) -> BackupView | None:
        """Add the row; None when another server added the same backup first (unique cluster and name)."""
        now = self._clock()
        row = Backup(
            project_id=target.project_id,
            cluster_id=target.cluster_id,
            location_id=target.location_id,
            location_name=target.location_name,
            name=found.name,
            request=found.request.to_json(),
            schedule_name=found.schedule_name,
            origin=origin,
            storage_prefix=own_prefix,
            phase=found.phase.value,
            failure_reason=found.failure_reason,
            total_items=found.total_items,
            items_backed_up=found.items_backed_up,
            size_bytes=int(extra["size"]),
            warnings=extra["warnings"],
            errors=extra["errors"],
            snapshots=extra["snapshots"],
            attempt=0,
            cancel_requested=False,
            delete_attempts=0,
            created_by=f"sync ({origin})",
            created_at=found.created_at,
            started_at=found.started_at,
            completed_at=found.completed_at or now,
            expires_at=found.expires_at,
        )
        try:
            with self._db.session() as session:
                session.add(row)
                session.flush()
                return _view(row, target)
        except IntegrityError:
            return None

    # -- verification --------------------------------------------------------------------------------------
    def verify(self, principal: Principal, project_ref: str, cluster_ref: str, name: str) -> IntegrityReport:
        """Re-read every object of a finished backup and check it against the backup's SHA-256 manifest."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            _, _, row = load_backup(session, principal, project_ref, cluster_ref, name)
            phase, origin = BackupPhase(row.phase), row.origin
            name, folder, location_id = row.name, backup_prefix(row.storage_prefix, row.name), row.location_id
        if phase not in VERIFIABLE:
            raise errors.Conflict(
                f"Backup '{name}' is {phase.value}: only a Completed or PartiallyFailed backup can be verified.",
                details={"phase": phase.value},
            )
        ref = self._location_ref(location_id)
        listed = [StoredObject(key, size) for key, size in self._storage.list_objects(ref, folder)]
        own = manifest_name(name)
        sizes = {o.key: o.size for o in listed}
        if own not in sizes:
            return no_manifest(name, origin)
        if sizes[own] > MAX_MANIFEST_BYTES:
            return unreadable_manifest(name, f"it is {sizes[own]} bytes")
        raw = self._storage.read(ref, f"{folder}/{own}")
        if raw is None:
            return no_manifest(name, origin)
        try:
            manifest = parse_manifest(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return unreadable_manifest(name, str(exc))
        to_hash, problems = listing_problems(manifest, listed, name)
        hashes = self._storage.hash_objects(ref, [f"{folder}/{key}" for key in to_hash]) if to_hash else {}
        found: list[IntegrityProblem] = list(problems)
        for key in to_hash:
            problem = hash_problem(key, manifest[key], hashes.get(f"{folder}/{key}"))
            if problem is not None:
                found.append(problem)
        return report(len(manifest), found)

    # -- helpers ------------------------------------------------------------------------------------------
    def _location_ref(self, location_id: str) -> Any:
        try:
            spec, _, project_name, external_id = self._locations.spec_for_agent(location_id)
        except errors.NotFound as exc:
            raise errors.NotFound(
                f"The backup location ({location_id}) was deleted, so Stowage can no longer read this backup's objects."
            ) from exc
        return self._ref(spec, external_id, f"stowage-{project_name}-control-plane"[:64])


def _view(row: Backup, target: _Target) -> BackupView:
    return BackupView(
        id=row.id,
        name=row.name,
        project=target.project_name,
        cluster_id=target.cluster_id,
        cluster_name=target.cluster_name,
        location_id=row.location_id,
        location_name=row.location_name,
        phase=BackupPhase(row.phase),
        failure_reason=row.failure_reason,
        request=BackupRequest.from_json(row.request),
        total_items=row.total_items,
        items_backed_up=row.items_backed_up,
        size_bytes=row.size_bytes,
        warnings=len(row.warnings or []),
        errors=len(row.errors or []),
        volume_snapshots=len(row.snapshots or []),
        schedule_name=row.schedule_name,
        origin=row.origin,
        storage_prefix=backup_prefix(row.storage_prefix, row.name),
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        expires_at=row.expires_at,
    )
