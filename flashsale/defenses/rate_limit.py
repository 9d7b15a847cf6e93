"""Token-bucket rate limiting: the 429 a client gets when it asks too often.

One bucket per key (an account, or an operator's IP). A bucket holds at most
``burst`` tokens, refills at ``rate_per_s`` and starts full; a request takes one
token or is refused. Time is a float passed in by the caller, so the same rule
runs in simulated time and on a wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Independent token buckets keyed by account, IP or operator."""

    __slots__ = ("_buckets", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s(={rate_per_s}) must be a finite number > 0")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst(={burst!r}) must be an integer >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        # key -> [tokens at `last`, last]; a list so take() updates in place
        self._buckets: dict[Hashable, list[float]] = {}

    def _level(self, key: Hashable, now: float) -> list[float]:
        """The bucket refilled up to ``now``. A clock that steps back refills nothing."""
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = [float(self.burst), now]
            return b
        if now > b[1]:
            b[0] = min(float(self.burst), b[0] + (now - b[1]) * self.rate_per_s)
            b[1] = now
        return b

    def take(self, key: Hashable, now: float) -> bool:
        """Spend one token of ``key``'s bucket at ``now``; False (429) if it is empty."""
        b = self._level(key, now)
        if b[0] >= 1.0:
            b[0] -= 1.0
            return True
        return False

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` has a token again (0 if it has one now): the Retry-After."""
        b = self._level(key, now)
        return max(0.0, (1.0 - b[0]) / self.rate_per_s)

    def tokens(self, key: Hashable, now: float) -> float:
        """Tokens ``key`` holds at ``now`` (a fresh key holds ``burst``)."""
        return self._level(key, now)[0]
