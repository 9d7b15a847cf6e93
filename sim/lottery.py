"""Engine side of the lottery: entries during a window, then one random draw.

From the opening until ``lottery.entry_window_s`` a buyer may enter once (a
cheap request, served like a view; behind the CAPTCHA when that is on: the answer
goes with the entry). At the end of the window the rule
(flashsale.defenses.lottery.draw, ``defense.lottery`` stream) picks
``lottery.winners`` entrants (default: units / humans.units_per_order); each
winner's journey resumes (``admitted`` = the draw) and goes to the cart and pays
as usual, within the sale window; every other entrant ends ``rejected``. Arrival
speed stops mattering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import simpy
from simpy.events import Timeout

from flashsale.defenses.lottery import draw
from flashsale.scenario import Scenario

if TYPE_CHECKING:
    from .journey import Journey

__all__ = ["LotteryDriver"]


class LotteryDriver:
    """Collects the entries and holds the draw at the end of the entry window."""

    def __init__(self, env: simpy.Environment, scenario: Scenario, rng: np.random.Generator):
        cfg = scenario.defenses.lottery
        self.entry_window_s = cfg.entry_window_s
        self.winners = (
            cfg.winners
            if cfg.winners is not None
            else scenario.sale.units // scenario.humans.units_per_order
        )
        self._env = env
        self._rng = rng
        self._entrants: list[Journey] = []
        self.drawn = False
        Timeout(env, max(0.0, self.entry_window_s - env.now)).callbacks.append(self._draw)

    def enter(self, j: Journey) -> bool:
        """Register ``j``'s entry; False once the draw has been held (too late)."""
        if self.drawn:
            return False
        self._entrants.append(j)
        return True

    def _draw(self, _woke: object) -> None:
        self.drawn = True
        won = set(draw([j.id for j in self._entrants], self.winners, self._rng).tolist())
        now = self._env.now
        for j in self._entrants:
            j.drawn(j.id in won, now)
        self._entrants = []
