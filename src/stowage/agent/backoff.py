"""Exponential backoff with jitter, so agents of many clusters don't reconnect in lockstep after an outage."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``base`` up to ``cap``; each is jittered within its upper half ("equal jitter")."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, *, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt; grows with every call until ``reset``."""
        ceiling = min(self.cap, self.base * (2.0 ** min(self.attempt, 32)))
        self.attempt += 1
        # Half fixed, half random: keeps the growth (unlike full jitter) and still spreads the herd.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self.attempt = 0
