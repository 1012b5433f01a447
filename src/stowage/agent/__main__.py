"""``python -m stowage.agent``: the agent without the rest of the CLI."""

from __future__ import annotations

import typer

from stowage.agent.command import agent


def main() -> None:
    """Run the agent command."""
    typer.run(agent)


if __name__ == "__main__":
    main()
