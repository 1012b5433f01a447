"""Translate botocore errors into Stowage's exception tree, once, at the boundary."""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from stowage import errors
from stowage.aws import endpoints

ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403", "AllAccessDisabled"}
)
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"})
INVALID_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AuthFailure",
        "UnrecognizedClientException",
    }
)
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "TooManyRequests"})
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NoSuchEntity", "NotFound", "404", "NoSuchUpload"})

# Signatures and session tokens must never reach a message shown to users or stored.
_SECRETISH = re.compile(r"(X-Amz-(Signature|Security-Token|Credential)=)[^&\s]+|(Signature=)[^,\s]+", re.IGNORECASE)


def sanitize(message: str, limit: int = 500) -> str:
    """Strip signed-URL secrets and clip the message, as Velero's sanitizeStorageError does."""
    cleaned = _SECRETISH.sub(lambda m: (m.group(1) or m.group(3) or "") + "REDACTED", message)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ('' when absent)."""
    return str(
        exc.response.get("Error", {}).get("Code", "")
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def error_message(exc: ClientError) -> str:
    """The AWS error message of a ClientError, sanitized."""
    return sanitize(str(exc.response.get("Error", {}).get("Message", "") or error_code(exc)))


def translate(exc: BaseException, *, operation: str = "") -> errors.CloudError:
    """Map a botocore exception to the matching ``CloudError`` subclass."""
    where = f"{operation}: " if operation else ""
    refused = endpoints.refusal_in(exc)
    if refused is not None:
        # botocore wraps it in HTTPClientError; the refusal's own message is the one worth showing.
        return refused
    if isinstance(exc, ClientError):
        code = error_code(exc)
        text = f"{where}{code}: {error_message(exc)}"
        if code in ACCESS_DENIED_CODES:
            return errors.CloudAccessDenied(text, aws_code=code)
        if code in EXPIRED_CODES:
            return errors.CloudCredentialsExpired(text, aws_code=code)
        if code in INVALID_CREDENTIAL_CODES:
            return errors.CloudCredentialsMissing(text, aws_code=code)
        if code in THROTTLE_CODES:
            return errors.CloudThrottled(text, aws_code=code)
        if code in NOT_FOUND_CODES:
            return errors.CloudNotFound(text, aws_code=code)
        return errors.CloudError(text, aws_code=code)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return errors.CloudCredentialsMissing(f"{where}no AWS credentials found in the standard credential chain")
    if isinstance(exc, SSLError):
        return errors.CloudEndpointError(f"{where}TLS handshake failed: {sanitize(str(exc))}")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return errors.CloudEndpointError(f"{where}endpoint unreachable: {sanitize(str(exc))}")
    if isinstance(exc, BotoCoreError):
        return errors.CloudError(f"{where}{sanitize(str(exc))}")
    return errors.CloudError(f"{where}{sanitize(str(exc))}")
