"""Scaling a sale down: counts and capacity scale, the schedule is a thinned full-scale one."""

from __future__ import annotations

import numpy as np
import pytest

from flashsale.arrivals import BOT, HUMAN, build_schedule
from flashsale.replay.scale import ScaleError, replay_schedule, scale_scenario
from flashsale.scenario import BurstArrivals, load_scenario
from flashsale.streams import Streams

from .conftest import SCENARIOS


def test_poco_m3_at_one_percent() -> None:
    sc = load_scenario(SCENARIOS / "poco_m3.toml")
    s = scale_scenario(sc, 0.01)
    assert s.sale.units == 500 and s.humans.count == 2500
    # 5,000 bot accounts -> 50: operators kept, accounts per operator scaled
    assert (s.bots.operators, s.bots.accounts_per_operator) == (50, 1)
    # capacity scales with the crowd (at least one worker)
    assert s.service.workers == max(1, round(sc.service.workers * 0.01))
    assert s.service.queue_limit == round(sc.service.queue_limit * 0.01)


def test_scale_one_is_the_scenario_and_bad_scales_are_refused() -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml")
    assert scale_scenario(sc, 1.0) is sc
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ScaleError, match="--scale must be in"):
            scale_scenario(sc, bad)


def test_thinned_schedule_is_a_subset_of_the_full_one_renumbered() -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml")
    scaled, sched = replay_schedule(sc, 0.2, replication=0)
    full = build_schedule(sc, Streams.for_replication(sc.seed, 0)["arrivals"])
    h, a = scaled.humans.count, scaled.bots.accounts
    assert (h, a) == (200, 10)
    assert len(sched) == h + a
    assert np.isin(sched.t, full.t).all()  # the same arrival instants, a subset
    assert np.all(np.diff(sched.t) >= 0)
    assert sorted(sched.account.tolist()) == list(range(h + a))
    is_h = sched.kind == HUMAN
    assert (sched.person[is_h] == sched.account[is_h]).all()
    assert (sched.person[sched.kind == BOT] == h + sched.operator[sched.kind == BOT]).all()
    again = replay_schedule(sc, 0.2, replication=0)[1]
    assert np.array_equal(again.t, sched.t) and np.array_equal(again.account, sched.account)


def test_thinning_keeps_the_shape_in_time() -> None:
    # the burst's early share survives thinning: binomial 4-sigma band around it
    sc = load_scenario(SCENARIOS / "poco_m3.toml")
    assert isinstance(sc.humans.arrivals, BurstArrivals)
    p = sc.humans.arrivals.early_share
    _, sched = replay_schedule(sc, 0.02, replication=1)
    humans = sched.t[sched.kind == HUMAN]
    n = humans.size
    early = float((humans < 0).mean())
    assert abs(early - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_each_pool_scales_like_the_service_and_unset_fields_still_follow_it() -> None:
    sc = load_scenario(
        SCENARIOS / "poco_m3.toml",
        [
            'service.pools.payments.steps=["pay"]',
            "service.pools.payments.workers=16",
            "service.pools.payments.queue_limit=1000",
            'service.pools.front.steps=["view"]',
        ],
    )
    s = scale_scenario(sc, 0.1)
    assert s.service.pool_of("pay").workers == 2
    assert s.service.pool_of("pay").queue_limit == 100
    assert s.service.pool_of("view").workers == s.service.workers  # unset: [service]'s
    assert s.service.pools["front"].workers is None
