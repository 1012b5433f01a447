"""Change notices to every cache that must forget: in this process, and in the others on one PostgreSQL database.

Every process keeps short-lived caches (agent tokens, locations, vended credentials). A change published here
reaches this process's subscribers right after the writing transaction commits, and the other processes
through ``LISTEN/NOTIFY``, so that a revoked agent token is refused everywhere within moments instead of when
each cache entry expires.

A notice is sent inside the writer's transaction, so PostgreSQL delivers it exactly when the change commits
(never for a rolled-back change); this process also hears its own notice back, which is harmless. After the
listening connection is lost and regained, notices may have been missed, so every subscriber is told to drop
everything (``key`` is ``None``). SQLite has no channel between processes: one process per SQLite file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import event, text
from sqlalchemy.orm import Session

log = logging.getLogger("stowage.changes")
CHANNEL = "stowage_changes"
# Topics: a location was edited or deleted (key: its id; "" for all, e.g. after an External ID rotation), and
# an agent token was revoked, rotated away or deleted (key: its SHA-256 digest).
LOCATION_TOPIC = "location"
TOKEN_TOPIC = "agent-token"
# pg_notify payloads must stay under 8000 bytes; ids and digests are far shorter.
MAX_KEY_LENGTH = 512

Listener = Callable[[str | None], None]


class ChangeFeed:
    """Publishes ``(topic, key)`` notices and calls the subscribers of a topic when one arrives."""

    def __init__(self, libpq_url: str | None, *, retry_seconds: float = 1.0) -> None:
        self._url = libpq_url
        self._retry = retry_seconds
        self._listeners: dict[str, list[Listener]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    @property
    def enabled(self) -> bool:
        """True when notices travel between processes (PostgreSQL)."""
        return self._url is not None

    def subscribe(self, topic: str, listener: Listener) -> None:
        """Call ``listener(key)`` for every notice of ``topic`` (``None``: forget everything of that topic)."""
        self._listeners.setdefault(topic, []).append(listener)

    def publish(self, session: Session, topic: str, key: str) -> None:
        """Announce a change of ``key`` (``""``: everything of the topic) once ``session`` commits."""
        payload = f"{topic}:{key[:MAX_KEY_LENGTH]}"
        rolled_back = threading.Event()
        session.connection()  # begin the transaction now, so that rolling it back is an event we can see

        def on_commit(_: Session) -> None:
            # A session that rolled this change back and then committed something else must not announce it.
            if not rolled_back.is_set():
                self.dispatch(payload)

        event.listen(session, "after_commit", on_commit, once=True)
        event.listen(session, "after_soft_rollback", lambda _s, _t: rolled_back.set(), once=True)
        if self._url is not None:
            session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    def start(self) -> None:
        """Start listening in a background thread (PostgreSQL only; idempotent)."""
        if self._url is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stowage-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.connected.clear()

    def dispatch(self, payload: str) -> None:
        """Deliver one notice payload (``topic:key``) to the topic's subscribers."""
        topic, _, key = payload.partition(":")
        for listener in self._listeners.get(topic, []):
            try:
                listener(key or None)
            except Exception:
                log.warning("change listener for %s failed", topic, exc_info=True)

    def _forget_everything(self) -> None:
        for topic in self._listeners:
            self.dispatch(f"{topic}:")

    def _run(self) -> None:
        assert self._url is not None
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        self._forget_everything()  # notices sent while we were away are lost
                    first = False
                    self.connected.set()
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self.dispatch(notice.payload)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("change feed lost its database connection (%s); retrying", type(exc).__name__)
                self._stop.wait(self._retry)
