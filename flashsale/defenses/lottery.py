"""Lottery: entries during a window, then a uniform random draw of the winners.

Arrival speed stops mattering: every entrant has the same chance, whoever entered
first. Entrants are drawn without replacement from the injected Generator; the
result is sorted so it does not depend on the order entries came in, only on the
set of entrants and the generator's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["draw"]


def draw(
    entrant_ids: Sequence[int] | np.ndarray, winners: int, rng: np.random.Generator
) -> np.ndarray:
    """``winners`` distinct entrants (all of them if fewer entered), sorted by id.

    Duplicate entries count once: one account, one chance.
    """
    if winners < 0:
        raise ValueError(f"winners(={winners}) must be >= 0")
    pool = np.unique(np.asarray(entrant_ids, dtype=np.int64))
    if pool.size <= winners:
        return pool
    return np.sort(rng.choice(pool, size=winners, replace=False))
