"""Backup sync and integrity as pure rules: reading a backup found in a bucket, and checking it against our manifest.

Sync reads ``velero-backup.json`` (Velero's Backup object, ``pkg/apis/velero/v1/backup_types.go``) back into
Stowage's request, phase and times; the folder's name must be the backup's name. Verification compares what a
bucket listing and a streamed SHA-256 of each object found with ``<name>-stowage-manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stowage.domain.backups import (
    BACKUP_NAME_MAX_LENGTH,
    DEFAULT_DURATION_HOURS,
    MANIFEST_SUFFIX,
    MAX_DURATION_HOURS,
    MAX_FILTER_ENTRIES,
    BackupPhase,
    BackupRequest,
    ClusterResourceMode,
    ItemMessage,
    VolumeSnapshotRecord,
)

ORIGIN_STOWAGE = "stowage"
# Imported from a bucket: written by (another) Stowage, i.e. it carries our manifest.
ORIGIN_SYNC = "sync"
# Imported from a bucket, without our manifest: written by Velero itself.
ORIGIN_VELERO = "velero"
BACKUP_JSON = "velero-backup.json"
# velero-backup.json is a small document; anything bigger is not a Backup object.
MAX_BACKUP_JSON_BYTES = 4 * 1024 * 1024
MAX_MESSAGES = 1000
MAX_MESSAGE_CHARS = 4000
NO_MANIFEST_VELERO = "no manifest: written by Velero; integrity cannot be checked"
NO_MANIFEST = (
    "no manifest: the backup's manifest is missing from the bucket (removed outside Stowage); integrity cannot be "
    "checked"
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


# -- reading velero-backup.json ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FoundBackup:
    """A finished backup read from a bucket, ready to become a row of Stowage's list."""

    name: str
    uid: str | None
    phase: BackupPhase
    failure_reason: str | None
    request: BackupRequest
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    expires_at: dt.datetime
    total_items: int
    items_backed_up: int
    schedule_name: str | None


class NotImportable(ValueError):
    """Why a folder of a bucket is not imported (the message is the reason shown to users)."""


def parse_time(value: object) -> dt.datetime | None:
    """A Kubernetes ``metav1.Time`` (RFC 3339) as an aware UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def parse_go_duration(value: object) -> float | None:
    """Seconds of a Go ``time.Duration`` string (``720h0m0s``, ``1h30m``); None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text == "0":
        return 0.0
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def selector_string(selector: object) -> str | None:
    """A ``metav1.LabelSelector`` as ``kubectl get -l`` syntax (the inverse of ``label_selector_object``)."""
    if not isinstance(selector, Mapping):
        return None
    parts: list[str] = []
    labels = selector.get("matchLabels")
    if isinstance(labels, Mapping):
        parts += [f"{k}={v}" for k, v in sorted(labels.items())]
    expressions = selector.get("matchExpressions")
    for expression in expressions if isinstance(expressions, list) else []:
        if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str):
            continue
        key, operator = expression["key"], expression.get("operator")
        values = [str(v) for v in expression.get("values") or [] if isinstance(v, str | int)]
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


def _names(value: object) -> tuple[str, ...]:
    """A Velero filter list; ``["*"]`` (everything) is Stowage's empty list."""
    if not isinstance(value, list):
        return ()
    names = tuple(dict.fromkeys(str(v)[:253] for v in value if isinstance(v, str) and v.strip()))
    return () if names == ("*",) else names[:MAX_FILTER_ENTRIES]


def _int(value: object) -> int:
    return max(0, int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def request_of(spec: Mapping[str, Any], *, has_snapshots: bool) -> BackupRequest:
    """Stowage's request from a Backup's spec (Velero's ``includeClusterResources`` true/nil/false → mode)."""
    include_cluster = spec.get("includeClusterResources")
    mode = (
        ClusterResourceMode.ALWAYS
        if include_cluster is True
        else ClusterResourceMode.NEVER
        if include_cluster is False
        else ClusterResourceMode.AUTO
    )
    ttl = parse_go_duration(spec.get("ttl"))
    hours = round(ttl / 3600) if ttl else DEFAULT_DURATION_HOURS
    selector = selector_string(spec.get("labelSelector"))
    return BackupRequest(
        namespaces=_names(spec.get("includedNamespaces")),
        excluded_namespaces=_names(spec.get("excludedNamespaces")),
        included_resources=_names(spec.get("includedResources")),
        excluded_resources=_names(spec.get("excludedResources")),
        label_selector=selector[:1024] if selector else None,
        cluster_resource_mode=mode,
        # Velero leaves snapshotVolumes unset to mean "when a snapshot location exists": the snapshots tell.
        include_all_disks=spec.get("snapshotVolumes") is True or has_snapshots,
        duration_hours=min(max(hours, 1), MAX_DURATION_HOURS),
    )


def read_backup_document(
    raw: bytes, folder: str, *, has_snapshots: bool = False, default_hours: int = DEFAULT_DURATION_HOURS
) -> FoundBackup:
    """A finished backup from the bytes of its ``velero-backup.json``; ``NotImportable`` says why not."""
    if len(folder) > BACKUP_NAME_MAX_LENGTH or not _DNS_LABEL.match(folder):
        raise NotImportable(f"'{folder[:80]}' is not a valid backup name (a DNS label of at most 63 characters)")
    if len(raw) > MAX_BACKUP_JSON_BYTES:
        raise NotImportable(f"{BACKUP_JSON} is {len(raw)} bytes: too big to be a Backup object")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotImportable(f"{BACKUP_JSON} is not JSON: {exc}") from exc
    if not isinstance(document, Mapping) or document.get("kind") != "Backup":
        raise NotImportable(f"{BACKUP_JSON} is not a Velero Backup object (kind Backup, apiVersion velero.io/v1)")
    metadata = document.get("metadata") if isinstance(document.get("metadata"), Mapping) else {}
    spec = document.get("spec") if isinstance(document.get("spec"), Mapping) else {}
    status = document.get("status") if isinstance(document.get("status"), Mapping) else {}
    assert isinstance(metadata, Mapping) and isinstance(spec, Mapping) and isinstance(status, Mapping)
    name = metadata.get("name")
    if name != folder:
        raise NotImportable(f"{BACKUP_JSON} names backup {str(name)[:80]!r}, but its folder is '{folder}'")
    try:
        phase = BackupPhase(str(status.get("phase") or ""))
    except ValueError:
        phase = None
    if phase is None or not phase.finished:
        # Velero's own in-between phases (FinalizingPartiallyFailed, WaitingForPluginOperations, ...) end here too.
        raise NotImportable(f"unfinished: status.phase is {str(status.get('phase') or 'empty')[:40]!r}")
    started = parse_time(status.get("startTimestamp"))
    completed = parse_time(status.get("completionTimestamp"))
    created = parse_time(metadata.get("creationTimestamp")) or started or completed
    if created is None:
        raise NotImportable(f"{BACKUP_JSON} has no creation, start or completion time")
    start = started or created
    expires = parse_time(status.get("expiration")) or start + dt.timedelta(hours=default_hours)
    request = request_of(spec, has_snapshots=has_snapshots)
    progress = status.get("progress") if isinstance(status.get("progress"), Mapping) else {}
    assert isinstance(progress, Mapping)
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), Mapping) else {}
    assert isinstance(labels, Mapping)
    schedule = labels.get("velero.io/schedule-name")
    reason = status.get("failureReason")
    return FoundBackup(
        name=folder,
        uid=str(metadata["uid"])[:64] if metadata.get("uid") else None,
        phase=phase,
        failure_reason=str(reason)[:MAX_MESSAGE_CHARS] if reason else None,
        request=request,
        created_at=created,
        started_at=started,
        completed_at=completed,
        expires_at=expires,
        total_items=_int(progress.get("totalItems")),
        items_backed_up=_int(progress.get("itemsBackedUp")),
        schedule_name=str(schedule)[:63] if isinstance(schedule, str) and schedule else None,
    )


def result_messages(document: object) -> tuple[list[ItemMessage], list[ItemMessage]]:
    """Warnings and errors of ``<name>-results.gz`` (``{errors: Result, warnings: Result}``) as item messages."""

    def messages(result: object) -> list[ItemMessage]:
        found: list[ItemMessage] = []
        if not isinstance(result, Mapping):
            return found
        for key in ("velero", "cluster"):
            for text in result.get(key) or []:
                found.append(ItemMessage(message=str(text)[:MAX_MESSAGE_CHARS]))
        namespaces = result.get("namespaces")
        for namespace, texts in namespaces.items() if isinstance(namespaces, Mapping) else []:
            for text in texts if isinstance(texts, list) else []:
                found.append(ItemMessage(message=str(text)[:MAX_MESSAGE_CHARS], namespace=str(namespace)))
        return found[:MAX_MESSAGES]

    if not isinstance(document, Mapping):
        return [], []
    return messages(document.get("warnings")), messages(document.get("errors"))


def snapshot_records(document: object, region: str) -> list[VolumeSnapshotRecord]:
    """The EBS snapshots of ``<name>-volumesnapshots.json.gz`` (Velero's ``volume.Snapshot`` list)."""
    records: list[VolumeSnapshotRecord] = []
    for entry in document if isinstance(document, list) else []:
        spec = entry.get("spec") if isinstance(entry, Mapping) else None
        status = entry.get("status") if isinstance(entry, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
            continue
        snapshot_id = status.get("providerSnapshotID")
        if not isinstance(snapshot_id, str) or not snapshot_id:
            continue
        # Velero's malformed struct tag makes Go write "PersistentVolumeName"; it reads either capitalisation.
        pv = next((v for k, v in spec.items() if k.lower() == "persistentvolumename" and isinstance(v, str)), "")
        zone = spec.get("volumeAZ")
        records.append(
            VolumeSnapshotRecord(
                pv_name=pv,
                snapshot_id=snapshot_id,
                volume_id=str(spec.get("providerVolumeID") or ""),
                availability_zone=zone if isinstance(zone, str) and zone else None,
                region=region,
            )
        )
    return records[:MAX_MESSAGES]


# -- verification ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object of a backup's folder as the bucket lists it: its name relative to the folder, and size."""

    key: str
    size: int


@dataclass(frozen=True, slots=True)
class IntegrityProblem:
    """One thing wrong with a backup's objects: ``problem`` is a short code, ``message`` says it in a sentence."""

    key: str
    problem: str
    message: str
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    expected_size: int | None = None
    actual_size: int | None = None


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """The outcome of re-reading a backup: ok only when nothing is wrong (and there was a manifest to check)."""

    ok: bool
    checked_objects: int
    problems: tuple[IntegrityProblem, ...]


def manifest_name(backup_name: str) -> str:
    """Our manifest's name inside a backup's folder."""
    return f"{backup_name}{MANIFEST_SUFFIX}"


def no_manifest(backup_name: str, origin: str) -> IntegrityReport:
    """The report for a backup that has no manifest to check against."""
    message = NO_MANIFEST_VELERO if origin == ORIGIN_VELERO else NO_MANIFEST
    return IntegrityReport(
        ok=False, checked_objects=0, problems=(IntegrityProblem(manifest_name(backup_name), "no manifest", message),)
    )


def unreadable_manifest(backup_name: str, why: str) -> IntegrityReport:
    """The report for a manifest that cannot be read."""
    problem = IntegrityProblem(
        manifest_name(backup_name), "manifest unreadable", f"the manifest cannot be read ({why}); nothing was checked"
    )
    return IntegrityReport(ok=False, checked_objects=0, problems=(problem,))


def parse_manifest(raw: bytes) -> dict[str, tuple[int, str]]:
    """Our manifest: relative key → (size, SHA-256 hex). ``ValueError`` when it is not one."""
    document = json.loads(raw)
    if not isinstance(document, Mapping) or str(document.get("algorithm", "")).upper() != "SHA-256":
        raise ValueError("not a SHA-256 manifest")
    entries = document.get("objects")
    if not isinstance(entries, list):
        raise ValueError("it lists no objects")
    found: dict[str, tuple[int, str]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise ValueError("an entry has no key")
        size, digest = entry.get("size"), entry.get("sha256")
        if not isinstance(size, int) or not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"entry {entry['key']!r} has no size or SHA-256")
        found[entry["key"]] = (size, digest)
    return found


def listing_problems(
    manifest: Mapping[str, tuple[int, str]], listed: Iterable[StoredObject], backup_name: str
) -> tuple[list[str], list[IntegrityProblem]]:
    """What the listing alone shows (missing, extra, wrong size) and which keys still need hashing."""
    sizes = {o.key: o.size for o in listed}
    problems: list[IntegrityProblem] = []
    to_hash: list[str] = []
    for key, (size, digest) in sorted(manifest.items()):
        if key not in sizes:
            problems.append(
                IntegrityProblem(key, "missing", f"{key} is in the manifest but not in the bucket", digest, None, size)
            )
        elif sizes[key] != size:
            problems.append(
                IntegrityProblem(
                    key,
                    "size mismatch",
                    f"{key} has {sizes[key]} bytes; the manifest says {size}",
                    digest,
                    None,
                    size,
                    sizes[key],
                )
            )
        else:
            to_hash.append(key)
    own = manifest_name(backup_name)
    for key in sorted(sizes):
        if key not in manifest and key != own:
            problems.append(
                IntegrityProblem(
                    key, "extra", f"{key} is in the bucket but not in the manifest", None, None, None, sizes[key]
                )
            )
    return to_hash, problems


def hash_problem(key: str, expected: tuple[int, str], actual: tuple[int, str] | None) -> IntegrityProblem | None:
    """The problem of one streamed object (None when it matches); ``actual`` None means it vanished meanwhile."""
    size, digest = expected
    if actual is None:
        return IntegrityProblem(key, "missing", f"{key} disappeared while it was being read", digest, None, size)
    actual_size, actual_digest = actual
    if actual_size != size:
        return IntegrityProblem(
            key, "size mismatch", f"{key} has {actual_size} bytes; the manifest says {size}", digest,
            actual_digest, size, actual_size,
        )  # fmt: skip
    if actual_digest != digest:
        return IntegrityProblem(
            key, "hash mismatch", f"the SHA-256 of {key} differs from the manifest's: its content changed",
            digest, actual_digest, size, actual_size,
        )  # fmt: skip
    return None


def report(checked: int, problems: Sequence[IntegrityProblem]) -> IntegrityReport:
    """The final report, problems ordered by key."""
    ordered = tuple(sorted(problems, key=lambda p: (p.key, p.problem)))
    return IntegrityReport(ok=not ordered, checked_objects=checked, problems=ordered)
