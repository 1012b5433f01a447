"""Plain, deterministic output for people (aligned columns) and for scripts (the API's JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import typer

STATUS_MARKS = {"passed": "✓", "failed": "✗", "warning": "!", "skipped": "–"}
NONE = "-"


def echo_json(data: object) -> None:
    """Print data as indented JSON, keys in the API's order."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; no colour, no wrapping, no trailing blanks."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``Label   value`` lines with the values aligned."""
    items = [(label, _cell(value)) for label, value in pairs]
    width = max((len(label) for label, _ in items), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in items)


def when(value: object) -> str:
    """An API timestamp as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    if not isinstance(value, str) or not value:
        return NONE
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the API speaks UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def yes_no(value: object) -> str:
    """A boolean for people."""
    return "yes" if value else "no"


def report_text(report: Mapping[str, Any]) -> str:
    """A validation report: a table of checks, the remedies below it, and a summary line."""
    checks: list[Mapping[str, Any]] = list(report.get("checks") or [])
    parts = [
        table(
            ("", "CHECK", "MESSAGE"),
            (
                [STATUS_MARKS.get(str(c.get("status")), "?"), c.get("id", ""), _one_line(c.get("message"))]
                for c in checks
            ),
        )
    ]
    for check in checks:
        remedy = str(check.get("remedy") or "")
        if check.get("status") in ("failed", "warning") and remedy.strip():
            title = "How to fix" if check.get("status") == "failed" else "Worth a look"
            # Verbatim: remedies may be JSON policies meant to be pasted as they are.
            parts.append(f"{STATUS_MARKS[str(check['status'])]} {title} {check.get('id', '')}:\n{remedy.rstrip()}")
    parts.append(report_summary(report))
    return "\n\n".join(parts)


def report_summary(report: Mapping[str, Any]) -> str:
    """One line: passed or how many checks failed, and how long it took."""
    checks: list[Mapping[str, Any]] = list(report.get("checks") or [])
    counts = {status: sum(1 for c in checks if c.get("status") == status) for status in STATUS_MARKS}
    took = f"{report.get('durationMs', 0)} ms"
    tally = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    if report.get("ok"):
        return f"Validation passed ({tally}; {took})."
    return f"Validation FAILED ({tally}; {took})."


def failed_ids(report: Mapping[str, Any]) -> list[str]:
    """Ids of the failed checks of a report."""
    return [str(c.get("id")) for c in report.get("checks") or [] if c.get("status") == "failed"]


def _one_line(value: object) -> str:
    # 0 and False are values, not blanks.
    return " ".join(str("" if value is None else value).split())


def _cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return yes_no(value)
    return _one_line(value)
