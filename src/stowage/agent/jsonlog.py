"""Structured logs: one JSON object per line on stderr, easy for people to read and for collectors to parse."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    """Writes ``{"time", "level", "event", ...}`` lines; thread-safe; never raises on odd values."""

    def __init__(self, stream: TextIO | None = None, *, level: str = "info") -> None:
        self._stream = stream
        self._threshold = LEVELS.get(level.lower(), 20)
        self._lock = threading.Lock()

    def log(self, level: str, event: str, **fields: Any) -> None:
        """Write one line when ``level`` is at or above the threshold."""
        if LEVELS.get(level, 20) < self._threshold:
            return
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "event": event,
            **fields,
        }
        line = json.dumps(record, default=str, ensure_ascii=False)
        stream = self._stream or sys.stderr  # looked up late so redirections made after start apply
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        """Log at debug level."""
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at info level."""
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at warning level."""
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log at error level."""
        self.log("error", event, **fields)
