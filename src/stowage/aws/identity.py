"""The control plane's own AWS identity (``sts:GetCallerIdentity`` via boto3's standard chain)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from stowage import errors
from stowage.aws import clients
from stowage.aws.errors import translate


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who the control plane is in AWS."""

    account_id: str
    arn: str

    @property
    def partition(self) -> str:
        """The partition of the identity's ARN."""
        return self.arn.split(":")[1] if self.arn.startswith("arn:") else "aws"


class IdentityResolver:
    """Looks up (and caches briefly) the control plane's identity; raises ``StsUnavailable`` with a reason."""

    def __init__(self, ttl_seconds: float = 300.0, failure_ttl_seconds: float = 10.0) -> None:
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, CallerIdentity | errors.StsUnavailable] | None = None

    def identity(self) -> CallerIdentity:
        """The cached identity, looked up again when stale."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now < self._cached[0]:
                value = self._cached[1]
            else:
                value = self._lookup()
                ttl = self._failure_ttl if isinstance(value, errors.StsUnavailable) else self._ttl
                self._cached = (now + ttl, value)
        if isinstance(value, errors.StsUnavailable):
            raise value
        return value

    def invalidate(self) -> None:
        """Forget the cached identity."""
        with self._lock:
            self._cached = None

    @staticmethod
    def _lookup() -> CallerIdentity | errors.StsUnavailable:
        try:
            response = clients.client("sts", region="us-east-1").get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            cloud = translate(exc, operation="sts:GetCallerIdentity")
            reason = _reason(cloud)
            return errors.StsUnavailable(reason, details={"reason": cloud.code, "cause": cloud.message})
        return CallerIdentity(account_id=str(response["Account"]), arn=str(response["Arn"]))


def _reason(cloud: errors.CloudError) -> str:
    if isinstance(cloud, errors.CloudCredentialsMissing):
        return (
            "The control plane has no usable AWS credentials, so the STS method is unavailable. Run Stowage "
            "on AWS with an instance/pod role, or set AWS credentials in its environment. "
            f"({cloud.message})"
        )
    if isinstance(cloud, errors.CloudEndpointError):
        return (
            "The control plane cannot reach AWS STS, so the STS method is unavailable. Check network access "
            f"and any AWS_ENDPOINT_URL setting. ({cloud.message})"
        )
    if isinstance(cloud, errors.CloudAccessDenied):
        return (
            "The control plane's AWS identity is not allowed to call sts:GetCallerIdentity, so the STS method "
            f"is unavailable. ({cloud.message})"
        )
    return (
        f"The control plane's AWS identity could not be determined, so the STS method is unavailable. ({cloud.message})"
    )
