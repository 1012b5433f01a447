"""Clusters and their agents: registration, agent tokens (hashed, revocable, rotatable), heartbeats, status."""

from __future__ import annotations

import hmac
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.clusters import (
    AGENT_TOKEN_PREFIX,
    ConnectionStatus,
    WorkItem,
    cluster_name_problem,
    connection_status,
    token_hint,
)
from stowage.domain.naming import account_id_problem
from stowage.services.metrics import Metrics
from stowage.services.tenancy import hash_token, load_project, require
from stowage.store.changes import TOKEN_TOPIC
from stowage.store.database import Database
from stowage.store.tables import Cluster, Project, utcnow

DEFAULT_HEARTBEAT_SECONDS = 30
REGION_MAX_LENGTH = 64
VERSION_MAX_LENGTH = 64


def new_agent_token() -> str:
    """A fresh agent token (256 bits of randomness), recognisable by its prefix."""
    return AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AgentPrincipal:
    """Who calls an agent endpoint: one cluster of one project."""

    cluster_id: str
    cluster_name: str
    project_id: str
    project_name: str
    tenant_id: str
    cloud_account_id: str | None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """A cluster as shown to users (never its token)."""

    id: str
    project: str
    name: str
    cloud_account_id: str | None
    region: str | None
    status: ConnectionStatus
    agent_version: str | None
    last_heartbeat_at: datetime | None
    token_hint: str
    token_created_at: datetime
    token_revoked_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """What an agent learns from a heartbeat: who it is, when to call again, and what to do."""

    cluster_id: str
    cluster_name: str
    project: str
    interval_seconds: int
    work: list[WorkItem]


WorkSource = Callable[[AgentPrincipal], list[WorkItem]]


def _no_work(_: AgentPrincipal) -> list[WorkItem]:
    return []


class ClusterService:
    """Use cases of clusters and agent authentication; user calls are scoped to the caller's tenant."""

    # Agent tokens are remembered briefly so credential vending needs no database round trip per request.
    AUTH_CACHE_SECONDS = 5.0

    def __init__(
        self,
        *,
        db: Database,
        heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS,
        work_source: WorkSource = _no_work,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self.heartbeat_seconds = heartbeat_seconds
        self._work_source = work_source
        self._clock = clock
        self._monotonic = monotonic
        self._auth_cache: dict[str, tuple[float, AgentPrincipal]] = {}
        self._auth_lock = threading.Lock()
        # Revoked, rotated or deleted tokens leave the cache when the change commits, here and on other servers.
        db.changes.subscribe(TOKEN_TOPIC, self.forget_token)

    def set_work_source(self, source: WorkSource) -> None:
        """Plug in what hands out work (jobs of later issues) to heartbeating agents."""
        self._work_source = source

    # -- managing clusters (users) -----------------------------------------------------------------
    def register(
        self,
        principal: Principal,
        project_ref: str,
        *,
        name: str,
        cloud_account_id: str | None = None,
        region: str | None = None,
    ) -> tuple[str, ClusterView]:
        """Register a cluster; its agent token is returned once and only its hash is kept."""
        require(principal, Permission.MANAGE_CLUSTERS)
        name = name.strip()
        cloud_account_id = (cloud_account_id or "").strip() or None
        region = (region or "").strip() or None
        for field, problem in (
            ("name", cluster_name_problem(name)),
            ("cloudAccountId", account_id_problem(cloud_account_id)),
            ("region", _region_problem(region)),
        ):
            if problem:
                raise errors.InvalidInput(problem, field=field)
        token = new_agent_token()
        now = self._clock()
        try:
            with self._db.session() as session:
                project = load_project(session, principal, project_ref)
                if session.scalar(select(Cluster.id).where(Cluster.project_id == project.id, Cluster.name == name)):
                    raise errors.Conflict(f"A cluster named '{name}' already exists in project '{project.name}'.")
                row = Cluster(
                    project_id=project.id,
                    name=name,
                    cloud_account_id=cloud_account_id,
                    region=region,
                    token_hash=hash_token(token),
                    token_hint=token_hint(token),
                    token_created_at=now,
                    created_at=now,
                )
                session.add(row)
                session.flush()
                return token, self._view(row, project)
        except IntegrityError as exc:
            raise errors.Conflict(f"A cluster named '{name}' already exists in this project.") from exc

    def list(self, principal: Principal, project_ref: str) -> list[ClusterView]:
        """Clusters of a project, by name."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            rows = session.scalars(
                select(Cluster).where(Cluster.project_id == project.id).order_by(Cluster.name, Cluster.id)
            )
            return [self._view(r, project) for r in rows]

    def get(self, principal: Principal, project_ref: str, cluster_ref: str) -> ClusterView:
        """One cluster by id or name."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, cluster_ref)
            return self._view(row, project)

    def delete(self, principal: Principal, project_ref: str, cluster_ref: str) -> None:
        """Delete a cluster: its agent token stops working at once (its audit entries are kept)."""
        require(principal, Permission.MANAGE_CLUSTERS)
        with self._db.session() as session:
            _, row = self._load(session, principal, project_ref, cluster_ref)
            digest = row.token_hash
            session.delete(row)
            self._db.changes.publish(session, TOKEN_TOPIC, digest)

    def revoke_token(self, principal: Principal, project_ref: str, cluster_ref: str) -> ClusterView:
        """Revoke the cluster's agent token (idempotent); rotating issues a new one."""
        require(principal, Permission.MANAGE_CLUSTERS)
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, cluster_ref)
            if row.token_revoked_at is None:
                row.token_revoked_at = self._clock()
            digest = row.token_hash
            view = self._view(row, project)
            self._db.changes.publish(session, TOKEN_TOPIC, digest)
        return view

    def rotate_token(self, principal: Principal, project_ref: str, cluster_ref: str) -> tuple[str, ClusterView]:
        """Replace the agent token: the old one stops working at once, the new one is returned once."""
        require(principal, Permission.MANAGE_CLUSTERS)
        token = new_agent_token()
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, cluster_ref)
            old = row.token_hash
            row.token_hash = hash_token(token)
            row.token_hint = token_hint(token)
            row.token_created_at = self._clock()
            row.token_revoked_at = None
            view = self._view(row, project)
            self._db.changes.publish(session, TOKEN_TOPIC, old)
        return token, view

    # -- agents ------------------------------------------------------------------------------------
    def authenticate_cached(self, token: str | None) -> AgentPrincipal | None:
        """The agent of a token if it was authenticated moments ago; never touches the database."""
        if not token:
            return None
        digest = hash_token(token)
        with self._auth_lock:
            hit = self._auth_cache.get(digest)
        if hit is not None and hit[0] > self._monotonic():
            return hit[1]
        return None

    def authenticate(self, token: str | None) -> AgentPrincipal:
        """The agent of a token; ``Unauthenticated`` when missing, unknown or revoked."""
        if not token:
            raise errors.Unauthenticated(
                "Missing agent token: send 'Authorization: Bearer <agent token>' (from `stowage clusters register`)."
            )
        cached = self.authenticate_cached(token)
        if cached is not None:
            return cached
        if not token.startswith(AGENT_TOKEN_PREFIX):
            raise errors.Unauthenticated(
                f"This is not an agent token: agent endpoints take a cluster's token ({AGENT_TOKEN_PREFIX}...), "
                "shown once by `stowage clusters register` or `rotate-token`."
            )
        digest = hash_token(token)
        with self._db.session() as session:
            row = session.scalar(select(Cluster).where(Cluster.token_hash == digest))
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                raise errors.Unauthenticated(
                    "Unknown agent token: the cluster was deleted or its token rotated; "
                    "get a new one with `stowage clusters rotate-token`."
                )
            if row.token_revoked_at is not None:
                raise errors.Unauthenticated(
                    f"The agent token of cluster '{row.name}' was revoked; issue a new one with "
                    "`stowage clusters rotate-token`."
                )
            project = session.get_one(Project, row.project_id)
            agent = AgentPrincipal(
                cluster_id=row.id,
                cluster_name=row.name,
                project_id=project.id,
                project_name=project.name,
                tenant_id=project.tenant_id,
                cloud_account_id=row.cloud_account_id,
            )
        # Jittered so agents that connected together don't all go back to the database in the same instant.
        ttl = self.AUTH_CACHE_SECONDS * random.uniform(0.8, 1.2)
        with self._auth_lock:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()  # bounded: a flood of tokens must not grow memory forever
            self._auth_cache[digest] = (self._monotonic() + ttl, agent)
        return agent

    def heartbeat(self, agent: AgentPrincipal, *, version: str) -> HeartbeatAnswer:
        """Record that the agent is alive (and its version) and hand it its work."""
        version = version.strip()[:VERSION_MAX_LENGTH] or "unknown"
        with self._db.session() as session:
            row = session.get(Cluster, agent.cluster_id)
            if row is None:
                self.forget_token(None)
                raise errors.Unauthenticated("This cluster was deleted: its agent token no longer works.")
            row.last_heartbeat_at = self._clock()
            row.agent_version = version
        self._metrics.agent_heartbeat()
        return HeartbeatAnswer(
            cluster_id=agent.cluster_id,
            cluster_name=agent.cluster_name,
            project=agent.project_name,
            interval_seconds=self.heartbeat_seconds,
            work=list(self._work_source(agent)),
        )

    # -- helpers -----------------------------------------------------------------------------------
    def forget_token(self, digest: str | None) -> None:
        """Drop a token digest (or every token, for ``None``) from the authentication cache."""
        with self._auth_lock:
            if digest is None:
                self._auth_cache.clear()
            else:
                self._auth_cache.pop(digest, None)

    @staticmethod
    def _load(session: Session, principal: Principal, project_ref: str, cluster_ref: str) -> tuple[Project, Cluster]:
        project = load_project(session, principal, project_ref)
        row = session.scalar(
            select(Cluster).where(
                Cluster.project_id == project.id, or_(Cluster.id == cluster_ref, Cluster.name == cluster_ref)
            )
        )
        if row is None:
            raise errors.NotFound(
                f"No cluster '{cluster_ref}' in project '{project.name}'. List them with `stowage clusters list`."
            )
        return project, row

    def _view(self, row: Cluster, project: Project) -> ClusterView:
        return ClusterView(
            id=row.id,
            project=project.name,
            name=row.name,
            cloud_account_id=row.cloud_account_id,
            region=row.region,
            status=connection_status(row.last_heartbeat_at, now=self._clock(), interval_seconds=self.heartbeat_seconds),
            agent_version=row.agent_version,
            last_heartbeat_at=row.last_heartbeat_at,
            token_hint=row.token_hint,
            token_created_at=row.token_created_at,
            token_revoked_at=row.token_revoked_at,
            created_at=row.created_at,
        )


def _region_problem(region: str | None) -> str | None:
    if region is None:
        return None
    if len(region) > REGION_MAX_LENGTH or not all(ch.isalnum() or ch == "-" for ch in region):
        return f"region must be a region code such as us-east-1, not {region[:40]!r}."
    return None
