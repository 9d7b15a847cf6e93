"""Scaling a sale down for a replay: fewer people, less stock, the same shape in time.

A laptop cannot send the requests of 250,000 buyers; ``--scale 0.01`` replays one
buyer in a hundred. Time is not scaled: a burst at 10:00:00 stays a burst, the
window stays fifteen minutes. What scales is everything that counts people or
capacity, so the pressure per unit of stock stays what it was:

- humans, bot accounts, stock, the service's workers and queue (each pool's too),
  the waiting room's admission rate and active users, the lottery's winners;
- the arrival *schedule* is the full-scale one, thinned: the replay's buyers are
  a seeded random subset of the simulated full-scale buyers, arriving at exactly
  the times the simulation gives them (one source of truth, flashsale.arrivals).

Bot fleets keep their operators where they can (an operator is the unit of
fairness) and lose accounts first: 50 operators x 100 accounts at 0.01 become 50
operators x 1 account.
"""

from __future__ import annotations

import numpy as np

from flashsale.arrivals import BOT, HUMAN, Schedule, build_schedule
from flashsale.scenario import Scenario, parse_scenario
from flashsale.streams import Streams

__all__ = ["ScaleError", "replay_schedule", "scale_scenario", "thin_schedule"]


class ScaleError(ValueError):
    """A scale factor that cannot be applied."""


def _scaled(n: int, scale: float, floor: int = 1) -> int:
    """``n * scale`` rounded, never below ``floor`` when ``n`` itself was not zero."""
    return 0 if n == 0 else max(floor, round(n * scale))


def scale_scenario(scenario: Scenario, scale: float) -> Scenario:
    """The sale as the replay enacts it at ``scale`` (0 < scale <= 1): counts and capacity scaled.

    The result is an ordinary Scenario, written into the run's manifest: metrics
    and a simulation "at the same scale" read exactly this sale.
    """
    if not 0 < scale <= 1:
        raise ScaleError(f"--scale must be in (0, 1], got {scale:g}")
    if scale == 1:
        return scenario
    data = scenario.to_toml_dict()
    bots = scenario.bots
    per_op = _scaled(bots.accounts_per_operator, scale)
    accounts = _scaled(bots.accounts, scale)
    operators = min(bots.operators, max(1, round(accounts / per_op))) if accounts else 0
    data["sale"]["units"] = _scaled(scenario.sale.units, scale)
    data["humans"]["count"] = _scaled(scenario.humans.count, scale, floor=0)
    data["bots"]["operators"] = operators
    data["bots"]["accounts_per_operator"] = per_op
    svc, wr, lot = data["service"], data["defenses"]["waiting_room"], data["defenses"]["lottery"]
    svc["workers"] = _scaled(scenario.service.workers, scale)
    svc["queue_limit"] = _scaled(scenario.service.queue_limit, scale, floor=0)
    for name, pool in scenario.service.pools.items():  # a field left out follows [service]
        if pool.workers is not None:
            svc["pools"][name]["workers"] = _scaled(pool.workers, scale)
        if pool.queue_limit is not None:
            svc["pools"][name]["queue_limit"] = _scaled(pool.queue_limit, scale, floor=0)
    wr["new_users_per_min"] = scenario.defenses.waiting_room.new_users_per_min * scale
    wr["max_active"] = _scaled(scenario.defenses.waiting_room.max_active, scale)
    if scenario.defenses.lottery.winners is not None:
        lot["winners"] = _scaled(scenario.defenses.lottery.winners, scale)
    return parse_scenario(data, f"{scenario.name} at scale {scale:g}")


def thin_schedule(
    full: Scenario, scaled: Scenario, schedule: Schedule, rng: np.random.Generator
) -> Schedule:
    """Keep the full-scale journeys of a random subset of people, renumbered for ``scaled``.

    Humans: ``scaled.humans.count`` of them, uniformly without replacement.
    Bots: ``scaled.bots.operators`` operators, and of each the first
    ``accounts_per_operator`` of a random permutation of its accounts. Ids are
    renumbered to the arrivals convention of ``scaled`` (humans ``0..h-1`` in
    their original order, then bot accounts; operator *k* is person ``h + k``).
    """
    h_full, h = full.humans.count, scaled.humans.count
    ops_full, apo_full = full.bots.operators, full.bots.accounts_per_operator
    ops, apo = scaled.bots.operators, scaled.bots.accounts_per_operator
    humans = np.sort(rng.choice(h_full, size=h, replace=False)) if h else np.empty(0, np.int64)
    chosen_ops = np.sort(rng.choice(ops_full, size=ops, replace=False)) if ops else np.empty(0)
    bot_accounts = [
        h_full + op * apo_full + np.sort(rng.permutation(apo_full)[:apo]) for op in chosen_ops
    ]
    keep_accounts = np.concatenate([humans, *bot_accounts]).astype(np.int64)
    keep = np.isin(schedule.account, keep_accounts)
    sub = schedule.subset(keep)

    # renumber: humans by rank of their old id, bots h + rank, operators by rank
    new_account = np.empty(len(sub), dtype=np.int64)
    new_person = np.empty(len(sub), dtype=np.int64)
    new_operator = np.full(len(sub), -1, dtype=np.int64)
    is_h = sub.kind == HUMAN
    new_account[is_h] = np.searchsorted(humans, sub.account[is_h])
    new_person[is_h] = new_account[is_h]
    is_b = sub.kind == BOT
    all_bots = np.sort(np.concatenate(bot_accounts)) if bot_accounts else np.empty(0, np.int64)
    new_account[is_b] = h + np.searchsorted(all_bots, sub.account[is_b])
    new_operator[is_b] = np.searchsorted(chosen_ops, sub.operator[is_b])
    new_person[is_b] = h + new_operator[is_b]
    return Schedule(sub.t, sub.kind, new_account, new_person, sub.channel, new_operator)


def replay_schedule(
    scenario: Scenario, scale: float, replication: int
) -> tuple[Scenario, Schedule]:
    """The scaled scenario and the journeys to replay for one replication.

    Deterministic in (scenario, scale, replication): every Locust process computes
    the same schedule and runs its own share of it. The thinning draws from the
    ``arrivals`` stream after the schedule, so the schedule itself is the one the
    simulation builds for this seed and replication.
    """
    scaled = scale_scenario(scenario, scale)
    rng = Streams.for_replication(scenario.seed, replication)["arrivals"]
    schedule = build_schedule(scenario, rng)
    if scaled is scenario:
        return scenario, schedule
    return scaled, thin_schedule(scenario, scaled, schedule, rng)
