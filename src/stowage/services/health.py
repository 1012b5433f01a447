"""Readiness of a server process: its database answers and its schema is at the migrations' head."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from stowage.store.database import MIGRATIONS_DIR, Database


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of ``/readyz``: ready or not, and why not."""

    ready: bool
    reason: str
    revision: str | None = None

    def body(self) -> dict[str, str | None]:
        """The JSON body of ``/readyz``."""
        if self.ready:
            return {"status": "ready", "revision": self.revision}
        return {"status": "not ready", "reason": self.reason, "revision": self.revision}


@cache
def head_revisions() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code (read once per process)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def _describe(exc: BaseException) -> str:
    # The driver's first line says what failed (refused, no such database) without the URL's password.
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}"


def readiness(db: Database) -> Readiness:
    """Check the database with ``SELECT 1`` and compare its Alembic revision with this code's head."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means "not ready", with the reason
        return Readiness(False, f"database unreachable: {_describe(exc)}")
    heads = head_revisions()
    revision = ",".join(sorted(current)) or None
    if current != heads:
        wanted = ",".join(sorted(heads))
        return Readiness(
            False, f"migrations not applied: database at {revision or 'no revision'}, code expects {wanted}", revision
        )
    return Readiness(True, "", revision)
