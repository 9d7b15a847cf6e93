"""The simulated checkout's endpoints: view, add to cart, pay.

Every request goes: defenses at the edge (e.g. 429) -> the worker queue of its
step's pool (flashsale.sim.service: 503 when full, 504/499 when the client gives
up; ``[service.pools.*]``, one FIFO pool for every step by default; CAPTCHA and
lottery requests go with the view's) -> the step's logic, decided at the moment a
worker takes the request:

- view: NOT_OPEN (425) before the opening, SOLD_OUT (409) once the buyer's
  channel has no stock or the window has closed, else OK (200);
- cart: the same checks, then the CAPTCHA answer (CAPTCHA_FAILED, 403) and the
  defenses' per-account allowance (LIMIT_REACHED, 403), then the stock (409 if
  short); a reservation holds the units for ``cart_hold_s``;
- pay: HOLD_EXPIRED (410) if the hold expired when the worker starts; then the
  payment gateway takes ``payment.gateway_s`` (outside the workers) with the
  hold kept; slower than ``payment.timeout_s`` is PAYMENT_TIMED_OUT (504), and it
  declines (PAYMENT_DECLINED, 402) with a probability that grows with the load
  the payment met on arrival in the pay step's pool. A failed payment releases
  the hold (the yellow cart).

The shop answers with meanings (flashsale.policy.Answer) and records the status
the reference service sends for each (flashsale.sim.status), and the parts of each
latency: the wait for a worker, the worker's time and the gateway's; the rules are
flashsale.checkout's.

Service times and payment luck are per-buyer draws from the ``service`` and
``payment`` streams (flashsale.sim.draws).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import simpy

from flashsale.arrivals import Schedule
from flashsale.checkout import OVERLOADED_RETRY_AFTER_S
from flashsale.distributions import Uniform
from flashsale.policy import Answer
from flashsale.scenario import SERVICE_STEPS, Scenario

from .defense import Defense
from .draws import BuyerDraws
from .journey import CAPTCHA, CART, LOTTERY, PAY, VIEW, Journey
from .lottery import LotteryDriver
from .record import Recorder
from .service import FULL, RENEGED, CheckoutService
from .status import STATUS
from .stock import Stock

_OK = Answer.OK.value
_SOLD_OUT = Answer.SOLD_OUT.value
_NOT_OPEN = Answer.NOT_OPEN.value
_RATE_LIMITED = Answer.RATE_LIMITED.value
_LIMIT_REACHED = Answer.LIMIT_REACHED.value
_CAPTCHA_FAILED = Answer.CAPTCHA_FAILED.value
_REJECTED = Answer.REJECTED.value
_DECLINED = Answer.PAYMENT_DECLINED.value
_PAY_TIMED_OUT = Answer.PAYMENT_TIMED_OUT.value
_HOLD_EXPIRED = Answer.HOLD_EXPIRED.value
_OVERLOADED = Answer.OVERLOADED.value
_QUEUE_TIMEOUT = Answer.QUEUE_TIMEOUT.value
_ABANDONED = Answer.ABANDONED.value
_NAN = float("nan")

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
        self._grows = pay.failure_growth > 0
        # the worker pools by name ("default": [service] itself), and each step's pool
        self.pools = {"default": CheckoutService(svc.workers, svc.queue_limit)}
        self._route: dict[int, tuple[CheckoutService, float]] = {}
        for code, name in zip((VIEW, CART, PAY), SERVICE_STEPS, strict=True):
            at = svc.pool_of(name)
            if at.name not in self.pools:
                self.pools[at.name] = CheckoutService(at.workers, at.queue_limit)
            self._route[code] = (self.pools[at.name], at.queue_timeout_s)
        self._route[CAPTCHA] = self._route[LOTTERY] = self._route[VIEW]
        self.service = self.pools["default"]
        self._pay_queue = self._route[PAY][0]
        # the pools whose decisions hold stock (carts reserve, payments begin): a
        # release waits for them; a pool that only reads it (the sale page) does not
        self._holding = list({id(q): q for q, _ in (self._route[CART], self._route[PAY])}.values())
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
            r.r_queue_wait.append,
            r.r_service_time.append,
            r.r_gateway_time.append,
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
        self.retry_after = 0.0  # of the last 429 or 503 answered
        self._edge = [d.at_edge for d in defenses if d.overrides("at_edge")]
        self._cart = [d.at_cart for d in defenses if d.overrides("at_cart")]
        self._reserved = [d.reserved for d in defenses if d.overrides("reserved")]
        self._release = [d.released for d in defenses if d.overrides("released")]

    def _released(self, account: int, units: int) -> None:
        for hook in self._release:
            hook(account, units)

    def send(self, j: Journey, step: int, now: float, patience: float) -> tuple[int, float]:
        """Answer ``j``'s request for ``step`` sent at ``now``: (Answer code, response time).

        A 429 or 503 answer leaves its Retry-After (seconds) in ``retry_after``.
        """
        k, account = j.k, j.account
        j.k = k + 1
        # the latency's parts: waited for a worker, on a worker, at the gateway
        queued = worked = gateway = _NAN
        for edge in self._edge:
            wait = edge(account, j.person, now)
            if wait is not None:
                answer, end = _RATE_LIMITED, now
                self.retry_after = wait
                break
        else:
            load = self._pay_queue.occupancy(now) if step == PAY and self._grows else 0.0
            queue, timeout_s = self._route[step]
            d = self._service_s[step]
            service_s = d.pool[(d.offsets[account] + k) & d.mask]
            code, start, end = queue.arrive(
                now, service_s, patience if patience < timeout_s else timeout_s
            )
            queued = start - now
            if code == FULL:
                answer = _OVERLOADED
                self.retry_after = OVERLOADED_RETRY_AFTER_S
            elif code == RENEGED:
                if patience < timeout_s:
                    answer = _ABANDONED
                else:
                    answer = _QUEUE_TIMEOUT
                    self.retry_after = OVERLOADED_RETRY_AFTER_S
            else:
                worked = service_s
                if step == VIEW:  # _open(), inlined: most requests are views
                    if start < 0.0:
                        answer = _NOT_OPEN
                    elif start > self.window_s:
                        answer = _SOLD_OUT
                    else:
                        self._advance(now, start)
                        answer = _OK if self.stock.available_at(j.channel, start) else _SOLD_OUT
                elif step == CART:
                    answer = self._add_to_cart(j, now, start)
                elif step == PAY:
                    answer, end, gateway = self._pay(j, k, now, start, end, load)
                elif step == LOTTERY:
                    answer = self._enter(j, start)
                else:  # CAPTCHA: a challenge, always served
                    answer = _OK
        (
            log_journey,
            log_step,
            log_sent,
            log_latency,
            log_status,
            log_queued,
            log_worked,
            log_gateway,
        ) = self._log
        log_journey(j.id)
        log_step(step)
        log_sent(now)
        log_latency(end - now)
        log_status(STATUS[step][answer])
        log_queued(queued)
        log_worked(worked)
        log_gateway(gateway)
        return answer, end

    def _advance(self, now: float, start: float) -> None:
        """Bring the stock to a decision that a worker takes at ``start`` for a request
        sent at ``now``: releases applied up to the earliest start the cart and pay
        pools can still give (``start`` itself with one pool), payments known not to
        begin before the pay pool's earliest start (flashsale.sim.stock). A sale page
        served by a pool behind them may see a unit given back a little before its
        own time: it reads the stock, it takes none."""
        settled = start
        for queue in self._holding:
            settled = min(settled, queue.earliest_start(now))
        self.stock.advance(settled, self._pay_queue.earliest_start(now))

    def _open(self, now: float, at: float) -> int:
        """OK while the sale is open at ``at`` (a request sent at ``now``), else the
        answer that says why not."""
        if at < 0.0:
            return _NOT_OPEN
        if at > self.window_s:
            return _SOLD_OUT
        self._advance(now, at)
        return _OK

    def _enter(self, j: Journey, at: float) -> int:
        """A lottery entry decided at ``at``: not open early, rejected once the entries
        have closed (the CAPTCHA, when on, comes after the draw, before the cart)."""
        lottery = self.lottery
        assert lottery is not None
        if at < 0.0:
            return _NOT_OPEN
        if at > lottery.entry_window_s or not lottery.enter(j):
            return _REJECTED  # the entries have closed (410)
        return _OK

    def _add_to_cart(self, j: Journey, now: float, at: float) -> int:
        closed = self._open(now, at)
        if closed:
            return closed
        units = j.units
        if self._captcha and not j.solved:
            return _CAPTCHA_FAILED
        allowed = units
        for hook in self._cart:
            allowed = min(allowed, hook(j.account, units))
        if allowed < units:
            j.allowed = allowed
            return _LIMIT_REACHED
        if self.stock.available_at(j.channel, at) < units:
            return _SOLD_OUT
        j.hold = self.stock.reserve(j.channel, units, j.account, at)
        j.solved = False  # a CAPTCHA answer is good for one hold
        for note in self._reserved:
            note(j.account, units)
        if j.carted != j.carted:  # first reservation
            j.carted = at
        return _OK

    def _pay(
        self, j: Journey, k: int, now: float, start: float, end: float, load: float
    ) -> tuple[int, float, float]:
        """The payment sent at ``now`` that a worker takes at ``start`` and leaves at
        ``end``: (Answer code, response time, time at the gateway: NaN if the hold had
        expired)."""
        stock = self.stock
        self._advance(now, start)
        hold = j.hold
        if not stock.begin_payment(hold, start):
            j.hold = -1
            return _HOLD_EXPIRED, end, _NAN
        payment = self._payment
        gateway = self._gateway_s(j.account, k)
        if gateway > payment.timeout_s:
            gateway = payment.timeout_s
            answer, end = _PAY_TIMED_OUT, end + gateway
        else:
            end += gateway
            p = payment.failure_probability(load)
            answer = _DECLINED if self._luck(j.account, k) < p else _OK
        paid = answer == _OK
        stock.end_payment(hold, end, paid, j.kind)
        j.hold = -1
        if paid:
            j.paid += j.units
        return answer, end, gateway

    def finish(self, j: Journey, result: int, at: float) -> None:
        self.recorder.finish(
            j.id, result, at, carted=j.carted, units=j.paid, requests=j.k, admitted=j.admitted
        )
        if self.on_finish is not None:
            self.on_finish(j)
