"""EC2 DryRun semantics against moto server.

ministack ignores ``DryRun`` (the call really runs, so ``CreateVolume`` creates a volume), which exercises the
"endpoint ignored DryRun" branch but not the real AWS behaviour. moto answers ``DryRunOperation`` like AWS
does, so the six EC2 probes are run against it here to show that nothing is created when DryRun is honoured.
moto does not enforce cross-account trust or the External ID, so the rest of the suite uses ministack.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from stowage.aws.clients import TemporaryCredentials
from stowage.aws.probes import run_probes
from stowage.domain.checks import EC2_ACTIONS, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials
from tests.support.processes import free_port, spawn, stop, wait_until

KEYS = ("AKIAIOSFODNN7EXAMPLE", "moto-secret")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = spawn(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env, log=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/moto-api/").status_code < 500, timeout=30, what="moto", proc=proc, log=log)
        yield url
    finally:
        stop(proc)


def test_ec2_probes_use_dry_run_and_create_nothing(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    spec = LocationSpec(
        name="ebs",
        provider=Provider.AWS,
        bucket="moto-bucket",
        region="eu-west-1",
        credentials=StaticCredentials(*KEYS),
    )
    ec2 = boto3.client(
        "ec2", endpoint_url=moto_url, region_name="eu-west-1", aws_access_key_id=KEYS[0], aws_secret_access_key=KEYS[1]
    )
    # moto ships snapshots behind its sample AMIs: compare, do not expect none.
    snapshots_before = {s["SnapshotId"] for s in ec2.describe_snapshots()["Snapshots"]}
    checks = {c.id: c for c in run_probes(TemporaryCredentials.from_static(spec.credentials), spec)}  # type: ignore[arg-type]
    for action in EC2_ACTIONS:
        assert checks[action].status is CheckStatus.PASSED, checks[action]
    assert (
        "DryRun" in checks["ec2:CreateVolume"].message and "nothing was created" in checks["ec2:CreateVolume"].message
    )
    assert ec2.describe_volumes()["Volumes"] == []
    assert {s["SnapshotId"] for s in ec2.describe_snapshots()["Snapshots"]} == snapshots_before
