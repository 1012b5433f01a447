"""Backup-location use cases: validate, create, list, update, delete, default, re-validate."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stowage import errors
from stowage.domain.access import Permission, Principal
from stowage.domain.checks import ValidationReport
from stowage.domain.locations import (
    AgentAccess,
    LocationSpec,
    LocationStatus,
    Provider,
    StaticCredentials,
    StsCredentials,
    mask_secret,
)
from stowage.domain.naming import kms_key_arn_problem, location_name_problem, prefix_problem
from stowage.services.tenancy import load_project, require
from stowage.store.changes import LOCATION_TOPIC
from stowage.store.database import Database
from stowage.store.secrets import SecretBox
from stowage.store.tables import Location, Project, ValidationRecord, utcnow

HISTORY_KEPT = 20
MAX_PAGE = 500
# Changing any of these changes what the credentials must reach, so the location must pass validation again.
REVALIDATING_FIELDS = frozenset(
    {
        "provider",
        "bucket",
        "region",
        "s3_url",
        "force_path_style",
        "ca_cert",
        "prefix",
        "kms_key_arn",
        "volume_snapshots",
        "credentials",
    }
)


class Validator(Protocol):
    """Validates a location spec (static rules, then live probes when ``live``)."""

    def validate(
        self, spec: LocationSpec, *, project_name: str, external_id: str, live: bool = True
    ) -> ValidationReport:
        """Run the checks and return the report."""
        ...


@dataclass(frozen=True, slots=True)
class SavedLocation:
    """A location as shown to users: the spec without secrets plus its state."""

    id: str
    project: str
    project_id: str
    spec: LocationSpec
    external_id: str | None
    status: LocationStatus
    status_message: str
    last_validated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    revalidate_interval_minutes: int | None

    @property
    def masked_secret(self) -> str | None:
        """The static secret, masked; None for STS."""
        creds = self.spec.credentials
        return creds.masked_secret if isinstance(creds, StaticCredentials) else None


@dataclass(frozen=True, slots=True)
class ValidationEntry:
    """One stored validation report."""

    id: str
    trigger: str
    created_at: datetime
    report: ValidationReport


@dataclass(frozen=True, slots=True)
class LocationPage:
    """A page of locations and the total that matched."""

    items: list[SavedLocation]
    total: int


class LocationService:
    """Use cases of backup locations; every call is scoped to the caller's tenant."""

    def __init__(
        self,
        *,
        db: Database,
        box: SecretBox,
        validator: Validator,
        default_interval_minutes: int = 30,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._box = box
        self._validator = validator
        self._interval = default_interval_minutes
        self._clock = clock
        self._rng = rng or random.Random()

    # -- reading -----------------------------------------------------------------------------------
    def list_page(
        self, principal: Principal, project_ref: str, *, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> LocationPage:
        """Locations of a project, filtered by a search over name, bucket and region."""
        require(principal, Permission.READ)
        if not 1 <= limit <= MAX_PAGE:
            raise errors.InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", field="limit")
        if offset < 0:
            raise errors.InvalidInput("offset must be 0 or more.", field="offset")
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            query = select(Location).where(Location.project_id == project.id)
            if search and search.strip():
                pattern = "%" + _escape_like(search.strip().lower()) + "%"
                query = query.where(
                    or_(
                        func.lower(Location.name).like(pattern, escape="\\"),
                        func.lower(Location.bucket).like(pattern, escape="\\"),
                        func.lower(Location.region).like(pattern, escape="\\"),
                    )
                )
            total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
            rows = session.scalars(query.order_by(Location.name, Location.id).limit(limit).offset(offset))
            return LocationPage(items=[self._view(r, project) for r in rows], total=total)

    def get(self, principal: Principal, project_ref: str, location_id: str) -> SavedLocation:
        """One location of a project."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, location_id)
            return self._view(row, project)

    def history(self, principal: Principal, project_ref: str, location_id: str) -> list[ValidationEntry]:
        """The last validation reports of a location, newest first."""
        require(principal, Permission.READ)
        with self._db.session() as session:
            self._load(session, principal, project_ref, location_id)
            rows = session.scalars(
                select(ValidationRecord)
                .where(ValidationRecord.location_id == location_id)
                .order_by(ValidationRecord.created_at.desc())
                .limit(HISTORY_KEPT)
            )
            return [ValidationEntry(r.id, r.trigger, r.created_at, ValidationReport.from_dict(r.report)) for r in rows]

    # -- validating and creating -------------------------------------------------------------------
    def validate(self, principal: Principal, project_ref: str, spec: LocationSpec) -> ValidationReport:
        """Validate a spec without saving anything."""
        require(principal, Permission.MANAGE_LOCATIONS)
        _check_inputs(spec)
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            name, external_id = project.name, project.external_id
        return self._validator.validate(spec, project_name=name, external_id=external_id)

    def create(
        self, principal: Principal, project_ref: str, spec: LocationSpec, *, skip_validation: bool = False
    ) -> SavedLocation:
        """Save a location after a passing validation (or, for admins, after the static checks only)."""
        require(principal, Permission.MANAGE_LOCATIONS)
        if skip_validation:
            require(principal, Permission.SKIP_VALIDATION)
        _check_inputs(spec)
        with self._db.session() as session:
            project = load_project(session, principal, project_ref)
            project_id, project_name, external_id = project.id, project.name, project.external_id
            self._ensure_unique_name(session, project_id, spec.name)
        report = self._validator.validate(
            spec, project_name=project_name, external_id=external_id, live=not skip_validation
        )
        if not report.ok:
            raise errors.ValidationFailed(
                f"The location did not pass validation: {report.summary()}", details={"report": report.to_dict()}
            )
        now = self._clock()
        status = LocationStatus.UNVERIFIED if skip_validation else LocationStatus.AVAILABLE
        message = "Created without live validation (skipValidation)." if skip_validation else report.summary()
        try:
            with self._db.session() as session:
                project = session.get_one(Project, project_id)
                has_default = session.scalar(
                    select(Location.id).where(Location.project_id == project_id, Location.is_default.is_(True))
                )
                # The first location of a project becomes its default: backups need somewhere to go.
                make_default = spec.is_default or has_default is None
                if make_default and has_default is not None:
                    self._clear_default(session, project_id)
                row = Location(project_id=project_id, created_at=now, updated_at=now)
                self._apply_spec(row, replace(spec, is_default=make_default))
                row.status = status.value
                row.status_message = message
                row.last_validated_at = None if skip_validation else now
                row.next_validation_at = self._next_due(now, None)
                session.add(row)
                session.flush()
                self._record(session, row.id, report, "create", now)
                return self._view(row, project)
        except IntegrityError as exc:
            raise errors.Conflict(
                f"A location named '{spec.name}' already exists in this project; pick another name."
            ) from exc

    def update(
        self,
        principal: Principal,
        project_ref: str,
        location_id: str,
        changes: dict[str, Any],
        *,
        skip_validation: bool = False,
    ) -> SavedLocation:
        """Apply a partial update; changes to what the credentials must reach require a passing validation."""
        require(principal, Permission.MANAGE_LOCATIONS)
        if skip_validation:
            require(principal, Permission.SKIP_VALIDATION)
        interval = changes.pop("revalidate_interval_minutes", _UNSET)
        if interval is not _UNSET and interval is not None and not 5 <= int(interval) <= 10080:
            raise errors.InvalidInput(
                "revalidateIntervalMinutes must be between 5 and 10080 (one week), or null for the default.",
                field="revalidateIntervalMinutes",
            )
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, location_id)
            current = self._spec(row)
            project_name, external_id = project.name, project.external_id
        credentials = changes.pop("credentials", None)
        # A blank secret in an edit form means "keep the stored one" (it is write-only).
        if (
            isinstance(credentials, StaticCredentials)
            and credentials.secret_access_key == ""
            and isinstance(current.credentials, StaticCredentials)
        ):
            credentials = replace(credentials, secret_access_key=current.credentials.secret_access_key)
        new_spec = replace(current, **changes)
        if credentials is not None:
            new_spec = replace(new_spec, credentials=credentials)
        _check_inputs(new_spec)
        must_validate = (
            any(getattr(new_spec, f) != getattr(current, f) for f in REVALIDATING_FIELDS if f != "credentials")
            or new_spec.credentials != current.credentials
        )
        report: ValidationReport | None = None
        if must_validate:
            report = self._validator.validate(
                new_spec, project_name=project_name, external_id=external_id, live=not skip_validation
            )
            if not report.ok:
                raise errors.ValidationFailed(
                    f"The change did not pass validation: {report.summary()}", details={"report": report.to_dict()}
                )
        now = self._clock()
        try:
            with self._db.session() as session:
                project, row = self._load(session, principal, project_ref, location_id)
                if new_spec.name != current.name:
                    self._ensure_unique_name(session, project.id, new_spec.name)
                if new_spec.is_default and not current.is_default:
                    self._clear_default(session, project.id)
                self._apply_spec(row, new_spec)
                if interval is not _UNSET:
                    row.revalidate_interval_minutes = interval
                    row.next_validation_at = self._next_due(now, interval)
                if report is not None:
                    self._set_status(row, report, live=not skip_validation, now=now)
                    self._record(session, row.id, report, "update", now)
                row.updated_at = now
                session.flush()
                saved = self._view(row, project)
                self._db.changes.publish(session, LOCATION_TOPIC, row.id)
        except IntegrityError as exc:
            raise errors.Conflict(f"A location named '{new_spec.name}' already exists in this project.") from exc
        return saved

    def delete(self, principal: Principal, project_ref: str, location_id: str) -> None:
        """Delete a location (its bucket contents are untouched)."""
        require(principal, Permission.MANAGE_LOCATIONS)
        with self._db.session() as session:
            _, row = self._load(session, principal, project_ref, location_id)
            deleted_id = row.id
            session.execute(delete(ValidationRecord).where(ValidationRecord.location_id == row.id))
            session.delete(row)
            self._db.changes.publish(session, LOCATION_TOPIC, deleted_id)

    def set_default(self, principal: Principal, project_ref: str, location_id: str) -> SavedLocation:
        """Make a location the project's default (exactly one at most)."""
        require(principal, Permission.MANAGE_LOCATIONS)
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, location_id)
            if not row.is_default:
                self._clear_default(session, project.id)
                row.is_default = True
                row.updated_at = self._clock()
            return self._view(row, project)

    # -- re-validation -----------------------------------------------------------------------------
    def revalidate(
        self, principal: Principal, project_ref: str, location_id: str
    ) -> tuple[SavedLocation, ValidationReport]:
        """Re-validate a saved location now and update its status."""
        require(principal, Permission.MANAGE_LOCATIONS)
        with self._db.session() as session:
            self._load(session, principal, project_ref, location_id)
        report = self.revalidate_by_id(location_id, trigger="manual")
        with self._db.session() as session:
            project, row = self._load(session, principal, project_ref, location_id)
            return self._view(row, project), report

    def revalidate_by_id(self, location_id: str, *, trigger: str = "schedule") -> ValidationReport:
        """Validate a saved location (no caller: used by the scheduler) and store the outcome."""
        with self._db.session() as session:
            row = session.get(Location, location_id)
            if row is None:
                raise errors.NotFound(f"No location with id '{location_id}'.")
            project = session.get_one(Project, row.project_id)
            spec, project_name, external_id = self._spec(row), project.name, project.external_id
        report = self._validator.validate(spec, project_name=project_name, external_id=external_id)
        now = self._clock()
        with self._db.session() as session:
            fresh = session.get(Location, location_id)
            if fresh is None:  # deleted while we validated
                return report
            self._set_status(fresh, report, live=True, now=now)
            fresh.next_validation_at = self._next_due(now, fresh.revalidate_interval_minutes)
            self._record(session, location_id, report, trigger, now)
        return report

    def claim_due(self, *, lease_seconds: int = 600, limit: int = 100) -> list[str]:
        """Ids of locations due for re-validation, claimed by pushing their due time ``lease_seconds`` ahead."""
        now = self._clock()
        due = (
            select(Location.id)
            .where(or_(Location.next_validation_at.is_(None), Location.next_validation_at <= now))
            .order_by(Location.next_validation_at)
            .limit(limit)
        )
        if self._db.is_postgres:
            # Two schedulers never claim the same row: the second skips what the first has locked.
            due = due.with_for_update(skip_locked=True)
        # One UPDATE ... RETURNING: the claim is atomic on both SQLite and PostgreSQL.
        claim = (
            update(Location)
            .where(Location.id.in_(due.scalar_subquery()))
            .values(next_validation_at=now + timedelta(seconds=lease_seconds))
            .returning(Location.id)
        )
        with self._db.session() as session:
            return list(session.scalars(claim))

    def spec_for_agent(self, location_id: str) -> tuple[LocationSpec, str, str, str]:
        """The full spec (secrets included) with project id, name and External ID, for credential vending."""
        with self._db.session() as session:
            row = session.get(Location, location_id)
            if row is None:
                raise errors.NotFound(f"No location with id '{location_id}'.")
            project = session.get_one(Project, row.project_id)
            return self._spec(row), project.id, project.name, project.external_id

    # -- helpers -----------------------------------------------------------------------------------
    def _next_due(self, now: datetime, interval_minutes: int | None) -> datetime:
        minutes = interval_minutes or self._interval
        # Jitter spreads locations created together so their STS calls don't arrive in bursts.
        jitter = self._rng.uniform(-0.1, 0.1) * minutes * 60
        return now + timedelta(seconds=minutes * 60 + jitter)

    @staticmethod
    def _set_status(row: Location, report: ValidationReport, *, live: bool, now: datetime) -> None:
        if not live:
            row.status = LocationStatus.UNVERIFIED.value
            row.status_message = "Saved without live validation (skipValidation)."
            return
        row.status = (LocationStatus.AVAILABLE if report.ok else LocationStatus.UNAVAILABLE).value
        row.status_message = report.summary()
        row.last_validated_at = now

    @staticmethod
    def _record(session: Session, location_id: str, report: ValidationReport, trigger: str, now: datetime) -> None:
        session.add(
            ValidationRecord(
                location_id=location_id, ok=report.ok, trigger=trigger, report=report.to_dict(), created_at=now
            )
        )
        session.flush()
        keep = (
            select(ValidationRecord.id)
            .where(ValidationRecord.location_id == location_id)
            .order_by(ValidationRecord.created_at.desc())
            .limit(HISTORY_KEPT)
        )
        session.execute(
            delete(ValidationRecord).where(
                ValidationRecord.location_id == location_id, ValidationRecord.id.not_in(keep.scalar_subquery())
            )
        )

    @staticmethod
    def _clear_default(session: Session, project_id: str) -> None:
        session.execute(
            update(Location)
            .where(Location.project_id == project_id, Location.is_default.is_(True))
            .values(is_default=False)
        )
        session.flush()

    @staticmethod
    def _ensure_unique_name(session: Session, project_id: str, name: str) -> None:
        exists = session.scalar(select(Location.id).where(Location.project_id == project_id, Location.name == name))
        if exists is not None:
            raise errors.Conflict(f"A location named '{name}' already exists in this project; pick another name.")

    @staticmethod
    def _load(session: Session, principal: Principal, project_ref: str, location_id: str) -> tuple[Project, Location]:
        project = load_project(session, principal, project_ref)
        row = session.scalar(select(Location).where(Location.id == location_id, Location.project_id == project.id))
        if row is None:
            raise errors.NotFound(f"No backup location '{location_id}' in project '{project.name}'.")
        return project, row

    def _apply_spec(self, row: Location, spec: LocationSpec) -> None:
        row.name = spec.name
        row.provider = spec.provider.value
        row.bucket = spec.bucket
        row.region = spec.region
        row.s3_url = spec.s3_url
        row.force_path_style = spec.force_path_style
        row.ca_cert = spec.ca_cert
        row.prefix = spec.prefix
        row.kms_key_arn = spec.kms_key_arn
        row.volume_snapshots = spec.volume_snapshots
        row.is_default = spec.is_default
        row.agent_access = spec.agent_access.value
        creds = spec.credentials
        row.credential_type = creds.type
        if isinstance(creds, StsCredentials):
            row.role_arn, row.access_key_id, row.secret_access_key_enc = creds.role_arn, None, None
        else:
            row.role_arn = None
            row.access_key_id = creds.access_key_id
            row.secret_access_key_enc = self._box.encrypt(creds.secret_access_key)

    def _spec(self, row: Location, *, reveal: bool = True) -> LocationSpec:
        """The spec of a row; with ``reveal`` False the static secret is replaced by its masked form."""
        creds: StsCredentials | StaticCredentials
        if row.credential_type == "sts":
            creds = StsCredentials(role_arn=row.role_arn or "")
        else:
            secret = self._box.decrypt(row.secret_access_key_enc) if row.secret_access_key_enc else ""
            creds = StaticCredentials(
                access_key_id=row.access_key_id or "", secret_access_key=secret if reveal else mask_secret(secret)
            )
        return LocationSpec(
            name=row.name,
            provider=Provider(row.provider),
            bucket=row.bucket,
            region=row.region,
            credentials=creds,
            s3_url=row.s3_url,
            force_path_style=row.force_path_style,
            ca_cert=row.ca_cert,
            prefix=row.prefix,
            kms_key_arn=row.kms_key_arn,
            volume_snapshots=row.volume_snapshots,
            is_default=row.is_default,
            agent_access=AgentAccess(row.agent_access),
        )

    def _view(self, row: Location, project: Project) -> SavedLocation:
        # Views never carry the plaintext secret: only its masked form leaves the service.
        spec = self._spec(row, reveal=False)
        return SavedLocation(
            id=row.id,
            project=project.name,
            project_id=project.id,
            spec=spec,
            external_id=project.external_id if row.credential_type == "sts" else None,
            status=LocationStatus(row.status),
            status_message=row.status_message,
            last_validated_at=row.last_validated_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            revalidate_interval_minutes=row.revalidate_interval_minutes,
        )


class _Unset:
    pass


_UNSET: Any = _Unset()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _check_inputs(spec: LocationSpec) -> None:
    """Reject inputs that are not contract checks (name, prefix, KMS key) with a field-level error."""
    problems = [
        ("name", location_name_problem(spec.name)),
        ("prefix", prefix_problem(spec.prefix)),
        ("kmsKeyArn", kms_key_arn_problem(spec.kms_key_arn, region=spec.region)),
    ]
    for field, problem in problems:
        if problem:
            raise errors.InvalidInput(problem, field=field)
