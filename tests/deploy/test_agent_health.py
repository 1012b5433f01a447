"""The agent's health port (the Deployment's probes): unit rules, then a real agent process and server."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stowage.agent import health
from tests.agents.helpers import register
from tests.support.processes import free_port, spawn, stop, wait_until
from tests.support.servers import StowageServer


@dataclass
class State:
    started_at: float = 100.0
    last_contact: float | None = None
    interval: float = 10.0
    working: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


def test_status_rules() -> None:
    fresh = State()
    assert health.status(fresh, now=120.0)[0] == 200  # starting: the grace is the same three intervals
    assert health.status(fresh, now=131.0) == (
        503,
        {"connected": False, "secondsSinceHeartbeat": None, "limitSeconds": 30.0, "status": "disconnected"},
    )
    connected = State(last_contact=200.0)
    code, body = health.status(connected, now=229.0)
    assert code == 200 and body["connected"] and body["secondsSinceHeartbeat"] == 29.0
    assert health.status(connected, now=231.0)[0] == 503
    assert health.status(State(last_contact=200.0, working=True), now=1000.0) == (
        200,
        {"connected": False, "secondsSinceHeartbeat": 800.0, "limitSeconds": 30.0, "status": "working"},
    )
    stopping = State(last_contact=200.0)
    stopping.stop.set()
    assert health.status(stopping, now=201.0)[0] == 503


def test_a_real_agent_is_healthy_while_connected_and_not_once_the_server_is_gone(
    server_factory: Callable[..., StowageServer], tmp_path: Path
) -> None:
    server = server_factory(extra_env={"STOWAGE_AGENT_HEARTBEAT_SECONDS": "1", "STOWAGE_SCHEDULER_ENABLED": "false"})
    with server.client() as http:
        token = register(http, "health")["agentToken"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}
    env["STOWAGE_AGENT_TOKEN"] = token
    log = tmp_path / "agent.log"
    args = [
        sys.executable,
        "-m",
        "stowage.agent",
        "--server",
        server.url,
        "--health-port",
        str(port),
        "--backoff-max",
        "1",
    ]
    agent = spawn(args, env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="agent health", proc=agent, log=log
        )
        answer = httpx.get(f"{url}/healthz").json()
        assert answer["status"] == "ok" and answer["connected"] and answer["limitSeconds"] == 3.0
        assert httpx.get(f"{url}/livez").status_code == 200
        assert httpx.get(f"{url}/nope").status_code == 404

        server.stop()
        started = time.monotonic()
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 503, timeout=30, what="503", proc=agent, log=log)
        assert time.monotonic() - started >= 1.5  # not at the first missed heartbeat: after three intervals
        assert httpx.get(f"{url}/healthz").json()["status"] == "disconnected"
        assert httpx.get(f"{url}/livez").status_code == 200  # a restart would not bring the server back
    finally:
        stop(agent)
    assert agent.returncode == 0
