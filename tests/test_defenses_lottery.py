"""Lottery draw: fair, without replacement, independent of entry order."""

from __future__ import annotations

import numpy as np
import pytest

from flashsale.defenses.lottery import draw


def test_draws_distinct_entrants() -> None:
    won = draw(range(1000), 100, np.random.default_rng(1))
    assert won.size == 100 and np.unique(won).size == 100
    assert set(won.tolist()) <= set(range(1000))


def test_fewer_entrants_than_winners_all_win_once() -> None:
    assert draw([5, 3, 5, 9], 10, np.random.default_rng(0)).tolist() == [3, 5, 9]


def test_entry_order_does_not_matter() -> None:
    ids = np.arange(500)
    a = draw(ids, 50, np.random.default_rng(7))
    b = draw(ids[::-1], 50, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_every_entrant_has_the_same_chance() -> None:
    # 10 entrants, 3 winners, 20,000 draws: each wins 30% of the time (sd 0.32 pp)
    rng = np.random.default_rng(3)
    wins = np.zeros(10)
    for _ in range(20_000):
        wins[draw(range(10), 3, rng)] += 1
    np.testing.assert_allclose(wins / 20_000, 0.3, atol=0.015)


def test_negative_winners_is_refused() -> None:
    with pytest.raises(ValueError, match="winners"):
        draw([1, 2], -1, np.random.default_rng(0))
