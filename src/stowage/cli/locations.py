"""``stowage locations``: backup locations of a project, their validation and status."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from stowage.cli.client import ApiError, StowageClient, UsageProblem
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
from stowage.cli.render import echo_json, failed_ids, fields, report_text, table, when, yes_no
from stowage.domain.locations import AgentAccess, Provider

app = typer.Typer(help="Backup locations: add, edit, validate, list, show, delete.", no_args_is_help=True)

# Far more than a page anyone reads; resolving a name pages through the search results anyway.
PAGE = 500
DRY_RUN_NAME = "dry-run"
CREDENTIALS = "Credentials"
BUCKET = "Bucket"

RefArgument = Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="Location name or id.")]
RegionHelp = "Region of the bucket (any value the endpoint accepts for s3-compatible)."
Provider_ = Annotated[
    Provider, typer.Option("--provider", help="aws, or any S3-compatible store.", rich_help_panel=BUCKET)
]
RoleArn = Annotated[
    str | None,
    typer.Option(
        "--role-arn", metavar="ARN", help="Role to assume with the project's External ID.", rich_help_panel=CREDENTIALS
    ),
]
AccessKeyId = Annotated[
    str | None,
    typer.Option("--access-key-id", metavar="KEY", help="Static access key id.", rich_help_panel=CREDENTIALS),
]
SecretAccessKey = Annotated[
    str | None,
    typer.Option(
        "--secret-access-key",
        metavar="SECRET",
        help="Static secret key (visible in the process list: prefer --secret-access-key-stdin).",
        rich_help_panel=CREDENTIALS,
    ),
]
SecretStdin = Annotated[
    bool,
    typer.Option(
        "--secret-access-key-stdin", help="Read the static secret key from stdin.", rich_help_panel=CREDENTIALS
    ),
]
S3Url = Annotated[str | None, typer.Option("--s3-url", metavar="URL", help="S3 endpoint URL.", rich_help_panel=BUCKET)]
ForcePathStyle = Annotated[
    bool,
    typer.Option("--force-path-style", help="Address the bucket in the path, not the host.", rich_help_panel=BUCKET),
]
CaCert = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert", metavar="FILE", help="PEM file of the CA that signed the endpoint.", rich_help_panel=BUCKET
    ),
]
Prefix = Annotated[str | None, typer.Option("--prefix", help="Keep backups under this prefix.", rich_help_panel=BUCKET)]
KmsKeyArn = Annotated[
    str | None,
    typer.Option("--kms-key-arn", metavar="ARN", help="KMS key of the bucket's objects.", rich_help_panel=BUCKET),
]
NoVolumeSnapshots = Annotated[
    bool, typer.Option("--no-volume-snapshots", help="No EBS snapshots: skip the EC2 checks.", rich_help_panel=BUCKET)
]
AgentAccess_ = Annotated[
    AgentAccess,
    typer.Option("--agent-access", help="brokered: credentials vended by Stowage; direct: agents assume the role."),
]
Default = Annotated[bool, typer.Option("--default", help="Make it the project's default location.")]
SkipValidation = Annotated[
    bool, typer.Option("--skip-validation", help="Save without live checks (admins); status Unverified.")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass(frozen=True, slots=True)
class SpecArgs:
    """A LocationSpec as typed on the command line."""

    name: str
    bucket: str
    region: str
    provider: Provider
    role_arn: str | None
    access_key_id: str | None
    secret_access_key: str | None
    secret_stdin: bool
    s3_url: str | None
    force_path_style: bool
    ca_cert: Path | None
    prefix: str | None
    kms_key_arn: str | None
    no_volume_snapshots: bool
    default: bool
    agent_access: AgentAccess

    def body(self) -> dict[str, Any]:
        """The LocationSpec JSON of the API."""
        spec: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider.value,
            "bucket": self.bucket,
            "region": self.region,
            "forcePathStyle": self.force_path_style,
            "volumeSnapshots": not self.no_volume_snapshots,
            "isDefault": self.default,
            "agentAccess": self.agent_access.value,
            "credentials": self._credentials(),
        }
        optional = {"s3Url": self.s3_url, "prefix": self.prefix, "kmsKeyArn": self.kms_key_arn}
        spec.update({key: value for key, value in optional.items() if value})
        if self.ca_cert is not None:
            spec["caCert"] = _read_pem(self.ca_cert)
        return spec

    def _credentials(self) -> dict[str, str]:
        if not (self.role_arn or self.access_key_id or self.secret_access_key is not None or self.secret_stdin):
            raise UsageProblem(
                "credentials are missing: give --role-arn ARN, or --access-key-id KEY with --secret-access-key-stdin."
            )
        return credentials_body(
            self.role_arn, self.access_key_id, self.secret_access_key, self.secret_stdin, keep_stored_secret=False
        )


def credentials_body(
    role_arn: str | None,
    access_key_id: str | None,
    secret: str | None,
    secret_stdin: bool,
    *,
    keep_stored_secret: bool,
) -> dict[str, str]:
    """The API's credentials object from the command line's options (an edit may keep the stored secret)."""
    if role_arn and (access_key_id or secret is not None or secret_stdin):
        raise UsageProblem("give --role-arn (STS) or --access-key-id with a secret (static keys), not both.")
    if role_arn:
        return {"type": "sts", "roleArn": role_arn}
    if not access_key_id:
        raise UsageProblem("--access-key-id is required with a secret access key.")
    if secret is not None and secret_stdin:
        raise UsageProblem("give --secret-access-key or --secret-access-key-stdin, not both.")
    if secret_stdin:
        secret = sys.stdin.read().strip()
    elif secret is None and keep_stored_secret:
        # Secrets are write-only: an edit that names only the key id keeps the stored secret ("" says so).
        return {"type": "static", "accessKeyId": access_key_id, "secretAccessKey": ""}
    elif secret is None:
        if not sys.stdin.isatty():
            raise UsageProblem("--access-key-id needs --secret-access-key or --secret-access-key-stdin.")
        secret = typer.prompt("Secret access key", hide_input=True, err=True)
    if not secret:
        raise UsageProblem("the secret access key is empty.")
    return {"type": "static", "accessKeyId": access_key_id, "secretAccessKey": secret}


def _read_pem(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageProblem(f"cannot read --ca-cert {path}: {reason}.") from exc


def resolve(client: StowageClient, project: str, ref: str) -> dict[str, Any]:
    """The location named ``ref`` (found through search), or else the one whose id is ``ref``."""
    offset = 0
    while True:
        page: dict[str, Any] = client.get(
            project_path(project, "backup-locations"), {"search": ref, "limit": PAGE, "offset": offset}
        )
        items: list[dict[str, Any]] = page.get("items", [])
        for item in items:
            if item.get("name") == ref:
                return item
        offset += len(items)
        if not items or offset >= int(page.get("total", 0)):
            break
    try:
        found: dict[str, Any] = client.get(project_path(project, "backup-locations", ref))
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(
                404, exc.code, f"No backup location named or with id '{ref}' in project '{project}'.", exc.details
            ) from exc
        raise
    return found


def _credentials_text(location: dict[str, Any]) -> str:
    creds = location.get("credentials") or {}
    if creds.get("type") == "sts":
        return f"sts, role {creds.get('roleArn')}"
    return f"static, key {creds.get('accessKeyId')} (secret {creds.get('secretAccessKey')})"


def location_text(location: dict[str, Any]) -> str:
    """One location as labelled lines."""
    ca_cert = location.get("caCert")
    interval = location.get("revalidateIntervalMinutes")
    return fields(
        [
            ("Name", location["name"]),
            ("ID", location["id"]),
            ("Project", location.get("project")),
            ("Default", yes_no(location.get("isDefault"))),
            ("Status", location.get("status")),
            ("Status message", location.get("statusMessage")),
            ("Last validated", when(location.get("lastValidatedAt"))),
            ("Provider", location.get("provider")),
            ("Bucket", location.get("bucket")),
            ("Region", location.get("region")),
            ("Prefix", location.get("prefix")),
            ("S3 URL", location.get("s3Url")),
            ("Force path style", yes_no(location.get("forcePathStyle"))),
            ("CA certificate", f"PEM, {len(ca_cert)} characters" if ca_cert else None),
            ("KMS key", location.get("kmsKeyArn")),
            ("Volume snapshots", yes_no(location.get("volumeSnapshots"))),
            ("Agent access", location.get("agentAccess")),
            ("Credentials", _credentials_text(location)),
            ("External ID", location.get("externalId")),
            ("Re-validate every", f"{interval} min" if interval else "server default"),
            ("Created", when(location.get("createdAt"))),
        ]
    )


def _print_report_or_fail(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        echo_json(report)
    else:
        typer.echo(report_text(report))
    _exit_unless_ok(report)


def _exit_unless_ok(report: dict[str, Any]) -> None:
    if not report.get("ok"):
        fail(f"validation failed: {', '.join(failed_ids(report)) or 'see the report'}.", EXIT_API_ERROR)


@app.command("list")
def list_locations(
    project: ProjectOption = "default",
    search: Annotated[str | None, typer.Option("--search", "-s", help="Match name, bucket or region.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many.")] = 0,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """List the backup locations of a project."""
    with api(server, token, output) as (client, conn):
        page: dict[str, Any] = client.get(
            project_path(project, "backup-locations"), {"search": search, "limit": limit, "offset": offset}
        )
    if conn.json:
        echo_json(page)
        return
    items: list[dict[str, Any]] = page["items"]
    typer.echo(
        table(
            ("NAME", "DEFAULT", "PROVIDER", "BUCKET", "REGION", "STATUS", "LAST VALIDATED", "ID"),
            (
                [
                    i["name"],
                    "*" if i.get("isDefault") else "",
                    i["provider"],
                    i["bucket"],
                    i["region"],
                    i["status"],
                    when(i.get("lastValidatedAt")),
                    i["id"],
                ]
                for i in items
            ),
        )
    )
    total = int(page.get("total", len(items)))
    if offset or total > len(items):
        typer.echo(f"\nShowing {offset + 1 if items else 0}-{offset + len(items)} of {total}.")


@app.command("add")
def add_location(
    name: Annotated[str, typer.Argument(help="Name of the location, unique in the project.")],
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="Bucket name.", rich_help_panel=BUCKET)],
    region: Annotated[str, typer.Option("--region", help=RegionHelp, rich_help_panel=BUCKET)],
    provider: Provider_ = Provider.AWS,
    role_arn: RoleArn = None,
    access_key_id: AccessKeyId = None,
    secret_access_key: SecretAccessKey = None,
    secret_access_key_stdin: SecretStdin = False,
    s3_url: S3Url = None,
    force_path_style: ForcePathStyle = False,
    ca_cert: CaCert = None,
    prefix: Prefix = None,
    kms_key_arn: KmsKeyArn = None,
    no_volume_snapshots: NoVolumeSnapshots = False,
    agent_access: AgentAccess_ = AgentAccess.BROKERED,
    default: Default = False,
    skip_validation: SkipValidation = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Validate a location live and save it when every check passes."""
    spec = SpecArgs(
        name, bucket, region, provider, role_arn, access_key_id, secret_access_key, secret_access_key_stdin,
        s3_url, force_path_style, ca_cert, prefix, kms_key_arn, no_volume_snapshots, default, agent_access,
    )  # fmt: skip
    body = {**spec.body(), "skipValidation": skip_validation}
    with api(server, token, output) as (client, conn), _failed_checks_shown(conn.json):
        created: dict[str, Any] = client.post(project_path(project, "backup-locations"), body)
    if conn.json:
        echo_json(created)
        return
    typer.echo(f"Created location {created['name']} ({created['id']}): {created['status']}.")
    if created.get("status") == "Unverified":
        typer.echo(f"Validate it when the bucket is ready: stowage locations validate {created['name']}")


@contextlib.contextmanager
def _failed_checks_shown(as_json: bool) -> Iterator[None]:
    """On a refused save (``validation_failed``), print the report's checks before the one-line error."""
    try:
        yield
    except ApiError as exc:
        report = exc.details.get("report")
        if exc.code == "validation_failed" and isinstance(report, dict) and not as_json:
            typer.echo(report_text(report))
            typer.echo()
        raise


@app.command("edit")
def edit_location(
    ref: RefArgument,
    name: Annotated[str | None, typer.Option("--name", help="Rename the location.")] = None,
    bucket: Annotated[str | None, typer.Option("--bucket", "-b", help="Bucket name.", rich_help_panel=BUCKET)] = None,
    region: Annotated[str | None, typer.Option("--region", help=RegionHelp, rich_help_panel=BUCKET)] = None,
    provider: Annotated[
        Provider | None, typer.Option("--provider", help="aws, or any S3-compatible store.", rich_help_panel=BUCKET)
    ] = None,
    role_arn: RoleArn = None,
    access_key_id: AccessKeyId = None,
    secret_access_key: SecretAccessKey = None,
    secret_access_key_stdin: SecretStdin = False,
    s3_url: S3Url = None,
    force_path_style: Annotated[
        bool | None,
        typer.Option("--force-path-style/--no-force-path-style", help="Path-style addressing.", rich_help_panel=BUCKET),
    ] = None,
    ca_cert: CaCert = None,
    prefix: Prefix = None,
    kms_key_arn: KmsKeyArn = None,
    volume_snapshots: Annotated[
        bool | None,
        typer.Option("--volume-snapshots/--no-volume-snapshots", help="EBS snapshots.", rich_help_panel=BUCKET),
    ] = None,
    agent_access: Annotated[
        AgentAccess | None,
        typer.Option("--agent-access", help="brokered: credentials vended by Stowage; direct: agents assume the role."),
    ] = None,
    revalidate_every: Annotated[
        int | None,
        typer.Option(
            "--revalidate-every", metavar="MINUTES", help="Re-validation interval (5-10080); 0 for the default."
        ),
    ] = None,
    skip_validation: SkipValidation = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Change a location; only the options given change (an empty value clears --s3-url, --prefix, --kms-key-arn).

    Changing what the credentials must reach (bucket, region, endpoint, credentials...) needs a passing
    validation, as when adding; with static keys, --access-key-id alone keeps the stored secret.
    """
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "name": name,
            "bucket": bucket,
            "region": region,
            "provider": provider.value if provider else None,
            "s3Url": s3_url,
            "forcePathStyle": force_path_style,
            "prefix": prefix,
            "kmsKeyArn": kms_key_arn,
            "volumeSnapshots": volume_snapshots,
            "agentAccess": agent_access.value if agent_access else None,
        }.items()
        if value is not None
    }
    if ca_cert is not None:
        changes["caCert"] = _read_pem(ca_cert) if str(ca_cert) else None
    if revalidate_every is not None:
        changes["revalidateIntervalMinutes"] = revalidate_every or None
    if role_arn or access_key_id or secret_access_key is not None or secret_access_key_stdin:
        changes["credentials"] = credentials_body(
            role_arn, access_key_id, secret_access_key, secret_access_key_stdin, keep_stored_secret=True
        )
    if not changes:
        raise UsageProblem("nothing to change: give at least one option (see --help).")
    body = {**changes, "skipValidation": skip_validation}
    with api(server, token, output) as (client, conn):
        location = resolve(client, project, ref)
        with _failed_checks_shown(conn.json):
            saved: dict[str, Any] = client.patch(project_path(project, "backup-locations", location["id"]), body)
    if conn.json:
        echo_json(saved)
        return
    typer.echo(f"Updated location {saved['name']} ({saved['id']}): {saved['status']}.")


@app.command("validate")
def validate_location(
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME_OR_ID]",
            help="A saved location to re-validate; with --bucket, the name of the spec to try.",
        ),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", "-b", help="Try an unsaved spec (dry run).", rich_help_panel=BUCKET)
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help=RegionHelp, rich_help_panel=BUCKET)] = None,
    provider: Provider_ = Provider.AWS,
    role_arn: RoleArn = None,
    access_key_id: AccessKeyId = None,
    secret_access_key: SecretAccessKey = None,
    secret_access_key_stdin: SecretStdin = False,
    s3_url: S3Url = None,
    force_path_style: ForcePathStyle = False,
    ca_cert: CaCert = None,
    prefix: Prefix = None,
    kms_key_arn: KmsKeyArn = None,
    no_volume_snapshots: NoVolumeSnapshots = False,
    agent_access: AgentAccess_ = AgentAccess.BROKERED,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Re-validate a saved location now, or dry-run an unsaved spec given with --bucket; exit 1 if a check fails."""
    if bucket is None:
        spec_given = [role_arn, access_key_id, secret_access_key, s3_url, ca_cert, prefix, kms_key_arn, region]
        if ref is None:
            raise UsageProblem("give a location NAME_OR_ID to re-validate, or --bucket and --region for a dry run.")
        if any(v is not None for v in spec_given) or secret_access_key_stdin:
            raise UsageProblem(
                "spec options need --bucket (a dry run); to re-validate a saved location give only its name."
            )
        with api(server, token, output) as (client, conn):
            location = resolve(client, project, ref)
            answer: dict[str, Any] = client.post(project_path(project, "backup-locations", location["id"], "validate"))
        if conn.json:
            echo_json(answer)
            _exit_unless_ok(answer["report"])
            return
        typer.echo(_print_status(answer["location"]))
        typer.echo()
        _print_report_or_fail(answer["report"], as_json=False)
        return
    if region is None:
        raise UsageProblem("--region is required with --bucket.")
    spec = SpecArgs(
        ref or DRY_RUN_NAME, bucket, region, provider, role_arn, access_key_id, secret_access_key,
        secret_access_key_stdin, s3_url, force_path_style, ca_cert, prefix, kms_key_arn, no_volume_snapshots,
        False, agent_access,
    )  # fmt: skip
    body = spec.body()
    with api(server, token, output) as (client, conn):
        report: dict[str, Any] = client.post(project_path(project, "backup-locations", "validate"), body)
    _print_report_or_fail(report, as_json=conn.json)


def _print_status(location: dict[str, Any]) -> str:
    message = f": {location['statusMessage']}" if location.get("statusMessage") else ""
    return f"Location {location['name']} is {location['status']}{message}"


@app.command("show")
def show_location(
    ref: RefArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Show a location and its recent validations."""
    with api(server, token, output) as (client, conn):
        location = resolve(client, project, ref)
        history: list[dict[str, Any]] = client.get(
            project_path(project, "backup-locations", location["id"], "validations")
        )
    if conn.json:
        # Two API answers side by side, each exactly as the API gave it.
        echo_json({"location": location, "validations": history})
        return
    typer.echo(location_text(location))
    typer.echo("\nRecent validations:")
    if not history:
        typer.echo("  none yet")
        return
    typer.echo(
        table(
            ("WHEN", "TRIGGER", "RESULT", "TOOK", "FAILED CHECKS"),
            (
                [
                    when(entry.get("createdAt")),
                    entry.get("trigger"),
                    "ok" if entry["report"].get("ok") else "failed",
                    f"{entry['report'].get('durationMs', 0)} ms",
                    ", ".join(failed_ids(entry["report"])),
                ]
                for entry in history
            ),
        )
    )


@app.command("delete")
def delete_location(
    ref: RefArgument,
    yes: Yes = False,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Delete a location from Stowage; the bucket and its contents are left untouched."""
    with api(server, token, output) as (client, conn):
        location = resolve(client, project, ref)
        if not yes:
            confirm(f"Delete location {location['name']} (bucket {location['bucket']}) from project {project}?")
        client.delete(project_path(project, "backup-locations", location["id"]))
    if conn.json:
        # The API answers 204 without a body: print what was deleted instead.
        echo_json(location)
        return
    typer.echo(f"Deleted location {location['name']} ({location['id']}); the bucket was not touched.")


@app.command("set-default")
def set_default(
    ref: RefArgument,
    project: ProjectOption = "default",
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = None,
) -> None:
    """Make a location the project's default."""
    with api(server, token, output) as (client, conn):
        location = resolve(client, project, ref)
        saved: dict[str, Any] = client.post(project_path(project, "backup-locations", location["id"], "default"))
    if conn.json:
        echo_json(saved)
        return
    typer.echo(f"{saved['name']} is now the default location of project {project}.")
