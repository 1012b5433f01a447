"""Map errors to HTTP answers ``{code, message, details?}``; nothing a client sends yields a 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stowage import errors

log = logging.getLogger("stowage.api")

STATUS: dict[type[errors.StowageError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.ValidationFailed: 422,
    errors.StsUnavailable: 409,
    errors.CloudError: 502,
}


def status_for(exc: errors.StowageError) -> int:
    """The HTTP status of an error, by its nearest class in the tree."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error JSON of the contract."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",) and not isinstance(p, int))
    message = str(error.get("msg", "is invalid"))
    if error.get("type") == "json_invalid":
        return "The request body is not valid JSON: check quotes, commas and brackets."
    if error.get("type") == "extra_forbidden":
        return f"Unknown field '{location}': remove it or check its spelling (fields are camelCase)."
    if error.get("type") == "missing":
        return f"Field '{location}' is required."
    return f"Field '{location}': {message}." if location else message


def install(app: FastAPI) -> None:
    """Register the error handlers."""

    @app.exception_handler(errors.StowageError)
    async def _stowage_error(_: Request, exc: errors.StowageError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [dict(e) for e in exc.errors()]
        # Don't echo huge inputs back: only where and what.
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": _describe(e)}
            for e in problems[:20]
        ]
        message = fields[0]["message"] if fields else "The request is invalid."
        if len(fields) > 1:
            message += f" (and {len(fields) - 1} more problem{'s' if len(fields) > 2 else ''})"
        return JSONResponse(error_body("invalid_input", message, {"errors": fields}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Tracebacks carry no local variables, so no request secrets reach the log.
        log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "Something went wrong inside Stowage; the error was logged."),
            status_code=500,
        )
