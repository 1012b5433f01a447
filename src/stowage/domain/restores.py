"""Restores: the request (Palette's fields and more), its rules, phases, per-item results, and the session
policy that confines a destination agent to one restore.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stowage.domain.backups import (
    BACKUP_NAME_MAX_LENGTH,
    LABEL_SELECTOR_MAX_LENGTH,
    MAX_FILTER_ENTRIES,
    RESTORES_DIR,
    ClusterResourceMode,
    Problem,
    backup_prefix,
    label_selector_problem,
)
from stowage.domain.policies import VERSION, Policy, Statement, bucket_arn, kms_statement

RESTORE_WORK_KIND = "restore"
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_TIMESTAMP = "%Y%m%d%H%M%S"
# What a restoring agent may do in EC2: make volumes from snapshots and tag them, never delete anything.
RESTORE_EC2_ACTIONS = ["ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:CreateVolume", "ec2:CreateTags"]


class RestorePhase(enum.StrEnum):
    """Where a restore is in its life (Velero's restore phases)."""

    NEW = "New"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        """True once the agent's work is over."""
        return self in (RestorePhase.COMPLETED, RestorePhase.PARTIALLY_FAILED, RestorePhase.FAILED)


class ExistingResourcePolicy(enum.StrEnum):
    """What to do with an object that already exists in the destination (Velero's existingResourcePolicy)."""

    NONE = "none"
    UPDATE = "update"


class ItemAction(enum.StrEnum):
    """What happened (or, in a preview, would happen) to one item."""

    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"
    FAILED = "failed"
    # Preview only.
    CREATE = "create"
    UPDATE = "update"
    SKIP = "skip"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """What to restore, where, and how."""

    include_namespaces: tuple[str, ...] = ()
    excluded_namespaces: tuple[str, ...] = ()
    namespace_mapping: Mapping[str, str] = field(default_factory=dict)
    cluster_resource_mode: ClusterResourceMode = ClusterResourceMode.AUTO
    restore_pvs: bool = True
    preserve_node_ports: bool = False
    existing_resource_policy: ExistingResourcePolicy = ExistingResourcePolicy.NONE
    label_selector: str | None = None
    dry_run: bool = False

    def namespace_selected(self, namespace: str) -> bool:
        """Whether a namespace of the backup is restored."""
        if namespace in self.excluded_namespaces:
            return False
        return not self.include_namespaces or "*" in self.include_namespaces or namespace in self.include_namespaces

    def target_namespace(self, namespace: str) -> str:
        """The namespace an object of ``namespace`` is restored into."""
        return self.namespace_mapping.get(namespace, namespace)

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON (the API's names)."""
        return {
            "includeNamespaces": list(self.include_namespaces),
            "excludedNamespaces": list(self.excluded_namespaces),
            "namespaceMapping": dict(self.namespace_mapping),
            "includeClusterResourceMode": self.cluster_resource_mode.value,
            "restorePVs": self.restore_pvs,
            "preserveNodePorts": self.preserve_node_ports,
            "existingResourcePolicy": self.existing_resource_policy.value,
            "labelSelector": self.label_selector,
            "dryRun": self.dry_run,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestoreRequest:
        """Read back ``to_json``."""
        return cls(
            include_namespaces=tuple(data.get("includeNamespaces") or ()),
            excluded_namespaces=tuple(data.get("excludedNamespaces") or ()),
            namespace_mapping=dict(data.get("namespaceMapping") or {}),
            cluster_resource_mode=ClusterResourceMode(data.get("includeClusterResourceMode") or "Auto"),
            restore_pvs=bool(data.get("restorePVs", True)),
            preserve_node_ports=bool(data.get("preserveNodePorts")),
            existing_resource_policy=ExistingResourcePolicy(data.get("existingResourcePolicy") or "none"),
            label_selector=data.get("labelSelector") or None,
            dry_run=bool(data.get("dryRun")),
        )


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's result (or planned action)."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    action: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """How a restore ended, as the agent reports it."""

    phase: RestorePhase
    failure_reason: str | None = None
    total_items: int = 0
    items_restored: int = 0
    summary: Mapping[str, int] | None = None
    problems: Sequence[Mapping[str, Any]] = ()


def request_problems(request: RestoreRequest) -> list[Problem]:
    """Every rule the restore request breaks (empty when it can run)."""
    problems: list[Problem] = []
    for name, values in (
        ("includeNamespaces", request.include_namespaces),
        ("excludedNamespaces", request.excluded_namespaces),
    ):
        if len(values) > MAX_FILTER_ENTRIES:
            problems.append(Problem(name, f"{name} has {len(values)} entries; at most {MAX_FILTER_ENTRIES}."))
        for value in values:
            if value != "*" and not _DNS_LABEL.match(value):
                problems.append(
                    Problem(name, f"{name} entry {value!r} is not a namespace name (lowercase, digits, '-').")
                )
    both = sorted(set(request.include_namespaces) & set(request.excluded_namespaces))
    if both:
        problems.append(Problem("excludedNamespaces", f"{', '.join(both)} is both included and excluded."))
    targets: dict[str, str] = {}
    for source, target in request.namespace_mapping.items():
        for value in (source, target):
            if not _DNS_LABEL.match(value) or len(value) > 63:
                problems.append(
                    Problem(
                        "namespaceMapping",
                        f"namespaceMapping entry {source!r}: {target!r} uses {value!r}, which is not a namespace name.",
                    )
                )
        if target in targets:
            problems.append(
                Problem(
                    "namespaceMapping",
                    f"namespaceMapping sends both {targets[target]!r} and {source!r} to {target!r}; "
                    "map each to its own namespace.",
                )
            )
        targets[target] = source
    selector = label_selector_problem(request.label_selector)
    if selector:
        problems.append(Problem("labelSelector", selector))
    if request.label_selector and len(request.label_selector) > LABEL_SELECTOR_MAX_LENGTH:
        problems.append(Problem("labelSelector", "labelSelector is too long."))
    return problems


def restore_name(backup_name: str, at: datetime) -> str:
    """Velero's convention: ``<backup>-<UTC timestamp>``, the backup name clipped to fit 63 characters."""
    stamp = at.astimezone(UTC).strftime(_TIMESTAMP)
    head = backup_name[: BACKUP_NAME_MAX_LENGTH - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def restore_prefix(cluster_prefix: str, name: str) -> str:
    """The folder of one restore's files: ``<cluster prefix>/restores/<name>``."""
    return f"{cluster_prefix}/{RESTORES_DIR}/{name}"


def restore_session_policy(
    *,
    bucket: str,
    source_cluster_prefix: str,
    backup_name: str,
    destination_cluster_prefix: str,
    name: str,
    partition: str = "aws",
    snapshots: bool = True,
    kms_key_arn: str | None = None,
) -> Policy:
    """The session policy of one restore: read the one backup, write the restore's own files, nothing else."""
    arn = bucket_arn(bucket, partition)
    source = backup_prefix(source_cluster_prefix, backup_name)
    own = restore_prefix(destination_cluster_prefix, name)
    statements: list[Statement] = [
        {"Sid": "ReadTheBackup", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{arn}/{source}/*"]},
        {
            "Sid": "ListTheBackup",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{source}/", f"{source}/*"]}},
        },
        {
            "Sid": "WriteTheRestoreFiles",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [f"{arn}/{own}/*"],
        },
    ]
    if snapshots:
        statements.append(
            {"Sid": "VolumesFromSnapshots", "Effect": "Allow", "Action": list(RESTORE_EC2_ACTIONS), "Resource": "*"}
        )
    if kms_key_arn:
        statements.append(kms_statement(kms_key_arn))
    return {"Version": VERSION, "Statement": statements}
