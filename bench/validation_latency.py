"""Benchmark: wall time of a full location validation over a link with 25 ms latency each way.

Starts a real ministack (AUTH=true) and an asyncio TCP proxy in front of it that holds every chunk 25 ms in
each direction (one round trip = 50 ms), sets up a bucket and a role with Stowage's own policies, then times:

* ``parallel``: ``LocationValidator.validate`` as the API runs it (assume-role and the External-ID probe at
  once, then all independent probes at once; put -> get -> delete is the only forced order);
* ``naive``: the very same calls one after another (``assume_once``, ``try_assume_without_external_id``,
  ``run_probes(max_workers=1)``, with the same warm pooled clients), in the same process and run;
* ``direct``: the parallel validation again without the proxy, to show how much of the wall time is CPU
  (client and emulator) rather than latency;

and prints the median wall time in ms and in round trips (wall / 50 ms), and the ratio. Goal: <= 4 round
trips for the parallel run. ``--connect-rtt`` also charges one round trip per new TCP connection (the SYN /
SYN-ACK a real network adds; TLS would add more), which the default data-only model leaves out.

    .venv/bin/python bench/validation_latency.py [--runs 7] [--one-way-ms 25] [--connect-rtt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.aws_accounts import AwsAccounts
from tests.support.ministack import start_ministack
from tests.support.processes import free_port, spawn, stop, wait_until

from stowage.aws import probes
from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.checks import CheckStatus, ValidationReport
from stowage.domain.locations import LocationSpec, Provider, StsCredentials, role_session_name
from stowage.services.validation import LocationValidator

GOAL_ROUND_TRIPS = 4.0
EXTERNAL_ID = "bench-" + "e" * 40
BUCKET = "bench-backups"
REGION = "eu-west-1"


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that holds every chunk ``one_way`` seconds in each direction.

    It runs in its own process (``--proxy``): in the benchmark's process its event loop would compete for the
    GIL with the probe threads and stretch the very delays it injects.
    """

    def __init__(self, listen_port: int, upstream_port: int, one_way: float, *, connect_rtt: bool = False) -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.one_way = one_way
        self.connect_rtt = connect_rtt

    async def serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        async with server:
            await server.serve_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            if self.connect_rtt:
                # The TCP handshake a real link would cost before the first byte of the request.
                await asyncio.sleep(2 * self.one_way)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(self._pipe(client_reader, up_writer), self._pipe(up_reader, client_writer))
        except (ConnectionError, asyncio.CancelledError):
            client_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if data is None:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.one_way, data))
        queue.put_nowait((loop.time() + self.one_way, None))
        with contextlib.suppress(ConnectionError):
            await sender


def start_proxy(upstream_port: int, one_way_ms: float, connect_rtt: bool, log: Path) -> tuple[int, Any]:
    """Start the latency proxy in a child process; returns its port and process."""
    port = free_port()
    args = [sys.executable, __file__, "--proxy", str(port), str(upstream_port), "--one-way-ms", str(one_way_ms)]
    if connect_rtt:
        args.append("--connect-rtt")
    proc = spawn(args, env=dict(os.environ), log=log)
    wait_until(lambda: _port_open(port), timeout=10, what="latency proxy", proc=proc, log=log)
    return port, proc


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--one-way-ms", type=float, default=25.0)
    parser.add_argument("--connect-rtt", action="store_true", help="charge one round trip per new TCP connection")
    parser.add_argument("--proxy", nargs=2, type=int, metavar=("LISTEN", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        proxy = LatencyProxy(args.proxy[0], args.proxy[1], args.one_way_ms / 1000, connect_rtt=args.connect_rtt)
        asyncio.run(proxy.serve())
        return
    one_way = args.one_way_ms / 1000
    rtt = 2 * one_way

    with tempfile.TemporaryDirectory(prefix="stowage-bench-") as tmp:
        ministack = start_ministack(Path(tmp))
        proxy_port, proxy = start_proxy(ministack.port, args.one_way_ms, args.connect_rtt, Path(tmp) / "proxy.log")
        try:
            direct = AwsAccounts(ministack.url)
            direct.create_bucket(BUCKET, REGION)
            # No EC2 statement problems, no KMS: the full happy path, every probe runs.
            role = direct.create_role("stowage-bench", bucket=BUCKET, external_id=EXTERNAL_ID, prefix="bench")
            through_proxy = AwsAccounts(f"http://127.0.0.1:{proxy_port}")
            os.environ.update(through_proxy.control_plane_env())
            for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
                del os.environ[name]

            # Back-to-back validations would otherwise measure the STS token bucket (10 calls/s by default).
            settings = Settings(sts_calls_per_second=1000.0)
            broker = CredentialBroker(settings)
            validator = LocationValidator(settings=settings, broker=broker, identity=IdentityResolver())
            spec = LocationSpec(
                name="bench",
                provider=Provider.AWS,
                bucket=BUCKET,
                region=REGION,
                prefix="bench",
                credentials=StsCredentials(role),
            )
            session = role_session_name("bench", spec.name)

            def parallel() -> ValidationReport:
                return validator.validate(spec, project_name="bench", external_id=EXTERNAL_ID)

            # The naive run gets warm pooled clients too, so the comparison measures ordering, not set-up.
            naive_clients = probes.ClientPool(timeout=settings.validation_timeout_seconds)

            def naive() -> None:
                creds = broker.assume_once(role_arn=role, external_id=EXTERNAL_ID, session_name=session, region=REGION)
                broker.try_assume_without_external_id(role, session, REGION)
                with naive_clients.lease(spec, creds) as leased:
                    probes.run_probes(creds, spec, principal_arn=role, client_factory=leased.client, max_workers=1)

            # Warm-up: load botocore's models and the broker's STS client once, as a running server has.
            report = parallel()
            failed = [c.id for c in report.checks if c.status is CheckStatus.FAILED]
            if failed:
                raise SystemExit(f"validation failed on the benchmark setup: {failed}")
            naive()

            parallel_runs: list[float] = []
            naive_runs: list[float] = []
            for _ in range(args.runs):
                parallel_runs.append(timed(parallel))
                naive_runs.append(timed(naive))
            # The same validation straight to the emulator: the CPU time of client and emulator, no latency.
            os.environ["AWS_ENDPOINT_URL"] = ministack.url
            parallel()
            direct_runs = [timed(parallel) for _ in range(args.runs)]
        finally:
            stop(proxy)
            ministack.stop()

    p50_parallel = statistics.median(parallel_runs)
    p50_naive = statistics.median(naive_runs)
    model = "data + TCP connect" if args.connect_rtt else "data only"
    print(
        f"validation latency: {args.one_way_ms:g} ms each way ({rtt * 1000:g} ms round trip, {model}), "
        f"{args.runs} runs, median"
    )
    print(
        f"  parallel (LocationValidator) {p50_parallel * 1000:8.1f} ms  {p50_parallel / rtt:5.2f} round trips"
        f"  (min {min(parallel_runs) * 1000:.1f} ms)"
    )
    print(
        f"  naive sequential             {p50_naive * 1000:8.1f} ms  {p50_naive / rtt:5.2f} round trips"
        f"  (min {min(naive_runs) * 1000:.1f} ms)"
    )
    p50_direct = statistics.median(direct_runs)
    print(
        f"  parallel without the proxy   {p50_direct * 1000:8.1f} ms  (no latency: client and emulator CPU, which "
        "the parallel run overlaps with waiting)"
    )
    print(
        f"  speed-up {p50_naive / p50_parallel:.1f}x; goal <= {GOAL_ROUND_TRIPS:g} round trips: "
        f"{'met' if p50_parallel / rtt <= GOAL_ROUND_TRIPS else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
