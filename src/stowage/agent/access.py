"""How an agent reaches a location's bucket: vended credentials (brokered) or its own assume-role (direct)."""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stowage import errors
from stowage.agent.client import ControlPlane
from stowage.aws import agent_sessions
from stowage.domain import policies
from stowage.domain.regions import partition_for_region


class AccessProblem(Exception):
    """The agent cannot reach a location; the message says what to change and where."""


@dataclass(frozen=True, slots=True)
class LocationAccess:
    """A boto3 session for one location plus what the control plane said about it."""

    session: Any
    location: dict[str, Any]

    @property
    def bucket(self) -> str:
        """The location's bucket."""
        return str(self.location["bucket"])

    @property
    def cluster_prefix(self) -> str:
        """The key prefix this cluster owns (no trailing slash)."""
        return str(self.location["clusterPrefix"])

    def s3(self) -> Any:
        """An S3 client for the location (its endpoint, path style and CA when set)."""
        return agent_sessions.s3_client(
            self.session,
            endpoint_url=self.location.get("s3Url") or None,
            ca_bundle=_ca_file(self.location.get("caCert")),
            force_path_style=bool(self.location.get("forcePathStyle")),
        )


def _ca_file(pem: str | None) -> str | None:
    """A file holding the location's CA certificate (botocore takes a path), written once per content."""
    if not pem:
        return None
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"stowage-agent-ca-{digest}.pem"
    if not path.exists():
        path.write_text(pem, encoding="utf-8")
    return str(path)


def open_location(
    control: ControlPlane, location_id: str, *, base_session: Any = None, duration_seconds: int | None = None
) -> LocationAccess:
    """A session for a location whose credentials refresh by themselves, in the location's agent access mode."""
    location = control.location(location_id)
    region = str(location.get("region") or "us-east-1")
    if location.get("agentAccess") == "direct" and location.get("roleArn"):
        return LocationAccess(_direct(location, region, base_session, duration_seconds), location)
    path = location.get("credentialsPath")
    if not path:
        raise AccessProblem(
            f"Location '{location.get('name')}' has no temporary credentials for agents (credentials type "
            f"'{location.get('credentialType')}'): dynamic credentials need an STS location."
        )
    try:
        session = agent_sessions.brokered_session(control.server + str(path), control.token, region)
    except errors.StowageError as exc:
        raise AccessProblem(f"Getting credentials for location '{location.get('name')}' failed: {exc}") from exc
    return LocationAccess(session, location)


def _direct(location: dict[str, Any], region: str, base_session: Any, duration_seconds: int | None) -> Any:
    try:
        return agent_sessions.direct_session(
            role_arn=str(location["roleArn"]),
            external_id=location.get("externalId"),
            session_name=str(location.get("sessionName") or "stowage-agent"),
            region=region,
            # The same per-cluster confinement the control plane applies to vended credentials.
            session_policy=location.get("sessionPolicy"),
            duration_seconds=duration_seconds,
            base=base_session,
        )
    except errors.CloudAccessDenied as exc:
        raise AccessProblem(_trust_advice(location, region, base_session, exc)) from exc
    except errors.CloudError as exc:
        raise AccessProblem(f"Assuming {location['roleArn']} failed: {exc.message}") from exc


def _trust_advice(location: dict[str, Any], region: str, base_session: Any, exc: errors.CloudError) -> str:
    """Why direct mode failed and the exact trust statement the role in account B is missing."""
    statement = location.get("trustStatement")
    who = "this agent's AWS identity"
    try:
        account, arn = agent_sessions.caller_identity(base_session)
        who = f"{arn} (account {account})"
        if statement is None:
            statement = policies.direct_cluster_trust_statement(
                external_id=str(location.get("externalId") or ""),
                partition=partition_for_region(region),
                cluster_account_id=account,
            )
    except errors.CloudError:
        pass  # the advice stays useful without the caller's identity
    text = (
        f"Direct access to location '{location.get('name')}' failed: {who} may not assume {location['roleArn']} "
        f"with the project's External ID ({exc.message}). The role's trust policy in the bucket's account needs "
        "a statement for the cluster account"
    )
    if statement is not None:
        return f"{text}; add this statement to it:\n{json.dumps(statement, indent=2)}"
    return text + " with the sts:ExternalId condition."


def probe(access: LocationAccess) -> str:
    """Write and read back one small object in the cluster's own prefix; returns the key it used.

    Agents cannot delete (by design), so the check overwrites one fixed key instead of leaving a new object
    each time. It lives under ``backups/`` because Velero refuses a prefix with anything else at its top, and
    a plain object there is not a backup folder to Velero or to Stowage's sync.
    """
    s3 = access.s3()
    key = f"{access.cluster_prefix}/backups/.stowage-agent-check"
    body = f"stowage agent check {secrets.token_hex(6)}\n".encode()
    try:
        s3.put_object(Bucket=access.bucket, Key=key, Body=body)
        if s3.get_object(Bucket=access.bucket, Key=key)["Body"].read() != body:
            raise AccessProblem(f"s3://{access.bucket}/{key} did not read back what was written.")
    except AccessProblem:
        raise
    except Exception as exc:
        raise AccessProblem(f"Probing s3://{access.bucket}/{key} failed: {exc}") from exc
    return key
