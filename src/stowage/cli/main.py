"""Entry point of the ``stowage`` command."""

from __future__ import annotations

import typer

from stowage.cli.serve import serve

app = typer.Typer(help="Stowage: Kubernetes backups into S3 with dynamic AWS credentials.", no_args_is_help=True)
app.command("serve")(serve)


@app.callback()
def main() -> None:
    """Stowage: Kubernetes backups into S3 with dynamic AWS credentials."""


if __name__ == "__main__":
    app()
