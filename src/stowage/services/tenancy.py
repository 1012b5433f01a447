"""Tenants, projects, API tokens and the first-start bootstrap."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal, Role, allows
from stowage.domain.naming import project_name_problem
from stowage.store.changes import LOCATION_TOPIC
from stowage.store.database import Database
from stowage.store.tables import ApiToken, Project, Tenant, utcnow

DEFAULT_TENANT = "default"
DEFAULT_PROJECT = "default"
TOKEN_PREFIX = "stw_"


def new_external_id() -> str:
    """A fresh External ID: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    """A fresh API token (256 bits of randomness)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens are high-entropy, so a fast hash is enough and keeps auth cheap."""
    return hashlib.sha256(token.encode()).hexdigest()


def require(principal: Principal, permission: Permission) -> None:
    """Raise ``Forbidden`` unless the principal's role grants the permission."""
    if not allows(principal.role, permission):
        raise errors.Forbidden(f"Your role '{principal.role}' does not allow this action ({permission}).")


@dataclass(frozen=True, slots=True)
class ProjectView:
    """A project as shown to users."""

    id: str
    name: str
    external_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TokenView:
    """An API token without its secret."""

    id: str
    name: str
    role: Role
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _project_view(row: Project) -> ProjectView:
    return ProjectView(id=row.id, name=row.name, external_id=row.external_id, created_at=row.created_at)


def _token_view(row: ApiToken) -> TokenView:
    return TokenView(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        hint=row.hint,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


# What every adapter tells the person who rotated an External ID.
ROTATION_WARNING = (
    "The External ID changed. Every IAM role that trusts the old External ID now refuses Stowage: update the "
    "sts:ExternalId condition of their trust policies, then re-validate the locations."
)


class TenancyService:
    """Use cases around tenants, projects and tokens."""

    # Authenticated tokens are remembered briefly so hot paths don't hit the database on every call.
    AUTH_CACHE_SECONDS = 5.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._auth_cache: dict[str, tuple[float, Principal]] = {}
        self._auth_lock = threading.Lock()

    # -- bootstrap ---------------------------------------------------------------------------------
    def bootstrap(self, *, data_dir: Path, admin_token: str | None) -> str | None:
        """On an empty database create tenant/project ``default`` and an admin token.

        Returns the generated token when one was generated (to print once), else None.
        """
        admin_token = admin_token or None  # an empty STOWAGE_ADMIN_TOKEN means "generate one"
        with self._db.session() as session:
            tenant = session.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
            generated: str | None = None
            if tenant is None:
                tenant = Tenant(name=DEFAULT_TENANT)
                session.add(tenant)
                session.flush()
                session.add(Project(tenant_id=tenant.id, name=DEFAULT_PROJECT, external_id=new_external_id()))
                token = admin_token or new_token()
                session.add(
                    ApiToken(
                        tenant_id=tenant.id,
                        name="admin",
                        role=Role.ADMIN.value,
                        token_hash=hash_token(token),
                        hint=token[-4:],
                    )
                )
                if admin_token is None:
                    generated = token
                    _write_private(data_dir / "admin-token", token + "\n")
            elif (
                admin_token
                and session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(admin_token))) is None
            ):
                # An operator who sets STOWAGE_ADMIN_TOKEN on an existing database expects it to work.
                session.add(
                    ApiToken(
                        tenant_id=tenant.id,
                        name="admin (STOWAGE_ADMIN_TOKEN)",
                        role=Role.ADMIN.value,
                        token_hash=hash_token(admin_token),
                        hint=admin_token[-4:],
                    )
                )
        return generated

    # -- authentication ----------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token; ``Unauthenticated`` when missing, unknown or revoked."""
        if not token:
            raise errors.Unauthenticated("Missing bearer token: send 'Authorization: Bearer <token>'.")
        digest = hash_token(token)
        now = time.monotonic()
        with self._auth_lock:
            hit = self._auth_cache.get(digest)
            if hit is not None and hit[0] > now:
                return hit[1]
        with self._db.session() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                raise errors.Unauthenticated("Unknown token: check STOWAGE_TOKEN or create a new token.")
            if row.revoked_at is not None:
                raise errors.Unauthenticated("This token was revoked: ask an admin for a new one.")
            principal = Principal(tenant_id=row.tenant_id, role=Role(row.role), subject=f"token:{row.name}")
            if row.last_used_at is None or (utcnow() - row.last_used_at).total_seconds() > 60:
                row.last_used_at = utcnow()
        with self._auth_lock:
            self._auth_cache[digest] = (now + self.AUTH_CACHE_SECONDS, principal)
        return principal

    def _forget_cached_auth(self) -> None:
        with self._auth_lock:
            self._auth_cache.clear()

    # -- tokens ------------------------------------------------------------------------------------
    def create_token(self, principal: Principal, *, name: str, role: Role) -> tuple[str, TokenView]:
        """Create a token in the caller's tenant; the plaintext is returned once."""
        require(principal, Permission.MANAGE_TOKENS)
        name = name.strip()
        if not name or len(name) > 100:
            raise errors.InvalidInput("Token name must be 1–100 characters.", field="name")
        token = new_token()
        with self._db.session() as session:
            row = ApiToken(
                tenant_id=principal.tenant_id,
                name=name,
                role=role.value,
                token_hash=hash_token(token),
                hint=token[-4:],
            )
            session.add(row)
            session.flush()
            return token, _token_view(row)

    def list_tokens(self, principal: Principal) -> list[TokenView]:
        """Tokens of the caller's tenant."""
        require(principal, Permission.MANAGE_TOKENS)
        with self._db.session() as session:
            rows = session.scalars(
                select(ApiToken).where(ApiToken.tenant_id == principal.tenant_id).order_by(ApiToken.created_at)
            )
            return [_token_view(r) for r in rows]

    def revoke_token(self, principal: Principal, token_id: str) -> TokenView:
        """Revoke a token of the caller's tenant (idempotent)."""
        require(principal, Permission.MANAGE_TOKENS)
        with self._db.session() as session:
            row = session.scalar(
                select(ApiToken).where(ApiToken.id == token_id, ApiToken.tenant_id == principal.tenant_id)
            )
            if row is None:
                raise errors.NotFound(f"No token with id '{token_id}' in your tenant.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            view = _token_view(row)
        self._forget_cached_auth()
        return view

    # -- projects ----------------------------------------------------------------------------------
    def list_projects(self, principal: Principal) -> list[ProjectView]:
        """Projects of the caller's tenant."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            rows = session.scalars(
                select(Project).where(Project.tenant_id == principal.tenant_id).order_by(Project.name)
            )
            return [_project_view(r) for r in rows]

    def create_project(self, principal: Principal, name: str) -> ProjectView:
        """Create a project with its own External ID."""
        require(principal, Permission.MANAGE_PROJECTS)
        problem = project_name_problem(name)
        if problem:
            raise errors.InvalidInput(problem, field="name")
        try:
            with self._db.session() as session:
                row = Project(tenant_id=principal.tenant_id, name=name, external_id=new_external_id())
                session.add(row)
                session.flush()
                return _project_view(row)
        except IntegrityError as exc:
            raise errors.Conflict(f"A project named '{name}' already exists; pick another name.") from exc

    def project(self, principal: Principal, ref: str) -> ProjectView:
        """A project of the caller's tenant by name or id; another tenant's project is 404."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            return _project_view(load_project(session, principal, ref))

    def rotate_external_id(self, principal: Principal, ref: str) -> ProjectView:
        """Replace the project's External ID (breaks every role that trusts the old one)."""
        require(principal, Permission.ROTATE_EXTERNAL_ID)
        with self._db.session() as session:
            row = load_project(session, principal, ref)
            row.external_id = new_external_id()
            row.external_id_rotated_at = utcnow()
            # Credentials vended under the old ID must go; which locations are affected is not worth a query.
            self._db.changes.publish(session, LOCATION_TOPIC, "")
            return _project_view(row)


def load_project(session: Session, principal: Principal, ref: str) -> Project:
    """Load a project of the principal's tenant by name or id, or raise ``NotFound``."""
    row = session.scalar(
        select(Project).where(Project.tenant_id == principal.tenant_id, or_(Project.name == ref, Project.id == ref))
    )
    if row is None:
        raise errors.NotFound(f"No project '{ref}' in your tenant. List them with `stowage projects list`.")
    return row


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)
