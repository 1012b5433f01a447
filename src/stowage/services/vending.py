"""Credential vending: temporary, per-cluster credentials for a location's role, and the audit of each issuance.

The hot path (an agent asking again for credentials it already has) is answered from memory: the agent's
token (``ClusterService``), the location (``SPEC_CACHE_SECONDS``) and the credentials themselves are cached,
so ``cached_credentials`` never blocks. Only a miss calls ``credentials``, which may reach the database and
STS; the broker makes one STS call for all concurrent callers of one (role, External ID, session policy).
Credentials that are due for refresh but still have more than half of the refresh window left are answered
at once while one background thread refreshes them, so agents never queue behind STS because of a refresh.

Audit: one row per set of credentials STS actually issued for a (location, cluster), written on the miss
path before the credentials are handed out (if the row cannot be written, nothing is handed out). Answers
from a cache are not logged: they are the same credentials, already logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, or_, select

from stowage import errors
from stowage.domain import policies
from stowage.domain.access import Permission, Principal
from stowage.domain.clusters import (
    agent_session_name,
    cluster_prefix,
    cluster_session_policy,
    render_compact,
    session_policy_problem,
)
from stowage.domain.locations import AgentAccess, LocationSpec, Provider, StaticCredentials, StsCredentials
from stowage.domain.policies import Policy
from stowage.domain.regions import partition_for_region
from stowage.services.clusters import AgentPrincipal
from stowage.services.metrics import Metrics
from stowage.services.tenancy import load_project, require
from stowage.store.changes import LOCATION_TOPIC
from stowage.store.database import Database
from stowage.store.tables import Cluster, CredentialIssuance, Location, Project, utcnow

log = logging.getLogger("stowage.vending")
ACCESS_KEY_PREFIX_CHARS = 8
AUDIT_RETENTION_DAYS = 90
MAX_ISSUANCES_PAGE = 500
_CREDS_SOFT_LIMIT = 10_000


class Temporary(Protocol):
    """Temporary AWS credentials as the broker returns them."""

    @property
    def access_key_id(self) -> str:
        """Access key id."""
        ...

    @property
    def secret_access_key(self) -> str:
        """Secret key."""
        ...

    @property
    def session_token(self) -> str | None:
        """Session token."""
        ...

    @property
    def expiration_epoch(self) -> float | None:
        """Expiry as a UNIX time."""
        ...


class Broker(Protocol):
    """Caches and refreshes credentials of assumed roles (``stowage.aws.broker.CredentialBroker``)."""

    def credentials(
        self,
        *,
        role_arn: str,
        external_id: str | None,
        session_name: str,
        region: str,
        session_policy: str | None = None,
    ) -> Temporary:
        """Cached credentials for a role."""
        ...


class LocationSource(Protocol):
    """Reads a saved location with its secrets (``LocationService.spec_for_agent``)."""

    def spec_for_agent(self, location_id: str) -> tuple[LocationSpec, str, str, str]:
        """Spec, project id, project name, External ID."""
        ...


class IdentitySource(Protocol):
    """The control plane's AWS identity; raises ``StsUnavailable``."""

    def identity(self) -> Any:
        """An object with ``account_id`` and ``arn``."""
        ...


@dataclass(frozen=True, slots=True)
class VendedCredentials:
    """Credentials handed to one cluster for one location; secret and token never appear in repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime
    # UNIX time after which the cached answer is stale (the broker refreshes from then on).
    refresh_at: float = 0.0

    @property
    def expiration_iso(self) -> str:
        """Expiry as ISO-8601 UTC with a ``Z`` (what botocore's container provider parses)."""
        return self.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Location:
    """A location as vending needs it, cached for a few seconds."""

    id: str
    spec: LocationSpec
    project_id: str
    project_name: str
    tenant_id: str
    external_id: str
    partition: str
    loaded_at: float


@dataclass(frozen=True, slots=True)
class AgentLocation:
    """What an agent needs to reach a location itself: where it is and, in direct mode, which role to assume."""

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
    # The statement account A needs in the role's trust policy (direct mode with a known cluster account).
    trust_statement: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class IssuanceView:
    """One audited issuance."""

    id: str
    cluster_id: str
    cluster_name: str
    location_id: str
    location_name: str
    access_key_id_prefix: str
    expires_at: datetime | None
    issued_at: datetime


class VendingService:
    """Per-cluster temporary credentials for brokered STS locations, the direct-mode view, and the audit."""

    # Long enough to take the database off the hot path, short enough that edits and deletes of a location
    # (made through another service, possibly on another server) reach agents within seconds.
    SPEC_CACHE_SECONDS = 5.0

    def __init__(
        self,
        *,
        db: Database,
        locations: LocationSource,
        broker: Broker,
        identity: IdentitySource | None,
        refresh_seconds: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._locations = locations
        self._broker = broker
        self._identity = identity
        self._refresh = refresh_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._reload_locks: dict[str, threading.Lock] = {}
        self._specs: dict[str, _Location] = {}
        self._creds: dict[tuple[str, str], VendedCredentials] = {}
        # The access key last written to the audit per (location, cluster): a new key is a new issuance.
        self._audited: dict[tuple[str, str], str] = {}
        self._last_prune = 0.0
        self._refreshing: set[tuple[str, str]] = set()
        self._executor: ThreadPoolExecutor | None = None
        # An edited or deleted location (or a rotated External ID) leaves the caches when the change commits.
        db.changes.subscribe(LOCATION_TOPIC, self.forget_location)

    # -- vending -------------------------------------------------------------------------------------
    def cached_credentials(self, agent: AgentPrincipal, location_id: str) -> VendedCredentials | None:
        """Fresh credentials from memory, or None when ``credentials`` must run; never blocks on I/O.

        Raises the same refusals as ``credentials`` when the cached location already decides them.
        """
        hit = self._cached(agent, location_id)
        self._metrics.vending_cache_lookup(hit=hit is not None)
        if hit is not None:
            self._metrics.vending_request("cached")
        return hit

    def _cached(self, agent: AgentPrincipal, location_id: str) -> VendedCredentials | None:
        location = self._specs.get(location_id)
        if location is None or self._monotonic() - location.loaded_at > self.SPEC_CACHE_SECONDS:
            return None
        try:
            self._authorize(agent, location)
        except errors.StowageError:
            self._metrics.vending_request("refused")
            raise
        key = (location_id, agent.cluster_id)
        hit = self._creds.get(key)
        if hit is None:
            return None
        now = self._clock()
        if now < hit.refresh_at:
            return hit
        if now < hit.expiration.timestamp() - self._refresh / 2:
            # In the first half of the refresh window: answer with what we have, and let one background
            # refresh replace it, so no agent waits for STS (or for the STS rate limit) just because it is due.
            self._refresh_in_background(agent, location_id, key)
            return hit
        return None

    def _refresh_in_background(self, agent: AgentPrincipal, location_id: str, key: tuple[str, str]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stowage-vending")
            executor = self._executor

        def refresh() -> None:
            try:
                self._credentials(agent, location_id)  # not an agent's request: not counted as one
            except Exception as exc:  # noqa: BLE001 - the next request retries, and in the foreground if it must
                log.warning("background refresh of %s for cluster %s failed: %s", location_id, agent.cluster_id, exc)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        executor.submit(refresh)

    def close(self) -> None:
        """Stop the background refresh threads."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def credentials(self, agent: AgentPrincipal, location_id: str) -> VendedCredentials:
        """Credentials for the agent's own prefix of a location (may call the database and STS)."""
        try:
            vended = self._credentials(agent, location_id)
        except errors.StowageError:
            self._metrics.vending_request("refused")
            raise
        self._metrics.vending_request("issued")
        return vended

    def _credentials(self, agent: AgentPrincipal, location_id: str) -> VendedCredentials:
        location = self._location(location_id)
        self._authorize(agent, location)
        key = (location_id, agent.cluster_id)
        hit = self._creds.get(key)
        if hit is not None and self._clock() < hit.refresh_at:
            return hit
        vended = self._assume(agent, location, self._session_policy(location, agent.cluster_id))
        with self._lock:
            if len(self._creds) > _CREDS_SOFT_LIMIT:
                now = self._clock()
                self._creds = {k: v for k, v in self._creds.items() if v.expiration.timestamp() > now}
            self._creds[key] = vended
        return vended

    def job_credentials(
        self, agent: AgentPrincipal, location_id: str, policy_of: Callable[[LocationSpec, str], Policy]
    ) -> VendedCredentials:
        """Credentials confined to one job (``policy_of(spec, partition)`` gives its session policy).

        Not cached here: the broker already caches per (role, External ID, session policy), so every poll of
        the same job's credentials is answered from memory until they are due for refresh.
        """
        location = self._location(location_id)
        self._authorize(agent, location)
        rendered = render_compact(policy_of(location.spec, location.partition))
        problem = session_policy_problem(rendered)
        if problem:
            raise errors.Conflict(problem, details={"reason": "session_policy_too_long"})
        return self._assume(agent, location, rendered)

    def _assume(self, agent: AgentPrincipal, location: _Location, session_policy: str) -> VendedCredentials:
        creds = location.spec.credentials
        assert isinstance(creds, StsCredentials)  # _authorize refused everything else
        temporary = self._broker.credentials(
            role_arn=creds.role_arn,
            external_id=location.external_id,
            session_name=agent_session_name(location.project_name, agent.cluster_name),
            region=location.spec.region,
            session_policy=session_policy,
        )
        expires = temporary.expiration_epoch
        if expires is None:  # STS always sets one; a stand-in keeps the contract's shape
            expires = self._clock() + 3600
        vended = VendedCredentials(
            access_key_id=temporary.access_key_id,
            secret_access_key=temporary.secret_access_key,
            session_token=temporary.session_token or "",
            expiration=datetime.fromtimestamp(expires, UTC),
            refresh_at=expires - self._refresh,
        )
        self._audit(agent, location, vended)
        return vended

    def agent_location(self, agent: AgentPrincipal, location_id: str) -> AgentLocation:
        """Where a location is and how the agent reaches it (role and External ID for direct mode)."""
        location = self._location(location_id)
        self._check_project(agent, location)
        spec = location.spec
        creds = spec.credentials
        sts = isinstance(creds, StsCredentials)
        trust: dict[str, Any] | None = None
        if sts and spec.agent_access is AgentAccess.DIRECT and agent.cloud_account_id:
            trust = policies.direct_cluster_trust_statement(
                external_id=location.external_id,
                partition=location.partition,
                cluster_account_id=agent.cloud_account_id,
            )
        return AgentLocation(
            id=location.id,
            name=spec.name,
            project=location.project_name,
            provider=spec.provider,
            bucket=spec.bucket,
            region=spec.region,
            prefix=spec.prefix,
            cluster_prefix=cluster_prefix(spec.prefix, agent.cluster_id),
            s3_url=spec.s3_url,
            force_path_style=spec.force_path_style,
            ca_cert=spec.ca_cert,
            kms_key_arn=spec.kms_key_arn,
            volume_snapshots=spec.volume_snapshots,
            agent_access=spec.agent_access,
            credential_type=creds.type,
            role_arn=creds.role_arn if isinstance(creds, StsCredentials) else None,
            # The External ID is only needed (and only disclosed) when the agent assumes the role itself.
            external_id=location.external_id if sts and spec.agent_access is AgentAccess.DIRECT else None,
            session_name=agent_session_name(location.project_name, agent.cluster_name),
            session_policy=cluster_session_policy(spec, agent.cluster_id, partition=location.partition),
            trust_statement=trust,
        )

    def forget_location(self, location_id: str | None = None) -> None:
        """Drop cached state of one location (or all), e.g. after it changed on this server."""
        with self._lock:
            if location_id is None:
                self._specs.clear()
                self._creds.clear()
                return
            self._specs.pop(location_id, None)
            for key in [k for k in self._creds if k[0] == location_id]:
                del self._creds[key]

    # -- trust policy for a cluster ------------------------------------------------------------------
    def trust_policy(
        self, principal: Principal, project_ref: str, cluster_ref: str, location_id: str
    ) -> dict[str, Any]:
        """The trust policy a location's role needs for a cluster, by the location's agent access."""
        require(principal, Permission.READ)
        if self._identity is None:
            raise errors.StsUnavailable("The control plane has no AWS identity configured.")
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            cluster = session.scalar(
                select(Cluster).where(
                    Cluster.project_id == project.id,
                    or_(Cluster.id == cluster_ref, Cluster.name == cluster_ref),
                )
            )
            if cluster is None:
                raise errors.NotFound(f"No cluster '{cluster_ref}' in project '{project.name}'.")
            row = session.scalar(select(Location).where(Location.id == location_id, Location.project_id == project.id))
            if row is None:
                raise errors.NotFound(f"No backup location '{location_id}' in project '{project.name}'.")
            access, region, account = row.agent_access, row.region, cluster.cloud_account_id
            external_id = project.external_id
        if access == AgentAccess.DIRECT.value and not account:
            raise errors.InvalidInput(
                "Direct access needs the cluster's AWS account: re-register the cluster with --cloud-account-id.",
                field="cloudAccountId",
            )
        identity = self._identity.identity()
        return {
            "agentAccess": access,
            "trustPolicy": policies.agent_trust_policy(
                platform_account_id=str(identity.account_id),
                external_id=external_id,
                agent_access=access,
                partition=partition_for_region(region),
                cluster_account_id=account,
            ),
        }

    # -- audit ---------------------------------------------------------------------------------------
    def issuances(
        self,
        principal: Principal,
        project_ref: str,
        *,
        location_id: str | None = None,
        cluster_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[IssuanceView]:
        """Audited issuances of a project, newest first, optionally for one location and/or cluster."""
        require(principal, Permission.READ)
        if not 1 <= limit <= MAX_ISSUANCES_PAGE:
            raise errors.InvalidInput(f"limit must be between 1 and {MAX_ISSUANCES_PAGE}.", field="limit")
        if offset < 0:
            raise errors.InvalidInput("offset must be 0 or more.", field="offset")
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            query = select(CredentialIssuance).where(CredentialIssuance.project_id == project.id)
            if location_id:
                query = query.where(CredentialIssuance.location_id == location_id)
            if cluster_id:
                query = query.where(CredentialIssuance.cluster_id == cluster_id)
            rows = session.scalars(
                query.order_by(CredentialIssuance.issued_at.desc(), CredentialIssuance.id).limit(limit).offset(offset)
            )
            return [
                IssuanceView(
                    id=r.id,
                    cluster_id=r.cluster_id,
                    cluster_name=r.cluster_name,
                    location_id=r.location_id,
                    location_name=r.location_name,
                    access_key_id_prefix=r.access_key_id_prefix,
                    expires_at=r.expires_at,
                    issued_at=r.issued_at,
                )
                for r in rows
            ]

    def _audit(self, agent: AgentPrincipal, location: _Location, vended: VendedCredentials) -> None:
        key = (location.id, agent.cluster_id)
        with self._lock:
            if self._audited.get(key) == vended.access_key_id:
                return  # the broker answered from its cache: already logged
            self._audited[key] = vended.access_key_id
        now = utcnow()
        try:
            with self._db.session() as session:
                session.add(
                    CredentialIssuance(
                        project_id=location.project_id,
                        cluster_id=agent.cluster_id,
                        cluster_name=agent.cluster_name,
                        location_id=location.id,
                        location_name=location.spec.name,
                        access_key_id_prefix=vended.access_key_id[:ACCESS_KEY_PREFIX_CHARS],
                        expires_at=vended.expiration,
                        issued_at=now,
                    )
                )
                if self._monotonic() - self._last_prune > 3600:
                    self._last_prune = self._monotonic()
                    cutoff = now - timedelta(days=AUDIT_RETENTION_DAYS)
                    session.execute(delete(CredentialIssuance).where(CredentialIssuance.issued_at < cutoff))
        except BaseException:
            # Unaudited credentials are never handed out: forget the key so the next request logs it again.
            with self._lock:
                if self._audited.get(key) == vended.access_key_id:
                    del self._audited[key]
            raise

    # -- helpers -------------------------------------------------------------------------------------
    def _location(self, location_id: str) -> _Location:
        cached = self._specs.get(location_id)
        if cached is not None and self._monotonic() - cached.loaded_at <= self.SPEC_CACHE_SECONDS:
            return cached
        with self._lock:
            if len(self._reload_locks) > _CREDS_SOFT_LIMIT:
                self._reload_locks.clear()
            reload_lock = self._reload_locks.setdefault(location_id, threading.Lock())
        # One reload per location at a time: the requests that arrive meanwhile take its result.
        with reload_lock:
            cached = self._specs.get(location_id)
            if cached is not None and self._monotonic() - cached.loaded_at <= self.SPEC_CACHE_SECONDS:
                return cached
            return self._load_location(location_id)

    def _load_location(self, location_id: str) -> _Location:
        spec, project_id, project_name, external_id = self._locations.spec_for_agent(location_id)
        with self._db.session() as session:
            project = session.get(Project, project_id)
            if project is None:
                raise errors.NotFound(f"No location with id '{location_id}'.")
            tenant_id = project.tenant_id
        loaded = _Location(
            id=location_id,
            spec=spec,
            project_id=project_id,
            project_name=project_name,
            tenant_id=tenant_id,
            external_id=external_id,
            partition=partition_for_region(spec.region) if spec.provider is Provider.AWS else "aws",
            loaded_at=self._monotonic(),
        )
        with self._lock:
            previous = self._specs.get(location_id)
            if previous is not None and (previous.spec, previous.external_id) != (spec, external_id):
                # The location (bucket, role, prefix...) or the External ID changed: old credentials must go.
                for key in [k for k in self._creds if k[0] == location_id]:
                    del self._creds[key]
            self._specs[location_id] = loaded
        return loaded

    @staticmethod
    def _check_project(agent: AgentPrincipal, location: _Location) -> None:
        if location.tenant_id != agent.tenant_id:
            # Another tenant's location is "not found", as for users: tenants cannot probe each other.
            raise errors.NotFound(f"No location with id '{location.id}'.")
        if location.project_id != agent.project_id:
            raise errors.Forbidden(
                f"Cluster '{agent.cluster_name}' belongs to project '{agent.project_name}', and location "
                f"'{location.spec.name}' to project '{location.project_name}': agents only get credentials "
                "for locations of their own project."
            )

    def _authorize(self, agent: AgentPrincipal, location: _Location) -> None:
        self._check_project(agent, location)
        spec = location.spec
        if isinstance(spec.credentials, StaticCredentials):
            raise errors.Conflict(
                f"Location '{spec.name}' uses static access keys, so there are no temporary credentials to vend: "
                "dynamic credentials need an STS location (credentials type 'sts' with a role ARN). Stowage does "
                "not hand out long-lived keys to agents.",
                details={"reason": "static_credentials"},
            )
        if spec.agent_access is AgentAccess.DIRECT:
            raise errors.Conflict(
                f"Location '{spec.name}' uses direct agent access: the agent assumes the role itself from its own "
                f"AWS account with the External ID. Read GET /api/v1/agent/locations/{location.id} for the role "
                "ARN and External ID, or switch the location to agentAccess 'brokered'.",
                details={"reason": "direct_access", "agentAccess": "direct"},
            )

    @staticmethod
    def _session_policy(location: _Location, cluster_id: str) -> str:
        # Built on the miss path only (once per refresh window), so it is not worth a cache of its own.
        rendered = render_compact(cluster_session_policy(location.spec, cluster_id, partition=location.partition))
        problem = session_policy_problem(rendered)
        if problem:
            raise errors.Conflict(problem, details={"reason": "session_policy_too_long"})
        return rendered
