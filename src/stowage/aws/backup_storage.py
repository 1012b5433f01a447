"""The control plane's own access to a location's backups: read side files, list and hash objects (sync and
verification), delete a backup's objects.

Deletion and expiry run here, with the control plane's session of the location's role (no per-cluster
session policy), because agents are deliberately vended credentials that cannot delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stowage import errors
from stowage.aws import clients, snapshots
from stowage.aws.errors import translate
from stowage.aws.probes import write_ca_bundle
from stowage.domain.locations import LocationSpec, StaticCredentials, StsCredentials

DELETE_BATCH = 1000
# Objects are hashed in chunks of this size: memory stays bounded whatever an object's size.
HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LocationRef:
    """A saved location with what it takes to reach it as the control plane."""

    spec: LocationSpec
    external_id: str
    session_name: str


class BackupStorage:
    """Reads and deletes objects of backups in a location, as the control plane."""

    def __init__(self, broker: Any, *, allow_private_endpoints: bool = False) -> None:
        self._broker = broker
        self._allow_private = allow_private_endpoints

    def _credentials(self, ref: LocationRef) -> clients.TemporaryCredentials:
        creds = ref.spec.credentials
        if isinstance(creds, StaticCredentials):
            return clients.TemporaryCredentials.from_static(creds)
        assert isinstance(creds, StsCredentials)
        result: clients.TemporaryCredentials = self._broker.credentials(
            role_arn=creds.role_arn,
            external_id=ref.external_id,
            session_name=ref.session_name,
            region=ref.spec.region,
        )
        return result

    def _client(self, ref: LocationRef, service: str) -> tuple[Any, str | None]:
        spec = ref.spec
        ca_path = write_ca_bundle(spec.ca_cert) if service == "s3" and spec.ca_cert and spec.ca_cert.strip() else None
        client = clients.client(
            service,
            credentials=self._credentials(ref),
            region=spec.region,
            endpoint_url=(spec.s3_url or None) if service == "s3" else None,
            verify=ca_path,
            force_path_style=spec.force_path_style if service == "s3" else False,
            config=clients.CONTROL_CONFIG,
            # A location's own s3Url is user input: its resolved addresses are checked on every connection.
            allow_private=self._allow_private if service == "s3" and spec.s3_url else None,
        )
        return client, ca_path

    def read(self, ref: LocationRef, key: str) -> bytes | None:
        """One object's bytes, or None when it does not exist."""
        s3, ca_path = self._client(ref, "s3")
        try:
            body: bytes = s3.get_object(Bucket=ref.spec.bucket, Key=key)["Body"].read()
            return body
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise translate(exc, operation=f"s3:GetObject {key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation=f"s3:GetObject {key}") from exc
        finally:
            _remove(ca_path)

    def list_folders(self, ref: LocationRef, prefix: str) -> list[str]:
        """Names of the folders directly under ``prefix/`` (a delimited listing: objects inside are not listed)."""
        s3, ca_path = self._client(ref, "s3")
        folder = prefix.rstrip("/") + "/"
        names: list[str] = []
        try:
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=ref.spec.bucket, Prefix=folder, Delimiter="/"):
                for common in page.get("CommonPrefixes") or []:
                    name = str(common.get("Prefix", ""))[len(folder) :].rstrip("/")
                    if name:
                        names.append(name)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation=f"s3:ListBucket s3://{ref.spec.bucket}/{folder}") from exc
        finally:
            _remove(ca_path)
        return names

    def list_objects(self, ref: LocationRef, prefix: str) -> list[tuple[str, int]]:
        """Every object under ``prefix/``: its key relative to that folder, and its size."""
        s3, ca_path = self._client(ref, "s3")
        folder = prefix.rstrip("/") + "/"
        found: list[tuple[str, int]] = []
        try:
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=ref.spec.bucket, Prefix=folder):
                found += [(str(o["Key"])[len(folder) :], int(o.get("Size") or 0)) for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation=f"s3:ListBucket s3://{ref.spec.bucket}/{folder}") from exc
        finally:
            _remove(ca_path)
        return found

    def hash_objects(
        self, ref: LocationRef, keys: Sequence[str], *, chunk_bytes: int = HASH_CHUNK_BYTES
    ) -> dict[str, tuple[int, str] | None]:
        """Size and SHA-256 (hex) of each object, streamed chunk by chunk; None for an object that is gone."""
        s3, ca_path = self._client(ref, "s3")
        results: dict[str, tuple[int, str] | None] = {}
        try:
            for key in keys:
                results[key] = _stream_sha256(s3, ref.spec.bucket, key, chunk_bytes)
        finally:
            _remove(ca_path)
        return results

    def delete_prefix(self, ref: LocationRef, prefix: str, *, deadline: float) -> int:
        """Delete every object (and unfinished multipart upload) under ``prefix/``; returns how many objects.

        Raises ``CloudError`` when the deadline passes or AWS refuses.
        """
        s3, ca_path = self._client(ref, "s3")
        folder = prefix.rstrip("/") + "/"
        deleted = 0
        try:
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=ref.spec.bucket, Prefix=folder):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                for start in range(0, len(keys), DELETE_BATCH):
                    _check_deadline(deadline, f"deleting s3://{ref.spec.bucket}/{folder}")
                    batch = keys[start : start + DELETE_BATCH]
                    answer = s3.delete_objects(Bucket=ref.spec.bucket, Delete={"Objects": batch, "Quiet": True})
                    failed = answer.get("Errors") or []
                    if failed:
                        first = failed[0]
                        raise errors.CloudAccessDenied(
                            f"S3 refused to delete {len(failed)} object(s) under s3://{ref.spec.bucket}/{folder}, "
                            f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}. The location's "
                            "role needs s3:DeleteObject on the prefix.",
                            aws_code=str(first.get("Code") or ""),
                        )
                    deleted += len(batch)
            for upload in _unfinished_uploads(s3, ref.spec.bucket, folder):
                _check_deadline(deadline, f"aborting uploads under s3://{ref.spec.bucket}/{folder}")
                s3.abort_multipart_upload(Bucket=ref.spec.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation=f"deleting s3://{ref.spec.bucket}/{folder}") from exc
        finally:
            _remove(ca_path)
        return deleted

    def delete_snapshots(
        self, ref: LocationRef, snapshot_ids: Sequence[str], *, backup_name: str, backup_uid: str, deadline: float
    ) -> None:
        """Delete a backup's EBS snapshots with the location's role; gone ones count as deleted.

        Besides the ones the agent reported, snapshots tagged with the backup (an agent that died before it
        reported them) are found by tag and deleted too.
        """
        ec2, _ = self._client(ref, "ec2")
        _check_deadline(deadline, "deleting EBS snapshots")
        ids = list(dict.fromkeys(snapshot_ids))
        try:
            tagged = snapshots.find_backup_snapshots(ec2, backup_name, backup_uid=backup_uid)
        except errors.CloudError:
            tagged = []  # listing is a best effort; the reported ids are what must go
        ids += [s.snapshot_id for s in tagged if s.snapshot_id not in ids]
        if not ids:
            return
        failed = [(sid, problem) for sid, problem in snapshots.delete_snapshots(ec2, ids) if problem]
        if failed:
            sid, problem = failed[0]
            raise errors.CloudError(f"{len(failed)} EBS snapshot(s) could not be deleted, e.g. {sid}: {problem}")


def _stream_sha256(s3: Any, bucket: str, key: str, chunk_bytes: int) -> tuple[int, str] | None:
    """Read one object through SHA-256 without holding it: (size, hex digest), or None when it does not exist."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise translate(exc, operation=f"s3:GetObject {key}") from exc
    except BotoCoreError as exc:
        raise translate(exc, operation=f"s3:GetObject {key}") from exc
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in body.iter_chunks(chunk_bytes):
            digest.update(chunk)
            size += len(chunk)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation=f"reading s3://{bucket}/{key}") from exc
    finally:
        body.close()
    return size, digest.hexdigest()


def _unfinished_uploads(s3: Any, bucket: str, folder: str) -> list[dict[str, Any]]:
    """Multipart uploads left under a folder; [] when the role may not list them.

    The spec's permission policy has no ``s3:ListBucketMultipartUploads``: without it the leftovers of an
    interrupted upload stay until the bucket's lifecycle rule for incomplete uploads removes them (docs).
    """
    try:
        uploads: list[dict[str, Any]] = s3.list_multipart_uploads(Bucket=bucket, Prefix=folder).get("Uploads", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "AllAccessDisabled"):
            return []
        raise
    return uploads


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise errors.CloudEndpointError(f"Timed out {what}; it will be retried.")


def _remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)
