"""EBS snapshots of a backup's PersistentVolumes, and the Velero records that describe them.

A PV is snapshotted when it is an EBS volume: CSI ``spec.csi.driver == "ebs.csi.aws.com"`` (the volume id is
``volumeHandle``) or in-tree ``spec.awsElasticBlockStore.volumeID`` (``aws://<zone>/vol-…`` or ``vol-…``).
Each snapshot yields one entry of Velero's ``<name>-volumesnapshots.json.gz`` (``volume.Snapshot``) and one
of ``<name>-volumeinfo.json.gz`` (``BackupVolumeInfo``), field for field as Velero writes them.

The agent never deletes a snapshot (its credentials cannot): deletion is the control plane's job.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stowage import errors
from stowage.aws import snapshots
from stowage.domain.backups import VolumeSnapshotRecord

EBS_CSI_DRIVER = "ebs.csi.aws.com"
# Zone keys in the order they are trusted: the GA label, the deprecated beta one, the EBS CSI driver's own.
ZONE_KEYS = (
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.ebs.csi.aws.com/zone",
)
VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")
_IN_TREE = re.compile(r"^aws://(?P<zone>[^/]*)/(?P<volume>[^/]+)$")
# Velero keeps provisioned IOPS only where a restored volume must be created with them (its AWS plugin: io1).
IOPS_VOLUME_TYPES = frozenset({"io1", "io2"})
# EC2 refuses a second snapshot of one volume within a few seconds; these waits cover AWS's documented 15 s.
RATE_RETRY_DELAYS = (5.0, 15.0)
RATE_EXCEEDED_CODE = "SnapshotCreationPerVolumeRateExceeded"


class SnapshotFailed(Exception):
    """A PV's snapshot could not be taken; the message names the PV and says how to fix it.

    ``record`` is set when a snapshot exists even so (made, but not tagged): the control plane must still
    delete it with the backup.
    """

    def __init__(
        self,
        message: str,
        *,
        pv_name: str,
        volume_id: str | None = None,
        aws_code: str | None = None,
        record: VolumeSnapshotRecord | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pv_name = pv_name
        self.volume_id = volume_id
        self.aws_code = aws_code
        self.record = record


@dataclass(frozen=True, slots=True)
class EbsVolume:
    """The EBS volume behind a PV, as the PV describes it."""

    pv_name: str
    volume_id: str
    availability_zone: str | None
    source: str  # "csi" or "in-tree": where in the PV the volume id was found


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """One PV's snapshot: the control plane's record and Velero's two JSON entries for it."""

    record: VolumeSnapshotRecord
    velero_snapshot: dict[str, Any]
    volume_info: dict[str, Any]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def pv_zone(pv: Mapping[str, Any]) -> str | None:
    """The PV's availability zone from its zone labels, else its required node affinity (None if neither)."""
    labels = _mapping(_mapping(pv.get("metadata")).get("labels"))
    for key in ZONE_KEYS:
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    affinity = _mapping(_mapping(_mapping(pv.get("spec")).get("nodeAffinity")).get("required"))
    found: dict[str, str] = {}
    for term in affinity.get("nodeSelectorTerms") or ():
        for raw in _mapping(term).get("matchExpressions") or ():
            expression = _mapping(raw)
            values = expression.get("values") or ()
            zone_key = str(expression.get("key") or "")
            # Only "In" names the zone; the first of several values is as good as any for an EBS volume's zone.
            if zone_key in ZONE_KEYS and expression.get("operator") == "In" and values and zone_key not in found:
                found[zone_key] = str(values[0])
    return next((found[key] for key in ZONE_KEYS if key in found), None)


def ebs_volume(pv: Mapping[str, Any]) -> EbsVolume | None:
    """The EBS volume of a PV (CSI ``ebs.csi.aws.com`` or in-tree ``awsElasticBlockStore``); None otherwise."""
    name = str(_mapping(pv.get("metadata")).get("name") or "")
    spec = _mapping(pv.get("spec"))
    csi = _mapping(spec.get("csi"))
    if csi.get("driver") == EBS_CSI_DRIVER and csi.get("volumeHandle"):
        return EbsVolume(name, str(csi["volumeHandle"]), pv_zone(pv), "csi")
    in_tree = _mapping(spec.get("awsElasticBlockStore"))
    raw = str(in_tree.get("volumeID") or "")
    if not raw:
        return None
    zone: str | None = None
    volume_id = raw
    url = _IN_TREE.match(raw)
    if url:
        volume_id = url.group("volume")
        zone = url.group("zone") or None
    return EbsVolume(name, volume_id, pv_zone(pv) or zone, "in-tree")


def velero_snapshot_pv_name(entry: Mapping[str, Any]) -> str | None:
    """The PV name of a ``volumesnapshots.json`` entry, whichever capitalisation wrote it.

    Velero's struct tag for the field is malformed (``json:persistentVolumeName`` without quotes), so Go writes
    ``PersistentVolumeName`` and reads either, case-insensitively; readers here must do the same.
    """
    spec = _mapping(entry.get("spec"))
    for key, value in spec.items():
        if key.lower() == "persistentvolumename" and isinstance(value, str):
            return value
    return None


def _timestamp(moment: dt.datetime) -> str:
    """Kubernetes ``metav1.Time`` JSON: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_DENIED_ACTION = re.compile(r"perform:? (ec2:[A-Za-z]+)")


class Snapshotter:
    """Takes the EBS snapshots of one backup with the EC2 client of the location's session."""

    def __init__(
        self,
        ec2: Any,
        *,
        region: str,
        backup_uid: str,
        location_name: str,
        clock: Callable[[], dt.datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rate_retry_delays: tuple[float, ...] = RATE_RETRY_DELAYS,
    ) -> None:
        self.ec2 = ec2
        self.region = region
        self.backup_uid = backup_uid
        self.location_name = location_name
        self.clock = clock
        self._sleep = sleep
        self.rate_retry_delays = rate_retry_delays

    def snapshot(self, pv: Mapping[str, Any], *, backup_name: str, labels: Mapping[str, str]) -> SnapshotResult | None:
        """Snapshot a PV's EBS volume and tag it; None when the PV is not EBS; ``SnapshotFailed`` on failure."""
        volume = ebs_volume(pv)
        if volume is None:
            return None
        where = "spec.csi.volumeHandle" if volume.source == "csi" else "spec.awsElasticBlockStore.volumeID"
        if not VOLUME_ID.match(volume.volume_id):
            raise SnapshotFailed(
                f"PV {volume.pv_name}: {where} {volume.volume_id!r} is not an EBS volume id (vol-…); fix the PV "
                "or exclude it from the backup.",
                pv_name=volume.pv_name,
                volume_id=volume.volume_id,
            )
        started = self.clock()
        try:
            described = snapshots.describe_volume(self.ec2, volume.volume_id)
        except errors.CloudError as exc:
            raise self._failure(volume, exc, "ec2:DescribeVolumes") from exc
        zone = volume.availability_zone or described.availability_zone or None
        tags = snapshots.snapshot_tags(
            {
                **labels,
                snapshots.BACKUP_TAG: backup_name,
                snapshots.PV_TAG: volume.pv_name,
                snapshots.BACKUP_UID_TAG: self.backup_uid,
            },
            described.tags,
        )
        created = self._create(volume, tags, backup_name, zone)
        completed = self.clock()
        record = VolumeSnapshotRecord(
            pv_name=volume.pv_name,
            snapshot_id=created.snapshot_id,
            volume_id=volume.volume_id,
            availability_zone=zone,
            region=self.region,
        )
        iops = described.iops if described.volume_type in IOPS_VOLUME_TYPES else None
        return SnapshotResult(
            record=record,
            velero_snapshot=self._velero_snapshot(record, backup_name, described.volume_type, iops),
            volume_info=self._volume_info(pv, record, described.volume_type, iops, started, completed),
        )

    def _create(
        self, volume: EbsVolume, tags: Mapping[str, str], backup_name: str, zone: str | None
    ) -> snapshots.SnapshotDescription:
        """CreateSnapshot, waiting out EC2's per-volume rate limit a few times."""
        delays = list(self.rate_retry_delays)
        while True:
            try:
                return snapshots.create_snapshot(
                    self.ec2,
                    volume.volume_id,
                    tags,
                    description=f"Stowage backup {backup_name}: PV {volume.pv_name}",
                )
            except errors.CloudError as exc:
                if exc.aws_code == RATE_EXCEEDED_CODE and delays:
                    self._sleep(delays.pop(0))
                    continue
                untagged = exc.details.get("snapshotId")
                record = (
                    VolumeSnapshotRecord(volume.pv_name, str(untagged), volume.volume_id, zone, self.region)
                    if untagged
                    else None
                )
                action = "ec2:CreateTags" if untagged else "ec2:CreateSnapshot"
                raise self._failure(volume, exc, action, record=record) from exc

    def _failure(
        self,
        volume: EbsVolume,
        exc: errors.CloudError,
        action: str,
        *,
        record: VolumeSnapshotRecord | None = None,
    ) -> SnapshotFailed:
        """A ``SnapshotFailed`` whose message names the PV, the cause and the fix."""
        head = f"PV {volume.pv_name}: snapshot of EBS volume {volume.volume_id} failed"
        if isinstance(exc, errors.CloudAccessDenied):
            # AWS names the denied action in clear only sometimes (its messages may be encoded).
            named = _DENIED_ACTION.search(exc.message)
            denied = named.group(1) if named else action
            also = " (tagging on create also needs ec2:CreateTags)" if denied == "ec2:CreateSnapshot" else ""
            message = (
                f"{head}: {denied} was denied. Add {denied} to the role's permission policy{also}, then run "
                f"the backup again. ({exc.message})"
            )
        elif isinstance(exc, errors.CloudNotFound) and action == "ec2:DescribeVolumes":
            elsewhere = (
                f" The PV says zone {volume.availability_zone}, which is not in {self.region}."
                if volume.availability_zone and not volume.availability_zone.startswith(self.region)
                else ""
            )
            message = (
                f"The EBS volume {volume.volume_id} of PV {volume.pv_name} does not exist in "
                f"region {self.region}; is the location's region the cluster's region?{elsewhere}"
            )
        elif isinstance(exc, errors.CloudCredentialsExpired | errors.CloudCredentialsMissing):
            message = (
                f"{head}: the agent's AWS credentials were rejected or expired; check that the agent reaches the "
                f"control plane and that the location validates. ({exc.message})"
            )
        elif isinstance(exc, errors.CloudEndpointError):
            message = f"{head}: the EC2 endpoint of {self.region} could not be reached. ({exc.message})"
        elif isinstance(exc, errors.CloudThrottled) or exc.aws_code == RATE_EXCEEDED_CODE:
            message = f"{head}: EC2 throttled the request; run the backup again later. ({exc.message})"
        else:
            message = f"{head}: {exc.message}"
        if record is not None:
            message += f" Snapshot {record.snapshot_id} was made untagged; it is deleted with the backup."
        return SnapshotFailed(
            message, pv_name=volume.pv_name, volume_id=volume.volume_id, aws_code=exc.aws_code, record=record
        )

    def _velero_snapshot(
        self, record: VolumeSnapshotRecord, backup_name: str, volume_type: str, iops: int | None
    ) -> dict[str, Any]:
        """Velero's ``volume.Snapshot`` for one snapshot (``pkg/volume/snapshot.go``)."""
        spec: dict[str, Any] = {
            "backupName": backup_name,
            "backupUID": self.backup_uid,
            "location": self.location_name,
            # Velero's malformed struct tag makes Go write the field name itself; see velero_snapshot_pv_name.
            "PersistentVolumeName": record.pv_name,
            "providerVolumeID": record.volume_id,
            "volumeType": volume_type,
        }
        if record.availability_zone:
            spec["volumeAZ"] = record.availability_zone
        if iops is not None:
            spec["volumeIOPS"] = iops
        return {"spec": spec, "status": {"providerSnapshotID": record.snapshot_id, "phase": "Completed"}}

    def _volume_info(
        self,
        pv: Mapping[str, Any],
        record: VolumeSnapshotRecord,
        volume_type: str,
        iops: int | None,
        started: dt.datetime,
        completed: dt.datetime,
    ) -> dict[str, Any]:
        """Velero's ``BackupVolumeInfo`` for one native snapshot (``internal/volume/volumes_information.go``)."""
        claim = _mapping(_mapping(pv.get("spec")).get("claimRef"))
        info: dict[str, Any] = {}
        if claim.get("name"):
            info["pvcName"] = str(claim["name"])
        if claim.get("namespace"):
            info["pvcNamespace"] = str(claim["namespace"])
        labels = _mapping(_mapping(pv.get("metadata")).get("labels"))
        info.update(
            {
                "pvName": record.pv_name,
                "backupMethod": "NativeSnapshot",
                "snapshotDataMoved": False,
                "preserveLocalSnapshot": False,
                "skipped": False,
                "startTimestamp": _timestamp(started),
                "completionTimestamp": _timestamp(completed),
                "result": "succeeded",
                "nativeSnapshotInfo": {
                    "snapshotHandle": record.snapshot_id,
                    "volumeType": volume_type,
                    "volumeAZ": record.availability_zone or "",
                    # A string in Velero (strconv.FormatInt of volumeIOPS, 0 when unset).
                    "iops": str(iops or 0),
                    # No json tag on this field in Velero, so Go writes its Go name.
                    "Phase": "Completed",
                },
                "pvInfo": {
                    "reclaimPolicy": str(_mapping(pv.get("spec")).get("persistentVolumeReclaimPolicy") or ""),
                    "labels": {str(k): str(v) for k, v in labels.items()} or None,
                },
            }
        )
        return info
