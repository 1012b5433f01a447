"""EBS snapshots of PersistentVolumes: the only boto3 code for EC2 volumes and snapshots.

The agent creates and tags snapshots (it may not delete them); the control plane finds and deletes them when a
backup is deleted or expires. Every botocore error leaves this module as a ``stowage.errors.CloudError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stowage import errors
from stowage.aws import clients
from stowage.aws.errors import translate

BACKUP_TAG = "velero.io/backup"
PV_TAG = "velero.io/pv"
# Backup names repeat across clusters sharing an AWS account; the uid tells their snapshots apart.
BACKUP_UID_TAG = "stowage.io/backup-uid"
# AWS reserves the aws: prefix; copying such a volume tag onto a snapshot would fail the whole call.
RESERVED_TAG_PREFIX = "aws:"
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


@dataclass(frozen=True, slots=True)
class VolumeDescription:
    """What EC2 says about one EBS volume."""

    volume_id: str
    availability_zone: str
    volume_type: str
    iops: int | None
    size_gib: int
    encrypted: bool
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotDescription:
    """What EC2 says about one snapshot."""

    snapshot_id: str
    volume_id: str
    state: str
    start_time: dt.datetime | None
    volume_size_gib: int | None
    tags: dict[str, str] = field(default_factory=dict)


def ec2_client(session: boto3.session.Session, region: str) -> Any:
    """An EC2 client of a session in a region; boto3 itself applies ``AWS_ENDPOINT_URL[_EC2]``."""
    return session.client("ec2", region_name=region, config=clients.DATA_CONFIG)


def _translated(exc: ClientError | BotoCoreError, operation: str) -> errors.CloudError:
    """``translate``, plus EC2's dotted not-found codes (``InvalidVolume.NotFound``) as ``CloudNotFound``."""
    error = translate(exc, operation=operation)
    if type(error) is errors.CloudError and (error.aws_code or "").endswith(".NotFound"):
        return errors.CloudNotFound(error.message, aws_code=error.aws_code)
    return error


def _tags(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in items or ()}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _snapshot(answer: Mapping[str, Any]) -> SnapshotDescription:
    size = answer.get("VolumeSize")
    return SnapshotDescription(
        snapshot_id=str(answer["SnapshotId"]),
        volume_id=str(answer.get("VolumeId", "")),
        state=str(answer.get("State", "")),
        start_time=answer.get("StartTime"),
        volume_size_gib=int(size) if size is not None else None,
        tags=_tags(answer.get("Tags")),
    )


def describe_volume(ec2: Any, volume_id: str) -> VolumeDescription:
    """One volume's zone, type, IOPS and tags; ``CloudNotFound`` when the region has no such volume."""
    try:
        answer = ec2.describe_volumes(VolumeIds=[volume_id])
    except (ClientError, BotoCoreError) as exc:
        raise _translated(exc, "ec2:DescribeVolumes") from exc
    volumes = answer.get("Volumes") or []
    if len(volumes) != 1:
        raise errors.CloudNotFound(
            f"ec2:DescribeVolumes: expected volume {volume_id}, got {len(volumes)} volumes",
            aws_code="InvalidVolume.NotFound",
        )
    volume = volumes[0]
    iops = volume.get("Iops")
    return VolumeDescription(
        volume_id=str(volume["VolumeId"]),
        availability_zone=str(volume.get("AvailabilityZone", "")),
        volume_type=str(volume.get("VolumeType", "")),
        iops=int(iops) if iops else None,
        size_gib=int(volume.get("Size") or 0),
        encrypted=bool(volume.get("Encrypted")),
        tags=_tags(volume.get("Tags")),
    )


def snapshot_tags(required: Mapping[str, str], copied: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags for a snapshot: ``required`` first, then ``copied`` ones (the volume's) within EC2's limits.

    As Velero's AWS plugin does, the volume's own tags are copied but never override the backup's; tags EC2
    would reject (``aws:`` prefix, too long, more than 50) are left out instead of failing the snapshot.
    """
    result: dict[str, str] = {}
    for key, value in [*required.items(), *((k, v) for k, v in (copied or {}).items() if k not in required)]:
        if len(result) >= MAX_TAGS:
            break
        if key.lower().startswith(RESERVED_TAG_PREFIX) or len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            continue
        result[key] = value
    return result


def create_snapshot(ec2: Any, volume_id: str, tags: Mapping[str, str], *, description: str = "") -> SnapshotDescription:
    """Snapshot a volume with tags set on creation (``CreateTags`` afterwards if the endpoint ignored them).

    When the snapshot is made but tagging it fails, the ``CloudError`` carries ``details['snapshotId']`` so the
    caller can still record the snapshot for deletion by the control plane.
    """
    params: dict[str, Any] = {"VolumeId": volume_id, "Description": description}
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "snapshot", "Tags": _tag_list(tags)}]
    try:
        answer = ec2.create_snapshot(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _translated(exc, "ec2:CreateSnapshot") from exc
    snapshot = _snapshot(answer)
    missing = {k: v for k, v in tags.items() if snapshot.tags.get(k) != v}
    if not missing:
        return snapshot
    try:
        ec2.create_tags(Resources=[snapshot.snapshot_id], Tags=_tag_list(missing))
    except (ClientError, BotoCoreError) as exc:
        error = _translated(exc, "ec2:CreateTags")
        error.details["snapshotId"] = snapshot.snapshot_id
        raise error from exc
    return SnapshotDescription(
        snapshot_id=snapshot.snapshot_id,
        volume_id=snapshot.volume_id,
        state=snapshot.state,
        start_time=snapshot.start_time,
        volume_size_gib=snapshot.volume_size_gib,
        tags={**snapshot.tags, **missing},
    )


def describe_snapshots(ec2: Any, snapshot_ids: Iterable[str]) -> list[SnapshotDescription]:
    """The snapshots among ``snapshot_ids`` that exist (unknown ids are left out, not an error)."""
    found: list[SnapshotDescription] = []
    for snapshot_id in dict.fromkeys(snapshot_ids):
        # One id per call: EC2 fails the whole call when any one id is unknown.
        try:
            answer = ec2.describe_snapshots(SnapshotIds=[snapshot_id])
        except (ClientError, BotoCoreError) as exc:
            error = _translated(exc, "ec2:DescribeSnapshots")
            if isinstance(error, errors.CloudNotFound):
                continue
            raise error from exc
        found.extend(_snapshot(s) for s in answer.get("Snapshots") or [])
    return found


def find_backup_snapshots(ec2: Any, backup_name: str, *, backup_uid: str | None = None) -> list[SnapshotDescription]:
    """This account's snapshots tagged ``velero.io/backup=<backup_name>`` (and the backup's uid when given)."""
    filters = [{"Name": f"tag:{BACKUP_TAG}", "Values": [backup_name]}]
    if backup_uid is not None:
        filters.append({"Name": f"tag:{BACKUP_UID_TAG}", "Values": [backup_uid]})
    try:
        pages = ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=filters)
        return [_snapshot(s) for page in pages for s in page.get("Snapshots") or []]
    except (ClientError, BotoCoreError) as exc:
        raise _translated(exc, "ec2:DescribeSnapshots") from exc


def delete_snapshots(ec2: Any, snapshot_ids: Iterable[str]) -> list[tuple[str, str | None]]:
    """Delete snapshots; per id, None when it is gone (already-gone counts) or the reason it is not."""
    results: list[tuple[str, str | None]] = []
    for snapshot_id in dict.fromkeys(snapshot_ids):
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
        except (ClientError, BotoCoreError) as exc:
            error = _translated(exc, "ec2:DeleteSnapshot")
            results.append((snapshot_id, None if isinstance(error, errors.CloudNotFound) else _problem(error)))
            continue
        results.append((snapshot_id, None))
    return results


def _problem(error: errors.CloudError) -> str:
    """A deletion failure in words, with what to do about it."""
    if isinstance(error, errors.CloudAccessDenied):
        return (
            f"{error.message}. Deletion runs with the control plane's session of the location's role: add "
            "ec2:DeleteSnapshot to the role's permission policy."
        )
    if error.aws_code == "InvalidSnapshot.InUse":
        return f"{error.message}. An AMI or another resource still uses the snapshot; deregister it first."
    return error.message


RESTORE_TAG = "velero.io/restore"


def create_volume_from_snapshot(
    ec2: Any,
    snapshot_id: str,
    availability_zone: str,
    tags: Mapping[str, str],
    *,
    volume_type: str | None = None,
    iops: int | None = None,
) -> str:
    """A new EBS volume from a snapshot in one zone, tagged on creation; returns its id.

    ``CreateTags`` follows when the endpoint ignored the tags; a failure there carries ``details['volumeId']``
    so the caller can still name the volume that was made.
    """
    params: dict[str, Any] = {"SnapshotId": snapshot_id, "AvailabilityZone": availability_zone}
    if volume_type:
        params["VolumeType"] = volume_type
    if iops and volume_type in ("io1", "io2", "gp3"):
        params["Iops"] = iops
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "volume", "Tags": _tag_list(tags)}]
    try:
        answer = ec2.create_volume(**params)
    except (ClientError, BotoCoreError) as exc:
        raise _translated(exc, "ec2:CreateVolume") from exc
    volume_id = str(answer["VolumeId"])
    missing = {k: v for k, v in tags.items() if _tags(answer.get("Tags")).get(k) != v}
    if missing:
        try:
            ec2.create_tags(Resources=[volume_id], Tags=_tag_list(missing))
        except (ClientError, BotoCoreError) as exc:
            error = _translated(exc, "ec2:CreateTags")
            error.details["volumeId"] = volume_id
            raise error from exc
    return volume_id
