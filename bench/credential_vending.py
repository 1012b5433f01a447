"""Benchmark: many agents asking a real server for credentials at once, against a real ministack (AUTH=true).

Starts ministack and ``stowage serve`` (SQLite, one uvicorn worker), creates a bucket and a role trusted with
the project's External ID, one brokered STS location and N clusters, then lets N concurrent agents (asyncio +
httpx, one connection each, split over ``--client-processes`` processes so the load generator is not the
bottleneck) call ``GET /api/v1/agent/locations/{id}/credentials`` in a loop. Prints requests/s, p50/p99
latency and the number of STS calls the server made: the audit log records exactly the credentials STS issued
(answers from a cache are not logged), so its row count is the server's AssumeRole count for vending.

    .venv/bin/python bench/credential_vending.py [--agents 200] [--seconds 15] [--sts-duration 3600]

``--sts-duration 20 --refresh 10`` makes the credentials expire during the run, to see one STS call per
(location, cluster) per refresh window.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.aws_accounts import AwsAccounts
from tests.support.ministack import start_ministack
from tests.support.servers import start_server

GOAL_RPS = 1000.0
REGION = "eu-west-1"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _agent(base: str, path: str, token: str, until: float, samples: list[float], errors: list[str]) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as http:
        while True:  # at least one request, so a zero-length run is a cold start of every agent
            start = time.perf_counter()
            answer = await http.get(path)
            samples.append(time.perf_counter() - start)
            if answer.status_code != 200:
                errors.append(f"{answer.status_code} {answer.text[:200]}")
            if time.monotonic() >= until:
                break


async def _raw_agent(base: str, path: str, token: str, until: float, samples: list[float], errors: list[str]) -> None:
    """The same loop over a bare keep-alive HTTP/1.1 connection: a load generator that costs almost no CPU,
    so the figures show the server rather than httpx (which saturates at about 1,000 req/s on two cores)."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    try:
        while True:
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            samples.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{status} {body[:200]!r}")
            if time.monotonic() >= until:
                break
    finally:
        writer.close()


def _client_process(base: str, path: str, tokens: list[str], seconds: float, queue: Any, raw: bool) -> None:
    """One load-generating process: its share of the agents, each with its own connection."""
    agent = _raw_agent if raw else _agent

    async def run() -> tuple[list[float], list[str], float, float]:
        samples: list[float] = []
        errors: list[str] = []
        # The window starts when this process is ready, so interpreter start-up is not counted as load.
        began = time.time()
        until = time.monotonic() + seconds
        await asyncio.gather(*(agent(base, path, t, until, samples, errors) for t in tokens))
        return samples, errors, began, time.time()

    queue.put(asyncio.run(run()))


def load(
    base: str, path: str, tokens: list[str], seconds: float, processes: int, *, raw: bool = False
) -> tuple[list[float], list[str], float]:
    """Run all agents for ``seconds``; returns latencies (s), errors and the wall time."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    shares = [tokens[i::processes] for i in range(processes)]
    workers = [ctx.Process(target=_client_process, args=(base, path, s, seconds, queue, raw)) for s in shares if s]
    for worker in workers:
        worker.start()
    samples: list[float] = []
    errors: list[str] = []
    starts, ends = [], []
    for _ in workers:
        got_samples, got_errors, began, ended = queue.get()
        samples += got_samples
        errors += got_errors
        starts.append(began)
        ends.append(ended)
    wall = max(ends) - min(starts)
    for worker in workers:
        worker.join()
    return samples, errors, wall


def issuances(data_dir: Path) -> int:
    """Rows in the audit log = credentials STS issued for agents."""
    with sqlite3.connect(data_dir / "stowage.db") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM credential_issuances").fetchone()
    return int(count)


def main() -> None:
    """Set everything up, warm the caches, measure, print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--sts-duration", type=int, default=3600, help="STOWAGE_STS_DURATION_SECONDS")
    parser.add_argument("--refresh", type=int, default=900, help="STOWAGE_CREDENTIAL_REFRESH_SECONDS")
    parser.add_argument("--sts-rate", type=float, default=50.0, help="STOWAGE_STS_CALLS_PER_SECOND")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        emulator = start_ministack(tmp)
        server = None
        try:
            aws = AwsAccounts(emulator.url)
            env = {
                **aws.control_plane_env(),
                "STOWAGE_SCHEDULER_ENABLED": "false",
                "STOWAGE_ALLOW_SHORT_SESSIONS": "true",
                "STOWAGE_STS_DURATION_SECONDS": str(args.sts_duration),
                "STOWAGE_CREDENTIAL_REFRESH_SECONDS": str(args.refresh),
                "STOWAGE_STS_CALLS_PER_SECOND": str(args.sts_rate),
            }
            server = start_server(tmp, extra_env=env)
            with server.client() as http:
                external_id = http.get("/api/v1/projects/default").json()["externalId"]
                bucket = aws.create_bucket(f"bench-{uuid.uuid4().hex[:8]}", REGION)
                role = aws.create_role("stowage-bench", bucket=bucket, external_id=external_id, prefix="bench")
                location = http.post(
                    "/api/v1/projects/default/backup-locations",
                    json={
                        "name": "bench",
                        "bucket": bucket,
                        "region": REGION,
                        "prefix": "bench",
                        "credentials": {"type": "sts", "roleArn": role},
                        "skipValidation": True,
                    },
                ).json()
                tokens = [
                    http.post("/api/v1/projects/default/clusters", json={"name": f"c{i:04d}"}).json()["agentToken"]
                    for i in range(args.agents)
                ]
            path = f"/api/v1/agent/locations/{location['id']}/credentials"

            # Cold start: every (location, cluster) pair needs its first STS call.
            started = time.perf_counter()
            cold, cold_errors, _ = load(server.url, path, tokens, 0.0, args.client_processes)
            cold_wall = time.perf_counter() - started
            sts_cold = issuances(server.data_dir)

            measured_from = time.perf_counter()
            runs = {
                "httpx": load(server.url, path, tokens, args.seconds, args.client_processes),
                "raw": load(server.url, path, tokens, args.seconds, 1, raw=True),
            }
            sts_total = issuances(server.data_dir)
            elapsed = time.perf_counter() - measured_from
        finally:
            if server is not None:
                server.stop()
            emulator.stop()

    refresh = min(args.refresh, args.sts_duration // 2)
    # Each pair's credentials stay fresh for (duration - refresh) seconds, then are refreshed once.
    expected = int(args.agents * elapsed / max(1, args.sts_duration - refresh))
    print(
        f"agents={args.agents} seconds={args.seconds} per client, sts duration={args.sts_duration}s "
        f"refresh window={refresh}s, one uvicorn worker, SQLite"
    )
    print(
        f"cold start: {len(cold)} requests in {cold_wall:.2f} s, STS calls {sts_cold} "
        f"(expected {args.agents}), errors {len(cold_errors)}"
    )
    print(f"{'client':<24} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, (samples, errors, wall) in runs.items():
        label = f"{name} ({args.client_processes if name == 'httpx' else 1} process)"
        ms = [s * 1000 for s in samples]
        rps = len(samples) / wall
        print(
            f"{label:<24} {len(samples):>9} {rps:>8,.0f} {statistics.median(ms):>8.2f} "
            f"{percentile(ms, 99):>8.2f} {len(errors):>7}" + (f"  first error: {errors[0]}" if errors else "")
        )
    best = max(len(r[0]) / r[2] for r in runs.values())
    print(f"goal >= {GOAL_RPS:,.0f} req/s from cache: {'met' if best >= GOAL_RPS else 'NOT met'}")
    print(
        f"STS calls after the cold start: {sts_total - sts_cold} "
        f"in {elapsed:.0f} s (one per (location, cluster) per refresh: about {expected} expected)"
    )


if __name__ == "__main__":
    main()
