"""People who sign in to the web UI: argon2 password hashes, roles, and login rate limiting."""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from stowage import errors
from stowage.domain.access import Permission, Principal, Role
from stowage.services.tenancy import DEFAULT_TENANT, require
from stowage.store.database import Database
from stowage.store.tables import LoginFailure, Tenant, User, utcnow

PASSWORD_MIN = 10
PASSWORD_MAX = 1024
EMAIL_MAX = 254
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 60.0
WRONG_CREDENTIALS = "Wrong email or password."


def normalize_email(email: str) -> str:
    """The stored form of an email address (trimmed, lower-case)."""
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """Why an email address is unusable, or None."""
    if not email or len(email) > EMAIL_MAX:
        return f"Enter an email address of 3–{EMAIL_MAX} characters."
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain or any(ch.isspace() for ch in email):
        return "Enter an email address like name@example.com."
    return None


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None."""
    if len(password) < PASSWORD_MIN:
        return f"Use a password of at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Use a password of at most {PASSWORD_MAX} characters."
    return None


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as shown to people; ``session_stamp`` changes whenever the password does."""

    id: str
    tenant_id: str
    email: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None
    session_stamp: str = field(repr=False)

    @property
    def principal(self) -> Principal:
        """The principal this user acts as."""
        return Principal(tenant_id=self.tenant_id, role=self.role, subject=f"user:{self.email}", kind="user")


def _view(row: User) -> UserView:
    # A digest of the (salted) hash: signed into session cookies so a password change ends every session.
    stamp = hashlib.sha256(b"stowage-session:" + row.password_hash.encode()).hexdigest()[:32]
    return UserView(
        id=row.id,
        tenant_id=row.tenant_id,
        email=row.email,
        role=Role(row.role),
        created_at=row.created_at,
        last_login_at=row.last_login_at,
        session_stamp=stamp,
    )


class LoginThrottle:
    """Counts failed sign-ins per key in a sliding window, in the database shared by every server process."""

    def __init__(
        self,
        db: Database,
        *,
        max_failures: int = LOGIN_MAX_FAILURES,
        window_seconds: float = LOGIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._max = max_failures
        self._window = window_seconds
        # Wall-clock epoch seconds: several processes (and hosts) compare the same timestamps.
        self._clock = clock

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again (0 when it may try now)."""
        now = self._clock()
        with self._db.session() as session:
            recent = session.scalars(
                select(LoginFailure.failed_at)
                .where(LoginFailure.key_hash == _digest(key), LoginFailure.failed_at > now - self._window)
                .order_by(LoginFailure.failed_at.desc())
                .limit(self._max)
            ).all()
        if len(recent) < self._max:
            return 0
        # Blocked until the oldest of the last ``max`` failures leaves the window.
        return max(1, math.ceil(recent[-1] + self._window - now))

    def failed(self, key: str) -> None:
        """Record a failed attempt (and drop failures that left the window, so the table stays small)."""
        now = self._clock()
        with self._db.session() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - self._window))
            session.add(LoginFailure(key_hash=_digest(key), failed_at=now))

    def reset(self, key: str) -> None:
        """Forget the failures of a key (after a successful sign-in)."""
        with self._db.session() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.key_hash == _digest(key)))


def _digest(key: str) -> str:
    # Email and client address are personal data: the table needs only to tell keys apart.
    return hashlib.sha256(key.encode()).hexdigest()


class UserService:
    """Users of the web UI: bootstrap, sign-in, sessions, and management by admins."""

    def __init__(
        self, db: Database, *, hasher: PasswordHasher | None = None, throttle: LoginThrottle | None = None
    ) -> None:
        self._db = db
        self._hasher = hasher or PasswordHasher()
        self._throttle = throttle or LoginThrottle(db)
        self._dummy_hash: str | None = None

    # -- bootstrap ---------------------------------------------------------------------------------
    def bootstrap(self, *, data_dir: Path, email: str, password: str | None) -> str | None:
        """Create the first admin when there are no users; returns a generated password to show once."""
        email = normalize_email(email)
        problem = email_problem(email)
        if problem:
            raise errors.InvalidInput(f"STOWAGE_ADMIN_EMAIL: {problem}", field="admin_email")
        if password is not None and password_problem(password):
            raise errors.InvalidInput(f"STOWAGE_ADMIN_PASSWORD: {password_problem(password)}", field="admin_password")
        generated: str | None = None
        try:
            with self._db.session() as session:
                tenant = session.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
                if tenant is None:
                    tenant = session.scalar(select(Tenant).order_by(Tenant.created_at).limit(1))
                if tenant is None:
                    raise errors.Conflict("No tenant exists yet: bootstrap tenancy before users.")
                has_users = session.scalar(select(User.id).limit(1)) is not None
                if not has_users:
                    secret = password or secrets.token_urlsafe(18)
                    session.add(
                        User(
                            tenant_id=tenant.id,
                            email=email,
                            password_hash=self._hasher.hash(secret),
                            role=Role.ADMIN.value,
                        )
                    )
                    if password is None:
                        generated = secret
                        _write_private(data_dir / "admin-password", f"{email}\n{secret}\n")
                elif password is not None:
                    # An operator who sets STOWAGE_ADMIN_PASSWORD on an existing database expects it to work:
                    # this is also the way back in after a lost password.
                    row = session.scalar(select(User).where(User.email == email))
                    if row is None:
                        session.add(
                            User(
                                tenant_id=tenant.id,
                                email=email,
                                password_hash=self._hasher.hash(password),
                                role=Role.ADMIN.value,
                            )
                        )
                    else:
                        if not self._verify(row.password_hash, password):
                            row.password_hash = self._hasher.hash(password)
                        row.role = Role.ADMIN.value
        except IntegrityError:
            # Another server process sharing the database bootstrapped the same admin first.
            return None
        return generated

    # -- signing in --------------------------------------------------------------------------------
    def login(self, email: str, password: str, *, client: str) -> UserView:
        """Check a password; ``errors.LoginThrottled`` after too many failures for this email from this client."""
        email = normalize_email(email)
        key = f"{email}|{client}"
        wait = self._throttle.retry_after(key)
        if wait:
            raise errors.LoginThrottled(wait)
        with self._db.session() as session:
            row = session.scalar(select(User).where(User.email == email)) if len(email) <= EMAIL_MAX else None
            if row is None or len(password) > PASSWORD_MAX:
                # Hash anyway so an unknown email takes as long as a wrong password.
                self._verify(self._dummy(), password[:PASSWORD_MAX])
                self._throttle.failed(key)
                raise errors.Unauthenticated(WRONG_CREDENTIALS)
            if not self._verify(row.password_hash, password):
                self._throttle.failed(key)
                raise errors.Unauthenticated(WRONG_CREDENTIALS)
            if self._hasher.check_needs_rehash(row.password_hash):
                row.password_hash = self._hasher.hash(password)
            row.last_login_at = utcnow()
            view = _view(row)
        self._throttle.reset(key)
        return view

    def session_user(self, user_id: str, stamp: str) -> UserView:
        """The user of a session; ``Unauthenticated`` when the user is gone or changed password since."""
        with self._db.session() as session:
            row = session.get(User, user_id)
            if row is None:
                raise errors.Unauthenticated("Your account no longer exists: sign in with another one.")
            view = _view(row)
        if not secrets.compare_digest(view.session_stamp, stamp):
            raise errors.Unauthenticated("Your password was changed: sign in again.")
        return view

    def change_password(self, user_id: str, current: str, new: str) -> UserView:
        """Change one's own password (ends the user's other sessions)."""
        problem = password_problem(new)
        if problem:
            raise errors.InvalidInput(problem, field="new_password")
        with self._db.session() as session:
            row = session.get(User, user_id)
            if row is None:
                raise errors.Unauthenticated("Your account no longer exists.")
            if not self._verify(row.password_hash, current):
                raise errors.InvalidInput("The current password is wrong.", field="current_password")
            row.password_hash = self._hasher.hash(new)
            return _view(row)

    # -- management (admins) -----------------------------------------------------------------------
    def list_users(self, principal: Principal) -> list[UserView]:
        """Users of the caller's tenant."""
        # Users are credentials, so whoever may manage API tokens (admins) manages them too.
        require(principal, Permission.MANAGE_TOKENS)
        with self._db.session() as session:
            rows = session.scalars(select(User).where(User.tenant_id == principal.tenant_id).order_by(User.email))
            return [_view(r) for r in rows]

    def create_user(self, principal: Principal, *, email: str, password: str, role: Role) -> UserView:
        """Add a user to the caller's tenant."""
        require(principal, Permission.MANAGE_TOKENS)
        email = normalize_email(email)
        problem = email_problem(email)
        if problem:
            raise errors.InvalidInput(problem, field="email")
        problem = password_problem(password)
        if problem:
            raise errors.InvalidInput(problem, field="password")
        try:
            with self._db.session() as session:
                row = User(
                    tenant_id=principal.tenant_id,
                    email=email,
                    password_hash=self._hasher.hash(password),
                    role=role.value,
                )
                session.add(row)
                session.flush()
                return _view(row)
        except IntegrityError as exc:
            raise errors.Conflict(
                f"A user with the email '{email}' already exists.", details={"field": "email"}
            ) from exc

    def delete_user(self, principal: Principal, user_id: str, *, acting_user_id: str | None = None) -> None:
        """Remove a user of the caller's tenant (never oneself, never the last admin)."""
        require(principal, Permission.MANAGE_TOKENS)
        if acting_user_id == user_id:
            raise errors.Conflict("You cannot delete your own account while signed in with it.")
        with self._db.session() as session:
            row = session.scalar(select(User).where(User.id == user_id, User.tenant_id == principal.tenant_id))
            if row is None:
                raise errors.NotFound("No such user in your tenant.")
            if row.role == Role.ADMIN.value:
                admins = session.scalar(
                    select(func.count())
                    .select_from(User)
                    .where(User.tenant_id == principal.tenant_id, User.role == Role.ADMIN.value)
                )
                if (admins or 0) <= 1:
                    raise errors.Conflict("This is the last admin of the tenant; make someone else admin first.")
            session.delete(row)

    # -- helpers -----------------------------------------------------------------------------------
    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)
