"""What every command shares: connection options, output format, and turning failures into exit codes."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from stowage.cli.client import DEFAULT_SERVER, ApiError, StowageClient, Unreachable, UsageProblem, segment
from stowage.cli.render import echo_json

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
CONNECTION_PANEL = "Connection"


class Output(enum.StrEnum):
    """Output formats."""

    TABLE = "table"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send requests, as whom, and how to print the answers."""

    server: str
    token: str | None
    output: Output

    @property
    def json(self) -> bool:
        """True for ``--output json``."""
        return self.output is Output.JSON


# The connection of the running invocation: set by the root callback, refined by the command's own options.
_CURRENT: ContextVar[Connection | None] = ContextVar("stowage_cli_connection", default=None)

ProjectOption = Annotated[
    str, typer.Option("--project", "-p", envvar="STOWAGE_PROJECT", help="Project name or id.", show_default=True)
]
# The connection options again on every command, so they may follow the command name as well. They have no
# default and no envvar: unset means "as given before the command name, or from the environment".
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help=f"Stowage server URL (env STOWAGE_SERVER; default {DEFAULT_SERVER}).",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="API token (env STOWAGE_TOKEN).", rich_help_panel=CONNECTION_PANEL, show_default=False
    ),
]
OutputOption = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table for people, json for scripts (default: table).",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]


class StowageGroup(TyperGroup):
    """The root group: turns API errors, usage problems and network failures into one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; never let a traceback reach the user."""
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            current = _CURRENT.get()
            if current is not None and current.json:
                # Scripts get the API's error body on stdout too, so they can branch on its ``code``.
                echo_json(exc.body)
            fail(exc.reason, EXIT_API_ERROR)
        except UsageProblem as exc:
            fail(str(exc), EXIT_USAGE)
        except Unreachable as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except Exception as exc:
            if _is_framework_signal(exc) or os.environ.get("STOWAGE_DEBUG"):
                raise
            # A bug of ours: one line that says so; the traceback only on request.
            fail(f"unexpected {type(exc).__name__}: {exc} (set STOWAGE_DEBUG=1 for details)", EXIT_API_ERROR)


def _is_framework_signal(exc: Exception) -> bool:
    """True for exits, aborts and usage errors that Typer (or Click, depending on the version) reports itself."""
    if isinstance(exc, typer.Exit | typer.Abort):
        return True
    # Matched by name: newer Typer vendors Click, older Typer uses Click itself, and both must pass through.
    return any(cls.__name__ in ("ClickException", "TyperException") for cls in type(exc).__mro__)


def fail(message: str, code: int) -> NoReturn:
    """Print a one-line reason on stderr and exit with ``code``."""
    typer.echo(f"Error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def set_root_options(server: str, token: str | None, output: Output) -> None:
    """Record the options given before the command name (or from the environment)."""
    _CURRENT.set(Connection(server=server, token=token, output=output))


def connection(server: str | None = None, token: str | None = None, output: Output | None = None) -> Connection:
    """The connection of a command: its own options, else those before its name, else env and defaults."""
    root = _CURRENT.get() or Connection(
        server=os.environ.get("STOWAGE_SERVER") or DEFAULT_SERVER,
        token=os.environ.get("STOWAGE_TOKEN") or None,
        output=Output.TABLE,
    )
    conn = Connection(server=server or root.server, token=token or root.token, output=output or root.output)
    # The error handler runs after the command returns, so it needs the effective output format too.
    _CURRENT.set(conn)
    return conn


@contextmanager
def api(
    server: str | None = None, token: str | None = None, output: Output | None = None
) -> Iterator[tuple[StowageClient, Connection]]:
    """A client for the running command, closed at the end."""
    conn = connection(server, token, output)
    with StowageClient(conn.server, conn.token) as client:
        yield client, conn


def project_path(project: str, *rest: str) -> str:
    """``/projects/{project}/...`` with each part quoted."""
    return "/projects/" + "/".join(segment(p) for p in (project, *rest))


def confirm(question: str) -> None:
    """Ask before a destructive step; abort (exit 1) unless the answer is yes."""
    typer.confirm(question, abort=True, err=True)
