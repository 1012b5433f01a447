"""Cluster backups: the request a user makes, its rules, its phases, and where its objects live.

Field names and semantics follow Palette's backup form and Velero's Backup spec, so a backup written by
Stowage reads like one written by Velero (see ``stowage.domain.velero`` for the object layout).
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BACKUP_NAME_MAX_LENGTH = 63
DEFAULT_DURATION_HOURS = 720
MAX_DURATION_HOURS = 24 * 365 * 10
MAX_FILTER_ENTRIES = 200
LABEL_SELECTOR_MAX_LENGTH = 1024
BACKUPS_DIR = "backups"
RESTORES_DIR = "restores"
# The ``kind`` of backup work items in the agents' job protocol.
BACKUP_WORK_KIND = "backup"
# Our own file inside a backup's folder: SHA-256 and size of every other object of the backup.
MANIFEST_SUFFIX = "-stowage-manifest.json"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_RESOURCE = re.compile(r"^(\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
_NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "-.")
# One requirement of a Kubernetes label selector: key, key=value, key==value, key!=value, !key,
# key in (a,b), key notin (a,b). Keys may carry a DNS prefix ("app.kubernetes.io/name").
_KEY = r"([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]{0,61}[a-z0-9A-Z])?"
_VALUE = r"([a-z0-9A-Z]([-a-z0-9A-Z_.]{0,61}[a-z0-9A-Z])?)?"
_REQUIREMENT = re.compile(
    rf"^\s*(!\s*{_KEY}|{_KEY}\s*(==?|!=)\s*{_VALUE}|{_KEY}\s+(in|notin)\s+\(\s*{_VALUE}(\s*,\s*{_VALUE})*\s*\)|{_KEY})\s*$"
)


class BackupPhase(enum.StrEnum):
    """Where a backup is in its life (Velero's phases, plus Deleting while its objects are removed)."""

    NEW = "New"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"
    DELETING = "Deleting"

    @property
    def finished(self) -> bool:
        """True once the agent's work is over (whatever its outcome)."""
        return self in (BackupPhase.COMPLETED, BackupPhase.PARTIALLY_FAILED, BackupPhase.FAILED)


class ClusterResourceMode(enum.StrEnum):
    """Palette's choice for cluster-scoped resources, i.e. Velero's ``includeClusterResources`` true/nil/false."""

    ALWAYS = "Always"
    AUTO = "Auto"
    NEVER = "Never"

    @property
    def velero_value(self) -> bool | None:
        """The value of Velero's ``spec.includeClusterResources``."""
        return {ClusterResourceMode.ALWAYS: True, ClusterResourceMode.AUTO: None, ClusterResourceMode.NEVER: False}[
            self
        ]


@dataclass(frozen=True, slots=True)
class BackupRequest:
    """What to back up; the same fields for on-demand backups and schedules (names as in Palette's API)."""

    namespaces: tuple[str, ...] = ()
    excluded_namespaces: tuple[str, ...] = ()
    included_resources: tuple[str, ...] = ()
    excluded_resources: tuple[str, ...] = ()
    label_selector: str | None = None
    cluster_resource_mode: ClusterResourceMode = ClusterResourceMode.AUTO
    include_all_disks: bool = False
    duration_hours: int = DEFAULT_DURATION_HOURS

    @property
    def all_namespaces(self) -> bool:
        """True when no namespace list narrows the backup (empty or ``*``)."""
        return not self.namespaces or "*" in self.namespaces

    def namespace_selected(self, namespace: str) -> bool:
        """Whether objects of this namespace are backed up."""
        if namespace in self.excluded_namespaces:
            return False
        return self.all_namespaces or namespace in self.namespaces

    def resource_selected(self, group_resource: str) -> bool:
        """Whether a resource (``configmaps``, ``deployments.apps``) is backed up by the resource filters.

        Entries match the plural resource name with or without its group, as Velero's filters do.
        """
        short = group_resource.split(".", 1)[0]
        if any(entry in (group_resource, short) for entry in self.excluded_resources):
            return False
        if not self.included_resources or "*" in self.included_resources:
            return True
        return any(entry in (group_resource, short) for entry in self.included_resources)

    def to_json(self) -> dict[str, Any]:
        """The request with the API's (Palette's) camelCase field names."""
        return {
            "namespaces": list(self.namespaces),
            "excludedNamespaces": list(self.excluded_namespaces),
            "includedResources": list(self.included_resources),
            "excludedResources": list(self.excluded_resources),
            "labelSelector": self.label_selector,
            "includeClusterResourceMode": self.cluster_resource_mode.value,
            "includeAllDisks": self.include_all_disks,
            "durationInHours": self.duration_hours,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupRequest:
        """Read back what ``to_json`` wrote (unknown keys are ignored, missing ones take defaults)."""
        return cls(
            namespaces=tuple(data.get("namespaces") or ()),
            excluded_namespaces=tuple(data.get("excludedNamespaces") or ()),
            included_resources=tuple(data.get("includedResources") or ()),
            excluded_resources=tuple(data.get("excludedResources") or ()),
            label_selector=data.get("labelSelector") or None,
            cluster_resource_mode=ClusterResourceMode(data.get("includeClusterResourceMode") or "Auto"),
            include_all_disks=bool(data.get("includeAllDisks")),
            duration_hours=int(data.get("durationInHours") or DEFAULT_DURATION_HOURS),
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule a request breaks: the API field and a sentence that says what is wrong and how to fix it."""

    field: str
    message: str


def backup_name_problem(name: str, *, field_name: str = "backupName") -> str | None:
    """Why a backup name cannot be used (Velero needs a DNS-1123 label: it becomes a label value); or None."""
    rules = (
        f"Use 1 to {BACKUP_NAME_MAX_LENGTH} lowercase letters, digits and '-', starting and ending with a letter "
        'or digit, like "nightly-2026-12-05".'
    )
    if not name:
        return f"{field_name} is required. {rules}"
    if len(name) > BACKUP_NAME_MAX_LENGTH:
        return f"{field_name} has {len(name)} characters; at most {BACKUP_NAME_MAX_LENGTH} are allowed. {rules}"
    if not _DNS_LABEL.match(name):
        bad = sorted({ch for ch in name if ch not in _NAME_CHARS or ch == "."})
        shown = ", ".join(repr(c) for c in bad[:6])
        suggestion = suggest_name(name)
        hint = f' Did you mean "{suggestion}"?' if suggestion and suggestion != name else ""
        detail = f" (found {shown})" if bad else ""
        return f"{field_name} {name!r} is not a valid name{detail}. {rules}{hint}"
    return None


def suggest_name(name: str) -> str:
    """A valid DNS label close to what was typed ('' when nothing is left)."""
    lowered = re.sub(r"[^a-z0-9-]+", "-", name.strip().lower())
    return re.sub(r"-{2,}", "-", lowered).strip("-")[:BACKUP_NAME_MAX_LENGTH].rstrip("-")


def _list_problems(field_name: str, values: Sequence[str], pattern: re.Pattern[str], what: str) -> list[Problem]:
    problems: list[Problem] = []
    if len(values) > MAX_FILTER_ENTRIES:
        problems.append(Problem(field_name, f"{field_name} has {len(values)} entries; at most {MAX_FILTER_ENTRIES}."))
    for value in values:
        if value == "*":
            continue
        if not pattern.match(value):
            problems.append(
                Problem(
                    field_name,
                    f"{field_name} entry {value!r} is not {what}. Use lowercase names as `kubectl get` shows them"
                    f"{', or * for all' if field_name in ('namespaces', 'includedResources') else ''}.",
                )
            )
    duplicates = sorted({v for v in values if list(values).count(v) > 1})
    if duplicates:
        problems.append(Problem(field_name, f"{field_name} lists {', '.join(duplicates)} more than once."))
    return problems


def label_selector_problem(selector: str | None) -> str | None:
    """Why a label selector is not valid Kubernetes selector syntax; None when absent or fine."""
    if selector is None or not selector.strip():
        return None
    if len(selector) > LABEL_SELECTOR_MAX_LENGTH:
        return f"labelSelector has {len(selector)} characters; at most {LABEL_SELECTOR_MAX_LENGTH}."
    for requirement in _split_selector(selector):
        if not _REQUIREMENT.match(requirement):
            return (
                f"labelSelector part {requirement.strip()!r} is not valid. Write requirements separated by commas, "
                "as for `kubectl get -l`: app=web, tier!=cache, env in (prod,staging), !legacy."
            )
    return None


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def request_problems(request: BackupRequest) -> list[Problem]:
    """Every rule the request breaks (empty when it can be run)."""
    problems: list[Problem] = []
    problems += _list_problems("namespaces", request.namespaces, _DNS_LABEL, "a namespace name")
    problems += _list_problems("excludedNamespaces", request.excluded_namespaces, _DNS_LABEL, "a namespace name")
    problems += _list_problems("includedResources", request.included_resources, _RESOURCE, "a resource name")
    problems += _list_problems("excludedResources", request.excluded_resources, _RESOURCE, "a resource name")
    both = sorted(set(request.namespaces) & set(request.excluded_namespaces))
    if both:
        problems.append(
            Problem("excludedNamespaces", f"{', '.join(both)} is both included and excluded; keep it in one list.")
        )
    both = sorted(set(request.included_resources) & set(request.excluded_resources))
    if both:
        problems.append(
            Problem("excludedResources", f"{', '.join(both)} is both included and excluded; keep it in one list.")
        )
    selector = label_selector_problem(request.label_selector)
    if selector:
        problems.append(Problem("labelSelector", selector))
    if not 1 <= request.duration_hours <= MAX_DURATION_HOURS:
        problems.append(
            Problem(
                "durationInHours",
                f"durationInHours must be between 1 and {MAX_DURATION_HOURS} (10 years); it is "
                f"{request.duration_hours}. The default, {DEFAULT_DURATION_HOURS}, keeps a backup for 30 days.",
            )
        )
    return problems


def clean_list(values: Iterable[str] | None) -> tuple[str, ...]:
    """Entries stripped of blanks, empty ones dropped, order kept."""
    return tuple(v.strip() for v in (values or ()) if v and v.strip())


# -- where a backup lives --------------------------------------------------------------------------------
def backup_prefix(cluster_prefix: str, name: str) -> str:
    """The folder of one backup: ``<cluster prefix>/backups/<name>`` (no trailing slash)."""
    return f"{cluster_prefix}/{BACKUPS_DIR}/{name}"


def manifest_key(cluster_prefix: str, name: str) -> str:
    """The key of a backup's SHA-256 manifest."""
    return f"{backup_prefix(cluster_prefix, name)}/{name}{MANIFEST_SUFFIX}"


@dataclass(frozen=True, slots=True)
class VolumeSnapshotRecord:
    """One EBS snapshot taken for a backup (kept by the control plane so it can delete it later)."""

    pv_name: str
    snapshot_id: str
    volume_id: str
    availability_zone: str | None
    region: str


@dataclass(frozen=True, slots=True)
class ItemMessage:
    """A warning or error about one item (or the backup as a whole when ``name`` is empty)."""

    message: str
    namespace: str | None = None
    resource: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON."""
        return {"message": self.message, "namespace": self.namespace, "resource": self.resource, "name": self.name}


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """What the agent reports when a backup ends."""

    phase: BackupPhase
    failure_reason: str | None = None
    total_items: int = 0
    items_backed_up: int = 0
    size_bytes: int = 0
    warnings: tuple[ItemMessage, ...] = ()
    errors: tuple[ItemMessage, ...] = ()
    snapshots: tuple[VolumeSnapshotRecord, ...] = field(default_factory=tuple)
