"""The ``stowage`` command line (Typer): a thin HTTP client of API v1."""

from __future__ import annotations

import typer

app = typer.Typer(help="Stowage: Kubernetes backups into S3 with dynamic AWS credentials.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Stowage: Kubernetes backups into S3 with dynamic AWS credentials."""
