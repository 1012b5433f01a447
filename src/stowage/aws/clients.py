"""Build boto3 clients: one place for timeouts, retries, endpoints and TLS settings."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session

from stowage.aws import endpoints
from stowage.domain.locations import StaticCredentials
from stowage.domain.regions import REGION_PARTITION

# Short connect/read timeouts keep a validation bounded. Standard retries (exponential backoff with jitter:
# 0-1, 0-2, 0-4, 0-8 s) for 5xx, throttling and resets: a validation makes about 30 calls, and with only 3
# attempts a 10 % fault rate turned one call in every 20 validations into a wrong verdict (a check failed or
# "could not tell" for an allowed action; tests/faults/test_validation_faults.py). 5 attempts make that about
# one in 10,000 and still fit the 30 s validation bound. botocore's "max_attempts" counts retries only, so the
# total is spelled out.
DEFAULT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"total_max_attempts": 5, "mode": "standard"},
    # Emulators accept sessions shorter than 900 s; botocore would refuse them client-side.
    parameter_validation=False,
)

# The data plane of backups and restores (agents' S3 and EC2 clients, the control plane's deletions): one
# part of a multipart upload may take minutes on a slow link, so reads wait longer, and transient faults
# (5xx, SlowDown, throttling, resets) are retried with botocore's standard mode: exponential backoff with
# jitter, a retry quota, and up to 8 retries (9 attempts: botocore's "max_attempts" counts retries). This is
# the one place that decides it.
DATA_CONFIG = botocore.config.Config(
    connect_timeout=10,
    read_timeout=300,
    retries={"max_attempts": 8, "mode": "standard"},
    parameter_validation=False,
)

# The control plane's own calls on backups (deleting objects and snapshots, reading side files): small requests
# that must not hold a deletion for minutes when the endpoint is unreachable (the deletion then fails with the
# reason and can be retried), yet ride out transient faults.
CONTROL_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"total_max_attempts": 4, "mode": "standard"},
    parameter_validation=False,
)

# DNS suffix of each partition's service endpoints.
PARTITION_DNS_SUFFIX = {"aws": "amazonaws.com", "aws-us-gov": "amazonaws.com", "aws-cn": "amazonaws.com.cn"}

_loader_lock = threading.Lock()
_loader: botocore.loaders.Loader | None = None


@dataclass(frozen=True, slots=True)
class TemporaryCredentials:
    """Temporary AWS credentials; the secret and token never appear in repr."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration_epoch: float | None = None

    def __repr__(self) -> str:
        return f"TemporaryCredentials(access_key_id={self.access_key_id!r}, expiration_epoch={self.expiration_epoch!r})"

    @classmethod
    def from_static(cls, static: StaticCredentials) -> TemporaryCredentials:
        """Wrap long-lived keys in the same shape (no token, no expiry)."""
        return cls(static.access_key_id, static.secret_access_key, None, None)


def _shared_loader() -> botocore.loaders.Loader:
    """One model loader per process, made on first use.

    Parsing service models (EC2's is megabytes of JSON) costs 100-300 ms per fresh session; sharing the
    loader's cache makes a client cost ~10 ms, which matters when a validation builds three of them.
    """
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


CredentialSource = Callable[[], TemporaryCredentials]


class PendingCredentials(botocore.credentials.Credentials):
    """Credentials still on their way (an AssumeRole in flight): clients are built now, signing waits.

    Building clients costs ~10 ms each; doing it while STS answers takes that off the critical path.
    """

    def __init__(self, source: CredentialSource) -> None:
        # No super().__init__(): there are no values yet, every read goes through ``source``.
        self._source = source
        self.method = "stowage-pending"
        self.account_id = None

    @property
    def access_key(self) -> str:  # type: ignore[override]
        """The access key id (waits for the credentials)."""
        return self._source().access_key_id

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        """The secret access key (waits for the credentials)."""
        return self._source().secret_access_key

    @property
    def token(self) -> str | None:  # type: ignore[override]
        """The session token (waits for the credentials)."""
        return self._source().session_token

    def get_frozen_credentials(self) -> botocore.credentials.ReadOnlyCredentials:
        """What the request signer uses: the credentials once they are there."""
        creds = self._source()
        return botocore.credentials.ReadOnlyCredentials(
            creds.access_key_id, creds.secret_access_key, creds.session_token, None
        )


class _FixedProvider:
    """A ``credential_provider`` component that always answers the same credentials object."""

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        self._credentials = credentials

    def load_credentials(self) -> botocore.credentials.Credentials:
        return self._credentials


def _untrusted_certificate_is_final(caught_exception: BaseException | None = None, **_: Any) -> None:
    """``needs-retry`` handler: raise a failed certificate verification at once instead of retrying it.

    botocore's standard mode retries every ``SSLError`` as a connection error; a certificate that does not
    verify fails the same way on every attempt, and five attempts with backoff took a validation past its
    time bound (a timeout instead of the "paste the CA certificate" answer).
    """
    if isinstance(caught_exception, botocore.exceptions.SSLError) and (
        "certificate verify failed" in str(caught_exception).lower()
    ):
        raise caught_exception


def session(
    credentials: TemporaryCredentials | CredentialSource | None = None, region: str | None = None
) -> boto3.session.Session:
    """A boto3 session: the standard chain when no credentials are given; a callable defers them."""
    # A fresh botocore session per call so environment and credential-chain changes are seen; only the
    # parsed models are shared.
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader())
    # Every client of the session inherits it; it runs after the retry handler (more specific event name).
    core.register("needs-retry", _untrusted_certificate_is_final)
    if credentials is None:
        return boto3.session.Session(region_name=region, botocore_session=core)
    if callable(credentials):
        core.register_component("credential_provider", _FixedProvider(PendingCredentials(credentials)))
        return boto3.session.Session(region_name=region, botocore_session=core)
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=region,
        botocore_session=core,
    )


def client(
    service: str,
    *,
    credentials: TemporaryCredentials | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    verify: bool | str | None = None,
    force_path_style: bool = False,
    config: botocore.config.Config | None = None,
    allow_private: bool | None = None,
) -> Any:
    """A boto3 client; ``endpoint_url`` None lets boto3 read ``AWS_ENDPOINT_URL[_<SERVICE>]``.

    Pass ``allow_private`` (the ``allow_private_endpoints`` setting) when ``endpoint_url`` is a location's own,
    user-supplied S3 URL: every connection then obeys ``aws.endpoints``. Leave it None for endpoints the
    administrator configured.
    """
    cfg = config or DEFAULT_CONFIG
    if force_path_style:
        cfg = cfg.merge(botocore.config.Config(s3={"addressing_style": "path"}))
    kwargs: dict[str, Any] = {"config": cfg}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if verify is not None:
        kwargs["verify"] = verify
    factory: Any = session(credentials, region).client
    made = factory(service, **kwargs)
    if endpoint_url and allow_private is not None:
        endpoints.guard_client(made, allow_private=allow_private)
    return made


def probe_config(timeout: float, *, pool: int = 16) -> botocore.config.Config:
    """Client settings for live probes: timeouts within ``timeout`` s and room for parallel calls."""
    connect = max(0.5, min(5.0, timeout))
    read = max(0.5, min(10.0, timeout))
    return DEFAULT_CONFIG.merge(
        botocore.config.Config(
            connect_timeout=connect,
            read_timeout=read,
            max_pool_connections=pool,
            # S3-compatible stores often reject the CRC checksums boto3 adds by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    )


def endpoint_override(service: str) -> str | None:
    """The ``AWS_ENDPOINT_URL_<SERVICE>`` or ``AWS_ENDPOINT_URL`` boto3 will use for ``service``, if any."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}", "").strip()
    return specific or os.environ.get("AWS_ENDPOINT_URL", "").strip() or None


def regional_sts_endpoint(region: str) -> str | None:
    """The regional STS endpoint of a known AWS region (None for codes only S3-compatible storage uses)."""
    partition = REGION_PARTITION.get(region)
    if partition is None:
        return None
    return f"https://sts.{region}.{PARTITION_DNS_SUFFIX[partition]}"
