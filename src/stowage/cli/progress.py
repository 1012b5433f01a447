"""Waiting for a backup or restore to end: polling its resource and drawing its progress bar on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from stowage.cli.client import StowageClient

Job = dict[str, Any]


class ProgressLine:
    """The progress bar on stderr: redrawn in place on a terminal, a new line per change otherwise (CI logs)."""

    def __init__(self, render: Callable[[Job], str], stream: TextIO | None = None) -> None:
        self._render = render
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last = ""

    def show(self, job: Job) -> None:
        """Draw the job's progress if it changed."""
        line = self._render(job)
        if line == self._last:
            return
        self._last = line
        self._stream.write(f"\r\x1b[2K{line}" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the line a terminal was redrawing."""
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def wait_for(
    client: StowageClient,
    path: str,
    interval: float,
    *,
    done: Callable[[Job], bool],
    render: Callable[[Job], str] | None,
) -> Job:
    """GET ``path`` until ``done``; draws a progress bar with ``render`` (None: quietly, for ``--output json``)."""
    line = ProgressLine(render) if render is not None else None
    try:
        while True:
            job: Job = client.get(path)
            if line is not None:
                line.show(job)
            if done(job):
                return job
            time.sleep(interval)
    finally:
        if line is not None:
            line.close()
