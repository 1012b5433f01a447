"""Velero's object layout (v1.x, backup format 1.1.0), built as plain data: no I/O here.

A backup lives in one folder, ``<cluster prefix>/backups/<name>/``, exactly as Velero writes it:

* ``velero-backup.json``: the Backup object (kind Backup, apiVersion velero.io/v1); written last, once: its
  presence is what makes a folder a backup to Velero and to Stowage's sync.
* ``<name>.tar.gz``: ``metadata/version`` and every item as ``resources/<resource>[.<group>]/{cluster|
  namespaces/<ns>}/<name>.json``, plus the same bytes under ``<version>-preferredversion/`` (Velero restores
  from that copy when the destination serves the preferred version).
* ``<name>-resource-list.json.gz``, ``<name>-results.gz``, ``<name>-logs.gz``, ``<name>-volumesnapshots.json.gz``,
  ``<name>-volumeinfo.json.gz``: Velero's side files.
* ``<name>-stowage-manifest.json``: ours; size and SHA-256 of every other object of the backup.

Field names follow Velero's Go types (``pkg/apis/velero/v1/backup_types.go``, ``pkg/util/results``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stowage.domain.backups import MANIFEST_SUFFIX, BackupPhase, BackupRequest, backup_prefix

FORMAT_VERSION = "1.1.0"
# Deprecated major version Velero still sets beside formatVersion (pkg/backup.BackupVersion).
MAJOR_VERSION = 1
VELERO_NAMESPACE = "velero"
API_VERSION = "velero.io/v1"
STORAGE_LOCATION_LABEL = "velero.io/storage-location"
# Items carrying this label are never backed up (Velero's item backupper skips them).
EXCLUDE_LABEL = "velero.io/exclude-from-backup"
METADATA_VERSION_PATH = "metadata/version"
# Velero writes "<formatVersion>\n" into metadata/version (kubernetesBackupper.writeBackupVersion).
METADATA_VERSION_CONTENT = (FORMAT_VERSION + "\n").encode()
RESOURCES_DIR = "resources"
CLUSTER_DIR = "cluster"
NAMESPACES_DIR = "namespaces"
PREFERRED_SUFFIX = "-preferredversion"
BACKUP_JSON = "velero-backup.json"
MANIFEST_ALGORITHM = "SHA-256"


# -- names ------------------------------------------------------------------------------------------------
def group_resource(resource: str, group: str) -> str:
    """Kubernetes' GroupResource string: ``configmaps`` for the core group, ``deployments.apps`` otherwise."""
    return f"{resource}.{group}" if group else resource


def api_version(group: str, version: str) -> str:
    """``v1`` for the core group, ``<group>/<version>`` otherwise."""
    return f"{group}/{version}" if group else version


def item_paths(gr: str, version: str, namespace: str | None, name: str) -> tuple[str, str]:
    """The two tar paths of one item: the plain one and its ``<version>-preferredversion`` copy."""
    scope = f"{NAMESPACES_DIR}/{namespace}" if namespace else CLUSTER_DIR
    return (
        f"{RESOURCES_DIR}/{gr}/{scope}/{name}.json",
        f"{RESOURCES_DIR}/{gr}/{version}{PREFERRED_SUFFIX}/{scope}/{name}.json",
    )


def resource_list_key(api_ver: str, kind: str) -> str:
    """The key of one kind in ``-resource-list.json.gz``: ``v1/ConfigMap``, ``apps/v1/Deployment``."""
    return f"{api_ver}/{kind}"


def resource_list_entry(namespace: str | None, name: str) -> str:
    """One entry of the resource list: ``ns/name`` or, cluster-scoped, ``name``."""
    return f"{namespace}/{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class BackupObjects:
    """The object keys of one backup (absolute keys in the bucket) and their names relative to its folder."""

    folder: str
    name: str

    @classmethod
    def of(cls, cluster_prefix: str, name: str) -> BackupObjects:
        """The objects of backup ``name`` under a cluster prefix."""
        return cls(backup_prefix(cluster_prefix, name), name)

    def key(self, relative: str) -> str:
        """The absolute key of an object of this backup."""
        return f"{self.folder}/{relative}"

    @property
    def backup_json(self) -> str:
        """``velero-backup.json`` (relative)."""
        return BACKUP_JSON

    @property
    def tarball(self) -> str:
        """``<name>.tar.gz`` (relative)."""
        return f"{self.name}.tar.gz"

    @property
    def resource_list(self) -> str:
        """``<name>-resource-list.json.gz`` (relative)."""
        return f"{self.name}-resource-list.json.gz"

    @property
    def results(self) -> str:
        """``<name>-results.gz`` (relative)."""
        return f"{self.name}-results.gz"

    @property
    def logs(self) -> str:
        """``<name>-logs.gz`` (relative)."""
        return f"{self.name}-logs.gz"

    @property
    def volume_snapshots(self) -> str:
        """``<name>-volumesnapshots.json.gz`` (relative)."""
        return f"{self.name}-volumesnapshots.json.gz"

    @property
    def volume_info(self) -> str:
        """``<name>-volumeinfo.json.gz`` (relative)."""
        return f"{self.name}-volumeinfo.json.gz"

    @property
    def manifest(self) -> str:
        """Our SHA-256 manifest (relative)."""
        return f"{self.name}{MANIFEST_SUFFIX}"

    @property
    def side_files(self) -> tuple[str, ...]:
        """Velero's gzipped side files (relative), in upload order."""
        return (self.resource_list, self.results, self.logs, self.volume_snapshots, self.volume_info)


# -- velero-backup.json ----------------------------------------------------------------------------------
def timestamp(moment: dt.datetime) -> str:
    """Kubernetes ``metav1.Time`` JSON: RFC 3339 in UTC, whole seconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(hours: int) -> str:
    """A whole number of hours as Go's ``time.Duration.String()`` writes it (``720h0m0s``)."""
    return f"{hours}h0m0s"


_SET_REQUIREMENT = re.compile(r"^\s*(?P<key>\S+?)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*(?P<key>[^!=\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)\s*$")


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def label_selector_object(selector: str | None) -> dict[str, Any] | None:
    """A selector string as a ``metav1.LabelSelector`` (what ``metav1.ParseToLabelSelector`` makes of it)."""
    if selector is None or not selector.strip():
        return None
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for requirement in _split_requirements(selector):
        text = requirement.strip()
        in_set = _SET_REQUIREMENT.match(text)
        if in_set:
            values = sorted(v.strip() for v in in_set.group("values").split(",") if v.strip())
            operator = "In" if in_set.group("op") == "in" else "NotIn"
            expressions.append({"key": in_set.group("key"), "operator": operator, "values": values})
            continue
        equality = _EQUALITY.match(text)
        if equality:
            if equality.group("op") == "!=":
                expressions.append(
                    {"key": equality.group("key"), "operator": "NotIn", "values": [equality.group("value")]}
                )
            else:
                match_labels[equality.group("key")] = equality.group("value")
            continue
        if text.startswith("!"):
            expressions.append({"key": text[1:].strip(), "operator": "DoesNotExist"})
        else:
            expressions.append({"key": text, "operator": "Exists"})
    result: dict[str, Any] = {}
    if match_labels:
        result["matchLabels"] = match_labels
    if expressions:
        result["matchExpressions"] = expressions
    return result


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """What ``status`` of velero-backup.json reports at the end of a backup."""

    phase: BackupPhase
    started_at: dt.datetime
    completed_at: dt.datetime | None
    total_items: int
    items_backed_up: int
    warnings: int
    errors: int
    snapshots_attempted: int = 0
    snapshots_completed: int = 0
    failure_reason: str | None = None


def backup_document(
    *,
    name: str,
    uid: str,
    request: BackupRequest,
    location_name: str,
    labels: Mapping[str, str],
    created_at: dt.datetime,
    expires_at: dt.datetime,
    status: BackupStatus,
) -> dict[str, Any]:
    """The Backup object Velero stores as ``velero-backup.json`` (empty fields left out, as Go's omitempty does)."""
    spec: dict[str, Any] = {"includedNamespaces": list(request.namespaces) or ["*"]}
    if request.excluded_namespaces:
        spec["excludedNamespaces"] = list(request.excluded_namespaces)
    spec["includedResources"] = list(request.included_resources) or ["*"]
    if request.excluded_resources:
        spec["excludedResources"] = list(request.excluded_resources)
    selector = label_selector_object(request.label_selector)
    if selector is not None:
        spec["labelSelector"] = selector
    include_cluster = request.cluster_resource_mode.velero_value
    if include_cluster is not None:
        spec["includeClusterResources"] = include_cluster
    spec["snapshotVolumes"] = request.include_all_disks
    spec["storageLocation"] = location_name
    spec["ttl"] = go_duration(request.duration_hours)
    # Go writes non-pointer struct fields even when empty.
    spec["hooks"] = {}
    spec["metadata"] = {}
    body: dict[str, Any] = {
        "version": MAJOR_VERSION,
        "formatVersion": FORMAT_VERSION,
        "expiration": timestamp(expires_at),
        "phase": status.phase.value,
        "startTimestamp": timestamp(status.started_at),
    }
    if status.completed_at is not None:
        body["completionTimestamp"] = timestamp(status.completed_at)
    if status.snapshots_attempted:
        body["volumeSnapshotsAttempted"] = status.snapshots_attempted
    if status.snapshots_completed:
        body["volumeSnapshotsCompleted"] = status.snapshots_completed
    if status.warnings:
        body["warnings"] = status.warnings
    if status.errors:
        body["errors"] = status.errors
    if status.failure_reason:
        body["failureReason"] = status.failure_reason
    body["progress"] = {"totalItems": status.total_items, "itemsBackedUp": status.items_backed_up}
    all_labels = dict(labels)
    all_labels[STORAGE_LOCATION_LABEL] = location_name
    return {
        "kind": "Backup",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "namespace": VELERO_NAMESPACE,
            "uid": uid,
            "creationTimestamp": timestamp(created_at),
            "labels": all_labels,
        },
        "spec": spec,
        "status": body,
    }


def encode_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, as the side files and velero-backup.json are stored."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# -- results ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResultMessage:
    """A message of ``-results.gz``: about the backup as a whole (velero), the cluster, or a namespace."""

    message: str
    namespace: str | None = None
    cluster: bool = False


def _result(messages: Iterable[ResultMessage]) -> dict[str, Any]:
    """One ``results.Result``: ``{velero: [...], cluster: [...], namespaces: {ns: [...]}}`` without empties."""
    velero: list[str] = []
    cluster: list[str] = []
    namespaces: dict[str, list[str]] = {}
    for message in messages:
        if message.namespace:
            namespaces.setdefault(message.namespace, []).append(message.message)
        elif message.cluster:
            cluster.append(message.message)
        else:
            velero.append(message.message)
    result: dict[str, Any] = {}
    if velero:
        result["velero"] = velero
    if cluster:
        result["cluster"] = cluster
    if namespaces:
        result["namespaces"] = namespaces
    return result


def results_document(warnings: Iterable[ResultMessage], errors: Iterable[ResultMessage]) -> dict[str, Any]:
    """The content of ``<name>-results.gz``: ``{"errors": Result, "warnings": Result}``."""
    return {"errors": _result(errors), "warnings": _result(warnings)}


# -- manifest --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One object of a backup: its name relative to the backup's folder, size and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


def manifest_document(entries: Sequence[ManifestEntry]) -> dict[str, Any]:
    """Our manifest: every other object of the backup with its size and SHA-256."""
    return {
        "algorithm": MANIFEST_ALGORITHM,
        "objects": [{"key": e.key, "size": e.size, "sha256": e.sha256} for e in entries],
    }


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether labels satisfy a ``metav1.LabelSelector`` (None matches everything)."""
    if not selector:
        return True
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key = expression["key"]
        operator = expression["operator"]
        values = expression.get("values") or ()
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# -- reading a backup (restores) -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ItemPath:
    """Where one item sits in a tarball: ``resources/<group resource>/{cluster|namespaces/<ns>}/<name>.json``."""

    group_resource: str
    namespace: str | None
    name: str

    @property
    def resource(self) -> str:
        """``deployments`` of ``deployments.apps``."""
        return self.group_resource.partition(".")[0]

    @property
    def group(self) -> str:
        """``apps`` of ``deployments.apps``; empty for the core group."""
        return self.group_resource.partition(".")[2]


def parse_item_path(path: str) -> ItemPath | None:
    """An item's place from its tar path; None for anything else, including the ``-preferredversion`` copies.

    The copies hold the same bytes as the plain paths (Velero writes both from one object), and Velero's own
    restore reads the plain paths unless its EnableAPIGroupVersions feature is on, so reading the plain ones
    restores exactly what Velero would.
    """
    parts = path.removeprefix("./").split("/")
    if len(parts) < 4 or parts[0] != RESOURCES_DIR or not parts[-1].endswith(".json"):
        return None
    name = parts[-1][: -len(".json")]
    if len(parts) == 4 and parts[2] == CLUSTER_DIR:
        return ItemPath(parts[1], None, name)
    if len(parts) == 5 and parts[2] == NAMESPACES_DIR:
        return ItemPath(parts[1], parts[3], name)
    return None


@dataclass(frozen=True, slots=True)
class RestoreObjects:
    """The object keys of one restore's files under its folder (``<cluster prefix>/restores/<name>``)."""

    folder: str
    name: str

    def key(self, relative: str) -> str:
        """The absolute key of a file of this restore."""
        return f"{self.folder}/{relative}"

    @property
    def results(self) -> str:
        """``restore-<name>-results.gz`` (relative)."""
        return f"restore-{self.name}-results.gz"

    @property
    def resource_list(self) -> str:
        """``restore-<name>-resource-list.json.gz`` (relative)."""
        return f"restore-{self.name}-resource-list.json.gz"

    @property
    def logs(self) -> str:
        """``restore-<name>-logs.gz`` (relative)."""
        return f"restore-{self.name}-logs.gz"


def restore_resource_list_entry(namespace: str | None, name: str, action: str) -> str:
    """One entry of a restore's resource list: ``ns/name(created)`` or, cluster-scoped, ``name(created)``."""
    return f"{resource_list_entry(namespace, name)}({action})"


def manifest_hashes(document: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """Our manifest read back: relative key to (size, SHA-256)."""
    found: dict[str, tuple[int, str]] = {}
    for entry in document.get("objects") or ():
        if isinstance(entry, Mapping) and entry.get("key") and entry.get("sha256"):
            found[str(entry["key"])] = (int(entry.get("size") or 0), str(entry["sha256"]))
    return found
