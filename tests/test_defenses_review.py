"""Post-hoc review rule: flag rates per kind, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from flashsale.defenses.review import Review


def test_flag_rates_match_the_error_rates() -> None:
    is_bot = np.arange(200_000) % 4 == 0  # a quarter bots
    flags = Review(0.8, 0.01).flags(is_bot, np.random.default_rng(1))
    # binomial standard errors: 0.0018 (bots), 0.00026 (humans)
    assert flags[is_bot].mean() == pytest.approx(0.8, abs=0.01)
    assert flags[~is_bot].mean() == pytest.approx(0.01, abs=0.0015)


def test_certain_and_impossible_reviews() -> None:
    is_bot = np.array([True, False, True, False])
    rng = np.random.default_rng(0)
    assert Review(1.0, 0.0).flags(is_bot, rng).tolist() == [True, False, True, False]
    assert not Review(0.0, 0.0).flags(is_bot, rng).any()


def test_same_generator_state_same_flags() -> None:
    is_bot = np.random.default_rng(5).random(1000) < 0.3
    a = Review(0.5, 0.2).flags(is_bot, np.random.default_rng(9))
    b = Review(0.5, 0.2).flags(is_bot, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("bot", "human", "name"),
    [(1.5, 0.0, "bot_detection_prob"), (0.5, -0.1, "human_false_positive_prob")],
)
def test_bad_probabilities_are_named(bot: float, human: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Review(bot, human)
