"""One buyer journey, human or bot: one SimPy event per request.

view (humans) -> add to cart -> pay. Each request is answered at once by the shop
(the FIFO checkout decides ahead of time, see flashsale.sim.service), so a
journey sleeps exactly once per request: until the response, plus the pause
before the next step. It sleeps on a plain SimPy timeout whose callback is the
journey's next move, which costs about half of resuming a generator process and
needs no start-up event. What differs between humans and bots (think time or
machine pacing, patience, retry budget, whether they look at the page first) is
a :class:`Behaviour`; the state machine is shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simpy.events import Timeout

from flashsale.outcome import RESULT, STEP

from .captcha import CaptchaSkill
from .draws import BuyerDraws
from .status import FINAL_RESULT, NOT_OPEN, REJECTED

if TYPE_CHECKING:
    from .shop import Shop

__all__ = ["CAPTCHA", "CART", "LOTTERY", "PAY", "VIEW", "Behaviour", "Journey"]

VIEW = STEP.index("view")
CAPTCHA = STEP.index("captcha")
LOTTERY = STEP.index("lottery")
CART = STEP.index("cart")
PAY = STEP.index("pay")
_PURCHASED = RESULT.index("purchased")
_ERROR = RESULT.index("error")
_REJECTED = RESULT.index("rejected")
_RETRYABLE = frozenset({402, 410, 429, 503, 504})
"""Statuses a buyer retries within its retry budget (403 too, if the limit allows some units)."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one kind of buyer acts; humans and bots each build one (flashsale.sim.humans, .bots).

    ``think`` and ``patience`` are per-buyer draws indexed by the request count, read
    inline on the hot path (no call per request).
    """

    views: bool  # look at the sale page first (humans) or go straight to the cart (bots)
    refresh_s: float  # pause between tries while the sale is not open yet
    think: BuyerDraws  # pause between a response and the next request
    patience: BuyerDraws  # longest wait for a worker (inf: only the client timeout)
    units: int  # units per order
    retries: int  # retries after errors, per journey
    captcha: CaptchaSkill | None = None  # a challenge before the cart, if enabled
    lottery: bool = False  # enter a lottery, and cart only if drawn


class Journey:
    """The mutable state of one journey (one row of the journeys table)."""

    __slots__ = (
        "account",
        "admitted",
        "allowed",
        "behaviour",
        "carted",
        "channel",
        "entered",
        "hold",
        "id",
        "k",
        "kind",
        "paid",
        "person",
        "retries",
        "shop",
        "solved",
        "step",
        "units",
    )

    def __init__(
        self,
        id: int,
        account: int,
        person: int,
        kind: int,
        channel: int,
        shop: Shop,
        behaviour: Behaviour,
    ) -> None:
        self.id = id
        self.account = account
        self.person = person
        self.kind = kind
        self.channel = channel
        self.units = behaviour.units  # asked for in the next cart request
        self.retries = behaviour.retries  # left
        self.k = 0  # requests sent so far; indexes the buyer's random draws
        self.hold = -1  # the stock hold being paid for, -1 if none
        self.allowed = behaviour.units  # what a defense would allow after a 403
        self.carted = math.nan  # first reservation
        self.paid = 0  # units paid for
        self.shop = shop
        self.behaviour = behaviour
        self.solved = False  # holds a right CAPTCHA answer
        self.entered = False  # entered the lottery
        self.admitted = math.nan  # when it passed the CAPTCHA
        self.step = VIEW if behaviour.views else self._to_cart()

    def _to_cart(self) -> int:
        """The step that leads to the cart: the CAPTCHA first, unless solved or off; then
        the lottery entry, unless entered or off."""
        b = self.behaviour
        if b.captcha is not None and not self.solved:
            return CAPTCHA
        return LOTTERY if b.lottery and not self.entered else CART

    def drawn(self, won: bool, at: float) -> None:
        """The lottery was drawn at ``at`` (now): a winner goes on to the cart."""
        if not won:
            self.shop.finish(self, _REJECTED, at)
            return
        self.admitted = at
        self.step = CART
        d = self.behaviour.think
        pause = d.pool[(d.offsets[self.account] + self.k) & d.mask]
        Timeout(self.shop.env, pause).callbacks.append(self.act)

    def act(self, _woke: object = None) -> None:
        """Send the next request and sleep until the one after; finish with one result."""
        shop, b, step, k, account = self.shop, self.behaviour, self.step, self.k, self.account
        now = shop.env.now
        if step == CART and self.solved and self.admitted != self.admitted:
            self.admitted = now  # sends the right answer with this cart
        d = b.patience
        status, end = shop.send(self, step, now, d.pool[(d.offsets[account] + k) & d.mask])
        if status < 300:
            if step == PAY:
                shop.finish(self, _PURCHASED, end)
                return
            if step == CAPTCHA:  # challenge in hand: solve it, send the answer next
                c = b.captcha
                assert c is not None
                pause = c.solve_s(account, k)
                self.solved = c.solved(account, k)
                self.step = LOTTERY if b.lottery and not self.entered else CART
            elif step == LOTTERY:  # entered: sleep until the draw wakes this journey
                self.entered = True
                return
            else:
                # inlined _to_cart(): views are the commonest step
                self.step = (
                    PAY
                    if step != VIEW
                    else CART
                    if b.captcha is None and not b.lottery
                    else self._to_cart()
                )
                d = b.think
                pause = d.pool[(d.offsets[account] + k) & d.mask]
        elif status == NOT_OPEN:
            pause = b.refresh_s
        elif self.retries > 0 and (
            status in _RETRYABLE or (status == REJECTED and self.allowed > 0)
        ):
            self.retries -= 1
            if status == REJECTED:  # a limit that allows fewer units: ask for those
                self.units = self.allowed
            if step == PAY and self.hold < 0:  # the hold is gone: cart again
                self.step = CART
            if self.step in (CART, LOTTERY):  # a wrong CAPTCHA answer: a new challenge
                self.step = self._to_cart()
            d = b.think
            pause = d.pool[(d.offsets[account] + k) & d.mask]
        else:
            shop.finish(self, FINAL_RESULT.get(status, _ERROR), end)
            return
        Timeout(shop.env, end - now + pause).callbacks.append(self.act)
