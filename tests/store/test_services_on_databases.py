"""Tenancy and location services on a real SQLite file and a real PostgreSQL database (throw-away)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from stowage import errors
from stowage.config import Settings
from stowage.domain.access import Principal, Role
from stowage.domain.checks import CheckResult, ValidationReport
from stowage.domain.locations import LocationSpec, LocationStatus, Provider, StaticCredentials, StsCredentials
from stowage.services.locations import HISTORY_KEPT, LocationService
from stowage.services.tenancy import TenancyService
from stowage.store.database import Database
from stowage.store.secrets import SecretBox
from stowage.store.tables import Location, ValidationRecord


class StaticOnlyValidator:
    """Answers with a fixed verdict. Stands in for AWS, which these storage tests don't reach."""

    def __init__(self) -> None:
        self.ok = True

    def validate(
        self, spec: LocationSpec, *, project_name: str, external_id: str, live: bool = True
    ) -> ValidationReport:
        status = (
            CheckResult.passed("bucket-name", "ok")
            if self.ok
            else CheckResult.failed("s3:PutObject", "denied", "add it")
        )
        return ValidationReport.of([status])


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def tenancy(db: Database, tmp_path: Path) -> TenancyService:
    service = TenancyService(db)
    service.bootstrap(data_dir=tmp_path, admin_token="stw_admin_for_tests")
    return service


@pytest.fixture
def admin(tenancy: TenancyService) -> Principal:
    return tenancy.authenticate("stw_admin_for_tests")


@pytest.fixture
def validator() -> StaticOnlyValidator:
    return StaticOnlyValidator()


@pytest.fixture
def locations(db: Database, validator: StaticOnlyValidator) -> LocationService:
    return LocationService(db=db, box=SecretBox.from_passphrase("test-key"), validator=validator)


def sts_spec(name: str, **kw: object) -> LocationSpec:
    return LocationSpec(
        name=name,
        provider=Provider.AWS,
        bucket=f"{name}-bucket",
        region="us-east-1",
        credentials=StsCredentials("arn:aws:iam::222222222222:role/r"),
        **kw,
    )  # type: ignore[arg-type]


def test_migrations_are_idempotent_and_create_all_tables(db: Database) -> None:
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert {"tenants", "projects", "api_tokens", "locations", "validations", "alembic_version"} <= tables


def test_bootstrap_runs_once(tenancy: TenancyService, admin: Principal, tmp_path: Path) -> None:
    assert tenancy.bootstrap(data_dir=tmp_path, admin_token=None) is None
    assert [p.name for p in tenancy.list_projects(admin)] == ["default"]
    assert admin.role is Role.ADMIN


def test_tokens_are_hashed_and_revocable(tenancy: TenancyService, admin: Principal, db: Database) -> None:
    token, view = tenancy.create_token(admin, name="ci", role=Role.EDITOR)
    with db.session() as session:
        from stowage.store.tables import ApiToken

        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert token not in stored and all(len(h) == 64 for h in stored)
    assert tenancy.authenticate(token).role is Role.EDITOR
    tenancy.revoke_token(admin, view.id)
    with pytest.raises(errors.Unauthenticated):
        tenancy.authenticate(token)


def test_location_roundtrip_with_encrypted_secret(locations: LocationService, admin: Principal, db: Database) -> None:
    secret = "very-secret-value-1234"
    spec = LocationSpec(
        name="static",
        provider=Provider.S3_COMPATIBLE,
        bucket="b-static",
        region="minio",
        credentials=StaticCredentials("AKIAEXAMPLE0000000", secret),
        s3_url="https://s3.local",
    )
    saved = locations.create(admin, "default", spec)
    assert saved.status is LocationStatus.AVAILABLE and saved.spec.credentials.secret_access_key != secret
    assert saved.masked_secret and saved.masked_secret.endswith("1234")
    with db.session() as session:
        row = session.get_one(Location, saved.id)
        assert row.secret_access_key_enc and secret.encode() not in row.secret_access_key_enc
    full, *_ = locations.spec_for_agent(saved.id)
    assert isinstance(full.credentials, StaticCredentials) and full.credentials.secret_access_key == secret
    assert secret not in repr(full)


def test_failed_validation_saves_nothing(
    locations: LocationService, admin: Principal, validator: StaticOnlyValidator
) -> None:
    validator.ok = False
    with pytest.raises(errors.ValidationFailed) as caught:
        locations.create(admin, "default", sts_spec("nope"))
    assert caught.value.details["report"]["ok"] is False
    assert locations.list_page(admin, "default").total == 0


def test_one_default_per_project_is_enforced_by_the_database(
    locations: LocationService, admin: Principal, db: Database
) -> None:
    first = locations.create(admin, "default", sts_spec("first"))
    second = locations.create(admin, "default", sts_spec("second", is_default=True))
    assert locations.get(admin, "default", first.id).spec.is_default is False
    assert second.spec.is_default is True
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.session() as session:
        session.get_one(Location, first.id).is_default = True


def test_history_keeps_the_last_twenty(locations: LocationService, admin: Principal, db: Database) -> None:
    saved = locations.create(admin, "default", sts_spec("hist"))
    for _ in range(HISTORY_KEPT + 5):
        locations.revalidate_by_id(saved.id, trigger="manual")
    history = locations.history(admin, "default", saved.id)
    assert len(history) == HISTORY_KEPT
    with db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(ValidationRecord).where(ValidationRecord.location_id == saved.id)
        )
    assert count == HISTORY_KEPT


def test_revalidation_updates_status(
    locations: LocationService, admin: Principal, validator: StaticOnlyValidator
) -> None:
    saved = locations.create(admin, "default", sts_spec("flip"))
    validator.ok = False
    report = locations.revalidate_by_id(saved.id)
    after = locations.get(admin, "default", saved.id)
    assert not report.ok and after.status is LocationStatus.UNAVAILABLE
    assert "s3:PutObject" in after.status_message and after.last_validated_at is not None


def test_claim_due_hands_each_location_out_once(db: Database, admin: Principal, validator: StaticOnlyValidator) -> None:
    clock_now = [datetime.now(UTC)]
    service = LocationService(
        db=db, box=SecretBox.from_passphrase("k"), validator=validator, clock=lambda: clock_now[0]
    )
    ids = {service.create(admin, "default", sts_spec(f"due{i}")).id for i in range(6)}
    assert service.claim_due() == []  # not due yet
    clock_now[0] += timedelta(hours=1)
    results: list[list[str]] = []

    def claim() -> None:
        results.append(service.claim_due(lease_seconds=600))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(ids)  # every due location exactly once


def test_search_escapes_like_wildcards(locations: LocationService, admin: Principal) -> None:
    locations.create(admin, "default", sts_spec("under_score"))
    locations.create(admin, "default", sts_spec("underXscore"))
    assert [i.spec.name for i in locations.list_page(admin, "default", search="under_").items] == ["under_score"]


def test_settings_default_database_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'stowage.db'}"
