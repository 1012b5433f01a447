"""Benchmark: list and search backup locations over HTTP with 10,000 locations in 50 projects.

Starts a real ``stowage serve`` on SQLite and on a throw-away PostgreSQL database, fills them through the
store (the API would validate every location against AWS, which is not what this measures), then times
``GET /backup-locations`` (first page) and ``?search=`` over HTTP and prints p50/p95 against the 30 ms goal.

    .venv/bin/python bench/locations_list.py [--locations 10000] [--projects 50] [--requests 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.servers import start_server

from stowage.domain.access import Principal, Role
from stowage.services.tenancy import TenancyService
from stowage.store.database import Database
from stowage.store.tables import Location, Project, Tenant

GOAL_P95_MS = 30.0
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]


def fill(url: str, locations: int, projects: int) -> list[str]:
    """Create projects and locations straight in the database; returns project names."""
    db = Database(url)
    db.migrate()
    with db.session() as session:
        tenant_id = session.query(Tenant.id).filter(Tenant.name == "default").scalar()
    tenancy = TenancyService(db)
    admin = Principal(tenant_id=tenant_id, role=Role.ADMIN, subject="bench")
    names = [f"proj-{i:02d}" for i in range(projects)]
    for name in names:
        tenancy.create_project(admin, name)
    rng = random.Random(7)
    with db.session() as session:
        ids = {p.name: p.id for p in session.query(Project).filter(Project.tenant_id == tenant_id)}
        rows = []
        for i in range(locations):
            project = names[i % projects]
            rows.append(
                Location(
                    project_id=ids[project],
                    name=f"loc-{i:05d}",
                    provider="aws",
                    bucket=f"backups-{rng.choice(['prod', 'dev', 'stage'])}-{i:05d}",
                    region=rng.choice(REGIONS),
                    credential_type="sts",
                    role_arn=f"arn:aws:iam::{rng.randint(10**11, 10**12 - 1)}:role/stowage",
                    status="Available",
                    status_message="All 20 checks passed.",
                    is_default=(i < projects),
                )
            )
        session.add_all(rows)
    db.dispose()
    return names


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(base: str, token: str, names: list[str], requests: int) -> dict[str, tuple[float, float]]:
    """p50/p95 in ms of list and search."""
    rng = random.Random(11)
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        for kind in ("list", "search"):
            samples = []
            for n in range(requests + 20):
                project = rng.choice(names)
                params = {"limit": 50}
                if kind == "search":
                    params["search"] = rng.choice(["prod", "eu-west", "loc-01", "stage-0"])
                start = time.perf_counter()
                answer = http.get(f"/api/v1/projects/{project}/backup-locations", params=params)
                elapsed = (time.perf_counter() - start) * 1000
                assert answer.status_code == 200, answer.text
                if n >= 20:  # warm-up excluded
                    samples.append(elapsed)
            out[kind] = (statistics.median(samples), percentile(samples, 95))
    return out


def main() -> None:
    """Run the benchmark on SQLite and PostgreSQL and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--locations", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(f"{args.locations} locations in {args.projects} projects, {args.requests} requests each, page size 50")
    print(f"{'database':<11} {'query':<7} {'p50 ms':>8} {'p95 ms':>8} {'p95/goal':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            pg_url = create_pg_database() if backend == "postgresql" else None
            try:
                server = start_server(Path(tmp), database_url=pg_url, extra_env={"STOWAGE_SCHEDULER_ENABLED": "false"})
                url = pg_url or f"sqlite:///{server.data_dir / 'stowage.db'}"
                names = fill(url, args.locations, args.projects)
                for kind, (p50, p95) in measure(server.url, server.admin_token, names, args.requests).items():
                    print(f"{backend:<11} {kind:<7} {p50:8.2f} {p95:8.2f} {p95 / GOAL_P95_MS:9.2f}")
                server.stop()
            finally:
                if pg_url:
                    drop_pg_database(pg_url)


if __name__ == "__main__":
    main()
