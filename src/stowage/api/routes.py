"""API v1 routes: projects, STS panel, policies, backup locations, tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from stowage.api.deps import PrincipalDep, RuntimeDep
from stowage.api.schemas import (
    ErrorOut,
    LocationCreate,
    LocationList,
    LocationPublic,
    LocationSpecIn,
    LocationUpdate,
    ProjectIn,
    ProjectOut,
    RevalidateOut,
    RotateOut,
    StsOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    ValidationEntryOut,
    ValidationReportOut,
)
from stowage.domain.checks import ValidationReport
from stowage.domain.locations import AgentAccess
from stowage.services.policies import PolicyRequest
from stowage.services.tenancy import ROTATION_WARNING, ProjectView, TokenView

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS)


def _project(view: ProjectView) -> ProjectOut:
    return ProjectOut(id=view.id, name=view.name, external_id=view.external_id, created_at=view.created_at)


def _token(view: TokenView) -> TokenOut:
    return TokenOut(
        id=view.id,
        name=view.name,
        role=view.role,
        hint=view.hint,
        created_at=view.created_at,
        last_used_at=view.last_used_at,
        revoked_at=view.revoked_at,
    )


def _report(report: ValidationReport) -> ValidationReportOut:
    return ValidationReportOut.model_validate(report.to_dict())


# -- projects ------------------------------------------------------------------------------------------
@router.get("/projects", response_model=list[ProjectOut], tags=["projects"])
def list_projects(principal: PrincipalDep, runtime: RuntimeDep) -> list[ProjectOut]:
    """Projects of the caller's tenant."""
    return [_project(p) for p in runtime.tenancy.list_projects(principal)]


@router.post("/projects", response_model=ProjectOut, status_code=201, tags=["projects"])
def create_project(body: ProjectIn, principal: PrincipalDep, runtime: RuntimeDep) -> ProjectOut:
    """Create a project (admins)."""
    return _project(runtime.tenancy.create_project(principal, body.name))


@router.get("/projects/{project}", response_model=ProjectOut, tags=["projects"])
def get_project(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> ProjectOut:
    """One project by name or id."""
    return _project(runtime.tenancy.project(principal, project))


@router.post("/projects/{project}/external-id/rotate", response_model=RotateOut, tags=["projects"])
def rotate_external_id(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> RotateOut:
    """Replace the project's External ID (admins); breaks roles that trust the old one."""
    return RotateOut(project=_project(runtime.tenancy.rotate_external_id(principal, project)), warning=ROTATION_WARNING)


@router.get("/projects/{project}/sts", response_model=StsOut, tags=["sts"])
def sts_info(project: str, principal: PrincipalDep, runtime: RuntimeDep) -> StsOut:
    """The control plane's AWS account and principal, and the project's External ID."""
    info = runtime.policies.sts_info(principal, project)
    return StsOut(
        account_id=info.account_id,
        partition=info.partition,
        principal_arn=info.principal_arn,
        external_id=info.external_id,
    )


@router.get("/projects/{project}/policies", tags=["sts"])
def policies(
    project: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    bucket: Annotated[str, Query(max_length=255)],
    region: Annotated[str, Query(max_length=128)] = "us-east-1",
    prefix: Annotated[str | None, Query(max_length=1024)] = None,
    kms_key_arn: Annotated[str | None, Query(alias="kmsKeyArn", max_length=2048)] = None,
    cluster_account_id: Annotated[str | None, Query(alias="clusterAccountId", max_length=64)] = None,
    cluster_role_arn: Annotated[str | None, Query(alias="clusterRoleArn", max_length=2048)] = None,
    volume_snapshots: Annotated[bool, Query(alias="volumeSnapshots")] = True,
    agent_access: Annotated[AgentAccess | None, Query(alias="agentAccess")] = None,
) -> dict[str, object]:
    """The permission policy and the trust policy to paste into AWS."""
    request = PolicyRequest(
        bucket=bucket.strip(),
        region=region.strip(),
        prefix=(prefix or "").strip() or None,
        kms_key_arn=(kms_key_arn or "").strip() or None,
        cluster_account_id=(cluster_account_id or "").strip() or None,
        cluster_role_arn=(cluster_role_arn or "").strip() or None,
        volume_snapshots=volume_snapshots,
        agent_access=agent_access,
    )
    return runtime.policies.policies(principal, project, request)


# -- backup locations ---------------------------------------------------------------------------------
@router.post(
    "/projects/{project}/backup-locations/validate", response_model=ValidationReportOut, tags=["backup-locations"]
)
def validate_location(
    project: str, body: LocationSpecIn, principal: PrincipalDep, runtime: RuntimeDep
) -> ValidationReportOut:
    """Validate a LocationSpec; nothing is saved."""
    return _report(runtime.locations.validate(principal, project, body.to_spec()))


@router.post(
    "/projects/{project}/backup-locations", response_model=LocationPublic, status_code=201, tags=["backup-locations"]
)
def create_location(project: str, body: LocationCreate, principal: PrincipalDep, runtime: RuntimeDep) -> LocationPublic:
    """Create a location after a passing validation (422 ``validation_failed`` with the report otherwise)."""
    saved = runtime.locations.create(principal, project, body.to_spec(), skip_validation=body.skip_validation)
    return LocationPublic.of(saved)


@router.get("/projects/{project}/backup-locations", response_model=LocationList, tags=["backup-locations"])
def list_locations(
    project: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> LocationList:
    """Locations of a project; ``search`` matches name, bucket and region."""
    page = runtime.locations.list_page(principal, project, search=search, limit=limit, offset=offset)
    return LocationList(items=[LocationPublic.of(s) for s in page.items], total=page.total)


@router.get(
    "/projects/{project}/backup-locations/{location_id}", response_model=LocationPublic, tags=["backup-locations"]
)
def get_location(project: str, location_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> LocationPublic:
    """One location."""
    return LocationPublic.of(runtime.locations.get(principal, project, location_id))


@router.patch(
    "/projects/{project}/backup-locations/{location_id}", response_model=LocationPublic, tags=["backup-locations"]
)
def update_location(
    project: str, location_id: str, body: LocationUpdate, principal: PrincipalDep, runtime: RuntimeDep
) -> LocationPublic:
    """Change a location; changing what it reaches requires a passing validation."""
    saved = runtime.locations.update(
        principal, project, location_id, body.changes(), skip_validation=body.skip_validation
    )
    return LocationPublic.of(saved)


@router.delete("/projects/{project}/backup-locations/{location_id}", status_code=204, tags=["backup-locations"])
def delete_location(project: str, location_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    """Delete a location (the bucket's contents are untouched)."""
    runtime.locations.delete(principal, project, location_id)
    return Response(status_code=204)


@router.post(
    "/projects/{project}/backup-locations/{location_id}/validate",
    response_model=RevalidateOut,
    tags=["backup-locations"],
)
def revalidate_location(project: str, location_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> RevalidateOut:
    """Re-validate a saved location now and update its status."""
    saved, report = runtime.locations.revalidate(principal, project, location_id)
    return RevalidateOut(location=LocationPublic.of(saved), report=_report(report))


@router.get(
    "/projects/{project}/backup-locations/{location_id}/validations",
    response_model=list[ValidationEntryOut],
    tags=["backup-locations"],
)
def location_history(
    project: str, location_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> list[ValidationEntryOut]:
    """The last 20 validation reports of a location, newest first."""
    return [
        ValidationEntryOut(id=e.id, trigger=e.trigger, created_at=e.created_at, report=_report(e.report))
        for e in runtime.locations.history(principal, project, location_id)
    ]


@router.post(
    "/projects/{project}/backup-locations/{location_id}/default",
    response_model=LocationPublic,
    tags=["backup-locations"],
)
def set_default_location(
    project: str, location_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> LocationPublic:
    """Make a location the project's default."""
    return LocationPublic.of(runtime.locations.set_default(principal, project, location_id))


# -- tokens -------------------------------------------------------------------------------------------
@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(principal: PrincipalDep, runtime: RuntimeDep) -> list[TokenOut]:
    """API tokens of the tenant (admins)."""
    return [_token(t) for t in runtime.tenancy.list_tokens(principal)]


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
def create_token(body: TokenIn, principal: PrincipalDep, runtime: RuntimeDep) -> TokenCreated:
    """Create a token (admins); its value is shown once."""
    token, view = runtime.tenancy.create_token(principal, name=body.name, role=body.role)
    return TokenCreated(token=token, **_token(view).model_dump())


@router.delete("/tokens/{token_id}", response_model=TokenOut, tags=["tokens"])
def revoke_token(token_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> TokenOut:
    """Revoke a token (admins)."""
    return _token(runtime.tenancy.revoke_token(principal, token_id))
