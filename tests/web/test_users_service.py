"""The user service on a real database: bootstrap, argon2 sign-in, throttling, sessions, management."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from stowage import errors
from stowage.domain.access import Principal, Role
from stowage.errors import LoginThrottled
from stowage.services.tenancy import TenancyService
from stowage.services.users import LoginThrottle, UserService
from stowage.store.database import Database
from stowage.store.tables import LoginFailure


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database (SQLite and PostgreSQL) with the default tenant."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def _service(db: Database, clock: FakeClock | None = None) -> UserService:
    # Cheap argon2 parameters keep the test fast; production uses the library's defaults.
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    throttle = LoginThrottle(db, clock=clock) if clock else None
    return UserService(db, hasher=hasher, throttle=throttle)


def test_bootstrap_generates_a_password_once_and_stores_it_privately(db: Database, tmp_path: Path) -> None:
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    users = _service(db)
    password = users.bootstrap(data_dir=tmp_path, email="Admin@Example.com", password=None)
    assert password
    path = tmp_path / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().split() == ["admin@example.com", password]
    assert users.bootstrap(data_dir=tmp_path, email="admin@example.com", password=None) is None
    user = users.login("ADMIN@example.com ", password, client="1.2.3.4")
    assert user.role is Role.ADMIN
    assert user.principal.kind == "user"
    assert user.principal.subject == "user:admin@example.com"
    assert user.last_login_at is not None


def test_env_password_on_an_existing_database_resets_it(db: Database, tmp_path: Path) -> None:
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    users = _service(db)
    users.bootstrap(data_dir=tmp_path, email="admin@example.com", password="first-password")
    users.bootstrap(data_dir=tmp_path, email="admin@example.com", password="second-password")
    users.login("admin@example.com", "second-password", client="c")
    with pytest.raises(errors.Unauthenticated):
        users.login("admin@example.com", "first-password", client="c")
    users.bootstrap(data_dir=tmp_path, email="ops@example.com", password="ops-password-1")
    assert users.login("ops@example.com", "ops-password-1", client="c").role is Role.ADMIN
    with pytest.raises(errors.InvalidInput, match="STOWAGE_ADMIN_PASSWORD"):
        users.bootstrap(data_dir=tmp_path, email="admin@example.com", password="short")


def test_throttle_blocks_after_five_failures_then_recovers(db: Database, tmp_path: Path) -> None:
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    clock = FakeClock()
    users = _service(db, clock)
    users.bootstrap(data_dir=tmp_path, email="a@example.com", password="the-password")
    for _ in range(5):
        with pytest.raises(errors.Unauthenticated) as wrong:
            users.login("a@example.com", "nope", client="10.0.0.1")
        assert not isinstance(wrong.value, LoginThrottled)
    with pytest.raises(LoginThrottled) as blocked:
        users.login("a@example.com", "the-password", client="10.0.0.1")
    assert 1 <= blocked.value.retry_after <= 60
    # Another address, or another email, is not blocked.
    users.login("a@example.com", "the-password", client="10.0.0.2")
    clock.now += 61
    users.login("a@example.com", "the-password", client="10.0.0.1")


def test_throttle_is_shared_by_every_server_process(db: Database, tmp_path: Path) -> None:
    """Two services on one database stand for two server processes behind a load balancer."""
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    clock = FakeClock()
    first, second = _service(db, clock), _service(db, clock)
    first.bootstrap(data_dir=tmp_path, email="a@example.com", password="the-password")
    for users in (first, second, first, second, first):
        with pytest.raises(errors.Unauthenticated):
            users.login("a@example.com", "nope", client="10.0.0.9")
    with pytest.raises(LoginThrottled):
        second.login("a@example.com", "the-password", client="10.0.0.9")


def test_throttle_keeps_only_hashed_keys_and_drops_old_failures(db: Database) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(db, clock=clock)
    for i in range(50):
        throttle.failed(f"user{i}@example.com|10.0.0.1")
    with db.session() as session:
        keys = session.scalars(select(LoginFailure.key_hash)).all()
    assert len(keys) == 50 and not any("example.com" in k for k in keys)
    clock.now += 61
    throttle.failed("late@example.com|10.0.0.1")
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_sessions_end_when_the_password_changes(db: Database, tmp_path: Path) -> None:
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    users = _service(db)
    users.bootstrap(data_dir=tmp_path, email="a@example.com", password="the-password")
    user = users.login("a@example.com", "the-password", client="c")
    assert users.session_user(user.id, user.session_stamp).email == "a@example.com"
    with pytest.raises(errors.InvalidInput, match="current password is wrong"):
        users.change_password(user.id, "nope", "another-password")
    changed = users.change_password(user.id, "the-password", "another-password")
    with pytest.raises(errors.Unauthenticated):
        users.session_user(user.id, user.session_stamp)
    assert users.session_user(user.id, changed.session_stamp).id == user.id
    with pytest.raises(errors.Unauthenticated):
        users.session_user("no-such-id", changed.session_stamp)


def test_management_is_for_admins_and_keeps_one_admin(db: Database, tmp_path: Path) -> None:
    TenancyService(db).bootstrap(data_dir=tmp_path, admin_token="stw_x")
    users = _service(db)
    users.bootstrap(data_dir=tmp_path, email="root@example.com", password="the-password")
    root = users.login("root@example.com", "the-password", client="c")
    editor = users.create_user(root.principal, email="Ed@Example.com", password="editor-password", role=Role.EDITOR)
    assert editor.email == "ed@example.com"
    with pytest.raises(errors.Conflict):
        users.create_user(root.principal, email="ed@example.com", password="editor-password", role=Role.VIEWER)
    with pytest.raises(errors.InvalidInput, match="email"):
        users.create_user(root.principal, email="not-an-email", password="editor-password", role=Role.VIEWER)
    with pytest.raises(errors.Forbidden):
        users.list_users(editor.principal)
    with pytest.raises(errors.Conflict, match="your own account"):
        users.delete_user(root.principal, root.id, acting_user_id=root.id)
    with pytest.raises(errors.Conflict, match="last admin"):
        users.delete_user(root.principal, root.id)
    stranger = Principal(tenant_id="another-tenant", role=Role.ADMIN, subject="x")
    with pytest.raises(errors.NotFound):
        users.delete_user(stranger, editor.id)
    users.delete_user(root.principal, editor.id)
    assert [u.email for u in users.list_users(root.principal)] == ["root@example.com"]
