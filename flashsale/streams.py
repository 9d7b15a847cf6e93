"""Named random streams for one replication: common random numbers.

Every source of randomness gets its own ``numpy.random.Generator``, spawned from
``SeedSequence(seed, spawn_key=(replication,))`` in a fixed order of names. The
same seed and replication give the same arrivals, the same buyers and the same
bots whatever defenses or service settings are on, because switching a defense
on draws from *its* stream only. Comparisons of mitigations are then paired.

New streams are added at the end of ``STREAMS``, never in the middle, so that old
seeds keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STREAMS", "Streams"]

STREAMS = (
    "arrivals",  # who arrives when, on which channel (humans and bot accounts)
    "humans",  # each human's behaviour: think times, patience, CAPTCHA skill
    "bots",  # the bot fleet's behaviour
    "service",  # service times on the checkout workers
    "payment",  # payment-gateway latency and failures
    "defense.account_limit",
    "defense.rate_limit",
    "defense.captcha",
    "defense.waiting_room",
    "defense.lottery",
    "defense.review",
    "defense.resale",
)


@dataclass(frozen=True)
class Streams:
    """One Generator per name in ``STREAMS``, for one (seed, replication)."""

    seed: int
    replication: int
    _gens: dict[str, np.random.Generator]

    @classmethod
    def for_replication(cls, seed: int, replication: int) -> Streams:
        root = np.random.SeedSequence(seed, spawn_key=(replication,))
        children = root.spawn(len(STREAMS))
        return cls(
            seed,
            replication,
            {
                name: np.random.Generator(np.random.PCG64(ss))
                for name, ss in zip(STREAMS, children, strict=True)
            },
        )

    def __getitem__(self, name: str) -> np.random.Generator:
        try:
            return self._gens[name]
        except KeyError:
            raise KeyError(f"no random stream {name!r}; streams: {', '.join(STREAMS)}") from None
