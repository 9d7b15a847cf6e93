"""Human buyers: look at the page, think, add to cart, think, pay; impatient in queues.

Early arrivals refresh the page every ``humans.refresh_s`` until it opens. Each
wait for a worker draws a fresh patience (as in Erlang A); each pause a fresh
think time. Both are per-buyer sequences drawn up front from the ``humans``
stream (flashsale.sim.draws), so a human behaves the same whatever defenses do.
"""

from __future__ import annotations

import math

import numpy as np

from flashsale.arrivals import HUMAN
from flashsale.distributions import Constant
from flashsale.scenario import Humans

from .captcha import captcha_skill
from .draws import BuyerDraws
from .journey import Behaviour, policy_table

__all__ = ["human_behaviour"]


def human_behaviour(
    humans: Humans,
    rng: np.random.Generator,
    captcha_rng: np.random.Generator | None = None,
    lottery: bool = False,
) -> Behaviour:
    """Think times and patience of ``humans.count`` humans (accounts ``0..count-1``);
    their CAPTCHA skill, drawn from ``captcha_rng``, when a CAPTCHA is on."""
    return Behaviour(
        views=True,
        refresh_s=humans.refresh_s,
        think=BuyerDraws(humans.think_s, rng, humans.count),
        patience=BuyerDraws(
            humans.patience_s if humans.patience_s is not None else Constant(value=math.inf),
            rng,
            humans.count,
        ),
        units=humans.units_per_order,
        retries=humans.retries_on_error,
        table=policy_table(int(HUMAN)),
        honours_retry_after=True,
        lottery=lottery,
        captcha=None
        if captcha_rng is None
        else captcha_skill(
            humans.captcha_solve_s, humans.captcha_pass_prob, captcha_rng, humans.count
        ),
    )
