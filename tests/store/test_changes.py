"""The change feed's routing, without a second process (the cross-process path is in tests/api/test_change_feed.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stowage.store.changes import ChangeFeed
from stowage.store.database import Database


def test_notices_reach_the_subscribers_of_their_topic_only() -> None:
    feed = ChangeFeed(None)
    heard: list[tuple[str, str | None]] = []

    def broken(_: str | None) -> None:
        raise RuntimeError("a cache that fails")

    feed.subscribe("location", broken)
    feed.subscribe("location", lambda key: heard.append(("location", key)))
    feed.subscribe("agent-token", lambda key: heard.append(("agent-token", key)))
    feed.dispatch("location:abc:with-colon")
    feed.dispatch("agent-token:")  # empty key: forget everything
    feed.dispatch("unknown:x")
    assert heard == [("location", "abc:with-colon"), ("agent-token", None)]


def test_sqlite_has_no_channel_and_publishing_is_a_no_op(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'stowage.db'}")
    db.migrate()
    assert not db.changes.enabled
    with db.session() as session:
        db.changes.publish(session, "location", "x")
    db.changes.start()  # nothing to listen to
    db.dispose()


def test_postgres_feed_connects_and_stops(pg_url: str) -> None:
    db = Database(pg_url)
    db.migrate()
    heard: list[str | None] = []
    db.changes.subscribe("location", heard.append)
    db.changes.start()
    assert db.changes.connected.wait(10)
    with db.session() as session:
        db.changes.publish(session, "location", "loc-1")
    with db.session() as session:
        db.changes.publish(session, "location", "rolled-back")
        session.rollback()
    with db.session() as session:
        db.changes.publish(session, "location", "loc-2")
    deadline = time.monotonic() + 10
    # Each committed change is heard twice here: right after the commit, and back from PostgreSQL.
    while heard.count("loc-2") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    db.dispose()
    assert heard.count("loc-1") == 2 and heard.count("loc-2") == 2
    assert "rolled-back" not in heard  # a rolled-back change is never announced, locally or to others


def test_a_change_is_announced_locally_only_when_it_commits(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'stowage.db'}")
    db.migrate()
    heard: list[str | None] = []
    db.changes.subscribe("location", heard.append)
    with db.session() as session:
        db.changes.publish(session, "location", "kept")
        assert heard == []  # not before the commit
    with pytest.raises(RuntimeError), db.session() as session:
        db.changes.publish(session, "location", "failed")
        raise RuntimeError("the change fails")
    with db.session() as session:
        db.changes.publish(session, "location", "undone")
        session.rollback()
    db.dispose()
    assert heard == ["kept"]
