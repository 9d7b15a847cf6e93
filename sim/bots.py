"""Scalper bots: many accounts per operator, machine speed, aggressive retries.

A bot account goes straight for the cart at its start offset (before the opening
it is told "not open yet" and tries again), one request every
``1 / bots.request_rate_per_s`` seconds, up to ``bots.max_retries`` retries after
errors; it never runs out of patience (only the client timeout stops a wait).
Each account places one order of ``bots.units_per_order``: an operator spreads
its purchases over its accounts to stay under per-account limits, and asks for
what a limit still allows when refused.
"""

from __future__ import annotations

import math

import numpy as np

from flashsale.arrivals import BOT
from flashsale.distributions import Constant
from flashsale.scenario import Bots

from .captcha import captcha_skill
from .draws import BuyerDraws
from .journey import Behaviour, policy_table

__all__ = ["bot_behaviour"]


def bot_behaviour(
    bots: Bots,
    rng: np.random.Generator,
    accounts: int,
    captcha_rng: np.random.Generator | None = None,
    lottery: bool = False,
) -> Behaviour:
    """Machine pacing: the same interval after every response, for every account.

    ``accounts`` is the highest account id + 1 (bot accounts follow the humans'). With
    a CAPTCHA on, the solving farm's times and success come from ``captcha_rng``.
    """
    pace = 1.0 / bots.request_rate_per_s
    return Behaviour(
        views=False,
        refresh_s=pace,
        think=BuyerDraws(Constant(value=pace), rng, accounts),
        patience=BuyerDraws(Constant(value=math.inf), rng, accounts),
        units=bots.units_per_order,
        retries=bots.max_retries,
        table=policy_table(int(BOT)),
        honours_retry_after=False,  # keeps its cadence
        lottery=lottery,
        captcha=None
        if captcha_rng is None
        else captcha_skill(bots.captcha_solve_s, bots.captcha_solve_prob, captcha_rng, accounts),
    )
