"""CSRF protection: every state-changing request carries the session's token (form field or header)."""

from __future__ import annotations

import hmac

from stowage.web.sessions import WebSession

FIELD = "csrf_token"
HEADER = "x-csrf-token"


class CsrfRejected(Exception):
    """A state-changing request came without the session's CSRF token."""


def check(session: WebSession | None, sent: str | None) -> None:
    """Raise ``CsrfRejected`` unless ``sent`` is the session's token."""
    if session is None or not sent or not hmac.compare_digest(session.csrf.encode(), sent.encode()):
        raise CsrfRejected("missing or wrong CSRF token")
