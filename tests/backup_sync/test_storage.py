"""The control plane's storage additions against ministack: a delimited folder listing, and SHA-256 of an object
streamed with bounded memory (checked with tracemalloc on a 48 MiB object)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid

from stowage.aws.backup_storage import BackupStorage, LocationRef
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials
from tests.support.aws_accounts import CUSTOMER, SECRET, AwsAccounts

REGION = "eu-west-1"


def _ref(aws: AwsAccounts, bucket: str) -> LocationRef:
    spec = LocationSpec(
        name="owner",
        provider=Provider.S3_COMPATIBLE,
        bucket=bucket,
        region=REGION,
        credentials=StaticCredentials(CUSTOMER, SECRET),
        s3_url=aws.endpoint,
        force_path_style=True,
    )
    return LocationRef(spec, external_id="", session_name="test")


def test_folders_objects_and_a_streamed_hash_in_bounded_memory(aws: AwsAccounts) -> None:
    bucket = aws.create_bucket(f"st-{uuid.uuid4().hex[:8]}", REGION)
    s3 = aws.client("s3", region=REGION)
    for key in ("p/backups/a/x", "p/backups/a/y", "p/backups/b/velero-backup.json", "p/backups/loose", "p/other/c/z"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"12345")
    big = os.urandom(48 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="p/backups/a/big.tar.gz", Body=big)
    expected = hashlib.sha256(big).hexdigest()
    del big
    storage = BackupStorage(None, allow_private_endpoints=True)
    ref = _ref(aws, bucket)

    assert sorted(storage.list_folders(ref, "p/backups")) == ["a", "b"]
    assert storage.list_folders(ref, "p/none") == []
    assert sorted(storage.list_objects(ref, "p/backups/a")) == [("big.tar.gz", 48 * 1024 * 1024), ("x", 5), ("y", 5)]

    tracemalloc.start()
    try:
        hashes = storage.hash_objects(ref, ["p/backups/a/big.tar.gz", "p/backups/a/gone"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hashes == {"p/backups/a/big.tar.gz": (48 * 1024 * 1024, expected), "p/backups/a/gone": None}
    assert peak < 8 * 1024 * 1024, f"hashing held {peak / 2**20:.1f} MiB"
