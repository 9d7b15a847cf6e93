"""Engine side of the CAPTCHA: a challenge before add-to-cart, solved or not.

A buyer fetches a challenge (a cheap request, served like a view), spends its
solve time, and sends the answer with the cart request. A wrong answer gets the
cart refused (403) and the buyer fetches a new challenge (a retry). Humans pass
with ``humans.captcha_pass_prob`` after ``humans.captcha_solve_s``; bots with
``bots.captcha_solve_prob`` after ``bots.captcha_solve_s`` (a solving farm). Both
are per-buyer draws from the ``defense.captcha`` stream, so switching the
CAPTCHA on changes no other draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashsale.distributions import Distribution, Uniform

from .draws import BuyerDraws

__all__ = ["CaptchaSkill", "captcha_skill"]


@dataclass(frozen=True, slots=True)
class CaptchaSkill:
    """How long a kind of buyer takes on a challenge, and whether it gets it right."""

    solve_s: BuyerDraws
    luck: BuyerDraws  # uniform in [0, 1): right when below pass_prob
    pass_prob: float

    def solved(self, account: int, k: int) -> bool:
        """Whether ``account``'s answer to its ``k``-th request's challenge is right."""
        return self.luck(account, k) < self.pass_prob


def captcha_skill(
    solve_s: Distribution, pass_prob: float, rng: np.random.Generator, buyers: int
) -> CaptchaSkill:
    """Draw the solve times and the luck of ``buyers`` buyers up front."""
    return CaptchaSkill(
        BuyerDraws(solve_s, rng, buyers),
        BuyerDraws(Uniform(dist="uniform", low=0.0, high=1.0), rng, buyers),
        pass_prob,
    )
