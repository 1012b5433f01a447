"""``stowage workspaces`` and ``stowage protection``: groups of clusters backed up and restored together, and
every cluster's and workspace's recovery point status (for people and for monitoring scripts)."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from stowage.cli.backups import (
    EXIT_PARTIALLY_FAILED,
    FINISHED,
    ClusterResources,
    ExcludedNamespaces,
    ExcludedResources,
    IncludeAllDisks,
    IncludedResources,
    Interval,
    Location,
    Namespaces,
    SchedulePreset,
    Selector,
    TtlHours,
    Yes,
    _fields_body,
    _names,
    schedule_body,
)
from stowage.cli.client import StowageClient, UsageProblem
from stowage.cli.common import (
    EXIT_API_ERROR,
    OutputOption,
    ProjectOption,
    ServerOption,
    TokenOption,
    api,
    confirm,
    fail,
    project_path,
)
from stowage.cli.locations import resolve
from stowage.cli.render import NONE, echo_json, fields, table, when, yes_no
from stowage.domain.backups import DEFAULT_DURATION_HOURS, ClusterResourceMode
from stowage.domain.protection import Risk
from stowage.domain.restores import ExistingResourcePolicy
from stowage.domain.schedules import PRESETS

app = typer.Typer(
    help="Workspaces: groups of clusters backed up and restored together, with their protection status.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(help="A workspace's backup schedule: set, show, delete.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

# `protection --fail-on` exits with this when something is at risk, apart from 1 (API error) and 2 (usage).
EXIT_AT_RISK = 5
RESTORE = "How to restore"
RISK_LABELS = {
    Risk.ON_TIME: "on time",
    Risk.LATE: "LATE",
    Risk.MISSED: "MISSED",
    Risk.FAILING: "FAILING",
    Risk.NEVER: "NEVER BACKED UP",
}

WorkspaceArgument = Annotated[str, typer.Argument(metavar="NAME", help="Workspace name or id.")]
BackupArgument = Annotated[str, typer.Argument(metavar="BACKUP", help="Workspace backup name.")]
ClusterArgument = Annotated[str, typer.Argument(metavar="CLUSTER", help="Cluster name or id.")]
Wait = Annotated[
    bool, typer.Option("--wait", "-w", help="Wait until every cluster's part ends; the exit code says how.")
]


class FailOn(enum.StrEnum):
    """The risk levels ``--fail-on`` accepts (on_time never fails)."""

    LATE = "late"
    MISSED = "missed"
    FAILING = "failing"
    NEVER = "never"


def _path(project: str, *rest: str) -> str:
    return project_path(project, "workspaces", *rest)


# -- rendering --------------------------------------------------------------------------------------------
def risk_text(protection: dict[str, Any] | None) -> str:
    """A risk level for people: quiet when on time, loud otherwise."""
    raw = str((protection or {}).get("risk") or "")
    try:
        return RISK_LABELS[Risk(raw)]
    except ValueError:
        return raw or NONE


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def workspace_text(ws: dict[str, Any]) -> str:
    """A workspace: its roll-up protection, then one line per cluster."""
    protection = ws.get("protection") or {}
    head = fields(
        [
            ("Name", ws.get("name")),
            ("ID", ws.get("id")),
            ("Project", ws.get("project")),
            ("Protection", risk_text(protection)),
            ("Why", protection.get("reason")),
            ("Last successful backup", when(protection.get("lastSuccessfulBackupAt"))),
            ("Next scheduled backup", when(protection.get("nextScheduledAt"))),
            ("Created", when(ws.get("createdAt"))),
        ]
    )
    clusters: list[dict[str, Any]] = ws.get("clusters") or []
    if not clusters:
        return head + "\n\nNo clusters: add one with `stowage workspaces add-cluster NAME CLUSTER`."
    return head + "\n\n" + _clusters_table(clusters)


def _clusters_table(clusters: Iterable[dict[str, Any]]) -> str:
    return table(
        ("CLUSTER", "CONNECTED", "PROTECTION", "LAST SUCCESS", "NEXT RUN", "WHY"),
        (
            [
                c.get("clusterName"),
                yes_no(c.get("connected")),
                risk_text(c.get("protection")),
                when((c.get("protection") or {}).get("lastSuccessfulBackupAt")),
                when((c.get("protection") or {}).get("nextScheduledAt")),
                (c.get("protection") or {}).get("reason"),
            ]
            for c in clusters
        ),
    )


def parts_text(item: dict[str, Any], noun: str) -> str:
    """A workspace backup's (or restore's) roll-up phase, each cluster's part, and the clusters skipped."""
    parts: list[dict[str, Any]] = item.get("clusters") or []
    skipped: list[dict[str, Any]] = item.get("skipped") or []
    name = item.get("backupName") if noun == "backup" else item.get("restoreName")
    lines = [f"Workspace {noun} {name} of {item.get('workspace')}: {item.get('phase')}"]
    if parts:
        lines.append("")
        lines.append(
            table(
                ("CLUSTER", noun.upper(), "PHASE", "FAILURE REASON"),
                ([p.get("clusterName"), p.get("name"), p.get("phase"), p.get("failureReason")] for p in parts),
            )
        )
    if skipped:
        lines.append("")
        lines.append(f"Skipped {len(skipped)} cluster{'' if len(skipped) == 1 else 's'}:")
        lines.extend(f"  {s.get('clusterName') or s.get('clusterId')}: {_one_line(s.get('reason'))}" for s in skipped)
    return "\n".join(lines)


def _tally(item: dict[str, Any]) -> str:
    parts: list[dict[str, Any]] = item.get("clusters") or []
    done = sum(1 for p in parts if p.get("phase") == "Completed")
    return f"{done}/{len(parts) + len(item.get('skipped') or [])}"


# -- waiting ------------------------------------------------------------------------------------------------
def _finished(item: dict[str, Any]) -> bool:
    parts: list[dict[str, Any]] = item.get("clusters") or []
    return item.get("phase") in FINISHED or item.get("phase") == "Deleting" or not parts


def _poll(client: StowageClient, fetch: Any, interval: float, quiet: bool) -> dict[str, Any]:
    """Fetch until every part has ended; tell people on stderr when the roll-up changes."""
    last = ""
    while True:
        item: dict[str, Any] = fetch(client)
        state = f"{item.get('phase')} ({_tally(item)} clusters completed)"
        if not quiet and state != last:
            typer.echo(state, err=True)
            last = state
        if _finished(item):
            return item
        time.sleep(interval)


def _exit_for(item: dict[str, Any], noun: str) -> None:
    """Exit 0 for Completed, 4 for PartiallyFailed (a cluster failed or was skipped), 1 for Failed."""
    phase = item.get("phase")
    if phase == "Completed":
        return
    if phase == "PartiallyFailed":
        typer.echo(
            f"Warning: workspace {noun} PartiallyFailed: see the clusters that failed or were skipped.", err=True
        )
        raise typer.Exit(EXIT_PARTIALLY_FAILED)
    if phase == "Deleting":
        fail(f"the workspace {noun} is being deleted.", EXIT_API_ERROR)
    reasons = [_one_line(p.get("failureReason")) for p in item.get("clusters") or [] if p.get("failureReason")] + [
        _one_line(s.get("reason")) for s in item.get("skipped") or []
    ]
    fail(f"workspace {noun} {phase}: {' '.join(reasons) or 'no reason given.'}", EXIT_API_ERROR)


# -- workspaces ---------------------------------------------------------------------------------------------
@app.command("list")
def list_workspaces(
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the project's workspaces with their protection status."""
    with api(server, token, output) as (client, conn):
        page: dict[str, Any] = client.get(_path(project))
    if conn.json:
        echo_json(page)
        return
    items: list[dict[str, Any]] = page.get("items") or []
    if not items:
        typer.echo("No workspaces. Create one with `stowage workspaces create NAME --cluster CLUSTER`.")
        return
    typer.echo(
        table(
            ("NAME", "CLUSTERS", "PROTECTION", "LAST SUCCESS", "NEXT RUN"),
            (
                [
                    w["name"],
                    ",".join(str(c.get("clusterName")) for c in w.get("clusters") or []),
                    risk_text(w.get("protection")),
                    when((w.get("protection") or {}).get("lastSuccessfulBackupAt")),
                    when((w.get("protection") or {}).get("nextScheduledAt")),
                ]
                for w in items
            ),
        )
    )


@app.command("create")
def create_workspace(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Workspace name (lowercase letters, digits and '-').")],
    cluster: Annotated[
        list[str] | None, typer.Option("--cluster", "-c", metavar="CLUSTER", help="A cluster to add (repeatable).")
    ] = None,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Create a workspace, optionally with clusters (editors)."""
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(_path(project), {"name": name, "clusterIds": list(cluster or [])})
    if conn.json:
        echo_json(created)
        return
    count = len(created.get("clusters") or [])
    typer.echo(f"Created workspace {created['name']} with {count} cluster{'' if count == 1 else 's'}.")


@app.command("show")
def show_workspace(
    name: WorkspaceArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show a workspace: its protection and its clusters' connection and protection."""
    with api(server, token, output) as (client, conn):
        ws: dict[str, Any] = client.get(_path(project, name))
    if conn.json:
        echo_json(ws)
        return
    typer.echo(workspace_text(ws))


@app.command("add-cluster")
def add_cluster(
    name: WorkspaceArgument,
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Add a cluster to a workspace (editors)."""
    with api(server, token, output) as (client, conn):
        ws: dict[str, Any] = client.request("PUT", _path(project, name, "clusters", cluster))
    if conn.json:
        echo_json(ws)
        return
    typer.echo(f"Workspace {ws['name']} now has: {_names([c.get('clusterName') for c in ws['clusters']], NONE)}.")


@app.command("remove-cluster")
def remove_cluster(
    name: WorkspaceArgument,
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Remove a cluster from a workspace (editors); the cluster's backups stay."""
    with api(server, token, output) as (client, conn):
        ws: dict[str, Any] = client.delete(_path(project, name, "clusters", cluster))
    if conn.json:
        echo_json(ws)
        return
    typer.echo(f"Workspace {ws['name']} now has: {_names([c.get('clusterName') for c in ws['clusters']], NONE)}.")


@app.command("delete")
def delete_workspace(
    name: WorkspaceArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Delete a workspace and every backup it took (admins); its clusters stay."""
    with api(server, token, output) as (client, conn):
        ws: dict[str, Any] = client.get(_path(project, name))
        if not yes:
            confirm(
                f"Delete workspace {ws['name']}? Every backup it took is deleted from the bucket too; its clusters "
                "and their own backups stay."
            )
        client.delete(_path(project, ws["id"]))
    if conn.json:
        echo_json(ws)  # 204 has no body: print the workspace as it was
        return
    typer.echo(f"Deleted workspace {ws['name']}; its backups are being removed.")


# -- backups ------------------------------------------------------------------------------------------------
@app.command("backup")
def backup_workspace(
    name: WorkspaceArgument,
    backup: Annotated[
        str, typer.Argument(metavar="BACKUP", help="Backup name; each cluster's backup is named BACKUP-<cluster>.")
    ],
    cluster: Annotated[
        list[str] | None,
        typer.Option("--cluster", "-c", metavar="CLUSTER", help="Only this cluster of the workspace (repeatable)."),
    ] = None,
    location: Location = None,
    ttl_hours: TtlHours = DEFAULT_DURATION_HOURS,
    include_all_disks: IncludeAllDisks = False,
    cluster_resources: ClusterResources = ClusterResourceMode.AUTO,
    namespace: Namespaces = None,
    exclude_namespace: ExcludedNamespaces = None,
    include_resource: IncludedResources = None,
    exclude_resource: ExcludedResources = None,
    selector: Selector = None,
    wait: Wait = False,
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Back up the workspace's clusters now; clusters whose agent is disconnected are skipped and reported."""
    body = {
        "backupName": backup,
        "clusterIds": list(cluster or []),
        "includeAllClusters": not cluster,
        **_fields_body(
            location, ttl_hours, include_all_disks, cluster_resources, namespace, exclude_namespace,
            include_resource, exclude_resource, selector,
        ),
    }  # fmt: skip
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(_path(project, name, "backups"), body)
        if not wait:
            if conn.json:
                echo_json(created)
            else:
                typer.echo(parts_text(created, "backup"))
            return
        path = _path(project, created["workspace"], "backups", created["backupName"])
        if not conn.json:
            typer.echo(parts_text(created, "backup"))
        final = _poll(client, lambda c: c.get(path), interval, conn.json)
    if conn.json:
        echo_json(final)
    else:
        typer.echo("\n" + parts_text(final, "backup"))
    _exit_for(final, "backup")


@app.command("backups")
def list_workspace_backups(
    name: WorkspaceArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List a workspace's backups, newest first, with the roll-up phase and how many clusters completed."""
    with api(server, token, output) as (client, conn):
        items: list[dict[str, Any]] = client.get(_path(project, name, "backups"))
    if conn.json:
        echo_json(items)
        return
    if not items:
        typer.echo(f"No backups of workspace {name}. Take one with `stowage workspaces backup {name} BACKUP`.")
        return
    typer.echo(
        table(
            ("NAME", "PHASE", "COMPLETED", "SKIPPED", "CREATED", "NAMESPACES", "SCHEDULE"),
            (
                [
                    b["backupName"],
                    b["phase"],
                    _tally(b),
                    ",".join(str(s.get("clusterName") or s.get("clusterId")) for s in b.get("skipped") or []),
                    when(b.get("createdAt")),
                    _names(b.get("namespaces"), "all"),
                    b.get("scheduleName"),
                ]
                for b in items
            ),
        )
    )


@app.command("show-backup")
def show_workspace_backup(
    name: WorkspaceArgument,
    backup: BackupArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show a workspace backup: the roll-up, each cluster's backup, the clusters skipped and why."""
    with api(server, token, output) as (client, conn):
        item: dict[str, Any] = client.get(_path(project, name, "backups", backup))
    if conn.json:
        echo_json(item)
        return
    typer.echo(parts_text(item, "backup"))


@app.command("delete-backup")
def delete_workspace_backup(
    name: WorkspaceArgument,
    backup: BackupArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Delete a workspace backup: every cluster's backup of it is removed from the bucket (admins)."""
    with api(server, token, output) as (client, conn):
        item: dict[str, Any] = client.get(_path(project, name, "backups", backup))
        if not yes:
            count = len(item.get("clusters") or [])
            confirm(
                f"Delete workspace backup {item['backupName']}? Its {count} cluster backup"
                f"{'' if count == 1 else 's'} and their EBS snapshots are removed for good."
            )
        deleting: dict[str, Any] = client.delete(_path(project, name, "backups", backup))
    if conn.json:
        echo_json(deleting)
        return
    typer.echo(f"Deleting workspace backup {deleting['backupName']}: each cluster's backup is being removed.")


@app.command("restore")
def restore_workspace(
    name: WorkspaceArgument,
    backup: BackupArgument,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            metavar="NS",
            help="Only this namespace (repeatable); default all.",
            rich_help_panel=RESTORE,
        ),
    ] = None,
    exclude_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-namespace", metavar="NS", help="Leave this namespace out (repeatable).", rich_help_panel=RESTORE
        ),
    ] = None,
    map_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--map-namespace",
            metavar="OLD=NEW",
            help="Restore namespace OLD as NEW (repeatable).",
            rich_help_panel=RESTORE,
        ),
    ] = None,
    cluster_resources: Annotated[
        ClusterResourceMode,
        typer.Option(
            "--cluster-resources", help="Cluster-scoped resources: Always, Never or Auto.", rich_help_panel=RESTORE
        ),
    ] = ClusterResourceMode.AUTO,
    restore_pvs: Annotated[
        bool,
        typer.Option(
            "--restore-pvs/--no-restore-pvs",
            help="Restore PersistentVolumes (from their snapshots).",
            rich_help_panel=RESTORE,
        ),
    ] = True,
    preserve_node_ports: Annotated[
        bool, typer.Option("--preserve-node-ports", help="Keep the NodePorts of Services.", rich_help_panel=RESTORE)
    ] = False,
    existing: Annotated[
        ExistingResourcePolicy,
        typer.Option(
            "--existing", help="An object that already exists: none (leave it) or update it.", rich_help_panel=RESTORE
        ),
    ] = ExistingResourcePolicy.NONE,
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-l",
            metavar="SELECTOR",
            help="Only items matching this label selector.",
            rich_help_panel=RESTORE,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Preview what would happen; nothing is changed.", rich_help_panel=RESTORE)
    ] = False,
    wait: Wait = False,
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Restore a workspace backup on every cluster still in the workspace, each into itself (editors)."""
    mapping: dict[str, str] = {}
    for entry in map_namespace or []:
        old, sep, new = entry.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UsageProblem(f"--map-namespace takes OLD=NEW, not {entry!r}.")
        mapping[old.strip()] = new.strip()
    body = {
        "includeNamespaces": list(namespace or []),
        "excludedNamespaces": list(exclude_namespace or []),
        "namespaceMapping": mapping,
        "includeClusterResourceMode": cluster_resources.value,
        "restorePVs": restore_pvs,
        "preserveNodePorts": preserve_node_ports,
        "existingResourcePolicy": existing.value,
        "labelSelector": selector,
        "dryRun": dry_run,
    }
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(_path(project, name, "backups", backup, "restores"), body)
        if not wait:
            if conn.json:
                echo_json(created)
            else:
                typer.echo(parts_text(created, "restore"))
            return
        restores = _path(project, created["workspace"], "restores")

        def fetch(c: StowageClient) -> dict[str, Any]:
            found: list[dict[str, Any]] = c.get(restores)
            return next((r for r in found if r.get("id") == created["id"]), created)

        if not conn.json:
            typer.echo(parts_text(created, "restore"))
        final = _poll(client, fetch, interval, conn.json)
    if conn.json:
        echo_json(final)
    else:
        typer.echo("\n" + parts_text(final, "restore"))
    _exit_for(final, "restore")


# -- schedule -----------------------------------------------------------------------------------------------
def schedule_text(workspace: str, schedule: dict[str, Any]) -> str:
    """A workspace's schedule for people."""
    return fields(
        [
            ("Workspace", workspace),
            ("Schedule", f"{schedule.get('schedule')} (UTC, {schedule.get('preset')})"),
            ("Paused", yes_no(schedule.get("paused"))),
            ("Backup names", f"{schedule.get('backupPrefix')}-<UTC timestamp>, each cluster's with -<cluster>"),
            ("Next run", NONE if schedule.get("paused") else when(schedule.get("nextRunAt"))),
            ("Last backup", schedule.get("lastBackupName")),
            ("Location", schedule.get("backupLocationId") or "the project's default"),
            ("Namespaces", _names(schedule.get("namespaces"), "all")),
        ]
    )


@schedule_app.command("set")
def set_schedule(
    name: WorkspaceArgument,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Backups are named <prefix>-<UTC timestamp> (at most 25 characters).")
    ],
    preset: Annotated[
        SchedulePreset | None,
        typer.Option(
            "--preset", help="; ".join(f"{p.key}: {p.label[:1].lower()}{p.label[1:]}" for p in PRESETS if p.cron) + "."
        ),
    ] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", metavar="EXPR", help='Five-field cron expression in UTC, e.g. "0 2 * * *".')
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Save it paused.")] = False,
    location: Location = None,
    ttl_hours: TtlHours = DEFAULT_DURATION_HOURS,
    include_all_disks: IncludeAllDisks = False,
    cluster_resources: ClusterResources = ClusterResourceMode.AUTO,
    namespace: Namespaces = None,
    exclude_namespace: ExcludedNamespaces = None,
    include_resource: IncludedResources = None,
    exclude_resource: ExcludedResources = None,
    selector: Selector = None,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Create or replace the workspace's backup schedule (a preset or a cron expression, in UTC)."""
    body = schedule_body(
        prefix, preset, cron, paused,
        _fields_body(
            location, ttl_hours, include_all_disks, cluster_resources, namespace, exclude_namespace,
            include_resource, exclude_resource, selector,
        ),
    )  # fmt: skip
    with api(server, token, output) as (client, conn):
        if location:
            body["backupLocationId"] = resolve(client, project, location)["id"]
        saved: dict[str, Any] = client.request("PUT", _path(project, name, "backup-schedule"), body=body)
    if conn.json:
        echo_json(saved)
        return
    typer.echo(f"Saved the backup schedule of workspace {name}.")
    typer.echo(schedule_text(name, saved))


@schedule_app.command("show")
def show_schedule(
    name: WorkspaceArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show the workspace's backup schedule."""
    with api(server, token, output) as (client, conn):
        schedule: dict[str, Any] = client.get(_path(project, name, "backup-schedule"))
    if conn.json:
        echo_json(schedule)
        return
    typer.echo(schedule_text(name, schedule))


@schedule_app.command("delete")
def delete_schedule(
    name: WorkspaceArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Remove the workspace's backup schedule; the backups it took stay until they expire."""
    with api(server, token, output) as (client, conn):
        schedule: dict[str, Any] = client.get(_path(project, name, "backup-schedule"))
        if not yes:
            confirm(f"Remove the backup schedule of workspace {name}? Its backups stay.")
        client.delete(_path(project, name, "backup-schedule"))
    if conn.json:
        echo_json(schedule)
        return
    typer.echo(f"Removed the backup schedule of workspace {name}; its backups stay until they expire.")


# -- protection ---------------------------------------------------------------------------------------------
def at_risk(report: dict[str, Any], level: FailOn) -> list[str]:
    """``kind name: risk`` of every cluster and workspace at ``level`` or worse (on_time < late < missed <
    failing < never)."""
    floor = Risk(level.value).rank
    found: list[str] = []
    groups = (("cluster", report.get("clusters"), "clusterName"), ("workspace", report.get("workspaces"), "name"))
    for kind, items, key in groups:
        for item in items or []:
            raw = str((item.get("protection") or {}).get("risk") or "")
            if raw in {r.value for r in Risk} and Risk(raw).rank >= floor:
                found.append(f"{kind} {item.get(key)}: {raw}")
    return found


def protection(
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help=f"Exit {EXIT_AT_RISK} when a cluster or workspace is at this risk or worse "
            "(late < missed < failing < never): for monitoring scripts.",
        ),
    ] = None,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Every cluster's and workspace's protection: risk, last successful backup and next scheduled one."""
    with api(server, token, output) as (client, conn):
        report: dict[str, Any] = client.get(project_path(project, "protection"))
    if conn.json:
        echo_json(report)
    else:
        rows = [
            [
                "cluster",
                c.get("clusterName"),
                risk_text(c.get("protection")),
                when((c.get("protection") or {}).get("lastSuccessfulBackupAt")),
                when((c.get("protection") or {}).get("nextScheduledAt")),
                (c.get("protection") or {}).get("reason"),
            ]
            for c in report.get("clusters") or []
        ] + [
            [
                "workspace",
                w.get("name"),
                risk_text(w.get("protection")),
                when((w.get("protection") or {}).get("lastSuccessfulBackupAt")),
                when((w.get("protection") or {}).get("nextScheduledAt")),
                (w.get("protection") or {}).get("reason"),
            ]
            for w in report.get("workspaces") or []
        ]
        if rows:
            typer.echo(table(("KIND", "NAME", "PROTECTION", "LAST SUCCESS", "NEXT RUN", "WHY"), rows))
        else:
            typer.echo(f"Project {project} has no clusters yet.")
    if fail_on is not None:
        found = at_risk(report, fail_on)
        if found:
            typer.echo(f"At risk ({fail_on.value} or worse): " + "; ".join(found), err=True)
            raise typer.Exit(EXIT_AT_RISK)
