"""Backup schedules: cron expressions (parsed by croniter, not by hand), Palette's presets, and backup names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from stowage.domain.backups import BACKUP_NAME_MAX_LENGTH, backup_name_problem

# `<prefix>-<cluster>-<UTC timestamp>`: the timestamp is 14 digits (YYYYMMDDhhmmss).
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
_TIMESTAMP_LENGTH = 14
SCHEDULE_MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Preset:
    """One of Palette's schedule choices."""

    key: str
    label: str
    cron: str | None


# Cron cannot say "every other week"; the 1st and the 15th is the usual reading of "every two weeks".
PRESETS: tuple[Preset, ...] = (
    Preset("weekly", "Every week on Sunday at midnight", "0 0 * * 0"),
    Preset("biweekly", "Every two weeks at midnight (1st and 15th)", "0 0 1,15 * *"),
    Preset("monthly", "Every month on the 1st at midnight", "0 0 1 * *"),
    Preset("bimonthly", "Every two months on the 1st at midnight", "0 0 1 */2 *"),
    Preset("custom", "Custom cron expression", None),
    Preset("never", "Never", None),
)


def preset_for(cron: str) -> str:
    """The key of the preset an expression is, or ``custom``."""
    for preset in PRESETS:
        if preset.cron == cron.strip():
            return preset.key
    return "custom"


def schedule_problem(expression: str) -> str | None:
    """Why a cron expression cannot be used (five fields, UTC); None when it is fine."""
    text = expression.strip()
    example = 'e.g. "0 2 * * *" for every day at 02:00 UTC'
    if not text:
        return f"schedule is required: a cron expression of five fields (minute hour day month weekday), {example}."
    if len(text) > SCHEDULE_MAX_LENGTH:
        return f"schedule has {len(text)} characters; at most {SCHEDULE_MAX_LENGTH}."
    if len(text.split()) != 5:
        return (
            f"schedule {text!r} has {len(text.split())} fields; a cron expression has five "
            f"(minute hour day month weekday), {example}."
        )
    if not croniter.is_valid(text):
        return f"schedule {text!r} is not a valid cron expression; {example}."
    return None


def next_run(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which the schedule fires (UTC)."""
    start = after.astimezone(UTC).replace(microsecond=0)
    value: datetime = croniter(expression.strip(), start).get_next(datetime)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def scheduled_backup_name(prefix: str, cluster_name: str, at: datetime) -> str:
    """``<prefix>-<cluster>-<UTC timestamp>``: the same on every server for the same scheduled time."""
    return f"{prefix}-{cluster_name}-{at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}"


def backup_prefix_problem(prefix: str, cluster_name: str) -> str | None:
    """Why a schedule's backup prefix cannot be used for this cluster; None when it is fine."""
    problem = backup_name_problem(prefix, field_name="backupPrefix")
    if problem:
        return problem
    room = BACKUP_NAME_MAX_LENGTH - len(cluster_name) - _TIMESTAMP_LENGTH - 2
    if len(prefix) > room:
        return (
            f"backupPrefix is too long for cluster '{cluster_name}': backup names are "
            f"<prefix>-<cluster>-<14-digit UTC timestamp> and may have at most {BACKUP_NAME_MAX_LENGTH} characters, "
            f"so the prefix may have at most {max(room, 0)}."
        )
    return None
