"""EBS snapshots of PersistentVolumes against a real ministack (``AUTH=true``).

ministack's EC2 does all this needs: CreateVolume, CreateSnapshot with ``TagSpecifications``, CreateTags,
DescribeVolumes/DescribeSnapshots (with ``tag:`` filters), DeleteSnapshot (``InvalidSnapshot.NotFound`` for a
gone one), per-region state (a volume of eu-west-1 is not found from us-west-2), and it enforces IAM identity
policies on EC2 actions (``UnauthorizedOperation``). So no moto server is needed here. Its snapshots are
``completed`` at once, where AWS answers ``pending`` first; nothing here waits for completion, as Velero does not.

The agent is played by an IAM user of the customer account with the agent's EC2 rights (CreateSnapshot,
CreateTags, Describe*, CreateVolume, no DeleteSnapshot); the control plane by the account's root.
Two cases change what the client sends or receives with a botocore event hook, on the real server: an endpoint
that ignores ``TagSpecifications`` (the hook drops them from the request) and EC2's per-volume rate limit (the
hook answers the first CreateSnapshot with ``SnapshotCreationPerVolumeRateExceeded``, which no emulator does).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from stowage.agent.volumes import (
    SnapshotFailed,
    Snapshotter,
    ebs_volume,
    pv_zone,
    velero_snapshot_pv_name,
)
from stowage.aws import snapshots
from stowage.domain.backups import VolumeSnapshotRecord
from tests.support.aws_accounts import CUSTOMER, SECRET, AwsAccounts

REGION = "eu-west-1"
UID = "6a1f0c9e-4a8e-4d55-9f0b-2f8a1d4c7e11"
AGENT_EC2 = ["ec2:CreateSnapshot", "ec2:CreateTags", "ec2:Describe*", "ec2:CreateVolume"]
T0 = dt.datetime(2026, 12, 5, 10, 0, 0, 400000, tzinfo=dt.UTC)


# -- PV manifests, as the API server returns them ------------------------------------------------------------
def csi_pv(
    name: str,
    handle: str,
    *,
    driver: str = "ebs.csi.aws.com",
    labels: dict[str, str] | None = None,
    affinity: dict[str, str] | None = None,
    claim: tuple[str, str] | None = ("shop", "data-db-0"),
) -> dict[str, Any]:
    """A CSI PV; ``affinity`` maps a node-affinity key to the zone it requires."""
    spec: dict[str, Any] = {
        "capacity": {"storage": "5Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": "gp3",
        "csi": {"driver": driver, "volumeHandle": handle, "fsType": "ext4"},
    }
    if affinity:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in affinity.items()]}
                ]
            }
        }
    if claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": claim[0], "name": claim[1]}
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": spec}


def in_tree_pv(name: str, volume_id: str, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """An in-tree ``awsElasticBlockStore`` PV."""
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": metadata,
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "awsElasticBlockStore": {"volumeID": volume_id, "fsType": "ext4"},
        },
    }


# -- AWS set-up -----------------------------------------------------------------------------------------------
def root_ec2(aws: AwsAccounts, region: str = REGION) -> Any:
    """The customer account's root EC2 client (creates volumes, inspects snapshots)."""
    return aws.client("ec2", CUSTOMER, region)


def make_volume(aws: AwsAccounts, zone: str = "eu-west-1b", **extra: Any) -> str:
    """A new EBS volume; returns its id."""
    region = zone[:-1]
    answer = root_ec2(aws, region).create_volume(AvailabilityZone=zone, Size=5, VolumeType="gp3", **extra)
    return str(answer["VolumeId"])


def session_of(access_key: str, secret: str) -> boto3.session.Session:
    """A plain boto3 session; its clients reach ministack through ``AWS_ENDPOINT_URL`` (set by ``aws``)."""
    return boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret, region_name=REGION)


def user_ec2(aws: AwsAccounts, name: str, actions: list[str]) -> Any:
    """EC2 client of a new IAM user of the customer account allowed exactly ``actions``."""
    iam = aws.client("iam", CUSTOMER, "us-east-1")
    iam.create_user(UserName=name)
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="ec2", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return snapshots.ec2_client(session_of(key["AccessKeyId"], key["SecretAccessKey"]), REGION)


@pytest.fixture
def agent_ec2(aws: AwsAccounts) -> Any:
    """The agent's EC2 rights: everything it needs to snapshot, but not ec2:DeleteSnapshot."""
    return user_ec2(aws, "stowage-agent", AGENT_EC2)


@pytest.fixture
def control_ec2(aws: AwsAccounts) -> Any:
    """The control plane's EC2 client (the customer account's root, through the standard endpoint variable)."""
    return snapshots.ec2_client(session_of(CUSTOMER, SECRET), REGION)


def snapshotter(ec2: Any, *, region: str = REGION, **kwargs: Any) -> Snapshotter:
    ticks = iter([T0, T0 + dt.timedelta(seconds=2, microseconds=700000)])
    return Snapshotter(ec2, region=region, backup_uid=UID, location_name="prod", clock=lambda: next(ticks), **kwargs)


# -- which PVs are EBS, and their zone (pure) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("pv", "volume_id", "zone", "source"),
    [
        (csi_pv("a", "vol-0abc12345678def90", labels={}), "vol-0abc12345678def90", None, "csi"),
        (in_tree_pv("b", "aws://eu-west-1c/vol-0abc12345678def90"), "vol-0abc12345678def90", "eu-west-1c", "in-tree"),
        (in_tree_pv("c", "vol-0abc12345678def90"), "vol-0abc12345678def90", None, "in-tree"),
        (in_tree_pv("d", "aws:///vol-0abc12345678def90"), "vol-0abc12345678def90", None, "in-tree"),
    ],
)
def test_ebs_volume_recognises_csi_and_in_tree(
    pv: dict[str, Any], volume_id: str, zone: str | None, source: str
) -> None:
    volume = ebs_volume(pv)
    assert volume is not None
    assert (volume.pv_name, volume.volume_id, volume.availability_zone, volume.source) == (
        pv["metadata"]["name"],
        volume_id,
        zone,
        source,
    )


@pytest.mark.parametrize(
    "pv",
    [
        csi_pv("efs", "fs-12345678::fsap-1", driver="efs.csi.aws.com"),
        {"metadata": {"name": "nfs"}, "spec": {"nfs": {"server": "10.0.0.1", "path": "/export"}}},
        {"metadata": {"name": "host"}, "spec": {"hostPath": {"path": "/data"}}},
        {"metadata": {"name": "empty-handle"}, "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": ""}}},
        {"metadata": {"name": "no-spec"}},
    ],
)
def test_ebs_volume_is_none_for_other_volumes(pv: dict[str, Any]) -> None:
    assert ebs_volume(pv) is None


@pytest.mark.parametrize(
    "key", ["topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone", "topology.ebs.csi.aws.com/zone"]
)
def test_zone_from_each_label_and_each_node_affinity_key(key: str) -> None:
    assert pv_zone(csi_pv("l", "vol-0abc12345678def90", labels={key: "eu-west-1a"})) == "eu-west-1a"
    assert pv_zone(csi_pv("n", "vol-0abc12345678def90", affinity={key: "eu-west-1b"})) == "eu-west-1b"


def test_zone_precedence_labels_then_affinity_then_in_tree_url() -> None:
    both = csi_pv(
        "p",
        "vol-0abc12345678def90",
        labels={"failure-domain.beta.kubernetes.io/zone": "eu-west-1a"},
        affinity={"topology.ebs.csi.aws.com/zone": "eu-west-1b"},
    )
    assert pv_zone(both) == "eu-west-1a"
    # The GA key wins over the CSI driver's own key when both are in the affinity.
    affinity = csi_pv(
        "q",
        "vol-0abc12345678def90",
        affinity={"topology.ebs.csi.aws.com/zone": "eu-west-1b", "topology.kubernetes.io/zone": "eu-west-1c"},
    )
    assert pv_zone(affinity) == "eu-west-1c"
    labelled = in_tree_pv(
        "r", "aws://eu-west-1c/vol-0abc12345678def90", labels={"topology.kubernetes.io/zone": "eu-west-1a"}
    )
    volume = ebs_volume(labelled)
    assert volume is not None and volume.availability_zone == "eu-west-1a"
    not_in = csi_pv("s", "vol-0abc12345678def90")
    not_in["spec"]["nodeAffinity"] = {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["x"]}]}
            ]
        }
    }
    assert pv_zone(not_in) is None


# -- snapshots on the emulator ------------------------------------------------------------------------------
def test_csi_pv_snapshot_is_tagged_and_described_as_velero_does(aws: AwsAccounts, agent_ec2: Any) -> None:
    volume_id = make_volume(
        aws, "eu-west-1b", TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "data"}]}]
    )
    pv = csi_pv(
        "pvc-1234",
        volume_id,
        labels={"topology.kubernetes.io/zone": "eu-west-1b", "app": "db"},
    )

    result = snapshotter(agent_ec2).snapshot(
        pv, backup_name="nightly-1", labels={"stowage.io/cluster": "prod-eu", "velero.io/backup": "ignored"}
    )

    assert result is not None
    snapshot_id = result.record.snapshot_id
    assert result.record == VolumeSnapshotRecord("pvc-1234", snapshot_id, volume_id, "eu-west-1b", REGION)
    stored = root_ec2(aws).describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert [s["VolumeId"] for s in stored] == [volume_id]
    tags = {t["Key"]: t["Value"] for t in stored[0]["Tags"]}
    assert tags == {
        "velero.io/backup": "nightly-1",
        "velero.io/pv": "pvc-1234",
        "stowage.io/backup-uid": UID,
        "stowage.io/cluster": "prod-eu",
        "team": "data",  # copied from the volume, as Velero's AWS plugin does
    }
    assert result.velero_snapshot == {
        "spec": {
            "backupName": "nightly-1",
            "backupUID": UID,
            "location": "prod",
            "PersistentVolumeName": "pvc-1234",
            "providerVolumeID": volume_id,
            "volumeType": "gp3",
            "volumeAZ": "eu-west-1b",
        },
        "status": {"providerSnapshotID": snapshot_id, "phase": "Completed"},
    }
    assert velero_snapshot_pv_name(result.velero_snapshot) == "pvc-1234"
    assert velero_snapshot_pv_name({"spec": {"persistentVolumeName": "x"}}) == "x"
    assert result.volume_info == {
        "pvcName": "data-db-0",
        "pvcNamespace": "shop",
        "pvName": "pvc-1234",
        "backupMethod": "NativeSnapshot",
        "snapshotDataMoved": False,
        "preserveLocalSnapshot": False,
        "skipped": False,
        "startTimestamp": "2026-12-05T10:00:00Z",
        "completionTimestamp": "2026-12-05T10:00:03Z",
        "result": "succeeded",
        "nativeSnapshotInfo": {
            "snapshotHandle": snapshot_id,
            "volumeType": "gp3",
            "volumeAZ": "eu-west-1b",
            "iops": "0",
            "Phase": "Completed",
        },
        "pvInfo": {"reclaimPolicy": "Delete", "labels": {"topology.kubernetes.io/zone": "eu-west-1b", "app": "db"}},
    }
    json.dumps([result.velero_snapshot, result.volume_info])  # both go into gzipped JSON files as they are


def test_in_tree_pv_with_zone_in_url_and_provisioned_iops(aws: AwsAccounts, agent_ec2: Any) -> None:
    volume_id = str(
        root_ec2(aws).create_volume(AvailabilityZone="eu-west-1c", Size=4, VolumeType="io1", Iops=500)["VolumeId"]
    )
    result = snapshotter(agent_ec2).snapshot(
        in_tree_pv("legacy", f"aws://eu-west-1c/{volume_id}"), backup_name="b", labels={}
    )
    assert result is not None
    assert result.record.availability_zone == "eu-west-1c"
    assert result.velero_snapshot["spec"]["volumeIOPS"] == 500
    assert result.velero_snapshot["spec"]["volumeType"] == "io1"
    assert result.volume_info["nativeSnapshotInfo"]["iops"] == "500"
    assert "pvcName" not in result.volume_info  # no claimRef: Velero omits the field (omitempty)
    assert result.volume_info["pvInfo"] == {"reclaimPolicy": "Retain", "labels": None}


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("label", "failure-domain.beta.kubernetes.io/zone"),
        ("affinity", "topology.ebs.csi.aws.com/zone"),
        ("affinity", "topology.kubernetes.io/zone"),
    ],
)
def test_zone_of_the_pv_is_recorded(aws: AwsAccounts, agent_ec2: Any, where: str, key: str) -> None:
    volume_id = make_volume(aws, "eu-west-1a")
    pv = csi_pv("z", volume_id, labels={key: "eu-west-1a"} if where == "label" else None, affinity=None)
    if where == "affinity":
        pv = csi_pv("z", volume_id, affinity={key: "eu-west-1a"})
    result = snapshotter(agent_ec2).snapshot(pv, backup_name="b", labels={})
    assert result is not None
    assert result.record.availability_zone == "eu-west-1a"
    assert result.velero_snapshot["spec"]["volumeAZ"] == "eu-west-1a"


def test_zone_falls_back_to_the_volume_when_the_pv_names_none(aws: AwsAccounts, agent_ec2: Any) -> None:
    volume_id = make_volume(aws, "eu-west-1c")
    result = snapshotter(agent_ec2).snapshot(csi_pv("bare", volume_id), backup_name="b", labels={})
    assert result is not None and result.record.availability_zone == "eu-west-1c"


def test_non_ebs_pv_returns_none_and_calls_nothing(aws: AwsAccounts, agent_ec2: Any) -> None:
    calls: list[str] = []
    agent_ec2.meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))
    for pv in (csi_pv("efs", "fs-1::fsap-2", driver="efs.csi.aws.com"), {"metadata": {"name": "n"}, "spec": {}}):
        assert snapshotter(agent_ec2).snapshot(pv, backup_name="b", labels={}) is None
    assert calls == []
    assert root_ec2(aws).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_denied_create_snapshot_names_the_pv_and_the_permission(aws: AwsAccounts) -> None:
    ec2 = user_ec2(aws, "no-create", ["ec2:Describe*", "ec2:CreateTags", "ec2:CreateVolume"])
    volume_id = make_volume(aws)
    with pytest.raises(SnapshotFailed) as failed:
        snapshotter(ec2).snapshot(csi_pv("pvc-denied", volume_id), backup_name="b", labels={})
    message = str(failed.value)
    assert "pvc-denied" in message and volume_id in message
    assert "Add ec2:CreateSnapshot to the role's permission policy" in message
    assert failed.value.pv_name == "pvc-denied" and failed.value.aws_code == "UnauthorizedOperation"
    assert failed.value.record is None
    assert root_ec2(aws).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_denied_describe_volumes_names_that_permission(aws: AwsAccounts) -> None:
    ec2 = user_ec2(aws, "no-describe", ["ec2:CreateSnapshot", "ec2:CreateTags"])
    with pytest.raises(SnapshotFailed) as failed:
        snapshotter(ec2).snapshot(csi_pv("pvc-d", make_volume(aws)), backup_name="b", labels={})
    assert "Add ec2:DescribeVolumes to the role's permission policy" in str(failed.value)


def test_missing_volume_says_which_region_was_searched(aws: AwsAccounts, agent_ec2: Any) -> None:
    with pytest.raises(SnapshotFailed) as failed:
        snapshotter(agent_ec2).snapshot(csi_pv("pvc-gone", "vol-0123456789abcdef0"), backup_name="b", labels={})
    assert str(failed.value) == (
        "The EBS volume vol-0123456789abcdef0 of PV pvc-gone does not exist in region eu-west-1; "
        "is the location's region the cluster's region?"
    )


def test_volume_of_another_region_is_not_found_and_the_zone_says_why(aws: AwsAccounts, agent_ec2: Any) -> None:
    volume_id = make_volume(aws, "us-west-2a")
    pv = csi_pv("pvc-far", volume_id, labels={"topology.kubernetes.io/zone": "us-west-2a"})
    with pytest.raises(SnapshotFailed) as failed:
        snapshotter(agent_ec2).snapshot(pv, backup_name="b", labels={})
    assert f"The EBS volume {volume_id} of PV pvc-far does not exist in region eu-west-1" in str(failed.value)
    assert "zone us-west-2a, which is not in eu-west-1" in str(failed.value)


def test_malformed_volume_handle_is_refused_before_any_call(agent_ec2: Any) -> None:
    with pytest.raises(SnapshotFailed, match=r"PV odd: spec.csi.volumeHandle 'disk-7' is not an EBS volume id"):
        snapshotter(agent_ec2).snapshot(csi_pv("odd", "disk-7"), backup_name="b", labels={})


def _drop_tag_specifications(params: dict[str, Any], **_: Any) -> None:
    params.pop("TagSpecifications", None)


def test_tags_are_added_afterwards_when_the_endpoint_ignores_tag_specifications(
    aws: AwsAccounts, agent_ec2: Any
) -> None:
    agent_ec2.meta.events.register("before-parameter-build.ec2.CreateSnapshot", _drop_tag_specifications)
    calls: list[str] = []
    agent_ec2.meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))
    result = snapshotter(agent_ec2).snapshot(csi_pv("pvc-t", make_volume(aws)), backup_name="b2", labels={"k": "v"})
    assert result is not None
    assert calls == ["DescribeVolumes", "CreateSnapshot", "CreateTags"]
    found = snapshots.find_backup_snapshots(root_ec2(aws), "b2")
    assert [s.snapshot_id for s in found] == [result.record.snapshot_id]
    assert found[0].tags == {"velero.io/backup": "b2", "velero.io/pv": "pvc-t", "stowage.io/backup-uid": UID, "k": "v"}


def test_untagged_snapshot_is_reported_with_its_record_when_tagging_is_denied(aws: AwsAccounts) -> None:
    ec2 = user_ec2(aws, "no-tags", ["ec2:CreateSnapshot", "ec2:Describe*"])
    ec2.meta.events.register("before-parameter-build.ec2.CreateSnapshot", _drop_tag_specifications)
    with pytest.raises(SnapshotFailed) as failed:
        snapshotter(ec2).snapshot(csi_pv("pvc-u", make_volume(aws)), backup_name="b", labels={})
    record = failed.value.record
    assert record is not None and record.pv_name == "pvc-u"
    assert "Add ec2:CreateTags to the role's permission policy" in str(failed.value)
    assert f"Snapshot {record.snapshot_id} was made untagged" in str(failed.value)
    assert [s.snapshot_id for s in snapshots.describe_snapshots(root_ec2(aws), [record.snapshot_id])] == [
        record.snapshot_id
    ]


def test_per_volume_rate_limit_is_waited_out(aws: AwsAccounts, agent_ec2: Any) -> None:
    answered: list[int] = []

    def rate_limited_once(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if answered:
            return None
        answered.append(1)
        error = {"Code": "SnapshotCreationPerVolumeRateExceeded", "Message": "The maximum per volume rate is exceeded."}
        return AWSResponse("http://127.0.0.1/", 400, HTTPHeaders(), None), {"Error": error, "ResponseMetadata": {}}

    agent_ec2.meta.events.register("before-call.ec2.CreateSnapshot", rate_limited_once)
    slept: list[float] = []
    result = snapshotter(agent_ec2, sleep=slept.append).snapshot(
        csi_pv("pvc-r", make_volume(aws)), backup_name="b", labels={}
    )
    assert result is not None and slept == [5.0]


# -- the control plane's side: find and delete -----------------------------------------------------------------
def test_find_backup_snapshots_by_name_and_uid(aws: AwsAccounts, agent_ec2: Any, control_ec2: Any) -> None:
    ours = snapshotter(agent_ec2).snapshot(csi_pv("a", make_volume(aws)), backup_name="daily", labels={})
    other_cluster = Snapshotter(agent_ec2, region=REGION, backup_uid="other-uid", location_name="prod").snapshot(
        csi_pv("a", make_volume(aws)), backup_name="daily", labels={}
    )
    snapshotter(agent_ec2).snapshot(csi_pv("c", make_volume(aws)), backup_name="weekly", labels={})
    assert ours is not None and other_cluster is not None

    by_name = {s.snapshot_id for s in snapshots.find_backup_snapshots(control_ec2, "daily")}
    assert by_name == {ours.record.snapshot_id, other_cluster.record.snapshot_id}
    by_uid = snapshots.find_backup_snapshots(control_ec2, "daily", backup_uid=UID)
    assert [s.snapshot_id for s in by_uid] == [ours.record.snapshot_id]


def test_delete_snapshots_deletes_and_counts_gone_ones_as_deleted(
    aws: AwsAccounts, agent_ec2: Any, control_ec2: Any
) -> None:
    taken = [
        snapshotter(agent_ec2).snapshot(csi_pv(f"pv-{i}", make_volume(aws)), backup_name="old", labels={})
        for i in range(2)
    ]
    ids = [t.record.snapshot_id for t in taken if t is not None]
    gone = "snap-0123456789abcdef0"

    results = snapshots.delete_snapshots(control_ec2, [*ids, gone, ids[0]])

    assert results == [(ids[0], None), (ids[1], None), (gone, None)]
    assert snapshots.describe_snapshots(control_ec2, [*ids, gone]) == []
    assert snapshots.find_backup_snapshots(control_ec2, "old") == []
    # Deleting again (a retried deletion request) is still a success.
    assert snapshots.delete_snapshots(control_ec2, ids) == [(ids[0], None), (ids[1], None)]


def test_agent_credentials_cannot_delete_snapshots(aws: AwsAccounts, agent_ec2: Any, control_ec2: Any) -> None:
    result = snapshotter(agent_ec2).snapshot(csi_pv("keep", make_volume(aws)), backup_name="kept", labels={})
    assert result is not None
    snapshot_id = result.record.snapshot_id

    [(deleted_id, problem)] = snapshots.delete_snapshots(agent_ec2, [snapshot_id])

    assert deleted_id == snapshot_id
    assert problem is not None and "UnauthorizedOperation" in problem and "ec2:DeleteSnapshot" in problem
    assert [s.snapshot_id for s in snapshots.describe_snapshots(control_ec2, [snapshot_id])] == [snapshot_id]


def test_snapshot_tags_keep_the_backup_tags_first_and_within_ec2_limits() -> None:
    required = {"velero.io/backup": "b", "velero.io/pv": "p"}
    copied = {"velero.io/backup": "older", "aws:cloudformation:stack-name": "x", "k" * 129: "long"}
    copied |= {f"t{i}": str(i) for i in range(60)}
    tags = snapshots.snapshot_tags(required, copied)
    assert len(tags) == 50
    assert tags["velero.io/backup"] == "b"
    assert not any(k.startswith("aws:") or len(k) > 128 for k in tags)
