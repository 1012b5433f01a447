"""ClusterService and VendingService on a real SQLite database, with a stand-in broker and clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from stowage import errors
from stowage.domain.access import Principal, Role
from stowage.domain.clusters import ConnectionStatus
from stowage.domain.locations import LocationSpec, Provider, StsCredentials
from stowage.services.clusters import ClusterService
from stowage.services.locations import LocationService
from stowage.services.tenancy import TenancyService
from stowage.services.vending import VendingService
from stowage.store.database import Database
from stowage.store.secrets import SecretBox
from stowage.store.tables import CredentialIssuance, Tenant


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Temp:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration_epoch: float | None


class FakeBroker:
    """Hands out a new key per call; counts calls (the real single flight is tested with the real broker)."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lifetime = lifetime
        self.lock = threading.Lock()

    def credentials(self, **kwargs: Any) -> Temp:
        with self.lock:
            self.calls.append(kwargs)
            n = len(self.calls)
        return Temp(f"ASIAFAKE{n:012d}", "secret", "token", time.time() + self.lifetime)


class NoValidator:
    def validate(self, spec: LocationSpec, **_: Any) -> Any:
        from stowage.domain.checks import ValidationReport

        return ValidationReport.of([])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = Database(f"sqlite:///{tmp_path / 'stowage.db'}")
    db.migrate()
    tenancy = TenancyService(db)
    tenancy.bootstrap(data_dir=tmp_path, admin_token="stw_admin")
    with db.session() as session:
        tenant_id = session.scalar(select(Tenant.id))
    admin = Principal(tenant_id=str(tenant_id), role=Role.ADMIN, subject="test")
    locations = LocationService(db=db, box=SecretBox.from_data_dir(tmp_path), validator=NoValidator())
    clock = Clock()
    clusters = ClusterService(db=db, heartbeat_seconds=10, clock=clock)
    broker = FakeBroker()
    vending = VendingService(db=db, locations=locations, broker=broker, identity=None, refresh_seconds=900)
    spec = LocationSpec(
        name="primary",
        provider=Provider.AWS,
        bucket="acme-backups",
        region="eu-west-1",
        credentials=StsCredentials("arn:aws:iam::222222222222:role/stowage"),
    )
    location = locations.create(admin, "default", spec, skip_validation=True)
    yield {
        "db": db,
        "admin": admin,
        "clusters": clusters,
        "vending": vending,
        "broker": broker,
        "clock": clock,
        "location": location,
        "locations": locations,
    }
    db.dispose()


def test_status_follows_heartbeats(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    clock: Clock = world["clock"]
    token, view = clusters.register(world["admin"], "default", name="prod")
    assert view.status is ConnectionStatus.DISCONNECTED and view.last_heartbeat_at is None
    agent = clusters.authenticate(token)
    answer = clusters.heartbeat(agent, version="0.1.0")
    assert answer.interval_seconds == 10 and answer.work == [] and answer.project == "default"
    assert clusters.get(world["admin"], "default", "prod").status is ConnectionStatus.CONNECTED
    clock.now += timedelta(seconds=30)
    assert clusters.get(world["admin"], "default", "prod").status is ConnectionStatus.CONNECTED
    clock.now += timedelta(seconds=1)
    assert clusters.get(world["admin"], "default", "prod").status is ConnectionStatus.DISCONNECTED


def test_authentication_is_cached_and_revocation_clears_it(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    token, _ = clusters.register(world["admin"], "default", name="cached")
    assert clusters.authenticate_cached(token) is None
    agent = clusters.authenticate(token)
    assert clusters.authenticate_cached(token) == agent
    clusters.revoke_token(world["admin"], "default", "cached")
    assert clusters.authenticate_cached(token) is None
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        clusters.authenticate(token)


def test_work_source_is_pluggable(world: dict[str, Any]) -> None:
    from stowage.domain.clusters import WorkItem

    clusters: ClusterService = world["clusters"]
    token, _ = clusters.register(world["admin"], "default", name="busy")
    clusters.set_work_source(lambda agent: [WorkItem(id="w1", kind="backup", params={"cluster": agent.cluster_name})])
    answer = clusters.heartbeat(clusters.authenticate(token), version="x")
    assert answer.work == [WorkItem(id="w1", kind="backup", params={"cluster": "busy"})]


def test_vending_caches_and_audits_only_new_issuances(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]
    broker: FakeBroker = world["broker"]
    location_id = world["location"].id
    token, view = clusters.register(world["admin"], "default", name="vend")
    agent = clusters.authenticate(token)
    assert vending.cached_credentials(agent, location_id) is None  # nothing loaded yet
    first = vending.credentials(agent, location_id)
    assert first.expiration_iso.endswith("Z") and "secret" not in repr(first)
    assert vending.cached_credentials(agent, location_id) == first
    assert vending.credentials(agent, location_id) == first
    assert len(broker.calls) == 1
    call = broker.calls[0]
    assert call["session_name"] == "stowage-default-vend"
    assert f"clusters/{view.id}/*" in call["session_policy"]
    assert call["external_id"] and call["region"] == "eu-west-1"
    audit = vending.issuances(world["admin"], "default")
    assert [(a.cluster_name, a.access_key_id_prefix) for a in audit] == [("vend", first.access_key_id[:8])]


def test_stale_credentials_are_refreshed_and_audited_again(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    broker: FakeBroker = world["broker"]
    broker.lifetime = 100  # shorter than the 900 s refresh window: always stale
    vending: VendingService = world["vending"]
    token, _ = clusters.register(world["admin"], "default", name="stale")
    agent = clusters.authenticate(token)
    one = vending.credentials(agent, world["location"].id)
    assert vending.cached_credentials(agent, world["location"].id) is None
    two = vending.credentials(agent, world["location"].id)
    assert one.access_key_id != two.access_key_id
    assert len(vending.issuances(world["admin"], "default", location_id=world["location"].id)) == 2


def test_an_audit_failure_hands_nothing_out(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]
    token, _ = clusters.register(world["admin"], "default", name="audited")
    agent = clusters.authenticate(token)
    db: Database = world["db"]
    original = db.session
    broken = {"on": True}

    def session() -> Any:
        if broken["on"]:
            raise RuntimeError("database down")
        return original()

    vending._location(world["location"].id)  # the location itself is read before the outage
    monkeypatch.setattr(db, "session", session)
    with pytest.raises(RuntimeError):
        vending.credentials(agent, world["location"].id)
    assert vending.cached_credentials(agent, world["location"].id) is None
    broken["on"] = False
    vending.credentials(agent, world["location"].id)
    with db.session() as s:
        assert len(list(s.scalars(select(CredentialIssuance)))) == 1


def test_concurrent_first_requests_write_one_audit_row_per_key(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]

    class SameKeyBroker(FakeBroker):
        def credentials(self, **kwargs: Any) -> Temp:
            super().credentials(**kwargs)
            return Temp("ASIASAMEKEY000000001", "s", "t", time.time() + 3600)

    vending._broker = SameKeyBroker()
    token, _ = clusters.register(world["admin"], "default", name="herd")
    agent = clusters.authenticate(token)
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait()
        vending.credentials(agent, world["location"].id)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(vending.issuances(world["admin"], "default")) == 1


def test_a_changed_location_drops_its_cached_credentials(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]
    locations: LocationService = world["locations"]
    token, _ = clusters.register(world["admin"], "default", name="moving")
    agent = clusters.authenticate(token)
    first = vending.credentials(agent, world["location"].id)
    locations.update(world["admin"], "default", world["location"].id, {"prefix": "moved"}, skip_validation=True)
    monkeypatch.setattr(VendingService, "SPEC_CACHE_SECONDS", 0.0)
    assert vending.cached_credentials(agent, world["location"].id) is None
    second = vending.credentials(agent, world["location"].id)
    assert second.access_key_id != first.access_key_id
    assert "moved/clusters/" in world["broker"].calls[-1]["session_policy"]


def test_editing_or_deleting_a_location_reaches_the_vending_cache_at_once(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]
    locations: LocationService = world["locations"]
    token, _ = clusters.register(world["admin"], "default", name="watching")
    agent = clusters.authenticate(token)
    location_id = world["location"].id
    vending.credentials(agent, location_id)
    locations.update(world["admin"], "default", location_id, {"prefix": "elsewhere"}, skip_validation=True)
    # No waiting for the 5 s spec cache: the edit itself dropped the location and its credentials.
    assert vending.cached_credentials(agent, location_id) is None
    vending.credentials(agent, location_id)
    assert "elsewhere/clusters/" in world["broker"].calls[-1]["session_policy"]
    locations.delete(world["admin"], "default", location_id)
    assert vending.cached_credentials(agent, location_id) is None
    with pytest.raises(errors.NotFound):
        vending.credentials(agent, location_id)


def test_rotating_the_external_id_drops_every_vended_credential_at_once(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    vending: VendingService = world["vending"]
    token, _ = clusters.register(world["admin"], "default", name="rotating")
    agent = clusters.authenticate(token)
    location_id = world["location"].id
    vending.credentials(agent, location_id)
    assert vending.cached_credentials(agent, location_id) is not None
    TenancyService(world["db"]).rotate_external_id(world["admin"], "default")
    assert vending.cached_credentials(agent, location_id) is None
    vending.credentials(agent, location_id)
    assert world["broker"].calls[-1]["external_id"] != world["broker"].calls[0]["external_id"]


def test_due_credentials_are_served_while_one_background_refresh_runs(world: dict[str, Any]) -> None:
    clusters: ClusterService = world["clusters"]
    now = [1_000_000.0]
    gate = threading.Event()

    class SlowBroker(FakeBroker):
        def credentials(self, **kwargs: Any) -> Temp:
            if self.calls:
                gate.wait(10)  # the refresh is slow, as when STS is rate limited
            with self.lock:
                self.calls.append(kwargs)
                n = len(self.calls)
            return Temp(f"ASIASLOW{n:012d}", "s", "t", now[0] + 1000)

    broker = SlowBroker()
    vending = VendingService(
        db=world["db"],
        locations=world["locations"],
        broker=broker,
        identity=None,
        refresh_seconds=900,
        clock=lambda: now[0],
    )
    token, _ = clusters.register(world["admin"], "default", name="refreshing")
    agent = clusters.authenticate(token)
    location_id = world["location"].id
    first = vending.credentials(agent, location_id)  # fresh for 100 s, expires in 1000 s
    now[0] += 200  # due for refresh, 800 s left: more than half of the 900 s window
    for _ in range(20):
        assert vending.cached_credentials(agent, location_id) == first  # nobody waits
    gate.set()
    deadline = time.monotonic() + 10
    while len(broker.calls) < 2 or vending.cached_credentials(agent, location_id) == first:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(broker.calls) == 2  # one refresh for all twenty requests
    assert vending.cached_credentials(agent, location_id).access_key_id == "ASIASLOW000000000002"  # type: ignore[union-attr]
    now[0] += 700  # 300 s left: less than half of the window, so the caller waits for new ones
    assert vending.cached_credentials(agent, location_id) is None
    vending.close()
