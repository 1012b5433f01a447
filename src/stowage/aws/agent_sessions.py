"""boto3 sessions for agents whose credentials refresh by themselves, in both agent access modes.

* brokered: botocore's own container-credentials provider reads the control plane's vending endpoint (the
  AWS container-credentials shape) and refreshes before expiry, exactly as on ECS/EKS.
* direct: botocore's refreshing assume-role credentials, called with the agent's own identity (account A of
  the multi-account case) and the project's External ID.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from stowage import errors
from stowage.aws import clients
from stowage.aws.errors import translate


class _FixedProvider(botocore.credentials.CredentialProvider):
    """A provider handing botocore one (refreshable) credentials object."""

    METHOD = "stowage-agent"
    CANONICAL_NAME = "StowageAgent"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        """The credentials given at construction."""
        return self._credentials


def _session_with(provider: Any, region: str | None) -> boto3.session.Session:
    core = botocore.session.get_session()
    # Only our provider: the agent must never fall back to whatever else the environment happens to hold.
    core.register_component("credential_provider", botocore.credentials.CredentialResolver(providers=[provider]))
    return boto3.session.Session(botocore_session=core, region_name=region)


def brokered_session(credentials_url: str, agent_token: str, region: str | None) -> boto3.session.Session:
    """A session whose credentials come from the control plane's vending endpoint and refresh on their own."""
    provider = botocore.credentials.ContainerProvider(
        environ={
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": f"Bearer {agent_token}",
        }
    )
    try:
        credentials = provider.load()
    except ValueError as exc:
        # botocore refuses plain-HTTP credential URLs except to loopback addresses.
        raise errors.InvalidInput(f"{credentials_url}: {exc}; use https:// for a remote control plane.") from exc
    except BotoCoreError as exc:
        raise translate(exc, operation=f"GET {credentials_url}") from exc
    return _session_with(_FixedProvider(credentials), region)


def caller_identity(session: boto3.session.Session | None = None) -> tuple[str, str]:
    """The account id and ARN of a session (the standard chain when None)."""
    base = session or boto3.session.Session()
    try:
        answer = base.client("sts", config=clients.DEFAULT_CONFIG).get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="sts:GetCallerIdentity") from exc
    return str(answer["Account"]), str(answer["Arn"])


def assume_role_refresher(
    *,
    role_arn: str,
    external_id: str | None,
    session_name: str,
    region: str | None,
    session_policy: dict[str, Any] | None = None,
    duration_seconds: int | None = None,
    base: boto3.session.Session | None = None,
) -> Callable[[], dict[str, Any]]:
    """botocore's assume-role refresher with the agent's own identity; errors come out as ``CloudError``."""
    source = base or boto3.session.Session()
    sts = source.client("sts", region_name=region or "us-east-1", config=clients.DEFAULT_CONFIG)
    params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name}
    if external_id is not None:
        params["ExternalId"] = external_id
    if session_policy is not None:
        params["Policy"] = json.dumps(session_policy, separators=(",", ":"))
    if duration_seconds is not None:
        params["DurationSeconds"] = duration_seconds
    refresh = botocore.credentials.create_assume_role_refresher(sts, params)

    def translated() -> dict[str, Any]:
        try:
            result: dict[str, Any] = refresh()
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sts:AssumeRole") from exc
        return result

    return translated


def direct_session(
    *,
    role_arn: str,
    external_id: str | None,
    session_name: str,
    region: str | None,
    session_policy: dict[str, Any] | None = None,
    duration_seconds: int | None = None,
    base: boto3.session.Session | None = None,
) -> boto3.session.Session:
    """A session that assumes the role itself (direct mode) and re-assumes it before the credentials expire.

    The first ``AssumeRole`` happens here, so a missing trust statement fails at once with ``CloudAccessDenied``.
    """
    refresh = assume_role_refresher(
        role_arn=role_arn,
        external_id=external_id,
        session_name=session_name,
        region=region,
        session_policy=session_policy,
        duration_seconds=duration_seconds,
        base=base,
    )
    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="assume-role"
    )
    return _session_with(_FixedProvider(credentials), region)


def s3_client(
    session: boto3.session.Session,
    *,
    endpoint_url: str | None = None,
    ca_bundle: str | None = None,
    force_path_style: bool = False,
) -> Any:
    """An S3 client of an agent session with the location's endpoint, CA bundle and addressing style."""
    config = clients.DATA_CONFIG
    if force_path_style:
        config = config.merge(botocore.config.Config(s3={"addressing_style": "path"}))
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if ca_bundle:
        kwargs["verify"] = ca_bundle
    return session.client("s3", **kwargs)
