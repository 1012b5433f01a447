"""The whole exception tree of Stowage.

    StowageError                      base; ``code`` is the stable machine-readable error code
    ├── InvalidInput                  a value a user typed breaks a rule (422 ``invalid_input``)
    ├── NotFound                      no such project/location/... in the caller's tenant (404)
    ├── Conflict                      duplicate name, state clash (409)
    ├── Unauthenticated               missing/unknown/revoked token or session (401)
    ├── Forbidden                     the caller's role does not allow the action (403)
    ├── ValidationFailed              a location's validation report has a failed check (422)
    ├── StsUnavailable                the control plane has no usable AWS identity (409)
    └── CloudError                    an AWS call failed; translated once, in ``stowage.aws.errors``
        ├── CloudAccessDenied         AccessDenied / UnauthorizedOperation / explicit deny
        ├── CloudCredentialsMissing   no credentials in the boto3 chain
        ├── CloudCredentialsExpired   ExpiredToken and friends
        ├── CloudNotFound             NoSuchBucket, NoSuchEntity, ...
        ├── CloudEndpointError        endpoint unreachable, TLS failure, timeout
        └── CloudThrottled            throttling / rate limits

Messages are safe to show to users: they never contain secrets or stack traces.
"""

from __future__ import annotations

from typing import Any


class StowageError(Exception):
    """Base of every error Stowage raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(StowageError):
    """A value a user typed breaks a rule; ``details['field']`` names it when known."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class NotFound(StowageError):
    """The thing asked for does not exist in the caller's tenant."""

    code = "not_found"


class Conflict(StowageError):
    """The request clashes with existing state (for example a duplicate name)."""

    code = "conflict"


class Unauthenticated(StowageError):
    """No valid credentials were presented."""

    code = "unauthenticated"


class LoginThrottled(Unauthenticated):
    """Too many failed sign-ins for one email from one address; ``retry_after`` is in seconds."""

    code = "login_throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed sign-in attempts. Wait {retry_after} seconds, then try again.",
            details={"retryAfter": retry_after},
        )
        self.retry_after = retry_after


class Forbidden(StowageError):
    """The caller is known but its role does not allow the action."""

    code = "forbidden"


class ValidationFailed(StowageError):
    """A location did not pass validation; ``details['report']`` holds the report."""

    code = "validation_failed"


class StsUnavailable(StowageError):
    """The control plane has no usable AWS identity, so the STS method cannot be offered."""

    code = "sts_unavailable"


class CloudError(StowageError):
    """An AWS call failed; ``aws_code`` keeps the provider's error code when there is one."""

    code = "cloud_error"

    def __init__(self, message: str, *, aws_code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.aws_code = aws_code


class CloudAccessDenied(CloudError):
    """The identity is not allowed to perform the action."""

    code = "cloud_access_denied"


class CloudCredentialsMissing(CloudError):
    """No AWS credentials could be found."""

    code = "cloud_credentials_missing"


class CloudCredentialsExpired(CloudError):
    """The AWS credentials used have expired."""

    code = "cloud_credentials_expired"


class CloudNotFound(CloudError):
    """The AWS resource does not exist."""

    code = "cloud_not_found"


class CloudEndpointError(CloudError):
    """The AWS endpoint could not be reached, timed out, or failed TLS."""

    code = "cloud_endpoint_error"


class CloudThrottled(CloudError):
    """AWS throttled the request."""

    code = "cloud_throttled"
