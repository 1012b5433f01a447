"""API v1 for clusters (users) and for their agents (agent tokens): registration, heartbeats, credential vending.

The agent endpoints are ``async``: a request answered from memory (token, location and credentials cached)
never leaves the event loop, and anything that may block (database, STS) runs in the thread pool.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.schemas import CamelModel, ErrorOut
from stowage.domain.clusters import WorkItem
from stowage.domain.locations import AgentAccess, Provider
from stowage.services.clusters import AgentPrincipal, ClusterView
from stowage.services.runtime import Runtime
from stowage.services.vending import AgentLocation, IssuanceView, VendedCredentials

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS)
NO_STORE = {"Cache-Control": "no-store"}


# -- schemas -----------------------------------------------------------------------------------------------
class ClusterCreate(CamelModel):
    """A cluster to register."""

    name: Annotated[str, Field(max_length=200)]
    cloud_account_id: Annotated[str, Field(max_length=64)] | None = None
    region: Annotated[str, Field(max_length=128)] | None = None


class ClusterPublic(CamelModel):
    """A cluster and its agent's status; never its token."""

    id: str
    project: str
    name: str
    cloud_account_id: str | None
    region: str | None
    status: str
    agent_version: str | None
    last_heartbeat_at: datetime | None
    token_hint: str
    token_created_at: datetime
    token_revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, view: ClusterView) -> ClusterPublic:
        """Build from the service's view."""
        return cls(
            id=view.id,
            project=view.project,
            name=view.name,
            cloud_account_id=view.cloud_account_id,
            region=view.region,
            status=view.status.value,
            agent_version=view.agent_version,
            last_heartbeat_at=view.last_heartbeat_at,
            token_hint=view.token_hint,
            token_created_at=view.token_created_at,
            token_revoked_at=view.token_revoked_at,
            created_at=view.created_at,
        )


class ClusterRegistered(ClusterPublic):
    """A cluster with its agent token, shown this once."""

    agent_token: str


class ClusterList(CamelModel):
    """The clusters of a project."""

    items: list[ClusterPublic]
    total: int


class IssuanceOut(CamelModel):
    """One audited credential issuance (never the secret)."""

    id: str
    cluster_id: str
    cluster_name: str
    location_id: str
    location_name: str
    access_key_id_prefix: str
    expires_at: datetime | None
    issued_at: datetime

    @classmethod
    def of(cls, view: IssuanceView) -> IssuanceOut:
        """Build from the service's view."""
        return cls(
            id=view.id,
            cluster_id=view.cluster_id,
            cluster_name=view.cluster_name,
            location_id=view.location_id,
            location_name=view.location_name,
            access_key_id_prefix=view.access_key_id_prefix,
            expires_at=view.expires_at,
            issued_at=view.issued_at,
        )


class IssuanceList(CamelModel):
    """Audited issuances, newest first."""

    items: list[IssuanceOut]


class TrustPolicyOut(CamelModel):
    """The trust policy a location's role needs for a cluster."""

    agent_access: AgentAccess
    trust_policy: dict[str, Any]


class HeartbeatIn(CamelModel):
    """What an agent reports with each heartbeat."""

    version: Annotated[str, Field(max_length=64)] = "unknown"


class WorkItemOut(CamelModel):
    """One unit of work for the agent; ``kind`` picks the handler, ``params`` is the kind's own object."""

    id: str
    kind: str
    location_id: str | None = None
    params: dict[str, Any]

    @classmethod
    def of(cls, item: WorkItem) -> WorkItemOut:
        """Build from a domain work item."""
        return cls(id=item.id, kind=item.kind, location_id=item.location_id, params=dict(item.params))


class HeartbeatOut(CamelModel):
    """The answer to a heartbeat: who the agent is, when to call again, and its work."""

    cluster_id: str
    cluster_name: str
    project: str
    interval_seconds: int
    work: list[WorkItemOut]


class AgentLocationOut(CamelModel):
    """A location as an agent sees it; in direct mode it carries the role ARN and External ID to assume."""

    id: str
    name: str
    project: str
    provider: Provider
    bucket: str
    region: str
    prefix: str | None
    cluster_prefix: str
    s3_url: str | None
    force_path_style: bool
    ca_cert: str | None
    kms_key_arn: str | None
    volume_snapshots: bool
    agent_access: AgentAccess
    credential_type: str
    role_arn: str | None
    external_id: str | None
    session_name: str
    session_policy: dict[str, Any]
    trust_statement: dict[str, Any] | None
    credentials_path: str | None

    @classmethod
    def of(cls, view: AgentLocation) -> AgentLocationOut:
        """Build from the service's view."""
        brokered = view.agent_access is AgentAccess.BROKERED and view.credential_type == "sts"
        return cls(
            id=view.id,
            name=view.name,
            project=view.project,
            provider=view.provider,
            bucket=view.bucket,
            region=view.region,
            prefix=view.prefix,
            cluster_prefix=view.cluster_prefix,
            s3_url=view.s3_url,
            force_path_style=view.force_path_style,
            ca_cert=view.ca_cert,
            kms_key_arn=view.kms_key_arn,
            volume_snapshots=view.volume_snapshots,
            agent_access=view.agent_access,
            credential_type=view.credential_type,
            role_arn=view.role_arn,
            external_id=view.external_id,
            session_name=view.session_name,
            session_policy=view.session_policy,
            trust_statement=view.trust_statement,
            credentials_path=f"/api/v1/agent/locations/{view.id}/credentials" if brokered else None,
        )


class ContainerCredentialsOut(BaseModel):
    """The AWS container-credentials shape (PascalCase, as botocore's container provider reads it)."""

    AccessKeyId: str
    SecretAccessKey: str
    Token: str
    Expiration: str


# -- agent authentication ----------------------------------------------------------------------------------
def agent_token(request: Request) -> str | None:
    """The agent token: ``Authorization: Bearer <t>``, or the bare header value that botocore sends."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    return header if " " not in header else None


async def get_agent(request: Request) -> AgentPrincipal:
    """The calling cluster (401 otherwise); from memory when the token was seen moments ago."""
    runtime: Runtime = request.app.state.runtime
    token = agent_token(request)
    hit = runtime.clusters.authenticate_cached(token)
    if hit is not None:
        return hit
    return await run_in_threadpool(runtime.clusters.authenticate, token)


AgentDep = Annotated[AgentPrincipal, Depends(get_agent)]


def container_json(creds: VendedCredentials) -> bytes:
    return json.dumps(
        {
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": creds.expiration_iso,
        }
    ).encode()


# -- clusters (users) --------------------------------------------------------------------------------------
@router.post("/projects/{project}/clusters", response_model=ClusterRegistered, status_code=201, tags=["clusters"])
def register_cluster(
    project: str, body: ClusterCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> ClusterRegistered:
    """Register a cluster (editors); ``agentToken`` is shown this once."""
    token, view = runtime.clusters.register(
        principal, project, name=body.name, cloud_account_id=body.cloud_account_id, region=body.region
    )
    return ClusterRegistered(agent_token=token, **ClusterPublic.of(view).model_dump())


@router.get("/projects/{project}/clusters", response_model=ClusterList, tags=["clusters"])
def list_clusters(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> ClusterList:
    """Clusters of a project with their agents' status."""
    items = [ClusterPublic.of(v) for v in runtime.clusters.list(principal, project)]
    return ClusterList(items=items, total=len(items))


@router.get("/projects/{project}/clusters/{cluster}", response_model=ClusterPublic, tags=["clusters"])
def get_cluster(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> ClusterPublic:
    """One cluster by id or name."""
    return ClusterPublic.of(runtime.clusters.get(principal, project, cluster))


@router.delete("/projects/{project}/clusters/{cluster}", status_code=204, tags=["clusters"])
def delete_cluster(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Delete a cluster (editors): its agent token stops working at once."""
    runtime.clusters.delete(principal, project, cluster)
    return Response(status_code=204)


@router.post("/projects/{project}/clusters/{cluster}/revoke-token", response_model=ClusterPublic, tags=["clusters"])
def revoke_cluster_token(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> ClusterPublic:
    """Revoke the cluster's agent token (editors)."""
    return ClusterPublic.of(runtime.clusters.revoke_token(principal, project, cluster))


@router.post("/projects/{project}/clusters/{cluster}/rotate-token", response_model=ClusterRegistered, tags=["clusters"])
def rotate_cluster_token(project: str, cluster: str, principal: PrincipalDep, runtime: RuntimeDep) -> ClusterRegistered:
    """Replace the cluster's agent token (editors); the new ``agentToken`` is shown this once."""
    token, view = runtime.clusters.rotate_token(principal, project, cluster)
    return ClusterRegistered(agent_token=token, **ClusterPublic.of(view).model_dump())


@router.get("/projects/{project}/clusters/{cluster}/trust-policy", response_model=TrustPolicyOut, tags=["clusters"])
def cluster_trust_policy(
    project: str,
    cluster: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    location_id: Annotated[str, Query(alias="locationId", max_length=64)],
) -> TrustPolicyOut:
    """The trust policy of a location's role for this cluster (direct mode adds account A with the External ID)."""
    answer = runtime.vending.trust_policy(principal, project, cluster, location_id)
    return TrustPolicyOut.model_validate(answer)


@router.get("/projects/{project}/credential-issuances", response_model=IssuanceList, tags=["clusters"])
def credential_issuances(
    project: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    location_id: Annotated[str | None, Query(alias="locationId", max_length=64)] = None,
    cluster_id: Annotated[str | None, Query(alias="clusterId", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> IssuanceList:
    """The audit of credentials issued to agents, newest first; page with ``limit`` and ``offset``."""
    views = runtime.vending.issuances(
        principal, project, location_id=location_id, cluster_id=cluster_id, limit=limit, offset=offset
    )
    return IssuanceList(items=[IssuanceOut.of(v) for v in views])


# -- agents ------------------------------------------------------------------------------------------------
@router.post("/agent/heartbeat", response_model=HeartbeatOut, tags=["agent"])
async def heartbeat(body: HeartbeatIn, agent: AgentDep, request: Request) -> HeartbeatOut:
    """Report that the agent is alive; the answer says when to call again and carries its work."""
    runtime: Runtime = request.app.state.runtime
    answer = await run_in_threadpool(lambda: runtime.clusters.heartbeat(agent, version=body.version))
    return HeartbeatOut(
        cluster_id=answer.cluster_id,
        cluster_name=answer.cluster_name,
        project=answer.project,
        interval_seconds=answer.interval_seconds,
        work=[WorkItemOut.of(w) for w in answer.work],
    )


@router.get("/agent/locations/{location_id}", response_model=AgentLocationOut, tags=["agent"])
async def agent_location(location_id: str, agent: AgentDep, request: Request) -> AgentLocationOut:
    """Where a location is and how to reach it; direct mode includes the role ARN and External ID."""
    runtime: Runtime = request.app.state.runtime
    view = await run_in_threadpool(runtime.vending.agent_location, agent, location_id)
    return AgentLocationOut.of(view)


@router.get(
    "/agent/locations/{location_id}/credentials",
    response_model=ContainerCredentialsOut,
    tags=["agent"],
    responses={200: {"headers": {"Cache-Control": {"schema": {"type": "string"}}}}},
)
async def agent_credentials(location_id: str, agent: AgentDep, request: Request) -> Response:
    """Temporary credentials confined to the cluster's prefix, in the AWS container-credentials shape."""
    runtime: Runtime = request.app.state.runtime
    creds = runtime.vending.cached_credentials(agent, location_id)
    if creds is None:
        creds = await run_in_threadpool(runtime.vending.credentials, agent, location_id)
    return Response(content=container_json(creds), media_type="application/json", headers=NO_STORE)
