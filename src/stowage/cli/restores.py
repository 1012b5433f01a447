"""``stowage restores``: restore a backup (or preview it), follow a restore, read its items, problems and logs."""

from __future__ import annotations

import enum
import json
import time
from typing import Annotated, Any

import typer

from stowage.cli.backups import EXIT_PARTIALLY_FAILED, FINISHED, duration
from stowage.cli.client import UsageProblem
from stowage.cli.common import (
    EXIT_API_ERROR,
    OutputOption,
    ProjectOption,
    ServerOption,
    TokenOption,
    api,
    fail,
    project_path,
)
from stowage.cli.progress import wait_for
from stowage.cli.render import NONE, echo_json, fields, table, when, yes_no
from stowage.domain.backups import ClusterResourceMode

app = typer.Typer(
    help="Restores of backups into clusters of the project: create (or preview with --dry-run), list, show, items, "
    "logs.",
    no_args_is_help=True,
)

OPTIONS = "What to restore and how"
LOG_PAGE = 1000
ITEMS_PAGE = 1000
BAR_WIDTH = 30
# The order actions are told in: a real restore's, then a preview's.
ACTION_ORDER = ("created", "updated", "skipped", "failed", "create", "update", "skip", "conflict")


class Existing(enum.StrEnum):
    """What ``--existing`` accepts: people's words for the API's existingResourcePolicy."""

    SKIP = "skip"
    UPDATE = "update"


# skip is the API's "none": leave the object as it is and report it.
EXISTING_POLICY = {Existing.SKIP: "none", Existing.UPDATE: "update"}


class Action(enum.StrEnum):
    """Item actions: created/updated/skipped/failed of a restore, create/update/skip/conflict of a preview."""

    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"
    FAILED = "failed"
    CREATE = "create"
    UPDATE = "update"
    SKIP = "skip"
    CONFLICT = "conflict"


ClusterArgument = Annotated[str, typer.Argument(metavar="CLUSTER", help="Cluster name or id (the destination).")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Restore name (or id).")]
Interval = Annotated[
    float, typer.Option("--interval", min=0.1, max=60.0, metavar="SECONDS", help="Seconds between polls.")
]


def _restores(project: str, cluster: str, *rest: str) -> str:
    return project_path(project, "clusters", cluster, "restores", *rest)


def parse_mapping(entries: list[str] | None) -> dict[str, str]:
    """``--map old=new`` values as the API's namespaceMapping; a malformed one is a usage error."""
    mapping: dict[str, str] = {}
    for entry in entries or []:
        old, sep, new = entry.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UsageProblem(f"--map takes OLD=NEW (e.g. --map shop=shop-copy), not {entry!r}.")
        if old.strip() in mapping:
            raise UsageProblem(f"--map gives namespace {old.strip()!r} twice; map each namespace once.")
        mapping[old.strip()] = new.strip()
    return mapping


# -- rendering --------------------------------------------------------------------------------------------
def _counts(restore: dict[str, Any]) -> tuple[int, int]:
    progress = restore.get("progress") or {}
    return int(progress.get("itemsRestored") or 0), int(progress.get("totalItems") or 0)


def _items(restore: dict[str, Any]) -> str:
    done, total = _counts(restore)
    return f"{done}/{total}" if total else str(done)


def _noun(restore: dict[str, Any]) -> str:
    return "Preview" if restore.get("dryRun") else "Restore"


def tally(summary: object) -> str:
    """Counts per action in a fixed order (``created 8, skipped 2``), or ``-``."""
    counts = {str(k): int(v) for k, v in summary.items()} if isinstance(summary, dict) else {}
    known = [a for a in ACTION_ORDER if a in counts]
    rest = sorted(set(counts) - set(known))
    parts = [f"{action} {counts[action]}" for action in (*known, *rest)]
    return ", ".join(parts) if parts else NONE


def problems_text(problems: object) -> str:
    """A preview's problems found ahead, each with its remedy (empty when there are none)."""
    found = [p for p in problems if isinstance(p, dict)] if isinstance(problems, list) else []
    if not found:
        return ""
    lines = [f"Problems found ahead ({len(found)}):"]
    for problem in found:
        code = f"[{problem['code']}] " if problem.get("code") else ""
        lines.append(f"  - {code}{' '.join(str(problem.get('message') or '').split())}")
        if problem.get("remedy"):
            lines.append(f"    Remedy: {' '.join(str(problem['remedy']).split())}")
    return "\n".join(lines)


def _mapping(values: object) -> str:
    pairs = values.items() if isinstance(values, dict) else []
    return ",".join(f"{old}={new}" for old, new in pairs) or NONE


def _names(values: object, everything: str) -> str:
    items = [str(v) for v in values or []] if isinstance(values, list) else []
    return ",".join(items) if items else everything


def restore_text(restore: dict[str, Any]) -> str:
    """One restore for people: the failure reason first, then its fields, summary and problems."""
    existing = "update" if restore.get("existingResourcePolicy") == "update" else "skip (leave as they are)"
    source = restore.get("sourceClusterName") or restore.get("sourceClusterId")
    text = fields(
        [
            ("Name", restore.get("restoreName")),
            ("ID", restore.get("id")),
            ("Kind", "preview (dry run: nothing changed)" if restore.get("dryRun") else "restore"),
            ("Backup", f"{restore.get('backupName')} of {source}"),
            ("Destination", f"{restore.get('destinationClusterName')} ({restore.get('destinationClusterId')})"),
            ("Phase", restore.get("phase")),
            ("Failure reason", restore.get("failureReason")),
            ("Items", _items(restore)),
            ("Summary", tally(restore.get("summary"))),
            ("Namespaces", _names(restore.get("includeNamespaces"), "all")),
            ("Excluded namespaces", _names(restore.get("excludedNamespaces"), NONE)),
            ("Namespace mapping", _mapping(restore.get("namespaceMapping"))),
            ("Label selector", restore.get("labelSelector")),
            ("Cluster resources", restore.get("includeClusterResourceMode")),
            ("Restore PVs", yes_no(restore.get("restorePVs"))),
            ("Preserve NodePorts", yes_no(restore.get("preserveNodePorts"))),
            ("Existing objects", existing),
            ("Storage prefix", restore.get("storagePrefix")),
            ("Created by", restore.get("createdBy")),
            ("Created", when(restore.get("createdAt"))),
            ("Started", when(restore.get("startTime"))),
            ("Completed", when(restore.get("completionTime"))),
            ("Duration", duration(restore.get("startTime"), restore.get("completionTime"))),
        ]
    )  # fmt: skip
    reason = restore.get("failureReason")
    if reason:
        # The reason says what went wrong and how to fix it: what a reader of a failed restore needs first.
        text = f"{restore.get('phase')}: {' '.join(str(reason).split())}\n\n{text}"
    problems = problems_text(restore.get("problems"))
    return f"{text}\n\n{problems}" if problems else text


def summary(restore: dict[str, Any]) -> str:
    """The end of ``create --wait``: phase, items, duration and counts per action, then the problems."""
    took = duration(restore.get("startTime"), restore.get("completionTime"))
    if restore.get("dryRun"):
        head = f"Preview {restore.get('restoreName')} {restore.get('phase')}: plan for {_counts(restore)[1]} items"
    else:
        head = f"Restore {restore.get('restoreName')} {restore.get('phase')}: {_items(restore)} items restored"
    line = f"{head}, took {took}; {tally(restore.get('summary'))}."
    problems = problems_text(restore.get("problems"))
    return f"{line}\n{problems}" if problems else line


def bar(restore: dict[str, Any]) -> str:
    """A text progress bar of items: ``name  InProgress  [#######---]  70/100 items``."""
    done, total = _counts(restore)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    count = f"{done}/{total} items" if total else f"{done} items"
    return (
        f"{restore.get('restoreName')}  {restore.get('phase')}  [{'#' * filled}{'-' * (BAR_WIDTH - filled)}]  {count}"
    )


def _exit_for(restore: dict[str, Any]) -> None:
    """Exit 0 for Completed, 4 for PartiallyFailed, 1 for Failed, with the reason on stderr."""
    phase = restore.get("phase")
    reason = " ".join(str(restore.get("failureReason") or "").split())
    noun, name = _noun(restore).lower(), restore.get("restoreName")
    if phase == "Completed":
        return
    if phase == "PartiallyFailed":
        typer.echo(
            f"Warning: {noun} {name} PartiallyFailed: {f'{reason} ' if reason else ''}See `stowage restores items "
            f"{restore.get('destinationClusterName')} {name} --action failed` for the items that failed.",
            err=True,
        )
        raise typer.Exit(EXIT_PARTIALLY_FAILED)
    fail(f"{noun} {name} {phase}: {reason or 'no reason given.'}", EXIT_API_ERROR)


# -- commands ---------------------------------------------------------------------------------------------
@app.command("create")
def create_restore(
    source: Annotated[str, typer.Argument(metavar="SOURCE_CLUSTER", help="The backed-up cluster (name or id).")],
    backup: Annotated[str, typer.Argument(metavar="BACKUP", help="The backup's name (or id).")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="DEST_CLUSTER",
            help="Restore into this cluster of the project (default: the source cluster).",
            rich_help_panel=OPTIONS,
        ),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            metavar="NS",
            help="Only this namespace of the backup (repeatable); default all.",
            rich_help_panel=OPTIONS,
        ),
    ] = None,
    exclude_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-namespace", metavar="NS", help="Leave this namespace out (repeatable).", rich_help_panel=OPTIONS
        ),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", metavar="OLD=NEW", help="Restore namespace OLD as NEW (repeatable).", rich_help_panel=OPTIONS
        ),
    ] = None,
    cluster_resources: Annotated[
        ClusterResourceMode,
        typer.Option(
            "--cluster-resources",
            help="Cluster-scoped resources: Always, Never, or Auto (those the restored namespaces need).",
            rich_help_panel=OPTIONS,
        ),
    ] = ClusterResourceMode.AUTO,
    restore_pvs: Annotated[
        bool,
        typer.Option(
            "--restore-pvs/--no-restore-pvs",
            help="Restore PersistentVolumes (EBS volumes made from their snapshots).",
            rich_help_panel=OPTIONS,
        ),
    ] = True,
    preserve_node_ports: Annotated[
        bool,
        typer.Option(
            "--preserve-node-ports",
            help="Keep the NodePorts of Services (else the destination assigns new ones).",
            rich_help_panel=OPTIONS,
        ),
    ] = False,
    existing: Annotated[
        Existing,
        typer.Option(
            "--existing",
            help="An object that already exists: skip it (and report it) or update it.",
            rich_help_panel=OPTIONS,
        ),
    ] = Existing.SKIP,
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-l",
            metavar="SELECTOR",
            help="Only items matching this label selector, as in kubectl get -l.",
            rich_help_panel=OPTIONS,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Preview: the plan per item and the problems found ahead; nothing changes.",
            rich_help_panel=OPTIONS,
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Show progress until the restore ends; the exit code says how.")
    ] = False,
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Restore a backup into a cluster of the project (or preview it with --dry-run); the destination's agent picks it
    up with its next heartbeat."""  # fmt: skip
    body: dict[str, Any] = {
        "includeNamespaces": list(namespace or []),
        "excludedNamespaces": list(exclude_namespace or []),
        "namespaceMapping": parse_mapping(map_),
        "includeClusterResourceMode": cluster_resources.value,
        "restorePVs": restore_pvs,
        "preserveNodePorts": preserve_node_ports,
        "existingResourcePolicy": EXISTING_POLICY[existing],
        "labelSelector": selector,
        "dryRun": dry_run,
    }
    if to:
        body["destinationClusterId"] = to
    with api(server, token, output) as (client, conn):
        created: dict[str, Any] = client.post(
            project_path(project, "clusters", source, "backups", backup, "restores"), body
        )
        destination, name = created["destinationClusterName"], created["restoreName"]
        if not wait:
            if conn.json:
                echo_json(created)
                return
            what = "a preview of" if created.get("dryRun") else "a restore of"
            typer.echo(
                f"Requested {what} backup {created['backupName']} into cluster {destination}: {name} "
                f"({created['phase']})."
            )
            typer.echo(f"Follow it with: stowage restores show {destination} {name}")
            return
        path = _restores(project, created["destinationClusterId"], created["id"])
        # Scripts (--output json) get the final Restore only; the exit code says how it ended.
        final = wait_for(
            client, path, interval, done=lambda r: r.get("phase") in FINISHED, render=None if conn.json else bar
        )
    if conn.json:
        echo_json(final)
    else:
        typer.echo(summary(final))
    _exit_for(final)


@app.command("list")
def list_restores(
    cluster: ClusterArgument,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (newest) restores.")] = 0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the restores (and previews) into a cluster, newest first."""
    with api(server, token, output) as (client, conn):
        page: dict[str, Any] = client.get(_restores(project, cluster), {"limit": limit, "offset": offset})
    if conn.json:
        echo_json(page)
        return
    items: list[dict[str, Any]] = page.get("items") or []
    total = int(page.get("total", len(items)))
    if not items and not offset:
        typer.echo(
            f"No restores into cluster {cluster}. Restore a backup with `stowage restores create CLUSTER BACKUP`."
        )
        return
    typer.echo(
        table(
            ("NAME", "BACKUP", "SOURCE", "PHASE", "DRY RUN", "CREATED", "ITEMS", "SUMMARY"),
            (
                [
                    r["restoreName"],
                    r.get("backupName"),
                    r.get("sourceClusterName") or r.get("sourceClusterId"),
                    r.get("phase"),
                    yes_no(r.get("dryRun")),
                    when(r.get("createdAt")),
                    _items(r),
                    tally(r.get("summary")),
                ]
                for r in items
            ),
        )
    )
    if offset or total > len(items):
        typer.echo(f"\nShowing {offset + 1 if items else 0}-{offset + len(items)} of {total}.")


@app.command("show")
def show_restore(
    cluster: ClusterArgument,
    name: NameArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show one restore: phase and failure reason, progress, counts per action, problems found ahead, fields."""
    with api(server, token, output) as (client, conn):
        restore: dict[str, Any] = client.get(_restores(project, cluster, name))
    if conn.json:
        echo_json(restore)
        return
    typer.echo(restore_text(restore))


@app.command("items")
def restore_items(
    cluster: ClusterArgument,
    name: NameArgument,
    action: Annotated[
        Action | None, typer.Option("--action", help="Only items with this result (or, in a preview, plan).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many.")] = 1000,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many items.")] = 0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Per-item results of a restore (created/updated/skipped/failed) or a preview's plan, with the reasons."""
    items: list[dict[str, Any]] = []
    total = 0
    with api(server, token, output) as (client, conn):
        path = _restores(project, cluster, name, "items")
        # The API pages at most 1000 at a time: read pages until --limit is reached or the items end.
        while len(items) < limit:
            query: dict[str, Any] = {"limit": min(ITEMS_PAGE, limit - len(items)), "offset": offset + len(items)}
            if action:
                query["action"] = action.value
            page: dict[str, Any] = client.get(path, query)
            batch: list[dict[str, Any]] = page.get("items") or []
            total = int(page.get("total") or 0)
            items.extend(batch)
            if not batch or offset + len(items) >= total:
                break
    if conn.json:
        echo_json({"items": items, "total": total})
        return
    if not items:
        which = f" with action {action.value}" if action else ""
        typer.echo(f"No items{which} in restore {name}" + (" yet." if not offset else " on this page."))
        return
    typer.echo(
        table(
            ("ACTION", "KIND", "NAMESPACE", "NAME", "REASON"),
            (
                [
                    i.get("action"),
                    f"{i.get('apiVersion')}/{i.get('kind')}",
                    i.get("namespace"),
                    i.get("name"),
                    " ".join(str(i.get("reason") or "").split()) or None,
                ]
                for i in items
            ),
        )
    )
    if offset or total > len(items):
        typer.echo(f"\nShowing {offset + 1}-{offset + len(items)} of {total}.")


@app.command("logs")
def restore_logs(
    cluster: ClusterArgument,
    name: NameArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the restore ends.")] = (
        False
    ),
    interval: Interval = 2.0,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Print a restore's log; live while it runs."""
    with api(server, token, output) as (client, conn):
        path = _restores(project, cluster, name, "logs")
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
