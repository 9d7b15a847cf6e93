"""The shared arrival schedule: who arrives when, per the profile, ids and channels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flashsale.arrivals import BOT, HUMAN, build_schedule, human_arrival_times
from flashsale.scenario import Scenario, parse_scenario


def _scenario(**humans: Any) -> Scenario:
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "arr",
            "sale": {
                "units": 10,
                "window_s": 600,
                "channels": [
                    {"name": "a", "stock_share": 0.5, "demand_share": 0.7},
                    {"name": "b", "stock_share": 0.5, "demand_share": 0.3},
                ],
            },
            "humans": {"count": 100_000, **humans},
            "bots": {"operators": 4, "accounts_per_operator": 25, "start_offset_s": -1.0},
        }
    )


def test_schedule_is_sorted_with_the_documented_ids() -> None:
    sc = _scenario()
    s = build_schedule(sc, np.random.default_rng(1))
    assert len(s) == 100_000 + 100
    assert (np.diff(s.t) >= 0).all()
    human = s.kind == HUMAN
    assert sorted(s.account[human]) == list(range(100_000))
    np.testing.assert_array_equal(s.person[human], s.account[human])  # one person each
    bot = s.kind == BOT
    assert sorted(s.account[bot]) == list(range(100_000, 100_100))
    # operator k is person H + k and owns accounts H + 25k .. H + 25k + 24
    np.testing.assert_array_equal(s.person[bot], 100_000 + s.operator[bot])
    np.testing.assert_array_equal(s.operator[bot], (s.account[bot] - 100_000) // 25)
    assert (s.operator[human] == -1).all()


def test_burst_profile_shares_and_windows() -> None:
    sc = _scenario(
        arrivals={"profile": "burst", "early_share": 0.2, "early_window_s": 60, "decay_s": 30}
    )
    t = human_arrival_times(sc, np.random.default_rng(2))
    assert np.mean(t < 0) == pytest.approx(0.2, abs=1e-4)  # exactly round(n * share)
    assert t.min() >= -60 and t.max() <= 600
    # after the opening: 70% exponential (mean 30, truncated at 600) + 10% uniform
    late = t[t >= 0]
    expected = (0.7 * 30 + 0.1 * 300) / 0.8
    assert late.mean() == pytest.approx(expected, rel=0.02)


def test_poisson_profile_has_the_rate() -> None:
    sc = _scenario(arrivals={"profile": "poisson", "rate_per_s": 50.0})
    t = np.sort(human_arrival_times(sc, np.random.default_rng(3)))
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.01)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.02)  # exponential: sd = mean
    assert t[0] >= 0


def test_channels_follow_demand_shares_and_bots_start_on_time() -> None:
    s = build_schedule(_scenario(), np.random.default_rng(4))
    human = s.kind == HUMAN
    assert np.mean(s.channel[human] == 0) == pytest.approx(0.7, abs=0.01)
    bot_t = s.t[s.kind == BOT]
    assert bot_t.min() >= -1.0 and bot_t.max() <= -0.5  # offset + default jitter 0.5


def test_same_generator_state_same_schedule_and_subset() -> None:
    sc = _scenario()
    a = build_schedule(sc, np.random.default_rng(9))
    b = build_schedule(sc, np.random.default_rng(9))
    for f in ("t", "kind", "account", "person", "channel", "operator"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    bots = a.subset(a.kind == BOT)
    assert len(bots) == 100 and (np.diff(bots.t) >= 0).all()
