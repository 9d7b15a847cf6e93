"""Per-buyer random draws, made up front and vectorised.

Each random quantity of a buyer (think times, patience, service times, payment
luck) is a sequence indexed by the buyer and by the number of requests the buyer
has sent so far. All of it is drawn before the simulation starts from that
quantity's own stream, into one pool; every buyer reads a contiguous run of the
pool starting at a random offset. So buyer *b*'s *k*-th think time is the same
number whatever defenses are on or in which order events happen: common random
numbers, paired comparisons. Reading a draw costs one list-like index, not a
Generator call per event.
"""

from __future__ import annotations

from array import array

import numpy as np

from flashsale.distributions import Constant, Distribution

__all__ = ["BuyerDraws"]


class BuyerDraws:
    """One random quantity of ``buyers`` buyers: draw k of buyer b is ``pool[(off[b] + k) & mask]``.

    ``per_buyer`` sets the pool size (a power of two >= buyers * per_buyer): runs of
    different buyers overlap only when a buyer sends far more requests than that.
    A constant needs no pool and no randomness: nothing is drawn from ``rng``.
    """

    __slots__ = ("mask", "offsets", "pool")

    def __init__(
        self, dist: Distribution, rng: np.random.Generator, buyers: int, per_buyer: int = 4
    ) -> None:
        if buyers < 0 or per_buyer < 1:
            raise ValueError(f"buyers(={buyers}) must be >= 0 and per_buyer(={per_buyer}) >= 1")
        if isinstance(dist, Constant):
            self.pool = array("d", [dist.value])
            self.mask = 0
            self.offsets = array("q", bytes(8 * buyers))
            return
        size = 1 << max(12, (buyers * per_buyer - 1).bit_length())
        self.pool = array("d", dist.sample(rng, size).tobytes())
        self.mask = size - 1
        self.offsets = array("q", rng.integers(0, size, buyers, dtype=np.int64).tobytes())

    def __call__(self, buyer: int, k: int) -> float:
        """Buyer ``buyer``'s ``k``-th draw."""
        return self.pool[(self.offsets[buyer] + k) & self.mask]
