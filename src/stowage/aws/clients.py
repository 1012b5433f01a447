"""Build boto3 clients: one place for timeouts, retries, endpoints and TLS settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config

from stowage.domain.locations import StaticCredentials

# Short connect/read timeouts keep a validation bounded; adaptive retries back off on throttling.
DEFAULT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"max_attempts": 2, "mode": "standard"},
    # Emulators accept sessions shorter than 900 s; botocore would refuse them client-side.
    parameter_validation=False,
)


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


def session(credentials: TemporaryCredentials | None = None, region: str | None = None) -> boto3.session.Session:
    """A boto3 session: the standard chain when no credentials are given."""
    if credentials is None:
        return boto3.session.Session(region_name=region)
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=region,
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
) -> Any:
    """A boto3 client; ``endpoint_url`` None lets boto3 read ``AWS_ENDPOINT_URL[_<SERVICE>]``."""
    cfg = config or DEFAULT_CONFIG
    if force_path_style:
        cfg = cfg.merge(botocore.config.Config(s3={"addressing_style": "path"}))
    kwargs: dict[str, Any] = {"config": cfg}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if verify is not None:
        kwargs["verify"] = verify
    factory: Any = session(credentials, region).client
    return factory(service, **kwargs)
