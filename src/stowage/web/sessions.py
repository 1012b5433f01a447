"""Signed cookie sessions of the web UI (itsdangerous), keyed from the server's own secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from stowage.config import Settings

COOKIE = "stowage_session"
# Absolute lifetime of a session; signing in again starts a new one.
MAX_AGE_SECONDS = 12 * 3600
_KEY_LABEL = b"stowage/web-session/v1"


def session_key(settings: Settings) -> bytes:
    """A key for signing sessions, derived from ``STOWAGE_SECRET_KEY`` or the data directory's ``secret.key``.

    Derived (HMAC with a label) rather than reused, so the cookie signature never exposes the key that
    encrypts stored secrets.
    """
    if settings.secret_key:
        material = settings.secret_key.encode()
    else:
        # The runtime creates this file (SecretBox.from_data_dir) before any request is served.
        material = (settings.data_dir / "secret.key").read_bytes().strip()
    return hmac.new(material, _KEY_LABEL, hashlib.sha256).digest()


def new_secret() -> str:
    """A fresh random identifier (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class WebSession:
    """What a session cookie holds: an id, the CSRF token, and the signed-in user (if any)."""

    sid: str
    csrf: str
    user_id: str | None = None
    stamp: str = field(default="", repr=False)

    @classmethod
    def anonymous(cls) -> WebSession:
        """A session for someone not signed in (it carries the login form's CSRF token)."""
        return cls(sid=new_secret(), csrf=new_secret())

    def signed_in(self, user_id: str, stamp: str) -> WebSession:
        """A new session for a user: fresh id and CSRF token, so a planted session is worth nothing."""
        return replace(self, sid=new_secret(), csrf=new_secret(), user_id=user_id, stamp=stamp)

    def to_dict(self) -> dict[str, Any]:
        """The cookie payload."""
        return {"sid": self.sid, "csrf": self.csrf, "uid": self.user_id, "st": self.stamp}


class SessionCodec:
    """Signs and reads session cookies; remembers sessions ended by logout until they would expire anyway."""

    def __init__(self, key: bytes, *, max_age: int = MAX_AGE_SECONDS) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="stowage.web.session")
        self._max_age = max_age
        self._ended: dict[str, float] = {}
        self._lock = threading.Lock()

    def dumps(self, session: WebSession) -> str:
        """The signed cookie value."""
        return str(self._serializer.dumps(session.to_dict()))

    def loads(self, value: str | None) -> WebSession | None:
        """The session of a cookie, or None when missing, forged, expired or ended."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self._max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        sid, csrf, uid, stamp = data.get("sid"), data.get("csrf"), data.get("uid"), data.get("st")
        if not isinstance(sid, str) or not isinstance(csrf, str) or not sid or not csrf:
            return None
        if self.is_ended(sid):
            return None
        return WebSession(
            sid=sid,
            csrf=csrf,
            user_id=uid if isinstance(uid, str) else None,
            stamp=stamp if isinstance(stamp, str) else "",
        )

    def end(self, sid: str) -> None:
        """Refuse this session id from now on (logout)."""
        now = time.monotonic()
        with self._lock:
            self._ended = {k: v for k, v in self._ended.items() if v > now}
            self._ended[sid] = now + self._max_age

    def is_ended(self, sid: str) -> bool:
        """True when the session was ended by a logout."""
        with self._lock:
            expiry = self._ended.get(sid)
            return expiry is not None and expiry > time.monotonic()

    def write(self, request: Request, response: Response, session: WebSession) -> None:
        """Set the cookie: HttpOnly, SameSite=Lax, Secure when the page came over HTTPS."""
        response.set_cookie(
            COOKIE,
            self.dumps(session),
            max_age=self._max_age,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def clear(self, request: Request, response: Response) -> None:
        """Remove the cookie."""
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
