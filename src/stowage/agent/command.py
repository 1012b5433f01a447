"""``stowage agent``: the long-running agent process (and a one-shot check of a location)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from stowage.agent import health
from stowage.agent.access import AccessProblem, open_location, probe
from stowage.agent.backoff import Backoff
from stowage.agent.client import AgentRejected, ControlPlane, ServerUnavailable
from stowage.agent.jobs import BackupJobs
from stowage.agent.jsonlog import JsonLog
from stowage.agent.metrics import AgentMetrics
from stowage.agent.restore_jobs import RestoreJobs
from stowage.agent.runner import AgentRunner
from stowage.domain.backups import BACKUP_WORK_KIND as WORK_KIND
from stowage.domain.restores import RESTORE_WORK_KIND


def _token_source(token: str | None, token_file: Path | None) -> tuple[str, ...] | Path:
    if token_file is not None:
        return token_file
    if token and token.strip():
        return (token.strip(),)
    raise typer.BadParameter("give the cluster's agent token with --token or --token-file", param_hint="--token")


def agent(
    server: Annotated[
        str, typer.Option("--server", envvar="STOWAGE_SERVER", metavar="URL", help="Control plane URL.")
    ] = "http://127.0.0.1:8080",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="STOWAGE_AGENT_TOKEN",
            help="The cluster's agent token (stwa_...) from `stowage clusters register`.",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar="STOWAGE_AGENT_TOKEN_FILE",
            help="Read the agent token from this file on every call (a mounted Secret picks up rotations).",
            show_default=False,
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", envvar="STOWAGE_CA_CERT", help="CA bundle to trust for the control plane."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="STOWAGE_AGENT_LOG_LEVEL")] = "info",
    backoff_cap: Annotated[
        float, typer.Option("--backoff-max", help="Longest wait (s) between reconnection attempts.")
    ] = 60.0,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            envvar="KUBECONFIG",
            help="Kubeconfig of the cluster to back up; without it the agent uses its in-cluster service account.",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Kubeconfig context to use (default: the current one).")
    ] = None,
    health_port: Annotated[
        int,
        typer.Option(
            "--health-port",
            envvar="STOWAGE_AGENT_HEALTH_PORT",
            help="Serve /healthz (200 while connected, 503 when disconnected for 3 intervals), /livez and /metrics "
            "(Prometheus) on this port; 0: off.",
        ),
    ] = 0,
    health_address: Annotated[
        str, typer.Option("--health-address", envvar="STOWAGE_AGENT_HEALTH_ADDRESS", help="Address of the health port.")
    ] = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="Send one heartbeat and exit (0 when it worked).")] = False,
    check: Annotated[
        str | None,
        typer.Option(
            "--check",
            metavar="LOCATION_ID",
            help="Reach this location as the agent would (brokered or direct), write/read/delete one probe "
            "object in the cluster's own prefix, and exit.",
        ),
    ] = None,
) -> None:
    """Run the agent: heartbeat to the control plane, pull work, reconnect with backoff; stops on SIGTERM."""
    source = _token_source(token, token_file)

    def current_token() -> str:
        if isinstance(source, Path):
            return source.read_text(encoding="utf-8").strip()
        return source[0]

    log = JsonLog(level=log_level)
    try:
        control = ControlPlane(server, current_token, verify=str(ca_cert) if ca_cert else True)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--server") from exc
    try:
        if check is not None:
            raise typer.Exit(_check(control, check, log))
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("agent.signal", signal=signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def kube() -> Any:
            # Imported on first use: a heartbeat-only agent never loads the Kubernetes client.
            from stowage.agent.kube import api_client

            return api_client(str(kubeconfig) if kubeconfig else None, context)

        # One registry for the runner and the job handlers, served at /metrics on the health port.
        metrics = AgentMetrics()
        runner = AgentRunner(
            control,
            log=log,
            stop=stop,
            backoff=Backoff(1.0, max(1.0, backoff_cap)),
            handlers={
                WORK_KIND: BackupJobs(control, log=log, kube=kube, metrics=metrics),
                RESTORE_WORK_KIND: RestoreJobs(control, log=log, kube=kube, metrics=metrics),
            },
            metrics=metrics,
        )
        probes = health.serve(runner, health_address, health_port, metrics=metrics) if health_port else None
        try:
            raise typer.Exit(runner.run(once=once))
        finally:
            health.closing(probes)()
    finally:
        control.close()


def _check(control: ControlPlane, location_id: str, log: JsonLog) -> int:
    try:
        access = open_location(control, location_id)
        key = probe(access)
    except (AccessProblem, AgentRejected, ServerUnavailable) as exc:
        log.error("agent.check.failed", location=location_id, error=str(exc))
        return 1
    log.info(
        "agent.check.passed",
        location=location_id,
        agentAccess=access.location.get("agentAccess"),
        bucket=access.bucket,
        key=key,
    )
    return 0
