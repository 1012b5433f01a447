"""The agent's own Prometheus metrics on its health port: the recording rules, then real agent processes.

A heartbeat-only agent against a real server shows heartbeats moving and ``connected`` falling once the server is
gone; an agent with a real kube-apiserver and ministack (tests/support/stack.py) runs a backup and a restore and
shows jobs, objects, bytes and credential sessions counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stowage.agent.metrics import AgentMetrics
from tests.agents.helpers import register
from tests.support.kube import Kube
from tests.support.processes import free_port, spawn, stop, wait_until
from tests.support.servers import StowageServer
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series is not there)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


def test_recording_rules() -> None:
    metrics = AgentMetrics()
    start = parse(metrics.render().decode())
    # Labelled series exist at 0 before anything happened (rate() and alerts work from the first scrape).
    assert value(start, "stowage_agent_heartbeats_total", result="unreachable") == 0
    assert ("stowage_agent_heartbeats_total", frozenset({("result", "ok")})) in start
    assert value(start, "stowage_agent_connected") == 0
    assert value(start, "process_cpu_seconds_total") >= 0  # the process collectors are in the agent's registry

    metrics.heartbeat("ok", now=1_700_000_000.0)
    metrics.heartbeat("ok", now=1_700_000_030.0)
    metrics.heartbeat("unreachable")
    metrics.job_finished("backup", "Completed", 12.5, objects=40, size_bytes=9000)
    metrics.job_finished("backup", "Failed", 0.2)
    metrics.job_finished("restore", "PartiallyFailed", 3.0, objects=7)
    metrics.job_finished("preview", "Completed", 1.0, objects=0)
    metrics.credentials(ok=True)
    metrics.credentials(ok=False)
    got = parse(metrics.render().decode())
    assert value(got, "stowage_agent_heartbeats_total", result="ok") == 2
    assert value(got, "stowage_agent_heartbeats_total", result="unreachable") == 1
    assert value(got, "stowage_agent_connected") == 0  # the last one failed
    assert value(got, "stowage_agent_last_heartbeat_timestamp_seconds") == 1_700_000_030.0
    assert value(got, "stowage_agent_jobs_total", kind="backup", phase="Completed") == 1
    assert value(got, "stowage_agent_jobs_total", kind="backup", phase="Failed") == 1
    assert value(got, "stowage_agent_jobs_total", kind="restore", phase="PartiallyFailed") == 1
    assert value(got, "stowage_agent_job_duration_seconds_count", kind="backup") == 2
    assert value(got, "stowage_agent_job_duration_seconds_sum", kind="backup") == 12.7
    assert value(got, "stowage_agent_job_duration_seconds_bucket", kind="backup", le="15.0") == 2
    assert value(got, "stowage_agent_objects_backed_up_total") == 40
    assert value(got, "stowage_agent_bytes_uploaded_total") == 9000
    assert value(got, "stowage_agent_objects_restored_total") == 7  # a preview restores nothing
    assert value(got, "stowage_agent_credential_fetches_total", result="ok") == 1
    assert value(got, "stowage_agent_credential_fetches_total", result="failed") == 1
    # Two agents' registries in one process do not collide (not the global registry).
    assert value(parse(AgentMetrics().render().decode()), "stowage_agent_objects_backed_up_total") == 0


def _agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_"))}


def test_a_real_agent_counts_its_heartbeats(server_factory: Callable[..., StowageServer], tmp_path: Path) -> None:
    server = server_factory(extra_env={"STOWAGE_AGENT_HEARTBEAT_SECONDS": "1", "STOWAGE_SCHEDULER_ENABLED": "false"})
    with server.client() as http:
        token = register(http, "metrics")["agentToken"]
    port = free_port()
    env = {**_agent_env(), "STOWAGE_AGENT_TOKEN": token}
    log = tmp_path / "agent.log"
    args = [sys.executable, "-m", "stowage.agent", "--server", server.url, "--health-port", str(port)]
    agent = spawn([*args, "--backoff-max", "1"], env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: value(scrape(url), "stowage_agent_heartbeats_total", result="ok") >= 1,
            timeout=30,
            what="a counted heartbeat",
            proc=agent,
            log=log,
        )
        first = scrape(url)
        assert value(first, "stowage_agent_connected") == 1
        assert abs(value(first, "stowage_agent_last_heartbeat_timestamp_seconds") - time.time()) < 10
        assert value(first, "stowage_agent_heartbeats_total", result="unreachable") == 0
        assert httpx.get(f"{url}/healthz").status_code == 200  # the health answers are unchanged
        time.sleep(2.5)  # one heartbeat a second
        later = scrape(url)
        assert (
            value(later, "stowage_agent_heartbeats_total", result="ok")
            >= value(first, "stowage_agent_heartbeats_total", result="ok") + 2
        )
        assert value(later, "stowage_agent_last_heartbeat_timestamp_seconds") > value(
            first, "stowage_agent_last_heartbeat_timestamp_seconds"
        )
        # The server itself counted them too (its own registry, its own name).
        assert "stowage_agent_heartbeats_total " in httpx.get(f"{server.url}/metrics").text

        server.stop()
        wait_until(
            lambda: value(scrape(url), "stowage_agent_heartbeats_total", result="unreachable") >= 2,
            timeout=30,
            what="failed heartbeats",
            proc=agent,
            log=log,
        )
        gone = scrape(url)
        assert value(gone, "stowage_agent_connected") == 0
        # The last answered heartbeat keeps its time: "time() - that" is how long the agent has been cut off.
        stale = value(gone, "stowage_agent_last_heartbeat_timestamp_seconds")
        time.sleep(1.5)
        assert value(scrape(url), "stowage_agent_last_heartbeat_timestamp_seconds") == stale
        assert value(gone, "stowage_agent_jobs_total", kind="backup", phase="Completed") == 0
    finally:
        stop(agent)
    assert agent.returncode == 0


def _start_agent(stack: Stack, cluster: dict[str, Any], kube: Kube, port: int) -> subprocess.Popen[bytes]:
    """The agent process as Stack.start_agent runs it (brokered, the emulator's endpoints), with a health port."""
    env = _agent_env()
    env.update(
        {
            "AWS_ENDPOINT_URL": stack.aws.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    args = [sys.executable, "-m", "stowage.agent", "--server", stack.server.url, "--token", cluster["agentToken"]]
    args += ["--kubeconfig", str(kube.kubeconfig), "--backoff-max", "2", "--health-port", str(port)]
    proc = spawn(args, env=env, log=stack.tmp / "agent-metrics.log")
    stack.agents.append(proc)  # stopped by the stack fixture, by PID
    return proc


def test_jobs_objects_bytes_and_credentials_of_a_backup_and_a_restore(
    stack_factory: Callable[..., Stack], kube: Kube
) -> None:
    stack = stack_factory(STOWAGE_AGENT_HEARTBEAT_SECONDS="1")
    cluster = stack.cluster(f"m-{uuid.uuid4().hex[:6]}")
    port = free_port()
    agent = _start_agent(stack, cluster, kube, port)
    url = f"http://127.0.0.1:{port}"
    namespace = kube.namespace("metrics")
    for i in range(5):
        kube.create(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"i": "x"}})
    backup = f"bk-{uuid.uuid4().hex[:6]}"
    stack.backup(cluster["name"], {"backupName": backup, "namespaces": [namespace]})
    done = stack.wait(cluster["name"], backup, {"Completed", "PartiallyFailed", "Failed"})
    assert done["phase"] == "Completed", done
    # The completion reaches the server before the counters are read: wait for them, not for the phase.
    log = stack.tmp / "agent-metrics.log"
    wait_until(
        lambda: value(scrape(url), "stowage_agent_jobs_total", kind="backup", phase="Completed") == 1,
        timeout=30,
        what="a counted backup",
        proc=agent,
        log=log,
    )
    after_backup = scrape(url)
    assert value(after_backup, "stowage_agent_objects_backed_up_total") == done["progress"]["itemsBackedUp"] >= 6
    assert value(after_backup, "stowage_agent_bytes_uploaded_total") == done["sizeBytes"] > 0
    assert value(after_backup, "stowage_agent_job_duration_seconds_count", kind="backup") == 1
    assert value(after_backup, "stowage_agent_credential_fetches_total", result="ok") == 1
    assert value(after_backup, "stowage_agent_connected") == 1

    target = f"metrics2-{uuid.uuid4().hex[:6]}"
    kube.namespaces.append(target)
    answer = stack.http.post(
        f"/api/v1/projects/default/clusters/{cluster['name']}/backups/{backup}/restores",
        json={"namespaceMapping": {namespace: target}},
    )
    assert answer.status_code == 202, answer.text
    wait_until(
        lambda: value(scrape(url), "stowage_agent_jobs_total", kind="restore", phase="Completed") == 1,
        timeout=60,
        what="a counted restore",
        proc=agent,
        log=log,
    )
    restored = stack.http.get(
        f"/api/v1/projects/default/clusters/{cluster['name']}/restores/{answer.json()['restoreName']}"
    ).json()
    after_restore = scrape(url)
    assert value(after_restore, "stowage_agent_objects_restored_total") == restored["progress"]["itemsRestored"] >= 6
    assert value(after_restore, "stowage_agent_credential_fetches_total", result="ok") == 2  # the restore's own
    assert value(after_restore, "stowage_agent_job_duration_seconds_count", kind="restore") == 1
    assert value(after_restore, "stowage_agent_credential_fetches_total", result="failed") == 0


def test_every_agent_metric_is_documented() -> None:
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    families = AgentMetrics().registry.collect()
    names = {f.name + ("_total" if f.type == "counter" else "") for f in families if f.name.startswith("stowage_")}
    assert len(names) == 9 and not [name for name in names if f"`{name}`" not in operations], names
