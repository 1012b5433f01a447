"""The ``stowage`` command: the CLI adapter plus ``serve`` from the server composition root."""

from __future__ import annotations

from stowage.agent.command import agent
from stowage.cli.main import app
from stowage.server import serve

app.command("serve")(serve)
app.command("agent")(agent)

if __name__ == "__main__":
    app()
