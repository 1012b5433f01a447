"""What a user pastes into AWS: the control plane's identity, External ID and the two policies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stowage import errors
from stowage.domain import policies
from stowage.domain.access import Principal
from stowage.domain.locations import AgentAccess, Provider
from stowage.domain.naming import (
    account_id_problem,
    check_bucket_name,
    check_region,
    cluster_role_arn_problem,
    kms_key_arn_problem,
    prefix_problem,
)
from stowage.domain.policies import Policy
from stowage.domain.regions import partition_for_region
from stowage.services.tenancy import TenancyService


class Identity(Protocol):
    """The control plane's AWS identity."""

    @property
    def account_id(self) -> str:
        """12-digit account id."""
        ...

    @property
    def arn(self) -> str:
        """The caller ARN."""
        ...


class IdentitySource(Protocol):
    """Looks up the control plane's identity; raises ``StsUnavailable``."""

    def identity(self) -> Identity:
        """The identity, or ``StsUnavailable`` with the reason."""
        ...


@dataclass(frozen=True, slots=True)
class StsInfo:
    """The STS panel of a project."""

    account_id: str
    partition: str
    principal_arn: str
    external_id: str


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """Inputs of the policy generator."""

    bucket: str
    region: str = "us-east-1"
    prefix: str | None = None
    kms_key_arn: str | None = None
    cluster_account_id: str | None = None
    cluster_role_arn: str | None = None
    volume_snapshots: bool = True
    agent_access: AgentAccess | None = None


class PolicyService:
    """Shows identity and External ID, and generates permission and trust policies."""

    def __init__(self, *, tenancy: TenancyService, identity: IdentitySource) -> None:
        self._tenancy = tenancy
        self._identity = identity

    def sts_info(self, principal: Principal, project_ref: str) -> StsInfo:
        """Account id, principal ARN and External ID to type into the AWS console."""
        project = self._tenancy.project(principal, project_ref)
        identity = self._identity.identity()
        partition = identity.arn.split(":")[1] if identity.arn.startswith("arn:") else "aws"
        return StsInfo(
            account_id=identity.account_id,
            partition=partition,
            principal_arn=policies.account_root_arn(identity.account_id, partition),
            external_id=project.external_id,
        )

    def policies(self, principal: Principal, project_ref: str, request: PolicyRequest) -> dict[str, object]:
        """The permission policy and trust policy for a bucket, ready to paste.

        The permission policy needs no AWS identity (static-key locations use it too), so it is always given;
        the trust policy names the control plane's account, so without an identity it is absent and
        ``trustPolicyUnavailable`` says why.
        """
        _check_request(request)
        self._tenancy.project(principal, project_ref)  # 404 for an unknown project, as everywhere
        partition = partition_for_region(request.region)
        answer: dict[str, object] = {
            "permissionPolicy": policies.permission_policy(
                request.bucket,
                partition=partition,
                prefix=request.prefix,
                kms_key_arn=request.kms_key_arn,
                include_ec2=request.volume_snapshots,
            ),
        }
        try:
            info = self.sts_info(principal, project_ref)
        except errors.StsUnavailable as exc:
            answer["trustPolicy"] = None
            answer["trustPolicyUnavailable"] = exc.message
            return answer
        answer["trustPolicy"] = self._trust_policy(info, partition, request)
        return answer

    @staticmethod
    def _trust_policy(info: StsInfo, partition: str, request: PolicyRequest) -> Policy:
        # Without agentAccess the spec's multi-account statement is given as the spec shows it; with it, the
        # statement follows the mode (brokered: control plane only; direct: account A with the External ID).
        if request.agent_access is None:
            return policies.trust_policy(
                platform_account_id=info.account_id,
                external_id=info.external_id,
                partition=partition,
                cluster_account_id=request.cluster_account_id,
                cluster_role_arn=request.cluster_role_arn,
            )
        return policies.agent_trust_policy(
            platform_account_id=info.account_id,
            external_id=info.external_id,
            agent_access=request.agent_access.value,
            partition=partition,
            cluster_account_id=request.cluster_account_id,
            cluster_role_arn=request.cluster_role_arn,
        )


def _check_request(request: PolicyRequest) -> None:
    bucket = check_bucket_name(request.bucket)
    if bucket.is_failure:
        raise errors.InvalidInput(bucket.message, field="bucket")
    region = check_region(request.region, Provider.AWS)
    if region.is_failure:
        raise errors.InvalidInput(region.message, field="region")
    for field, problem in (
        ("prefix", prefix_problem(request.prefix)),
        ("kmsKeyArn", kms_key_arn_problem(request.kms_key_arn, region=request.region)),
        ("clusterAccountId", account_id_problem(request.cluster_account_id) if request.cluster_account_id else None),
        ("clusterRoleArn", cluster_role_arn_problem(request.cluster_role_arn) if request.cluster_role_arn else None),
    ):
        if problem:
            raise errors.InvalidInput(problem, field=field)
    if request.agent_access is AgentAccess.DIRECT and not (request.cluster_account_id or request.cluster_role_arn):
        raise errors.InvalidInput(
            "Direct agent access needs the cluster account: give clusterAccountId or clusterRoleArn.",
            field="clusterAccountId",
        )
    if request.cluster_account_id and request.cluster_role_arn:
        raise errors.InvalidInput(
            "Give either clusterAccountId (trust the whole account) or clusterRoleArn (trust one role), not both.",
            field="clusterRoleArn",
        )
