"""The arrival schedule: who shows up when, on which channel. Pure numpy, no SimPy.

One generator serves both engines: the simulation consumes the schedule in
simulated time, the Locust replay in wall-clock time (scaled). Rows are sorted by
time; a row's index is its journey id.

Ids: humans are accounts ``0..H-1`` and each is their own person; bot accounts are
``H..H+A-1``; bot operator *k* is person ``H+k``. Fairness is over persons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashsale.outcome import KIND
from flashsale.scenario import BurstArrivals, Scenario

__all__ = ["BOT", "HUMAN", "Schedule", "build_schedule", "human_arrival_times"]

HUMAN = np.uint8(KIND.index("human"))
BOT = np.uint8(KIND.index("bot"))


@dataclass(frozen=True)
class Schedule:
    """Arrivals sorted by time; every array has one entry per journey."""

    t: np.ndarray  # float64, seconds from the opening
    kind: np.ndarray  # uint8, KIND codes
    account: np.ndarray  # int64
    person: np.ndarray  # int64
    channel: np.ndarray  # uint8, index into scenario.sale.channels
    operator: np.ndarray  # int64, operator index for bots, -1 for humans

    def __len__(self) -> int:
        return int(self.t.size)

    def subset(self, keep: np.ndarray) -> Schedule:
        """The rows where ``keep`` is true (a boolean mask or index array), order kept."""
        return Schedule(
            *(
                getattr(self, f)[keep]
                for f in ("t", "kind", "account", "person", "channel", "operator")
            )
        )


def human_arrival_times(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of ``humans.count`` humans per the scenario's profile (unsorted)."""
    n = scenario.humans.count
    prof = scenario.humans.arrivals
    if not isinstance(prof, BurstArrivals):
        return np.cumsum(rng.exponential(1.0 / prof.rate_per_s, n))
    window = scenario.sale.window_s
    n_early = round(n * prof.early_share)
    n_tail = round(n * prof.tail_share)
    n_peak = n - n_early - n_tail
    early = rng.uniform(-prof.early_window_s, 0.0, n_early)
    tail = rng.uniform(0.0, window, n_tail)
    # exponential decay after the opening, truncated to the window (inverse CDF)
    u = rng.random(n_peak)
    peak = -prof.decay_s * np.log1p(-u * -np.expm1(-window / prof.decay_s))
    return np.concatenate([early, peak, tail])


def build_schedule(scenario: Scenario, rng: np.random.Generator) -> Schedule:
    """Every journey of the main sale, humans and bot accounts, sorted by arrival time,
    ties in a random order.

    ``rng`` is the replication's ``arrivals`` stream: nothing else draws from it,
    so defenses and service settings never change who arrives when.
    """
    h = scenario.humans.count
    bots = scenario.bots
    a = bots.accounts
    demand = np.array([c.demand_share for c in scenario.sale.channels])

    human_t = human_arrival_times(scenario, rng)
    human_ch = rng.choice(demand.size, size=h, p=demand).astype(np.uint8)
    bot_t = bots.start_offset_s + rng.uniform(0.0, bots.start_jitter_s, a)
    bot_ch = rng.choice(demand.size, size=a, p=demand).astype(np.uint8)
    operator = np.repeat(np.arange(bots.operators, dtype=np.int64), bots.accounts_per_operator)

    t = np.concatenate([human_t, bot_t])
    # equal times (bots with no start jitter) in a random order, drawn last so that
    # no other draw moves: who wins a tie never depends on how accounts are numbered
    order = np.lexsort((rng.permutation(t.size), t))
    ids = np.arange(h + a, dtype=np.int64)
    return Schedule(
        t=t[order],
        kind=np.concatenate([np.full(h, HUMAN), np.full(a, BOT)])[order],
        account=ids[order],
        person=np.concatenate([ids[:h], h + operator])[order],
        channel=np.concatenate([human_ch, bot_ch])[order],
        operator=np.concatenate([np.full(h, -1, dtype=np.int64), operator])[order],
    )
