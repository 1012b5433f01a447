"""The control plane restarted while a backup runs: the agent keeps going, buffers its reports, and reports when
the server is back on the same port and SQLite data directory; the backup completes intact.

The agent's S3 is slowed by a TCP proxy (about 40 KB/s) so the backup lasts well beyond the restart. The lease
(20 s, reports every 5 s) is longer than the outage, so the restarted server must not fail the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.backups.helpers import read_backup
from tests.faults.conftest import PREFIX, FaultStack, many_configmaps, restart_server
from tests.support.kube import Kube
from tests.support.proxy import SlowProxy

CONFIGMAPS = 600


def test_a_backup_survives_a_control_plane_restart(fault_stack: Callable[..., FaultStack], kube: Kube) -> None:
    stack = fault_stack(STOWAGE_AGENT_HEARTBEAT_SECONDS="2", STOWAGE_BACKUP_LEASE_SECONDS="20")
    namespace = many_configmaps(kube, CONFIGMAPS)
    target = urlsplit(stack.aws.endpoint)
    proxy = SlowProxy((target.hostname or "127.0.0.1", target.port or 80), bytes_per_second=40_000).start()
    try:
        cluster = stack.cluster("steady")
        stack.start_agent(cluster, kube.kubeconfig, aws_endpoint=proxy.url)
        started = time.monotonic()
        stack.backup("steady", {"backupName": "through-restart", "namespaces": [namespace]})
        stack.wait("steady", "through-restart", {"InProgress"}, timeout=60)
        time.sleep(3)  # well inside the upload (more than 1 MB at 40 KB/s)
        before = stack.get("steady", "through-restart")
        assert before["phase"] == "InProgress"
        stack.http.close()
        down = restart_server(stack.server, down_seconds=4)
        stack.http = stack.server.client()
        after_restart = stack.get("steady", "through-restart")
        done = stack.wait("steady", "through-restart", {"Completed", "PartiallyFailed", "Failed"}, timeout=240)
        took = time.monotonic() - started
    finally:
        proxy.close()
    agent_log = stack.agent_log()
    unreachable = agent_log.count("backup.report.unreachable")
    logs = stack.http.get("/api/v1/projects/default/clusters/steady/backups/through-restart/logs").json()
    lines = logs.get("items") or logs.get("lines") or logs.get("logs") or []
    stored = read_backup(
        stack.owner_s3(), "through-restart", bucket=stack.bucket, cluster_prefix=f"{PREFIX}/clusters/{cluster['id']}"
    )
    lost = CONFIGMAPS - len(stored.names("configmaps", namespace))
    print(
        f"\ncontrol plane down {down:.1f} s during a {took:.1f} s backup: phase after the restart "
        f"{after_restart['phase']}, final {done['phase']}; progress reports that found it away {unreachable}; "
        f"log lines delivered {len(lines)}; objects lost {lost}"
    )
    assert after_restart["phase"] == "InProgress", after_restart
    assert done["phase"] == "Completed", (done["failureReason"], agent_log[-3000:])
    assert unreachable >= 1, "no progress report was sent while the server was away: the outage was too short"
    assert done["progress"]["itemsBackedUp"] == done["progress"]["totalItems"] > CONFIGMAPS
    assert lost == 0
    assert any("claimed by the agent" in str(line) for line in lines), lines[:5]
