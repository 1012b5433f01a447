"""The engine when things go wrong: cancellation, S3 failures mid-way, denied writes, no apiserver; memory.

An interrupted backup must never leave ``velero-backup.json`` (that object is what makes a folder a backup to
Velero and to Stowage's sync), and a multipart upload it started must be aborted, not left behind.
"""

from __future__ import annotations

import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stowage.agent.backup_engine import run_backup
from stowage.agent.kube import api_client
from stowage.domain.backups import BackupPhase, BackupRequest, backup_prefix
from tests.backups.helpers import BUCKET, CLUSTER_PREFIX, job, read_backup, run
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def s3(aws: AwsAccounts) -> Any:
    aws.create_bucket(BUCKET, region="us-east-1")
    return aws.client("s3", region="us-east-1")


def fill(kube: Kube, namespace: str, count: int, size: int = 1500) -> None:
    """``count`` ConfigMaps of about ``size`` bytes each, created with some concurrency."""

    def one(i: int) -> None:
        kube.create(
            f"/api/v1/namespaces/{namespace}/configmaps",
            {
                "metadata": {"name": f"cm-{i:05d}", "labels": {"app": "load"}},
                "data": {"blob": f"{i:08d}" * (size // 8)},
            },
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


class FailingS3:
    """A real S3 client whose chosen operation raises after ``after`` successful calls."""

    def __init__(self, real: Any, operation: str, after: int = 0) -> None:
        self.real = real
        self.operation = operation
        self.after = after
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            if name == self.operation:
                if self.after <= 0:
                    raise ConnectionResetError("connection reset by peer (injected)")
                self.after -= 1
            return method(**kwargs)

        return call


def keys_of(aws: AwsAccounts, name: str) -> list[str]:
    return aws.object_keys(BUCKET, backup_prefix(CLUSTER_PREFIX, name) + "/")


def test_cancel_mid_way_aborts_the_upload_and_leaves_no_backup(kube: Kube, s3: Any, aws: AwsAccounts) -> None:
    namespace = kube.namespace("cancel")
    fill(kube, namespace, 300)
    checks = {"n": 0}

    def cancelled() -> bool:
        checks["n"] += 1
        return checks["n"] > 3  # after the first page or so

    result = run(kube, s3, job("cancelled", BackupRequest(namespaces=(namespace,))), cancelled=cancelled)
    assert result.outcome.phase == BackupPhase.FAILED
    assert "cancelled" in (result.outcome.failure_reason or "")
    assert keys_of(aws, "cancelled") == []
    assert aws.multipart_uploads(BUCKET) == []


def test_s3_failure_in_a_part_aborts_and_fails_with_the_reason(kube: Kube, s3: Any, aws: AwsAccounts) -> None:
    namespace = kube.namespace("part")
    fill(kube, namespace, 50)
    failing = FailingS3(s3, "upload_part")
    result = run(kube, failing, job("part-fails", BackupRequest(namespaces=(namespace,))))
    assert result.outcome.phase == BackupPhase.FAILED
    reason = result.outcome.failure_reason or ""
    assert "UploadPart 1" in reason and "connection reset" in reason
    assert "abort_multipart_upload" in failing.calls
    assert keys_of(aws, "part-fails") == []
    assert aws.multipart_uploads(BUCKET) == []


def test_failure_after_the_tarball_leaves_no_velero_backup_json(kube: Kube, s3: Any, aws: AwsAccounts) -> None:
    namespace = kube.namespace("late")
    fill(kube, namespace, 10)
    failing = FailingS3(s3, "put_object", after=4)  # four side files go up; the fifth put fails
    result = run(kube, failing, job("late-fails", BackupRequest(namespaces=(namespace,))))
    assert result.outcome.phase == BackupPhase.FAILED
    keys = {k.rsplit("/", 1)[1] for k in keys_of(aws, "late-fails")}
    assert "velero-backup.json" not in keys and "late-fails-stowage-manifest.json" not in keys
    assert "late-fails.tar.gz" in keys


def test_denied_writes_fail_with_the_missing_permission(kube: Kube, aws: AwsAccounts) -> None:
    aws.create_bucket(BUCKET, region="us-east-1")
    key_id, secret = aws.create_user_keys("agent", bucket=BUCKET, remove=["s3:PutObject"])
    agent_s3 = aws.client("s3", region="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret)
    namespace = kube.namespace("denied")
    fill(kube, namespace, 5)
    result = run(kube, agent_s3, job("denied", BackupRequest(namespaces=(namespace,))))
    assert result.outcome.phase == BackupPhase.FAILED
    reason = result.outcome.failure_reason or ""
    assert "s3:PutObject" in reason and "AccessDenied" in reason
    assert keys_of(aws, "denied") == []
    assert aws.multipart_uploads(BUCKET) == []


def test_unreachable_apiserver_fails_with_the_reason(kube: Kube, s3: Any, tmp_path: Any) -> None:
    config = kube.kubeconfig.read_text().replace(kube.server.url, "https://127.0.0.1:9")
    broken = tmp_path / "kubeconfig"
    broken.write_text(config)
    api = api_client(str(broken))
    outcome = run_backup(
        job("no-api", BackupRequest()),
        api=api,
        s3=s3,
        snapshotter=None,
        progress=lambda *_: None,
        log=lambda *_: None,
        cancelled=lambda: False,
    )
    assert outcome.phase == BackupPhase.FAILED
    assert "Kubernetes API at https://127.0.0.1:9" in (outcome.failure_reason or "")


def test_memory_does_not_grow_with_the_number_of_objects(kube: Kube, s3: Any) -> None:
    small, large = kube.namespace("mem-s"), kube.namespace("mem-l")
    fill(kube, small, 200)
    fill(kube, large, 2000)

    def peak(namespace: str, name: str) -> int:
        tracemalloc.start()
        try:
            result = run(kube, s3, job(name, BackupRequest(namespaces=(namespace,))), page_size=100)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.outcome.phase == BackupPhase.COMPLETED
        return top

    peak_small = peak(small, "mem-small")
    peak_large = peak(large, "mem-large")
    # Ten times the objects (~3 MB of JSON) in the same few pages, chunks and parts in flight.
    assert peak_large < peak_small * 1.5 + 2 * 1024 * 1024, (peak_small, peak_large)
    stored = read_backup(s3, "mem-large")
    assert len(stored.names("configmaps", large)) == 2000
