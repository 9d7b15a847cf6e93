"""The simulated checkout's endpoints: view, add to cart, pay.

Every request goes: defenses at the edge (e.g. 429) -> the worker queue
(flashsale.sim.service: 503 when full, 504/499 when the client gives up) -> the
step's logic, decided at the moment a worker takes the request:

- view: 425 before the opening, 409 once the buyer's channel has no stock or the
  window has closed, else 200;
- cart: the same checks, then the defenses' per-account allowance (403), then
  the stock (409 if short); a reservation holds the units for ``cart_hold_s``;
- pay: 410 if the hold expired; after the worker, the payment gateway takes
  ``payment.gateway_s`` (outside the workers); slower than ``payment.timeout_s``
  is a 504, and it declines (402) with a probability that grows with the load the
  payment met on arrival. A failed payment releases the hold (the yellow cart).

Service times and payment luck are per-buyer draws from the ``service`` and
``payment`` streams (flashsale.sim.draws).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import simpy

from flashsale.arrivals import Schedule
from flashsale.distributions import Uniform
from flashsale.scenario import Scenario

from .defense import Defense
from .draws import BuyerDraws
from .journey import CAPTCHA, CART, LOTTERY, PAY, VIEW, Journey
from .lottery import LotteryDriver
from .record import Recorder
from .service import FULL, RENEGED, CheckoutService
from .status import (
    ABANDONED,
    CREATED,
    GATEWAY_TIMEOUT,
    GONE,
    NOT_OPEN,
    OK,
    PAYMENT_FAILED,
    REJECTED,
    SOLD_OUT,
    UNAVAILABLE,
)
from .stock import Stock

__all__ = ["Shop"]


class Shop:
    """Answers requests for one replication and records them."""

    def __init__(
        self,
        scenario: Scenario,
        env: simpy.Environment,
        schedule: Schedule,
        service_rng: np.random.Generator,
        payment_rng: np.random.Generator,
        defenses: Sequence[Defense],
    ) -> None:
        svc = scenario.service
        pay = svc.payment
        buyers = scenario.humans.count + scenario.bots.accounts
        self.env = env
        self.window_s = scenario.sale.window_s
        self.queue_timeout_s = svc.queue_timeout_s
        self._grows = pay.failure_growth > 0
        self.service = CheckoutService(svc.workers, svc.queue_limit)
        self.stock = Stock(
            scenario.sale.split(scenario.sale.units),
            svc.cart_hold_s,
            on_release=self._released,
        )
        self.recorder = r = Recorder(schedule)
        self._log = (
            r.r_journey.append,
            r.r_step.append,
            r.r_sent.append,
            r.r_latency.append,
            r.r_status.append,
        )
        self._service_s = {
            VIEW: BuyerDraws(svc.step_s.view, service_rng, buyers),
            CART: BuyerDraws(svc.step_s.cart, service_rng, buyers),
            PAY: BuyerDraws(svc.step_s.pay, service_rng, buyers),
        }
        if scenario.defenses.captcha.enabled:  # drawn last: the other pools stay the same
            self._service_s[CAPTCHA] = BuyerDraws(svc.step_s.view, service_rng, buyers)
        if scenario.defenses.lottery.enabled:  # the entry, also served like a view
            self._service_s[LOTTERY] = BuyerDraws(svc.step_s.view, service_rng, buyers)
        self.lottery: LotteryDriver | None = None  # set by the engine when the lottery is on
        self._gateway_s = BuyerDraws(pay.gateway_s, payment_rng, buyers)
        self._luck = BuyerDraws(Uniform(dist="uniform", low=0.0, high=1.0), payment_rng, buyers)
        self._payment = pay
        self._captcha = scenario.defenses.captcha.enabled
        self.on_finish: Callable[[Journey], None] | None = None  # e.g. leave the waiting room
        self._edge = [d.at_edge for d in defenses if d.overrides("at_edge")]
        self._cart = [d.at_cart for d in defenses if d.overrides("at_cart")]
        self._reserved = [d.reserved for d in defenses if d.overrides("reserved")]
        self._release = [d.released for d in defenses if d.overrides("released")]

    def _released(self, account: int, units: int) -> None:
        for hook in self._release:
            hook(account, units)

    def send(self, j: Journey, step: int, now: float, patience: float) -> tuple[int, float]:
        """Answer ``j``'s request for ``step`` sent at ``now``: (status, response time)."""
        k, account = j.k, j.account
        j.k = k + 1
        for edge in self._edge:
            status = edge(account, j.person, now)
            if status:
                end = now
                break
        else:
            load = self.service.occupancy(now) if step == PAY and self._grows else 0.0
            timeout_s = self.queue_timeout_s
            d = self._service_s[step]
            code, start, end = self.service.arrive(
                now,
                d.pool[(d.offsets[account] + k) & d.mask],
                patience if patience < timeout_s else timeout_s,
            )
            if code == FULL:
                status = UNAVAILABLE
            elif code == RENEGED:
                status = ABANDONED if patience < timeout_s else GATEWAY_TIMEOUT
            elif step == VIEW:  # _open(), inlined: most requests are views
                if start < 0.0:
                    status = NOT_OPEN
                elif start > self.window_s:
                    status = SOLD_OUT
                else:
                    self.stock.advance(start)
                    status = OK if self.stock.available[j.channel] > 0 else SOLD_OUT
            elif step == CART:
                status = self._add_to_cart(j, start)
            elif step == PAY:
                status, end = self._pay(j, k, start, end, load)
            elif step == LOTTERY:
                status = self._enter(j, start)
            else:  # CAPTCHA: a challenge, always served
                status = OK
        log_journey, log_step, log_sent, log_latency, log_status = self._log
        log_journey(j.id)
        log_step(step)
        log_sent(now)
        log_latency(end - now)
        log_status(status)
        return status, end

    def _open(self, at: float) -> int:
        """0 while the sale is open at ``at``, else the status that says why not."""
        if at < 0.0:
            return NOT_OPEN
        if at > self.window_s:
            return SOLD_OUT
        self.stock.advance(at)
        return 0

    def _enter(self, j: Journey, at: float) -> int:
        """A lottery entry decided at ``at``: 425 early, 409 late, 403 wrong CAPTCHA."""
        lottery = self.lottery
        assert lottery is not None
        if at < 0.0:
            return NOT_OPEN
        if at > lottery.entry_window_s:
            return SOLD_OUT
        if self._captcha and not j.solved:
            j.allowed = j.units
            return REJECTED
        return CREATED if lottery.enter(j) else SOLD_OUT

    def _add_to_cart(self, j: Journey, at: float) -> int:
        closed = self._open(at)
        if closed:
            return closed
        units = j.units
        if self._captcha and not j.solved:
            j.allowed = units  # the same order, after a new challenge
            return REJECTED
        allowed = units
        for hook in self._cart:
            allowed = min(allowed, hook(j.account, units))
        if allowed < units:
            j.allowed = allowed
            return REJECTED
        if self.stock.available[j.channel] < units:
            return SOLD_OUT
        j.hold = self.stock.reserve(j.channel, units, j.account, at)
        for note in self._reserved:
            note(j.account, units)
        if j.carted != j.carted:  # first reservation
            j.carted = at
        return CREATED

    def _pay(self, j: Journey, k: int, start: float, end: float, load: float) -> tuple[int, float]:
        stock = self.stock
        stock.advance(start)
        hold = j.hold
        if not stock.begin_payment(hold, start):
            j.hold = -1
            return GONE, end
        payment = self._payment
        gateway = self._gateway_s(j.account, k)
        if gateway > payment.timeout_s:
            status, end = GATEWAY_TIMEOUT, end + payment.timeout_s
        else:
            end += gateway
            p = payment.failure_probability(load)
            status = PAYMENT_FAILED if self._luck(j.account, k) < p else CREATED
        paid = status == CREATED
        stock.end_payment(hold, end, paid, j.kind)
        j.hold = -1
        if paid:
            j.paid += j.units
        return status, end

    def finish(self, j: Journey, result: int, at: float) -> None:
        self.recorder.finish(
            j.id, result, at, carted=j.carted, units=j.paid, requests=j.k, admitted=j.admitted
        )
        if self.on_finish is not None:
            self.on_finish(j)
