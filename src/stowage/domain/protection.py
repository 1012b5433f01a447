"""Protection status: is a cluster (or a workspace) backed up as often as its schedule promises?

The recovery point objective is the schedule itself: every scheduled run should leave a successful backup.
Risk levels, from best to worst:

* ``on_time``  the latest due run left a successful backup (or is still within its grace period);
* ``late``     the latest due run left none, past its grace, but the one before did;
* ``missed``   two or more due runs in a row left no successful backup;
* ``failing``  the most recent backup ended Failed or PartiallyFailed (whatever the schedule);
* ``never``    no successful backup at all.

Without a schedule there is no objective: a cluster with a successful backup is ``on_time``; one without is
``never``, so it stands out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter


class Risk(enum.StrEnum):
    """How far a cluster is from its recovery point objective."""

    ON_TIME = "on_time"
    LATE = "late"
    MISSED = "missed"
    FAILING = "failing"
    NEVER = "never"

    @property
    def rank(self) -> int:
        """Worse is higher (for a workspace's roll-up)."""
        return [Risk.ON_TIME, Risk.LATE, Risk.MISSED, Risk.FAILING, Risk.NEVER].index(self)


@dataclass(frozen=True, slots=True)
class Protection:
    """One cluster's (or a workspace's) protection status."""

    risk: Risk
    last_successful_backup_at: datetime | None
    next_scheduled_at: datetime | None
    reason: str


def previous_runs(cron: str, now: datetime, count: int = 2) -> list[datetime]:
    """The ``count`` most recent fire times of a schedule at or before ``now``, latest first."""
    it = croniter(cron, now + timedelta(seconds=1))
    return [it.get_prev(datetime) for _ in range(count)]


def assess(
    *,
    now: datetime,
    last_success: datetime | None,
    last_finished_phase: str | None,
    schedule: str | None,
    paused: bool,
    next_run: datetime | None,
    grace: timedelta,
) -> Protection:
    """The protection status of one cluster from its backups and its schedule."""
    upcoming = None if paused else next_run
    if last_finished_phase in ("Failed", "PartiallyFailed"):
        return Protection(
            Risk.FAILING,
            last_success,
            upcoming,
            f"The most recent backup ended {last_finished_phase}: see its failure reason.",
        )
    if last_success is None:
        return Protection(Risk.NEVER, None, upcoming, "This cluster has no successful backup.")
    if not schedule or paused:
        why = "no schedule" if not schedule else "the schedule is paused"
        return Protection(Risk.ON_TIME, last_success, upcoming, f"Backed up ({why}, so no objective to miss).")
    latest, before = previous_runs(schedule, now)
    if last_success >= latest or (now - latest <= grace and last_success >= before):
        return Protection(Risk.ON_TIME, last_success, upcoming, "The latest scheduled run left a backup.")
    if last_success >= before:
        return Protection(
            Risk.LATE,
            last_success,
            upcoming,
            f"The run due at {latest.isoformat(timespec='minutes')} left no successful backup.",
        )
    return Protection(
        Risk.MISSED,
        last_success,
        upcoming,
        f"At least two scheduled runs (the latest due at {latest.isoformat(timespec='minutes')}) left no "
        "successful backup.",
    )


def roll_up(statuses: list[Protection]) -> Protection:
    """A workspace's status: its worst cluster's risk, its oldest last success, its soonest next run."""
    if not statuses:
        return Protection(Risk.NEVER, None, None, "The workspace has no clusters.")
    worst = max(statuses, key=lambda p: p.risk.rank)
    successes = [p.last_successful_backup_at for p in statuses]
    oldest = None if any(s is None for s in successes) else min(s for s in successes if s is not None)
    upcoming = [p.next_scheduled_at for p in statuses if p.next_scheduled_at is not None]
    return Protection(worst.risk, oldest, min(upcoming) if upcoming else None, worst.reason)
