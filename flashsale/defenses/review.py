"""Post-hoc review: orders flagged as "unusual activity" are cancelled (Poco M3, Jan 2021).

The review is imperfect both ways: it catches a bot order with probability
``bot_detection_prob`` and wrongly flags a human order with probability
``human_false_positive_prob``. One uniform draw per order from the injected
Generator decides; the caller passes every order it may review, in a fixed
order, so the same order gets the same draw whatever else changed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Review"]


class Review:
    """Which orders a review with these error rates cancels."""

    __slots__ = ("bot_detection_prob", "human_false_positive_prob")

    def __init__(self, bot_detection_prob: float, human_false_positive_prob: float) -> None:
        for name, p in (
            ("bot_detection_prob", bot_detection_prob),
            ("human_false_positive_prob", human_false_positive_prob),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}(={p}) must be in [0, 1]")
        self.bot_detection_prob = bot_detection_prob
        self.human_false_positive_prob = human_false_positive_prob

    def flags(self, is_bot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A boolean per order: True = cancelled. ``is_bot`` is the truth the review guesses."""
        is_bot = np.asarray(is_bot, dtype=bool)
        p = np.where(is_bot, self.bot_detection_prob, self.human_false_positive_prob)
        return rng.random(is_bot.size) < p
