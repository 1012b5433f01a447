"""The agent: backoff, the run loop with a stand-in transport, and the real process against a real server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stowage.agent.backoff import Backoff
from stowage.agent.client import ControlPlane
from stowage.agent.jsonlog import JsonLog
from stowage.agent.runner import AgentRunner
from tests.agents.helpers import register
from tests.support.processes import spawn, stop, wait_until
from tests.support.servers import StowageServer


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not lockstep
    backoff.reset()
    assert backoff.next() <= 1.0
    with pytest.raises(ValueError):
        Backoff(0, 1)


class Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, value: str) -> None:
        self.text += value

    def flush(self) -> None:
        pass

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


def test_runner_backs_off_then_connects_and_dispatches_work() -> None:
    answers: list[Callable[[httpx.Request], httpx.Response]] = [
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
        lambda r: httpx.Response(503, json={"code": "x", "message": "starting"}),
        lambda r: httpx.Response(401, json={"code": "unauthenticated", "message": "revoked"}),
        lambda r: httpx.Response(
            200,
            json={
                "clusterId": "c1",
                "clusterName": "prod",
                "project": "default",
                "intervalSeconds": 7,
                "work": [{"id": "w1", "kind": "backup", "params": {}}, {"id": "w2", "kind": "teleport", "params": {}}],
            },
        ),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)(request)

    lines = Lines()
    done: list[str] = []
    control = ControlPlane("http://cp.test", lambda: "stwa_t", transport=httpx.MockTransport(handler))
    runner = AgentRunner(
        control,
        log=JsonLog(lines),  # type: ignore[arg-type]
        backoff=Backoff(1.0, 60.0, rng=random.Random(1)),
        handlers={"backup": lambda item: done.append(str(item["id"]))},
        version="9.9.9",
    )
    delays = [runner.tick() for _ in range(4)]
    assert delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4 and delays[3] == 7
    assert runner.connected and runner.backoff.attempt == 0 and done == ["w1"]
    assert seen[0].headers["authorization"] == "Bearer stwa_t"
    assert json.loads(seen[0].content) == {"version": "9.9.9"}
    events = [e["event"] for e in lines.events()]
    assert events == [
        "agent.unreachable",
        "agent.unreachable",
        "agent.rejected",
        "agent.connected",
        "agent.work.start",
        "agent.work.done",
        "agent.work.unsupported",
    ]
    assert all({"time", "level", "event"} <= set(e) for e in lines.events())


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a non-JSON line would fail the assertion below
    return out


def test_agent_process_reconnects_with_backoff_and_stops_on_sigterm(
    server_factory: Callable[..., StowageServer], tmp_path: Path
) -> None:
    first = server_factory()
    with first.client() as http:
        cluster = register(http, "k8s-prod")
    first.stop()  # the control plane is away when the agent starts

    env = {k: v for k, v in os.environ.items() if not k.startswith("STOWAGE_")}
    env["STOWAGE_AGENT_TOKEN"] = cluster["agentToken"]
    agent_log = tmp_path / "agent.log"
    agent = spawn(
        [sys.executable, "-m", "stowage.agent", "--server", first.url, "--backoff-max", "2"], env=env, log=agent_log
    )
    server = None
    try:
        wait_until(
            lambda: sum(e["event"] == "agent.unreachable" for e in _events(agent_log)) >= 3,
            timeout=30,
            what="agent retries",
            proc=agent,
            log=agent_log,
        )
        retries = [e for e in _events(agent_log) if e["event"] == "agent.unreachable"]
        assert [e["attempt"] for e in retries[:3]] == [1, 2, 3]
        assert all(0 < e["retryInSeconds"] <= 2 for e in retries)
        # The server comes back on the same address with the same data.
        server = spawn([sys.executable, "-m", "stowage.entry", "serve"], env=first.env, log=tmp_path / "again.log")
        wait_until(
            lambda: any(e["event"] == "agent.connected" for e in _events(agent_log)),
            timeout=30,
            what="agent reconnection",
            proc=agent,
            log=agent_log,
        )
        with first.client() as http:
            shown = http.get("/api/v1/projects/default/clusters/k8s-prod").json()
        assert shown["status"] == "connected" and shown["agentVersion"]
        connected = next(e for e in _events(agent_log) if e["event"] == "agent.connected")
        assert connected["cluster"] == "k8s-prod" and connected["project"] == "default"

        started = time.monotonic()
        os.kill(agent.pid, signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
        assert time.monotonic() - started < 5  # no waiting out the 30 s heartbeat interval
        assert _events(agent_log)[-1]["event"] == "agent.stop"
        assert all(line.startswith("{") for line in agent_log.read_text().splitlines())
    finally:
        stop(agent)
        if server is not None:
            stop(server)


def test_agent_once_fails_clearly_with_a_bad_token(server: StowageServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOWAGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "stowage.agent", "--server", server.url, "--token", "stwa_nope", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.splitlines()]
    rejected = next(e for e in events if e["event"] == "agent.rejected")
    assert rejected["status"] == 401 and "Unknown agent token" in rejected["error"]
    missing = subprocess.run(
        [sys.executable, "-m", "stowage.agent", "--server", server.url, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode == 2 and "--token" in missing.stderr
