"""``stowage backups``: back up a cluster now or on a schedule, follow a backup, read its logs and contents."""

from __future__ import annotations

import enum
import json
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from stowage.cli.client import ApiError, StowageClient, UsageProblem
from stowage.cli.common import (
    EXIT_API_ERROR,
    Output,
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
from stowage.cli.progress import wait_for
from stowage.cli.render import NONE, echo_json, fields, table, when, yes_no
from stowage.domain.backups import DEFAULT_DURATION_HOURS, ClusterResourceMode
from stowage.domain.schedules import PRESETS

app = typer.Typer(
    help="Cluster backups: create, list, show, logs, contents, verify, delete, sync from the bucket, and the cluster's "
    "schedule.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(help="A cluster's backup schedule: set, show, pause, resume, delete.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

# How `create --wait` ends, besides 0 (Completed) and 1 (Failed, or an API error): scripts can tell a backup
# that holds most items from one that holds nothing.
EXIT_PARTIALLY_FAILED = 4
FINISHED = frozenset({"Completed", "PartiallyFailed", "Failed"})
# The presets that are a cron expression ("custom" is --cron, "never" is no schedule: `schedule delete`).
PRESET_CRONS: dict[str, str] = {p.key: p.cron for p in PRESETS if p.cron}


class SchedulePreset(enum.StrEnum):
    """The choices of ``--preset``: the keys of ``PRESET_CRONS`` (a test keeps the two equal)."""

    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"
    BIMONTHLY = "bimonthly"


FILTERS = "What to back up"
LOG_PAGE = 1000
BAR_WIDTH = 30

ClusterArgument = Annotated[str, typer.Argument(metavar="CLUSTER", help="Cluster name or id.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Backup name (or id).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Interval = Annotated[
    float, typer.Option("--interval", min=0.1, max=60.0, metavar="SECONDS", help="Seconds between polls.")
]
Location = Annotated[
    str | None,
    typer.Option(
        "--location",
        metavar="NAME_OR_ID",
        help="Backup location (default: the project's default location).",
        rich_help_panel=FILTERS,
    ),
]
TtlHours = Annotated[
    int,
    typer.Option("--ttl-hours", min=1, max=87600, help="Delete the backup this many hours after it is taken.",
                 rich_help_panel=FILTERS),
]  # fmt: skip
IncludeAllDisks = Annotated[
    bool,
    typer.Option("--include-all-disks", help="Snapshot the EBS volumes of the backed-up PVs.", rich_help_panel=FILTERS),
]
ClusterResources = Annotated[
    ClusterResourceMode,
    typer.Option(
        "--cluster-resources",
        help="Cluster-scoped resources: Always, Never, or Auto (all when no namespace is chosen, else only those "
        "the namespaced items need, e.g. the PVs of their PVCs).",
        rich_help_panel=FILTERS,
    ),
]
Namespaces = Annotated[
    list[str] | None,
    typer.Option("--namespace", "-n", metavar="NS", help="Only this namespace (repeat for more).",
                 rich_help_panel=FILTERS),
]  # fmt: skip
ExcludedNamespaces = Annotated[
    list[str] | None,
    typer.Option("--exclude-namespace", metavar="NS", help="Leave this namespace out (repeatable).",
                 rich_help_panel=FILTERS),
]  # fmt: skip
IncludedResources = Annotated[
    list[str] | None,
    typer.Option("--include-resource", metavar="RESOURCE", help="Only this resource, e.g. deployments.apps "
                 "(repeatable).", rich_help_panel=FILTERS),
]  # fmt: skip
ExcludedResources = Annotated[
    list[str] | None,
    typer.Option("--exclude-resource", metavar="RESOURCE", help="Leave this resource out (repeatable).",
                 rich_help_panel=FILTERS),
]  # fmt: skip
Selector = Annotated[
    str | None,
    typer.Option("--selector", "-l", metavar="SELECTOR", help="Only items matching this label selector, as in "
                 "kubectl get -l.", rich_help_panel=FILTERS),
]  # fmt: skip


def _fields_body(
    location: str | None,
    ttl_hours: int,
    include_all_disks: bool,
    cluster_resources: ClusterResourceMode,
    namespaces: list[str] | None,
    excluded_namespaces: list[str] | None,
    included_resources: list[str] | None,
    excluded_resources: list[str] | None,
    selector: str | None,
) -> dict[str, Any]:
    """The API's backup fields (Palette's names) from the command line's options."""
    body: dict[str, Any] = {
        "durationInHours": ttl_hours,
        "includeAllDisks": include_all_disks,
        "includeClusterResourceMode": cluster_resources.value,
        "namespaces": list(namespaces or []),
        "excludedNamespaces": list(excluded_namespaces or []),
        "includedResources": list(included_resources or []),
        "excludedResources": list(excluded_resources or []),
        "labelSelector": selector,
    }
    if location:
        body["backupLocationId"] = location
    return body


def _backups(project: str, cluster: str, *rest: str) -> str:
    return project_path(project, "clusters", cluster, "backups", *rest)


def _schedule(project: str, cluster: str, *rest: str) -> str:
    return project_path(project, "clusters", cluster, "backup-schedule", *rest)


# -- rendering --------------------------------------------------------------------------------------------
def human_size(size: object) -> str:
    """Bytes for people, in binary units (``1.5 MiB``)."""
    value = float(size) if isinstance(size, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return NONE  # unreachable: the loop returns at TiB


def duration(start: object, end: object) -> str:
    """The time between two API timestamps (``1h 02m 03s``), or ``-``."""
    if not (isinstance(start, str) and isinstance(end, str) and start and end):
        return NONE
    try:
        seconds = max(0, round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()))
    except ValueError:
        return NONE
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _items(backup: dict[str, Any]) -> str:
    progress = backup.get("progress") or {}
    done, total = int(progress.get("itemsBackedUp") or 0), int(progress.get("totalItems") or 0)
    return f"{done}/{total}" if total else str(done)


def _names(values: object, everything: str) -> str:
    items = [str(v) for v in values or []] if isinstance(values, list) else []
    return ",".join(items) if items else everything


def backup_text(backup: dict[str, Any]) -> str:
    """One backup for people, the failure reason first when there is one."""
    filters = [
        ("Namespaces", _names(backup.get("namespaces"), "all")),
        ("Excluded namespaces", _names(backup.get("excludedNamespaces"), NONE)),
        ("Resources", _names(backup.get("includedResources"), "all")),
        ("Excluded resources", _names(backup.get("excludedResources"), NONE)),
        ("Label selector", backup.get("labelSelector")),
        ("Cluster resources", backup.get("includeClusterResourceMode")),
        ("Disks", "all (EBS snapshots)" if backup.get("includeAllDisks") else "no"),
    ]
    text = fields(
        [
            ("Name", backup.get("backupName")),
            ("ID", backup.get("id")),
            ("Cluster", f"{backup.get('clusterName')} ({backup.get('clusterId')})"),
            ("Phase", backup.get("phase")),
            ("Failure reason", backup.get("failureReason")),
            ("Items", _items(backup)),
            ("Size", human_size(backup.get("sizeBytes"))),
            # As text: the table renderer shows a bare 0 as "-", and no warnings is worth saying.
            ("Warnings", str(backup.get("warnings", 0))),
            ("Errors", str(backup.get("errors", 0))),
            ("Volume snapshots", str(backup.get("volumeSnapshots", 0))),
            ("Location", f"{backup.get('backupLocationName')} ({backup.get('backupLocationId')})"),
            ("Storage prefix", backup.get("storagePrefix")),
            *filters,
            ("Keep for", f"{backup.get('durationInHours')} h"),
            ("Schedule", backup.get("scheduleName")),
            ("Created by", backup.get("createdBy")),
            ("Created", when(backup.get("createdAt"))),
            ("Started", when(backup.get("startTime"))),
            ("Completed", when(backup.get("completionTime"))),
            ("Duration", duration(backup.get("startTime"), backup.get("completionTime"))),
            ("Expires", when(backup.get("expirationTime"))),
        ]
    )
    reason = backup.get("failureReason")
    if reason:
        # The reason says what went wrong and how to fix it: it is what a reader of a failed backup needs first.
        return f"{backup.get('phase')}: {' '.join(str(reason).split())}\n\n{text}"
    return text


def summary(backup: dict[str, Any]) -> str:
    """The end of ``create --wait``: phase, items, size, duration and problem counts on one line."""
    return (
        f"Backup {backup.get('backupName')} {backup.get('phase')}: {_items(backup)} items, "
        f"{human_size(backup.get('sizeBytes'))}, took {duration(backup.get('startTime'), backup.get('completionTime'))}"
        f", {backup.get('warnings', 0)} warnings, {backup.get('errors', 0)} errors, "
        f"{backup.get('volumeSnapshots', 0)} volume snapshots."
    )


def bar(backup: dict[str, Any]) -> str:
    """A text progress bar of items: ``name  InProgress  [#######---]  70/100 items``."""
    progress = backup.get("progress") or {}
    done, total = int(progress.get("itemsBackedUp") or 0), int(progress.get("totalItems") or 0)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    count = f"{done}/{total} items" if total else f"{done} items"
    return f"{backup.get('backupName')}  {backup.get('phase')}  [{'#' * filled}{'-' * (BAR_WIDTH - filled)}]  {count}"


def _exit_for(backup: dict[str, Any]) -> None:
    """Exit 0 for Completed, 4 for PartiallyFailed, 1 for Failed or a deleted backup, with the reason."""
    phase = backup.get("phase")
    reason = " ".join(str(backup.get("failureReason") or "").split())
    name = backup.get("backupName")
    if phase == "Completed":
        return
    if phase == "PartiallyFailed":
        problems = f"{reason} " if reason else ""
        typer.echo(
            f"Warning: backup {name} PartiallyFailed: {problems}See `stowage backups contents "
            f"{backup.get('clusterName')} {name}` for the items with errors.",
            err=True,
        )
        raise typer.Exit(EXIT_PARTIALLY_FAILED)
    if phase == "Deleting":
        fail(f"backup {name} is being deleted: it was deleted while it ran.", EXIT_API_ERROR)
    fail(f"backup {name} {phase}: {reason or 'no reason given.'}", EXIT_API_ERROR)


# -- backups ----------------------------------------------------------------------------------------------
@app.command("create")
def create_backup(
    cluster: ClusterArgument,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Backup name (lowercase letters, digits and '-').")],
    location: Location = None,
    ttl_hours: TtlHours = DEFAULT_DURATION_HOURS,
    include_all_disks: IncludeAllDisks = False,
    cluster_resources: ClusterResources = ClusterResourceMode.AUTO,
    namespace: Namespaces = None,
    exclude_namespace: ExcludedNamespaces = None,
    include_resource: IncludedResources = None,
    exclude_resource: ExcludedResources = None,
    selector: Selector = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Show progress until the backup ends; the exit code says how.")
    ] = False,
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Back up a cluster now; the cluster's agent picks the backup up with its next heartbeat."""
    body = {
        "backupName": name,
        **_fields_body(
            location, ttl_hours, include_all_disks, cluster_resources, namespace, exclude_namespace,
            include_resource, exclude_resource, selector,
        ),
    }  # fmt: skip
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(_backups(project, cluster), body)
        if not wait:
            if conn.json:
                echo_json(created)
                return
            typer.echo(
                f"Requested backup {created['backupName']} of cluster {created['clusterName']} "
                f"(location {created['backupLocationName']}): {created['phase']}."
            )
            typer.echo(f"Follow it with: stowage backups logs {created['clusterName']} {created['backupName']} -f")
            return
        path = _backups(project, created["clusterId"], created["id"])
        # Scripts (--output json) get the final Backup only; the exit code says how it ended. A backup being
        # deleted meanwhile ends the wait too.
        final = wait_for(
            client,
            path,
            interval,
            done=lambda b: b.get("phase") in FINISHED or b.get("phase") == "Deleting",
            render=None if conn.json else bar,
        )
    if conn.json:
        echo_json(final)
    else:
        typer.echo(summary(final))
    _exit_for(final)


@app.command("list")
def list_backups(
    cluster: ClusterArgument,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (newest) backups.")] = 0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List a cluster's backups, newest first."""
    with api(server, token, output) as (client, conn):
        page: dict[str, Any] = client.get(_backups(project, cluster), {"limit": limit, "offset": offset})
    if conn.json:
        echo_json(page)
        return
    items: list[dict[str, Any]] = page.get("items") or []
    total = int(page.get("total", len(items)))
    if not items and not offset:
        typer.echo(f"No backups of cluster {cluster}. Take one with `stowage backups create {cluster} NAME`.")
        return
    typer.echo(
        table(
            ("NAME", "PHASE", "CREATED", "EXPIRES", "NAMESPACES", "DISKS", "CLUSTER RESOURCES", "ITEMS", "SIZE"),
            (
                [
                    b["backupName"],
                    b["phase"],
                    when(b.get("createdAt")),
                    when(b.get("expirationTime")),
                    _names(b.get("namespaces"), "all"),
                    yes_no(b.get("includeAllDisks")),
                    b.get("includeClusterResourceMode"),
                    _items(b),
                    human_size(b.get("sizeBytes")),
                ]
                for b in items
            ),
        )
    )
    if offset or total > len(items):
        typer.echo(f"\nShowing {offset + 1 if items else 0}-{offset + len(items)} of {total}.")


@app.command("show")
def show_backup(
    cluster: ClusterArgument,
    name: NameArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show one backup: phase and failure reason, progress, size, filters and times."""
    with api(server, token, output) as (client, conn):
        backup: dict[str, Any] = client.get(_backups(project, cluster, name))
    if conn.json:
        echo_json(backup)
        return
    typer.echo(backup_text(backup))


@app.command("logs")
def backup_logs(
    cluster: ClusterArgument,
    name: NameArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the backup ends.")] = (
        False
    ),
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Print a backup's log; live while it runs."""
    with api(server, token, output) as (client, conn):
        path = _backups(project, cluster, name, "logs")
        after = 0
        while True:
            page: dict[str, Any] = client.get(path, {"after": after, "limit": LOG_PAGE})
            lines: list[dict[str, Any]] = page.get("lines") or []
            for line in lines:
                if conn.json:
                    # One API line object per output line (JSON Lines), so a follower can stream it.
                    typer.echo(json.dumps(line, ensure_ascii=False))
                else:
                    message = " ".join(str(line.get("message") or "").split())
                    typer.echo(f"{when(line.get('at'))}  {str(line.get('level') or '').ljust(7)}  {message}")
            after = int(page.get("nextAfter") or after)
            if page.get("finished") or (not follow and len(lines) < LOG_PAGE):
                return
            if len(lines) < LOG_PAGE:
                time.sleep(interval)


@app.command("contents")
def backup_contents(
    cluster: ClusterArgument,
    name: NameArgument,
    items: Annotated[bool, typer.Option("--items", help="List every item (namespace/name) under its kind.")] = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """What a completed backup holds, by apiVersion/Kind, then its per-item warnings and errors."""
    with api(server, token, output) as (client, conn):
        contents: dict[str, Any] = client.get(_backups(project, cluster, name, "contents"))
    if conn.json:
        echo_json(contents)
        return
    resources: dict[str, list[str]] = contents.get("resources") or {}
    typer.echo(table(("RESOURCE", "COUNT"), ([kind, len(resources[kind])] for kind in sorted(resources))))
    typer.echo(f"\n{contents.get('totalItems', 0)} items in {len(resources)} kinds.")
    if items:
        for kind in sorted(resources):
            typer.echo(f"\n{kind}:")
            for item in sorted(resources[kind]):
                typer.echo(f"  {item}")
    for title, key in (("Warnings", "warnings"), ("Errors", "errors")):
        messages: list[dict[str, Any]] = contents.get(key) or []
        typer.echo(f"\n{title} ({len(messages)}):" if messages else f"\n{title}: none")
        for message in messages:
            where = "/".join(str(message[k]) for k in ("namespace", "resource", "name") if message.get(k))
            text = " ".join(str(message.get("message") or "").split())
            typer.echo(f"  {where}: {text}" if where else f"  {text}")


@app.command("delete")
def delete_backup(
    cluster: ClusterArgument,
    name: NameArgument,
    yes: Yes = False,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait until the backup is gone; exit 1 with the reason if it fails.")
    ] = False,
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Delete a backup: its objects in the bucket and its EBS snapshots are removed, then its record."""
    with api(server, token, output) as (client, conn):
        backup: dict[str, Any] = client.get(_backups(project, cluster, name))
        if not yes:
            snapshots = int(backup.get("volumeSnapshots") or 0)
            confirm(
                f"Delete backup {backup['backupName']} of cluster {backup['clusterName']}? Its objects in location "
                f"{backup['backupLocationName']} and its {snapshots} EBS snapshots are removed for good."
            )
        path = _backups(project, backup["clusterId"], backup["id"])
        deleting: dict[str, Any] = client.delete(path)
        failed = _wait_until_gone(client, path, interval) if wait else None
    if conn.json:
        # Failed: the backup with the reason; otherwise the backup as the deletion was accepted (Deleting).
        echo_json(failed or deleting)
    elif failed is None and wait:
        typer.echo(f"Deleted backup {deleting['backupName']}: its objects and EBS snapshots are removed.")
    elif failed is None:
        typer.echo(
            f"Deleting backup {deleting['backupName']}: its objects in location {deleting['backupLocationName']} "
            "and its EBS snapshots are being removed."
        )
    if failed is not None:
        reason = failed.get("failureReason") or "no reason given."
        fail(f"deleting backup {failed['backupName']} failed: {reason}", EXIT_API_ERROR)


def _wait_until_gone(client: StowageClient, path: str, interval: float) -> dict[str, Any] | None:
    """None once the backup is gone (404); the backup when its deletion failed."""
    while True:
        time.sleep(interval)
        try:
            backup: dict[str, Any] = client.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if backup.get("phase") != "Deleting":
            return backup


# -- sync and verification --------------------------------------------------------------------------------
def _short(digest: object) -> str:
    """A SHA-256 cut to its first 12 hex digits for a table (``--output json`` has the whole)."""
    return f"{digest[:12]}…" if isinstance(digest, str) and digest else NONE


def _size(value: object) -> str:
    return str(value) if isinstance(value, int) else NONE


@app.command("sync")
def sync_backups(
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Import the cluster's backups found in the project's buckets that Stowage did not record (written by another
    Stowage or by Velero); unfinished ones are never imported. Exit 1 when a location could not be read."""
    with api(server, token, output) as (client, conn):
        result: dict[str, Any] = client.post(_backups(project, cluster, "sync"))
    imported: list[dict[str, Any]] = result.get("imported") or []
    skipped: list[dict[str, Any]] = result.get("skipped") or []
    failed: list[dict[str, Any]] = result.get("failedLocations") or []
    if conn.json:
        echo_json(result)
    else:
        if imported:
            typer.echo(
                table(
                    ("IMPORTED", "ORIGIN", "PHASE", "CREATED", "EXPIRES", "LOCATION"),
                    (
                        [
                            b["backupName"],
                            b["origin"],
                            b["phase"],
                            when(b.get("createdAt")),
                            when(b.get("expirationTime")),
                            b.get("backupLocationName"),
                        ]
                        for b in imported
                    ),
                )
            )
            typer.echo("")
        for item in skipped:
            typer.echo(f"Skipped {item['name']} (location {item.get('locationName')}): {item.get('reason')}")
        if skipped:
            typer.echo("")
        typer.echo(f"Imported {len(imported)}, skipped {len(skipped)}, already known {int(result.get('known') or 0)}.")
    if failed:
        reasons = "; ".join(f"{f.get('locationName')}: {f.get('reason')}" for f in failed)
        fail(f"{len(failed)} location(s) could not be read: {reasons}", EXIT_API_ERROR)


@app.command("verify")
def verify_backup(
    cluster: ClusterArgument,
    name: NameArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Re-read every object of a backup from the bucket and check it against its SHA-256 manifest; exit 0 when it is
    intact, 1 when anything is missing, extra, resized or changed (or there is no manifest to check)."""
    with api(server, token, output) as (client, conn):
        result: dict[str, Any] = client.post(_backups(project, cluster, name, "verify"))
    problems: list[dict[str, Any]] = result.get("problems") or []
    checked = int(result.get("checkedObjects") or 0)
    if conn.json:
        echo_json(result)
    elif result.get("ok"):
        typer.echo(f"Backup {name} is intact: {checked} objects match their SHA-256 and size in the manifest.")
    else:
        typer.echo(
            table(
                ("OBJECT", "PROBLEM", "EXPECTED SIZE", "ACTUAL SIZE", "EXPECTED SHA-256", "ACTUAL SHA-256"),
                (
                    [
                        p.get("key"),
                        p.get("problem"),
                        _size(p.get("expectedSize")),
                        _size(p.get("actualSize")),
                        _short(p.get("expectedSha256")),
                        _short(p.get("actualSha256")),
                    ]
                    for p in problems
                ),
            )
        )
        typer.echo("")
        for problem in problems:
            typer.echo(f"- {problem.get('message')}")
    if not result.get("ok"):
        fail(f"backup {name} failed verification: {len(problems)} problem(s) in {checked} checked objects.", 1)


# -- schedules --------------------------------------------------------------------------------------------
def schedule_text(schedule: dict[str, Any]) -> str:
    """A schedule for people."""
    return fields(
        [
            ("Cluster", f"{schedule.get('clusterName')} ({schedule.get('clusterId')})"),
            ("Schedule", f"{schedule.get('schedule')} (UTC, {schedule.get('preset')})"),
            ("Paused", yes_no(schedule.get("paused"))),
            ("Backup names", f"{schedule.get('backupPrefix')}-{schedule.get('clusterName')}-<UTC timestamp>"),
            ("Next run", NONE if schedule.get("paused") else when(schedule.get("nextRunAt"))),
            ("Last backup", schedule.get("lastBackupName")),
            ("Last run", when(schedule.get("lastRunAt"))),
            ("Location", schedule.get("backupLocationId") or "the project's default"),
            ("Namespaces", _names(schedule.get("namespaces"), "all")),
            ("Excluded namespaces", _names(schedule.get("excludedNamespaces"), NONE)),
            ("Resources", _names(schedule.get("includedResources"), "all")),
            ("Excluded resources", _names(schedule.get("excludedResources"), NONE)),
            ("Label selector", schedule.get("labelSelector")),
            ("Cluster resources", schedule.get("includeClusterResourceMode")),
            ("Disks", "all (EBS snapshots)" if schedule.get("includeAllDisks") else "no"),
            ("Keep for", f"{schedule.get('durationInHours')} h"),
            ("Updated", when(schedule.get("updatedAt"))),
        ]
    )


def schedule_body(
    prefix: str, preset: SchedulePreset | None, cron: str | None, paused: bool, fields: dict[str, Any]
) -> dict[str, Any]:
    """The body of a schedule (cluster or workspace): exactly one of ``--preset`` and ``--cron``."""
    if (preset is None) == (cron is None):
        raise UsageProblem("give --preset or --cron (one of them).")
    return {
        "backupPrefix": prefix,
        "schedule": PRESET_CRONS[preset.value] if preset else cron,
        "paused": paused,
        **fields,
    }


@schedule_app.command("set")
def set_schedule(
    cluster: ClusterArgument,
    prefix: Annotated[str, typer.Option("--prefix", help="Backups are named <prefix>-<cluster>-<UTC timestamp>.")],
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
    """Create or replace the cluster's backup schedule (a preset or a cron expression, in UTC)."""
    body = schedule_body(
        prefix, preset, cron, paused,
        _fields_body(
            location, ttl_hours, include_all_disks, cluster_resources, namespace, exclude_namespace,
            include_resource, exclude_resource, selector,
        ),
    )  # fmt: skip
    with api(server, token, output) as (client, conn):
        if location:
            # The schedule keeps the location reference as given; an id survives a rename of the location.
            body["backupLocationId"] = resolve(client, project, location)["id"]
        saved: dict[str, Any] = client.request("PUT", _schedule(project, cluster), body=body)
    if conn.json:
        echo_json(saved)
        return
    typer.echo(f"Saved the backup schedule of cluster {saved['clusterName']}.")
    typer.echo(schedule_text(saved))


@schedule_app.command("show")
def show_schedule(
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show the cluster's backup schedule."""
    with api(server, token, output) as (client, conn):
        schedule: dict[str, Any] = client.get(_schedule(project, cluster))
    if conn.json:
        echo_json(schedule)
        return
    typer.echo(schedule_text(schedule))


def _pause(
    cluster: str, paused: bool, project: str, server: str | None, token: str | None, output: Output | None
) -> None:
    with api(server, token, output) as (client, conn):
        schedule: dict[str, Any] = client.post(_schedule(project, cluster, "pause"), {"paused": paused})
    if conn.json:
        echo_json(schedule)
        return
    if paused:
        typer.echo(f"Paused the backup schedule of cluster {schedule['clusterName']}.")
    else:
        typer.echo(
            f"Resumed the backup schedule of cluster {schedule['clusterName']}: next run "
            f"{when(schedule.get('nextRunAt'))} (missed runs are skipped)."
        )


@schedule_app.command("pause")
def pause_schedule(
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Pause the cluster's backup schedule (no backups until resumed)."""
    _pause(cluster, True, project, server, token, output)


@schedule_app.command("resume")
def resume_schedule(
    cluster: ClusterArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Resume the cluster's backup schedule from now; runs missed while paused are skipped."""
    _pause(cluster, False, project, server, token, output)


@schedule_app.command("delete")
def delete_schedule(
    cluster: ClusterArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Remove the cluster's backup schedule; the backups it took stay until they expire."""
    with api(server, token, output) as (client, conn):
        schedule: dict[str, Any] = client.get(_schedule(project, cluster))
        if not yes:
            confirm(f"Remove the backup schedule of cluster {schedule['clusterName']}? Its backups stay.")
        client.delete(_schedule(project, cluster))
    if conn.json:
        # The API answers 204 without a body: print the schedule as it was.
        echo_json(schedule)
        return
    typer.echo(f"Removed the backup schedule of cluster {schedule['clusterName']}; its backups stay until they expire.")
