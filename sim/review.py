"""Engine side of the post-hoc review: cancel flagged purchases after the sale.

It runs on the finished journeys table (the review happens at ``review.at_s``,
after the main sale): a purchased journey it flags ends ``cancelled``, keeping the
units it paid for in ``units`` so that metrics can count what was cancelled and
how many of those were really bots. Every journey gets its draw from the
``defense.review`` stream by journey id, so the same buyer meets the same luck
whatever else changed. The rule is flashsale.defenses.review.
"""

from __future__ import annotations

import numpy as np

from flashsale.arrivals import BOT
from flashsale.defenses.review import Review
from flashsale.outcome import RESULT
from flashsale.scenario import Review as ReviewConfig

__all__ = ["review_journeys"]

_PURCHASED = RESULT.index("purchased")
_CANCELLED = RESULT.index("cancelled")


def review_journeys(
    journeys: dict[str, np.ndarray], config: ReviewConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The journeys table with flagged purchases turned into ``cancelled``."""
    rule = Review(config.bot_detection_prob, config.human_false_positive_prob)
    flagged = rule.flags(journeys["kind"] == BOT, rng) & (journeys["result"] == _PURCHASED)
    result = journeys["result"].copy()
    result[flagged] = _CANCELLED
    return {**journeys, "result": result}
