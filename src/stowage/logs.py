"""The server's logs: one JSON object a line on stderr, a request id per HTTP request, secrets redacted.

``configure`` routes every logger (Stowage's ``stowage.*``, uvicorn's access and error logs, procrastinate,
SQLAlchemy, Python warnings) into one handler. ``RequestIds`` (ASGI middleware) takes a sane incoming
``X-Request-ID`` or makes one, echoes it in the response and keeps it in ``REQUEST_ID``, a context variable, so
every line logged while the request runs carries it: in the event loop, in FastAPI's thread pool and in threads
started with ``contextvars.copy_context().run``. ``redact`` is the second line of defence: code must not log
secrets, and whatever slips through (tokens, passwords, AWS secret keys and session tokens, cookies, bearer
headers) is masked before a line is written. This module imports no framework: services may use ``REQUEST_ID``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("stowage_request_id", default=None)
HEADER = "x-request-id"
MASK = "[REDACTED]"
FORMATS = ("json", "text")

# An incoming id is reused only when it is short and plain (it is echoed and logged, so no injection).
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
# Field names whose values are always secret, whatever they look like (compared lower-cased, without - and _).
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "password",
        "passwd",
        "secret",
        "secretkey",
        "secretaccesskey",
        "awssecretaccesskey",
        "sessiontoken",
        "awssessiontoken",
        "xamzsecuritytoken",
        "token",
        "agenttoken",
        "admintoken",
        "apitoken",
        "accesstoken",
        "refreshtoken",
        "apikey",
        "csrftoken",
        "privatekey",
    }
)
_NAMES = (
    r"authorization|proxy-authorization|cookie|set-cookie|password|passwd|secret|secret[_-]?key|"
    r"secret[_-]?access[_-]?key|aws[_-]secret[_-]access[_-]key|session[_-]?token|aws[_-]session[_-]token|"
    r"x-amz-security-token|token|agent[_-]?token|admin[_-]?token|api[_-]?token|access[_-]?token|api[_-]?key|"
    r"csrf[_-]?token|private[_-]?key"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A cookie header holds several name=value pairs: everything after it on the line goes.
    (re.compile(r"(?i)\b((?:set-)?cookie)((?>\s*:\s*))(?!\[REDACTED\])[^\n]+"), r"\1\2" + MASK),
    # HTTP credentials in a header value or a message.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 " + MASK),
    # name=value, name: value, "name": "value" (JSON, query strings, headers, repr of dicts).
    (
        re.compile(r"(?i)\b(" + _NAMES + r")((?>\\?[\"']?\s*[:=]\s*\\?[\"']?))(?!\[REDACTED\])([^\s\"'\\,&;}\]]+)"),
        r"\1\2" + MASK,
    ),
    # Stowage's own tokens: API tokens stw_…, agent tokens stwa_…, wherever else they appear.
    (re.compile(r"\b(stwa?_)[A-Za-z0-9_\-]{6,}"), r"\1" + MASK),
    # Long opaque blobs: STS session tokens and signed cookies are hundreds of characters of base64.
    (re.compile(r"[A-Za-z0-9+/=_\-.]{160,}"), MASK),
    # A PEM private key, whole.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
)
# Attributes every LogRecord has; anything else was passed with ``extra=`` and becomes a field of the line.
# uvicorn's color_message repeats the message with terminal colours.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def redact(text: str) -> str:
    """Mask whatever looks like a secret in ``text``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _secret_name(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in _SECRET_NAMES


def redact_value(value: Any, name: str = "") -> Any:
    """Redact a field's value: everything under a secret name, secret-looking parts of strings elsewhere."""
    if name and _secret_name(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and extra fields with secrets masked (runs on the handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad %-format must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        _remember_access_fields(record)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, redact_value(value, key))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # the redacted text above is what gets written
        return True


def _remember_access_fields(record: logging.LogRecord) -> None:
    # uvicorn's access line has positional args (client, method, path, http version, status): keep them as fields.
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, _version, status = record.args
        record.method = method
        record.path = str(path).split("?", 1)[0]  # query strings may carry anything; the path is enough
        record.status = status
        record.client = client


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "event", "requestId"?, ...extra, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = getattr(record, "requestId", None) or REQUEST_ID.get()
        if request_id:
            line["requestId"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in line:
                line[key] = value
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line for people: time, level, logger, message, the request id and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as text."""
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [stamp, record.levelname, record.name, record.getMessage()]
        request_id = getattr(record, "requestId", None) or REQUEST_ID.get()
        if request_id:
            parts.append(f"requestId={request_id}")
        parts.extend(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_ATTRS and k != "requestId")
        text = " ".join(str(p) for p in parts)
        return f"{text}\n{record.exc_text}" if record.exc_text else text


# Third-party loggers that would otherwise bring their own handlers or be too chatty at INFO.
_ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "procrastinate", "sqlalchemy", "alembic", "py.warnings")
_QUIET = {
    "sqlalchemy": logging.WARNING,
    "botocore": logging.WARNING,
    "boto3": logging.WARNING,
    "urllib3": logging.WARNING,
}


def configure(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) as JSON or text lines; returns the handler."""
    if fmt not in FORMATS:
        raise ValueError(f"STOWAGE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.getLevelName(level.upper()) if isinstance(level, str) else level)
    for name in _ROUTED:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    # SQLAlchemy's (and everyone's) warnings.warn calls become py.warnings records instead of raw stderr text.
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    return handler


def new_request_id() -> str:
    """A fresh request id (32 hex digits)."""
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The incoming id when it is sane (and carries no secret), otherwise a new one."""
    if value and _SANE_ID.fullmatch(value) and redact(value) == value:
        return value
    return new_request_id()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIds:
    """ASGI middleware: a request id per HTTP request, in ``REQUEST_ID`` and the ``X-Request-ID`` answer."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-request-id"), None
        )
        request_id = accept_request_id(incoming)
        # Not reset afterwards on purpose: each request runs in its own task (a copied context), and uvicorn's
        # access and error lines are written after the app returns, still in that task.
        REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
