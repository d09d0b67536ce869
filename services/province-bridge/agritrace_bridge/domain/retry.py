"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
Jitter"): the n-th retry waits a random time between 0 and min(cap, base * 2^n), so many
bridges retrying against one recovering service spread out instead of arriving together."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 0.5
    cap_seconds: float = 60.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number `attempt` (1 = the first retry)."""
        exponent = min(max(attempt - 1, 0), 30)  # 2^30 * base is past any cap
        return float(min(self.cap_seconds, self.base_seconds * (2 ** exponent)))

    def delay(self, attempt: int, *, at_least: float = 0.0,
              draw: Callable[[], float] = random.random) -> float:
        """The wait before retry `attempt`; never shorter than `at_least` (a Retry-After
        the other side asked for)."""
        return max(at_least, draw() * self.ceiling(attempt))


DEFAULT_BACKOFF = Backoff()
