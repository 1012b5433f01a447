"""Live permission probes: prove each IAM action of the permission policy against the real bucket and EC2.

A denied permission is data, not an exception: every probe becomes a ``CheckResult`` whose message says what
happened (the sanitized AWS answer) and whose remedy is the exact statement to add. Like kopia's provider
validation, probes work under a random prefix (``<prefix>/.stowage-validation/<uuid>/``), every step is named,
and cleanup runs in ``finally``; whatever the credentials could not delete is named in the report.

Round trips: everything that does not need an earlier answer goes out at once (HeadBucket, ListObjectsV2,
PutObject, GetObject of a key that does not exist, ListParts and AbortMultipartUpload on an unknown upload
id, the six EC2 DryRun calls); only the probe object forces an order (put, then delete). With AssumeRole
before it a validation takes three round trips end to end; four when the probe must be read back (SSE-KMS,
to prove kms:Decrypt, or an AccessDenied that only a real read can explain).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import botocore.config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError

from stowage import errors
from stowage.aws import clients, endpoints
from stowage.aws.clients import TemporaryCredentials
from stowage.aws.errors import error_code, error_message, sanitize, translate
from stowage.domain import policies
from stowage.domain.checks import EC2_ACTIONS, S3_ACTIONS, CheckResult, CheckStatus
from stowage.domain.locations import LocationSpec, Provider
from stowage.domain.regions import partition_for_region

PROBE_CHECK_IDS: tuple[str, ...] = ("bucket-region", *S3_ACTIONS, *EC2_ACTIONS, "kms")
VALIDATION_DIR = ".stowage-validation"
# Syntactically valid ids that never exist: EC2 answers *.NotFound for them once the action is authorized.
DUMMY_VOLUME_ID = "vol-00000000000000000"
DUMMY_SNAPSHOT_ID = "snap-00000000000000000"
# EC2 answers that come after authorization: the action is allowed.
_EC2_ALLOWED_CODES = frozenset({"DryRunOperation", "InvalidParameterValue"})
_SSE_KMS = "aws:kms"
_REFUSED_FIX = (
    "Use the storage's public address, or ask the administrator to set STOWAGE_ALLOW_PRIVATE_ENDPOINTS=true "
    "if it is on a private network (metadata and link-local addresses are never allowed)."
)

ClientFactory = Callable[[str], Any]
ResultSink = Callable[[CheckResult], None]

_WHAT = {
    "s3:ListBucket": "list the objects under the prefix (ListObjectsV2, MaxKeys 1)",
    "s3:PutObject": "write a probe object (PutObject)",
    "s3:GetObject": "read objects (GetObject)",
    "s3:DeleteObject": "delete the probe object (DeleteObject)",
    "s3:ListMultipartUploadParts": "list the parts of a multipart upload (ListParts on an unknown upload id)",
    "s3:AbortMultipartUpload": "abort a multipart upload (AbortMultipartUpload on an unknown upload id)",
    "ec2:DescribeVolumes": "describe EBS volumes (DescribeVolumes, DryRun)",
    "ec2:DescribeSnapshots": "describe EBS snapshots (DescribeSnapshots, DryRun)",
    "ec2:CreateSnapshot": "snapshot a volume (CreateSnapshot, DryRun)",
    "ec2:CreateVolume": "create a volume from a snapshot (CreateVolume, DryRun)",
    "ec2:CreateTags": "tag snapshots and volumes (CreateTags, DryRun)",
    "ec2:DeleteSnapshot": "delete a snapshot (DeleteSnapshot, DryRun)",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one AWS call: the parsed response, or the error (kept raw for its code and headers)."""

    response: dict[str, Any] | None = None
    error: ClientError | BotoCoreError | None = None

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error is None

    @property
    def code(self) -> str:
        """The AWS error code ('' on success or for transport errors)."""
        return error_code(self.error) if isinstance(self.error, ClientError) else ""

    @property
    def message(self) -> str:
        """The sanitized AWS error message, or what went wrong in transport ('' on success)."""
        if isinstance(self.error, ClientError):
            return error_message(self.error)
        return translate(self.error).message if self.error is not None else ""

    @property
    def cloud(self) -> errors.CloudError | None:
        """The error in Stowage's tree, or None on success."""
        return translate(self.error) if self.error is not None else None

    @property
    def transient(self) -> bool:
        """True for answers that say nothing about permissions: 5xx, throttling, a dropped connection."""
        if isinstance(self.error, ClientError):
            status = self.error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return int(status) >= 500 or isinstance(self.cloud, errors.CloudThrottled)
        return isinstance(self.error, ConnectionClosedError)

    @property
    def attempts(self) -> int | None:
        """How many times botocore sent the call (None when the error carries no response metadata)."""
        if isinstance(self.error, ClientError):
            retries = self.error.response.get("ResponseMetadata", {}).get("RetryAttempts")
            return int(retries) + 1 if retries is not None else None
        return None

    def header(self, name: str) -> str | None:
        """An HTTP response header, from the success or the error response."""
        if isinstance(self.error, ClientError):
            meta = self.error.response.get("ResponseMetadata", {})
        else:
            meta = (self.response or {}).get("ResponseMetadata", {})
        value = meta.get("HTTPHeaders", {}).get(name.lower())
        return str(value) if value else None


def call(fn: Callable[..., Any], **kwargs: Any) -> Outcome:
    """Make one call and capture its answer instead of raising."""
    try:
        return Outcome(response=fn(**kwargs))
    except (ClientError, BotoCoreError) as exc:
        return Outcome(error=exc)


def write_ca_bundle(pem: str) -> str:
    """Write a PEM bundle to a private temp file for botocore's ``verify``; the caller deletes it."""
    handle, path = tempfile.mkstemp(prefix="stowage-ca-", suffix=".pem")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(pem.strip() + "\n")
    return path


def default_client_factory(
    credentials: TemporaryCredentials | clients.CredentialSource,
    spec: LocationSpec,
    *,
    verify: str | None,
    timeout: float,
    allow_private: bool = False,
) -> ClientFactory:
    """Clients for the location: its region, its S3 URL (custom endpoints), CA bundle and addressing style.

    ``credentials`` may be a callable that blocks until they exist (see ``clients.PendingCredentials``). A
    client for the location's own S3 URL connects only where ``aws.endpoints`` allows (``allow_private``).
    """
    config = clients.probe_config(timeout)
    lock = threading.Lock()
    made: list[Any] = []

    def make(service: str) -> Any:
        is_s3 = service == "s3"
        endpoint = spec.s3_url.strip() if is_s3 and spec.s3_url and spec.s3_url.strip() else None
        if is_s3 and spec.force_path_style:
            cfg = config.merge(botocore.config.Config(s3={"addressing_style": "path"}))
        else:
            cfg = config
        with lock:
            # One session for all of a run's clients: building a botocore session costs ~10 ms.
            if not made:
                made.append(clients.session(credentials, spec.region))
            kwargs: dict[str, Any] = {"config": cfg}
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            if is_s3 and verify is not None:
                kwargs["verify"] = verify
            client = made[0].client(service, **kwargs)
        if endpoint:
            endpoints.guard_client(client, allow_private=allow_private)
        if is_s3:
            # botocore sends PutObject with "Expect: 100-continue" and waits for the 100 before the body: a whole
            # extra round trip for a probe of a few bytes.
            client.meta.events.register_last("before-call.s3", _no_expect_continue)
        return client

    return make


class ProbeClients:
    """The clients of one probe run and the CA file behind them; close (or ``with``) deletes the file.

    Built before the credentials exist when given a callable: ``warm`` then makes the clients while
    AssumeRole is in flight, and the first signed request waits for the credentials.
    """

    def __init__(
        self,
        spec: LocationSpec,
        credentials: TemporaryCredentials | clients.CredentialSource,
        *,
        timeout: float,
        allow_private: bool = False,
    ) -> None:
        self.spec = spec
        self._ca_path = write_ca_bundle(spec.ca_cert) if spec.ca_cert and spec.ca_cert.strip() else None
        self._factory = default_client_factory(
            credentials, spec, verify=self._ca_path, timeout=timeout, allow_private=allow_private
        )
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The run's client for ``service`` (made once)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._factory(service)
            return self._clients[service]

    def warm(self) -> None:
        """Make every client the run will need now (no network calls)."""
        self.client("s3")
        if self.spec.ec2_checks_apply:
            self.client("ec2")

    def close(self) -> None:
        """Delete the CA file, if one was written."""
        if self._ca_path is not None:
            os.unlink(self._ca_path)
            self._ca_path = None

    def __enter__(self) -> ProbeClients:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _no_expect_continue(params: dict[str, Any], **_: Any) -> None:
    params.get("headers", {}).pop("Expect", None)


class _SwappableSource:
    """The credentials of whoever holds a pooled client set right now."""

    def __init__(self) -> None:
        self.current: TemporaryCredentials | clients.CredentialSource | None = None

    def __call__(self) -> TemporaryCredentials:
        current = self.current
        if current is None:
            raise errors.CloudCredentialsMissing("probe clients used outside their lease")
        return current() if callable(current) else current


class _PooledClients(ProbeClients):
    """A ProbeClients whose credentials are swapped per lease (no CA file: custom CAs are never pooled)."""

    def __init__(self, spec: LocationSpec, *, timeout: float, allow_private: bool) -> None:
        self.source = _SwappableSource()
        super().__init__(spec, self.source, timeout=timeout, allow_private=allow_private)


PoolKey = tuple[str, str | None, bool, str | None, str | None]


class ClientPool:
    """Probe clients kept between validations, leased to one run at a time with that run's credentials.

    A fresh client costs ~10 ms to build and parses its service model again on first use of each operation
    (EC2's is large), CPU time that a validation of a few round trips notices; pooled clients also keep their
    connections alive. Locations with a custom CA get fresh clients (the CA file lives only for one run).
    """

    def __init__(self, *, timeout: float, max_idle: int = 4, allow_private: bool = False) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: dict[PoolKey, list[_PooledClients]] = {}

    @contextlib.contextmanager
    def lease(
        self, spec: LocationSpec, credentials: TemporaryCredentials | clients.CredentialSource
    ) -> Iterator[ProbeClients]:
        """Clients for ``spec`` signing with ``credentials`` (a callable may still be waiting for them)."""
        if spec.ca_cert and spec.ca_cert.strip():
            with ProbeClients(spec, credentials, timeout=self._timeout, allow_private=self._allow_private) as fresh:
                yield fresh
            return
        key = self._key(spec)
        with self._lock:
            idle = self._idle.get(key)
            leased = idle.pop() if idle else None
        if leased is None:
            leased = _PooledClients(spec, timeout=self._timeout, allow_private=self._allow_private)
        leased.source.current = credentials
        leased.spec = spec
        try:
            yield leased
        finally:
            leased.source.current = None
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(leased)

    @staticmethod
    def _key(spec: LocationSpec) -> PoolKey:
        url = spec.s3_url.strip() if spec.s3_url and spec.s3_url.strip() else None
        # Clients read AWS_ENDPOINT_URL* when built: a changed setting must not reach an old client.
        return (
            spec.region,
            url,
            spec.force_path_style,
            clients.endpoint_override("s3"),
            clients.endpoint_override("ec2"),
        )


def run_probes(
    credentials: TemporaryCredentials,
    spec: LocationSpec,
    *,
    principal_arn: str | None = None,
    timeout: float = 30.0,
    on_result: ResultSink | None = None,
    client_factory: ClientFactory | None = None,
    max_workers: int = 16,
    allow_private: bool = False,
) -> list[CheckResult]:
    """Probe every permission of the location live; one ``CheckResult`` per id of ``PROBE_CHECK_IDS``.

    ``principal_arn`` (the role) goes into the KMS key-policy remedy; ``on_result`` sees each check as soon
    as it is known (a caller with a deadline keeps what finished); ``client_factory`` replaces the boto3
    clients (``ProbeClients.client`` made ahead of time, or tests injecting answers no emulator gives, such
    as KMS denials); ``max_workers=1`` runs the very same probes one after another (the benchmark's naive
    baseline).
    """
    if client_factory is not None:
        return _ProbeRun(spec, client_factory, principal_arn=principal_arn, on_result=on_result).execute(
            max_workers=max_workers
        )
    with ProbeClients(spec, credentials, timeout=timeout, allow_private=allow_private) as made:
        run = _ProbeRun(spec, made.client, principal_arn=principal_arn, on_result=on_result)
        return run.execute(max_workers=max_workers)


# ------------------------------------------------------------------------------------------------ one run


@dataclass
class _ProbeRun:
    spec: LocationSpec
    factory: ClientFactory
    principal_arn: str | None = None
    on_result: ResultSink | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.partition = partition_for_region(self.spec.region)
        self.bucket = self.spec.bucket
        self.probe_key = self.spec.object_key(VALIDATION_DIR, self.run_id, "probe")
        self.mpu_key = self.spec.object_key(VALIDATION_DIR, self.run_id, "multipart")
        self.absent_key = self.spec.object_key(VALIDATION_DIR, self.run_id, "absent")
        self.upload_id = f"stowage-validation-{self.run_id}"
        self.body = f"stowage validation probe {self.run_id}\n".encode()
        self.lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------------
    def emit(self, result: CheckResult) -> None:
        with self.lock:
            self.results[result.id] = result
        if self.on_result is not None:
            self.on_result(result)

    def execute(self, *, max_workers: int) -> list[CheckResult]:
        ec2_applies = self.spec.ec2_checks_apply
        try:
            s3 = self.factory("s3")
            ec2 = self.factory("ec2") if ec2_applies else None
        except (ClientError, BotoCoreError, ValueError) as exc:
            # A client that cannot even be built (malformed endpoint): every check says so.
            message = f"Could not prepare the AWS clients: {sanitize(str(exc))}"
            for check_id in PROBE_CHECK_IDS:
                if check_id.startswith("ec2:") and not ec2_applies:
                    continue
                action = check_id if ":" in check_id else ""
                self.emit(CheckResult.failed(check_id, message, "Check the S3 URL and region.", action=action))
            return self._ordered(ec2_applies)
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="stowage-probe") as pool:
            self._run(pool, s3, ec2)
        return self._ordered(ec2_applies)

    def _ordered(self, ec2_applies: bool) -> list[CheckResult]:
        if not ec2_applies:
            reason = (
                "Volume snapshots are off: EC2 permissions are not needed."
                if self.spec.provider is Provider.AWS
                else "S3-compatible storage: EC2 snapshots do not apply."
            )
            for action in EC2_ACTIONS:
                if action not in self.results:
                    self.emit(CheckResult.skipped(action, reason, action=action))
        return [self.results[i] for i in PROBE_CHECK_IDS if i in self.results]

    def _run(self, pool: ThreadPoolExecutor, s3: Any, ec2: Any | None) -> None:
        spec = self.spec
        put_args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.probe_key, "Body": self.body}
        if spec.kms_key_arn:
            # Backups are written with the location's key, so the probe must be too.
            put_args.update(ServerSideEncryption=_SSE_KMS, SSEKMSKeyId=spec.kms_key_arn)
        # First round trip (after AssumeRole): every independent call at once. GetObject is proven on a key
        # that does not exist (NoSuchKey is only told to principals allowed to read), so it need not wait for
        # the put. The EC2 probes report themselves; the S3 ones are judged together because a missing bucket
        # changes their meaning.
        put = pool.submit(call, s3.put_object, **put_args)
        absent = pool.submit(call, s3.get_object, Bucket=self.bucket, Key=self.absent_key)
        head = pool.submit(call, s3.head_bucket, Bucket=self.bucket)
        listing = pool.submit(call, s3.list_objects_v2, Bucket=self.bucket, Prefix=self._list_prefix(), MaxKeys=1)
        parts = pool.submit(
            call, s3.list_parts, Bucket=self.bucket, Key=self.mpu_key, UploadId=self.upload_id, MaxParts=1
        )
        abort = pool.submit(
            call, s3.abort_multipart_upload, Bucket=self.bucket, Key=self.mpu_key, UploadId=self.upload_id
        )
        if ec2 is not None:
            self._submit_ec2(pool, ec2)
        put_outcome: Outcome | None = None
        deleted = False
        try:
            # The delete waits only for what decides whether to read the probe back first, not for the rest.
            put_outcome = put.result()
            absent_outcome = self._drain_body(absent.result())
            listing_outcome = listing.result()
            read: Outcome | None = None
            if put_outcome.ok and self._needs_read_back(put_outcome, absent_outcome, listing_outcome):
                # Only when it proves something the absent key cannot: kms:Decrypt, or a 403 that is ambiguous.
                read = self._drain_body(call(s3.get_object, Bucket=self.bucket, Key=self.probe_key))
            # Last round trip: delete the probe (the DeleteObject check is also the cleanup). Without a probe
            # object the delete of its missing key still proves the permission (S3 answers 204).
            delete_outcome = call(s3.delete_object, Bucket=self.bucket, Key=self.probe_key)
            deleted = delete_outcome.ok
            region_result, bucket_missing = self._bucket_region(s3, head.result())
            self.emit(region_result)
            for result in (
                self._list_bucket(listing_outcome),
                self._multipart("s3:ListMultipartUploadParts", parts.result()),
                self._multipart("s3:AbortMultipartUpload", abort.result()),
            ):
                self.emit(self._unless_bucket_missing(result, bucket_missing))
            checks = self._object_checks(put_outcome, absent_outcome, read, delete_outcome, listing_outcome)
            for result in checks:
                self.emit(self._unless_bucket_missing(result, bucket_missing))
            self.emit(self._kms(put_outcome, read if read is not None else absent_outcome))
        finally:
            if put_outcome is not None and put_outcome.ok and not deleted:
                # Cleanup of last resort (the delete above failed or never ran): try once more, then name it.
                self._last_resort_delete(s3)

    def _needs_read_back(self, put: Outcome, absent: Outcome, listing: Outcome) -> bool:
        encrypted = _header_or_field(put, "x-amz-server-side-encryption", "ServerSideEncryption") == _SSE_KMS
        return bool(self.spec.kms_key_arn) or encrypted or _ambiguous_read_denial(absent, listing)

    # -- S3 ------------------------------------------------------------------------------------------------
    def _list_prefix(self) -> str:
        prefix = self.spec.normalized_prefix
        return f"{prefix}/" if prefix else ""

    @staticmethod
    def _drain_body(outcome: Outcome) -> Outcome:
        """Read (and close) a GetObject body so the pooled connection is released."""
        if not outcome.ok or outcome.response is None:
            return outcome
        body = outcome.response.get("Body")
        if body is None:
            return outcome
        try:
            data = body.read()
        except BotoCoreError as exc:
            return Outcome(error=exc)
        finally:
            body.close()
        response = dict(outcome.response)
        response["Body"] = data
        return Outcome(response=response)

    def _bucket_region(self, s3: Any, head: Outcome) -> tuple[CheckResult, bool]:
        """The bucket-region check, and whether the bucket is missing altogether."""
        if head.code in ("404", "NoSuchBucket", "NotFound"):
            fix = f'Check the bucket name, or create bucket "{self.bucket}" in region {self.spec.region}.'
            return CheckResult.failed("bucket-region", f'Bucket "{self.bucket}" does not exist. {fix}', fix), True
        return self._region_of(s3, head), False

    def _region_of(self, s3: Any, head: Outcome) -> CheckResult:
        spec = self.spec
        where = f'Bucket "{self.bucket}"'
        real = head.header("x-amz-bucket-region")
        if real is None and not head.ok and isinstance(head.error, BotoCoreError):
            return self._transport_failure("bucket-region", head, "find the bucket's region (HeadBucket)")
        if real is None:
            # Not every store sends the header; GetBucketLocation is the older way to ask.
            location = call(s3.get_bucket_location, Bucket=self.bucket)
            if location.ok and location.response is not None:
                constraint = location.response.get("LocationConstraint")
                real = "us-east-1" if not constraint else ("eu-west-1" if constraint == "EU" else str(constraint))
        if real is None:
            if head.ok:
                return CheckResult.passed(
                    "bucket-region",
                    f"{where} answered requests signed for {spec.region}; the storage does not report a region.",
                )
            return CheckResult.warning(
                "bucket-region",
                f"{where}: its region could not be determined ({head.code or 'error'}: {head.message}).",
                "HeadBucket needs s3:ListBucket on the bucket; see that check.",
            )
        if real != spec.region:
            fix = f'Set the region to "{real}", where the bucket is.'
            message = f"{where} is in region {real}, not {spec.region}. {fix}"
            return CheckResult.failed("bucket-region", message, fix)
        return CheckResult.passed("bucket-region", f"{where} is in {real}, as configured.")

    def _list_bucket(self, outcome: Outcome) -> CheckResult:
        action = "s3:ListBucket"
        if outcome.ok:
            return CheckResult.passed(action, f"Listed s3://{self.bucket}/{self._list_prefix()}.", action=action)
        return self._denied_or_failed(action, outcome, f"s3://{self.bucket}/{self._list_prefix()}")

    def _object_checks(
        self, put: Outcome, absent: Outcome, read: Outcome | None, delete: Outcome, listing: Outcome
    ) -> list[CheckResult]:
        url = f"s3://{self.bucket}/{self.probe_key}"
        results: list[CheckResult] = []
        # PutObject
        if put.ok:
            results.append(CheckResult.passed("s3:PutObject", f"Wrote {url}.", action="s3:PutObject"))
        elif _is_kms_error(put):
            results.append(
                CheckResult.warning(
                    "s3:PutObject",
                    f"S3 allowed the write of {url}, but KMS refused the encryption key (see the kms check): "
                    f"{put.code}: {put.message}",
                    action="s3:PutObject",
                )
            )
        else:
            results.append(self._denied_or_failed("s3:PutObject", put, url))
        results.append(self._get_object(put, absent, read, listing))
        # DeleteObject (the probe's own cleanup)
        if delete.ok:
            done = f"Deleted {url}." if put.ok else f"Allowed: deleting {url} succeeded (no object had been written)."
            results.append(CheckResult.passed("s3:DeleteObject", done, action="s3:DeleteObject"))
        else:
            failed = self._denied_or_failed("s3:DeleteObject", delete, url)
            if put.ok:
                failed = CheckResult.failed(
                    failed.id,
                    f"{failed.message} The probe object {url} was left behind: delete it by hand.",
                    failed.remedy,
                    action=failed.action,
                )
            results.append(failed)
        return results

    def _get_object(self, put: Outcome, absent: Outcome, read: Outcome | None, listing: Outcome) -> CheckResult:
        action = "s3:GetObject"
        url = f"s3://{self.bucket}/{self.probe_key}"
        if read is not None:
            # A real read of the probe is the stronger evidence whenever there is one.
            if read.ok:
                body = (read.response or {}).get("Body")
                if isinstance(body, bytes) and body != self.body:
                    return CheckResult.warning(
                        action,
                        f"Read {url} back, but its content differs from what was written.",
                        "Check for a proxy or gateway that rewrites objects.",
                        action=action,
                    )
                return CheckResult.passed(action, f"Read {url} back.", action=action)
            if _is_kms_error(read):
                return CheckResult.warning(
                    action,
                    f"S3 allowed the read of {url}, but KMS refused to decrypt it (see the kms check): "
                    f"{read.code}: {read.message}",
                    action=action,
                )
            return self._denied_or_failed(action, read, url)
        absent_url = f"s3://{self.bucket}/{self.absent_key}"
        if absent.code in ("NoSuchKey", "404") or absent.ok:
            return CheckResult.passed(
                action,
                f"Allowed: reading {absent_url}, a key that does not exist, answered NoSuchKey (S3 tells that only "
                "to principals allowed s3:GetObject).",
                action=action,
            )
        if _ambiguous_read_denial(absent, listing) and not put.ok:
            # Without s3:ListBucket, S3 answers 403 for a missing key, and there was no probe to read instead.
            return CheckResult.warning(
                action,
                f"Could not tell whether reading is allowed: without s3:ListBucket, S3 answers AccessDenied for "
                f"missing keys, and no probe object could be written to read instead ({absent.message}).",
                "Fix s3:PutObject and s3:ListBucket, then validate again.",
                action=action,
            )
        return self._denied_or_failed(action, absent, absent_url)

    def _multipart(self, action: str, outcome: Outcome) -> CheckResult:
        if outcome.code == "NoSuchUpload":
            # The request passed authorization and only then found no such upload: the action is allowed.
            return CheckResult.passed(
                action,
                f"Allowed: S3 answered NoSuchUpload for an unknown upload id under {self.mpu_key}.",
                action=action,
            )
        if outcome.ok:
            return CheckResult.passed(action, "Allowed (the storage accepted an unknown upload id).", action=action)
        return self._denied_or_failed(action, outcome, f"s3://{self.bucket}/{self.mpu_key}")

    def _unless_bucket_missing(self, result: CheckResult, bucket_missing: bool) -> CheckResult:
        if bucket_missing and result.status in (CheckStatus.FAILED, CheckStatus.WARNING):
            return CheckResult.skipped(
                result.id,
                f'Not tested: bucket "{self.bucket}" does not exist (see bucket-region).',
                action=result.action,
            )
        return result

    def _last_resort_delete(self, s3: Any) -> None:
        url = f"s3://{self.bucket}/{self.probe_key}"
        outcome = call(s3.delete_object, Bucket=self.bucket, Key=self.probe_key)
        if outcome.ok:
            return
        with self.lock:
            previous = self.results.get("s3:DeleteObject")
        if previous is not None and "left behind" in previous.message:
            return
        self.emit(
            CheckResult.failed(
                "s3:DeleteObject",
                f"The probe object {url} could not be deleted and was left behind ({outcome.code}: "
                f"{outcome.message}); delete it by hand.",
                self._statement_remedy("s3:DeleteObject"),
                action="s3:DeleteObject",
            )
        )

    # -- KMS -----------------------------------------------------------------------------------------------
    def _kms(self, put: Outcome, get: Outcome) -> CheckResult:
        key = (
            self.spec.kms_key_arn
            or _header_or_field(put, "x-amz-server-side-encryption-aws-kms-key-id", "SSEKMSKeyId")
            or _header_or_field(get, "x-amz-server-side-encryption-aws-kms-key-id", "SSEKMSKeyId")
        )
        encrypted = _SSE_KMS in (
            _header_or_field(put, "x-amz-server-side-encryption", "ServerSideEncryption"),
            _header_or_field(get, "x-amz-server-side-encryption", "ServerSideEncryption"),
        )
        kms_put, kms_get = _is_kms_error(put), _is_kms_error(get)
        if not (self.spec.kms_key_arn or encrypted or kms_put or kms_get):
            return CheckResult.skipped("kms", "Objects are not SSE-KMS encrypted and no KMS key was given.")
        shown = key or "the bucket's KMS key"
        if kms_put:
            return CheckResult.failed(
                "kms",
                f"Writing with SSE-KMS failed: KMS refused kms:GenerateDataKey on {shown} ({put.code}: "
                f"{put.message}). Backups cannot be written until the role may use the key.",
                self._kms_remedy(key),
            )
        if kms_get:
            return CheckResult.failed(
                "kms",
                f"Reading the SSE-KMS probe failed: KMS refused kms:Decrypt on {shown} ({get.code}: "
                f"{get.message}). Backups could be written but never restored.",
                self._kms_remedy(key),
            )
        if not put.ok:
            return CheckResult.skipped(
                "kms", f"Not tested: writing the probe object failed (see s3:PutObject); key {shown}."
            )
        if not get.ok:
            return CheckResult.warning(
                "kms",
                f"kms:GenerateDataKey on {shown} works; kms:Decrypt could not be tested because s3:GetObject failed.",
                self._kms_remedy(key),
            )
        return CheckResult.passed("kms", f"Wrote and read back an SSE-KMS encrypted probe with {shown}.")

    def _kms_remedy(self, key: str | None) -> str:
        key_arn = key or "arn:<partition>:kms:<region>:<account ID>:key/<key ID>"
        principal = self.principal_arn or "<the ARN of the IAM identity whose keys Stowage uses>"
        return (
            "Both are needed. 1) Add this statement to the role's permission policy:\n"
            f"{policies.render(policies.kms_statement(key_arn))}\n"
            "2) Add this statement to the key policy of the KMS key (a key policy must allow the role, or "
            "delegate to IAM policies of its account):\n"
            f"{policies.render(policies.kms_key_policy_statement(principal))}"
        )

    # -- EC2 -----------------------------------------------------------------------------------------------
    def _submit_ec2(self, pool: ThreadPoolExecutor, ec2: Any) -> None:
        zone = f"{self.spec.region}a"
        tag = [{"Key": "stowage-validation", "Value": "dry-run"}]
        calls: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
            "ec2:DescribeVolumes": (ec2.describe_volumes, {"VolumeIds": [DUMMY_VOLUME_ID]}),
            "ec2:DescribeSnapshots": (ec2.describe_snapshots, {"SnapshotIds": [DUMMY_SNAPSHOT_ID]}),
            "ec2:CreateSnapshot": (ec2.create_snapshot, {"VolumeId": DUMMY_VOLUME_ID}),
            "ec2:CreateVolume": (ec2.create_volume, {"SnapshotId": DUMMY_SNAPSHOT_ID, "AvailabilityZone": zone}),
            "ec2:CreateTags": (ec2.create_tags, {"Resources": [DUMMY_SNAPSHOT_ID], "Tags": tag}),
            "ec2:DeleteSnapshot": (ec2.delete_snapshot, {"SnapshotId": DUMMY_SNAPSHOT_ID}),
        }
        for action, (fn, kwargs) in calls.items():
            pool.submit(self._ec2_probe, ec2, action, fn, kwargs)

    def _ec2_probe(self, ec2: Any, action: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.emit(self._ec2_result(ec2, action, call(fn, DryRun=True, **kwargs)))

    def _ec2_result(self, ec2: Any, action: str, outcome: Outcome) -> CheckResult:
        code = outcome.code
        if code == "DryRunOperation":
            return CheckResult.passed(action, "Allowed (DryRun: nothing was created).", action=action)
        if code in _EC2_ALLOWED_CODES or code.endswith(".NotFound"):
            return CheckResult.passed(
                action, f"Allowed: EC2 checked the dummy id only after authorization ({code}).", action=action
            )
        if outcome.ok:
            # The endpoint ignored DryRun and really ran the call: allowed, but whatever it made must go.
            return self._ec2_cleanup(ec2, action, outcome.response or {})
        cloud = outcome.cloud
        if isinstance(
            cloud,
            errors.CloudAccessDenied
            | errors.CloudEndpointError
            | errors.CloudCredentialsExpired
            | errors.CloudCredentialsMissing,
        ):
            return self._denied_or_failed(action, outcome, "EC2")
        if outcome.transient:
            return self._transient_failure(action, outcome, _WHAT.get(action, action), "EC2")
        return CheckResult.warning(
            action,
            f"Could not tell whether {action} is allowed: EC2 answered {code or 'an error'}: {outcome.message}",
            self._statement_remedy(action),
            action=action,
        )

    def _ec2_cleanup(self, ec2: Any, action: str, response: dict[str, Any]) -> CheckResult:
        created: tuple[str, Callable[..., Any], dict[str, Any]] | None = None
        if action == "ec2:CreateSnapshot" and response.get("SnapshotId"):
            snapshot = str(response["SnapshotId"])
            created = (f"snapshot {snapshot}", ec2.delete_snapshot, {"SnapshotId": snapshot})
        elif action == "ec2:CreateVolume" and response.get("VolumeId"):
            volume = str(response["VolumeId"])
            created = (f"volume {volume}", ec2.delete_volume, {"VolumeId": volume})
        if created is None:
            return CheckResult.passed(
                action, "Allowed (the endpoint ignored DryRun; nothing was created).", action=action
            )
        what, delete, kwargs = created
        removed = call(delete, **kwargs)
        if removed.ok:
            return CheckResult.passed(
                action, f"Allowed (the endpoint ignored DryRun and created {what}, which was deleted).", action=action
            )
        return CheckResult.warning(
            action,
            f"Allowed, but the endpoint ignored DryRun and created {what}, which these credentials cannot delete "
            f"({removed.code}: {removed.message}): it was left behind.",
            f"Delete {what} by hand.",
            action=action,
        )

    # -- shared wording ------------------------------------------------------------------------------------
    def _statement_remedy(self, action: str) -> str:
        statement = policies.statement_for_action(
            action, self.bucket, partition=self.partition, prefix=self.spec.prefix
        )
        who = (
            "the role's permission policy" if self.spec.uses_sts else "the policy of the identity these keys belong to"
        )
        return f"Add this statement to {who}:\n{policies.render(statement)}"

    def _denied_or_failed(self, action: str, outcome: Outcome, target: str) -> CheckResult:
        cloud = outcome.cloud
        what = _WHAT.get(action, action)
        answer = f"{outcome.code or 'error'}: {outcome.message}" if outcome.code else outcome.message
        if isinstance(cloud, errors.CloudAccessDenied):
            remedy = self._statement_remedy(action)
            if "explicit deny" in outcome.message.lower():
                remedy = (
                    "An explicit Deny (in the role's policies, a permissions boundary, an SCP or the bucket policy) "
                    f"overrides any Allow: remove it. {remedy}"
                )
            return CheckResult.failed(
                action, f"Denied: could not {what} on {target} ({answer}).", remedy, action=action
            )
        if isinstance(cloud, errors.CloudEndpointError):
            return self._transport_failure(action, outcome, what)
        if outcome.transient:
            return self._transient_failure(action, outcome, what, target)
        if isinstance(cloud, errors.CloudCredentialsExpired):
            fix = "Validate again: the temporary credentials expired before the probe ran."
            return CheckResult.failed(
                action, f"Could not {what}: the credentials expired ({answer}).", fix, action=action
            )
        if isinstance(cloud, errors.CloudCredentialsMissing):
            fix = "Check the access key ID and secret access key (or the role's session)."
            return CheckResult.failed(
                action, f"Could not {what}: the storage rejected the credentials ({answer}).", fix, action=action
            )
        remedy = f"If this is a permission problem: {self._statement_remedy(action)}"
        return CheckResult.failed(action, f"Could not {what} on {target} ({answer}).", remedy, action=action)

    def _transient_failure(self, action: str, outcome: Outcome, what: str, target: str) -> CheckResult:
        # Retried already (aws.clients.DEFAULT_CONFIG); still a fault on the endpoint's side, so no statement
        # to add is suggested: the permission simply was not tested.
        answer = f"{outcome.code}: {outcome.message}" if outcome.code else outcome.message
        tries = f" on all {outcome.attempts} attempts" if outcome.attempts else " after retries"
        return CheckResult.failed(
            action,
            f"Could not {what} on {target}: the endpoint answered {answer}{tries}. That is a fault or throttling "
            "on the endpoint's side, not a permission answer: this permission was not tested.",
            "Validate again in a minute. If it keeps happening, check the endpoint's health (the AWS Health "
            "Dashboard for this region, or the S3-compatible storage's own logs) and any proxy in between.",
            action=action,
        )

    def _transport_failure(self, check_id: str, outcome: Outcome, what: str) -> CheckResult:
        message = outcome.message
        refused = endpoints.refusal_in(outcome.error)
        if refused is not None:
            # The address changed since the s3-url check (DNS rebinding) or a redirect led elsewhere.
            action = check_id if ":" in check_id else ""
            return CheckResult.failed(check_id, f"Could not {what}: {refused.message}", _REFUSED_FIX, action=action)
        if "TLS" in message or "SSL" in message or "certificate" in message.lower():
            fix = (
                "The endpoint's TLS certificate is not trusted: paste the CA certificate that issued it into the "
                "Certificate field (PEM)."
                if not self.spec.ca_cert
                else "The endpoint's certificate does not match the CA certificate given: paste the CA that issued it."
            )
        else:
            fix = "Check the S3 URL, that the endpoint is reachable from the control plane, and any proxy or firewall."
        return CheckResult.failed(
            check_id, f"Could not {what}: {message}", fix, action=check_id if ":" in check_id else ""
        )


def _is_kms_error(outcome: Outcome) -> bool:
    """True when a call failed because of KMS (the key, or kms:* permissions on it), not S3 itself."""
    if outcome.ok:
        return False
    code = outcome.code
    if code.startswith("KMS"):
        # S3 passes KMS's own errors through as KMS.NotFoundException, KMS.DisabledException, ...
        return True
    return code in ("AccessDenied", "403") and "kms:" in outcome.message.lower()


def _ambiguous_read_denial(absent: Outcome, listing: Outcome) -> bool:
    """True when a 403 for a missing key may mean "no s3:ListBucket" rather than "no s3:GetObject".

    Without s3:ListBucket, S3 answers AccessDenied for a missing key even to a principal allowed to read it,
    unless its message names the action that was refused (AWS's detailed messages do).
    """
    return absent.code in ("AccessDenied", "403") and not listing.ok and "s3:GetObject" not in absent.message


def _header_or_field(outcome: Outcome, header: str, name: str) -> str | None:
    value = outcome.header(header)
    if value:
        return value
    if outcome.response is not None and outcome.response.get(name):
        return str(outcome.response[name])
    return None
