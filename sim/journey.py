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
from flashsale.policy import SPENDS, TABLE, Act, Pause, decide

from .captcha import CaptchaSkill
from .draws import BuyerDraws

if TYPE_CHECKING:
    from .shop import Shop

__all__ = ["CAPTCHA", "CART", "LOTTERY", "PAY", "VIEW", "Behaviour", "Journey", "policy_table"]

VIEW = STEP.index("view")
CAPTCHA = STEP.index("captcha")
LOTTERY = STEP.index("lottery")
CART = STEP.index("cart")
PAY = STEP.index("pay")
_REJECTED = RESULT.index("rejected")
_NEXT, _WAIT, _RETRY = Act.NEXT.value, Act.WAIT.value, Act.RETRY.value
_FEWER, _END = Act.FEWER.value, Act.END.value
_SOLVE, _DRAW, _BACKOFF = Pause.SOLVE.value, Pause.DRAW.value, Pause.BACKOFF.value
_SPENDS = frozenset(a.value for a in SPENDS)


def policy_table(kind: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """The buyer policy's table for ``kind`` as plain ints: ``[step][answer] -> (act,
    pause, result)``, so the hot path compares ints, not enum members."""
    return tuple(
        tuple((int(d.act), int(d.pause), d.result) for d in by_answer) for by_answer in TABLE[kind]
    )


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
    table: tuple[tuple[tuple[int, int, int], ...], ...]  # the policy (policy_table(kind))
    honours_retry_after: bool  # waits at least a 429/503's Retry-After (humans)
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
        """The step that leads to the cart: the lottery entry first, unless entered or
        off; then the CAPTCHA, unless holding a right answer or off."""
        b = self.behaviour
        if b.lottery and not self.entered:
            return LOTTERY
        return CAPTCHA if b.captcha is not None and not self.solved else CART

    def drawn(self, won: bool, at: float) -> None:
        """The lottery was drawn at ``at`` (now): a winner goes on to the cart."""
        if not won:
            self.shop.finish(self, _REJECTED, at)
            return
        self.admitted = at
        self.step = self._to_cart()
        d = self.behaviour.think
        pause = d.pool[(d.offsets[self.account] + self.k) & d.mask]
        Timeout(self.shop.env, pause).callbacks.append(self.act)

    def act(self, _woke: object = None) -> None:
        """Send the next request and sleep until the one after; finish with one result.

        What to do after each answer is the buyer policy's (flashsale.policy), read
        from its table; the retry budget is applied by :func:`flashsale.policy.decide`.
        """
        shop, b, step, k, account = self.shop, self.behaviour, self.step, self.k, self.account
        now = shop.env.now
        if step == CART and self.solved and self.admitted != self.admitted:
            self.admitted = now  # sends the right answer with this cart
        d = b.patience
        answer, end = shop.send(self, step, now, d.pool[(d.offsets[account] + k) & d.mask])
        act, pause_kind, result = b.table[step][answer]
        if act in _SPENDS:
            act, pause_kind, result = decide(self.kind, step, answer, self.retries, self.allowed)
        if act == _NEXT:
            if pause_kind == _SOLVE:  # challenge in hand: solve it, send the answer next
                c = b.captcha
                assert c is not None
                pause = c.solve_s(account, k)
                self.solved = c.solved(account, k)
                self.step = CART
            elif pause_kind == _DRAW:  # entered: sleep until the draw wakes this journey
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
        elif act == _WAIT:
            pause = b.refresh_s
        elif act == _END:
            shop.finish(self, result, end)
            return
        else:  # a retry, of one kind or another
            self.retries -= 1
            if act == _FEWER:
                self.units = self.allowed
            elif act != _RETRY:  # the hold or the CAPTCHA answer is gone: cart again
                self.step = self._to_cart()
            d = b.think
            pause = d.pool[(d.offsets[account] + k) & d.mask]
            if pause_kind == _BACKOFF and b.honours_retry_after and shop.retry_after > pause:
                pause = shop.retry_after
        Timeout(shop.env, end - now + pause).callbacks.append(self.act)
