"""One buyer's journey against a checkout API: the same steps the simulation models.

A human views the sale page (refreshing until it opens if early), passes the
waiting room, lottery or CAPTCHA when the target has them on, thinks, adds to
the cart, thinks, pays; retries a few errors. A bot account fires at its
request rate straight at the cart and pays at once, retrying up to its limit.

The journey is written against :class:`Client`, not Locust: the Locust users
(flashsale.replay.locust_app) adapt a FastHttpSession and gevent's clock to it,
and tests drive it with a scripted fake. Every request carries its *intended*
send time: for a human, the moment the previous response plus a think time says;
for a bot, its fixed cadence from its start (as wrk2 does), so latency measured
from it includes any wait caused by a slow previous response.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from flashsale.arrivals import HUMAN
from flashsale.scenario import Scenario

__all__ = [
    "Buyer",
    "Client",
    "Halt",
    "Journey",
    "JourneyLog",
    "Reply",
    "client_ip",
    "solve_captcha",
]


class Reply(NamedTuple):
    """What a journey needs from a response: status (0 = none), JSON body, Retry-After."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


class Client(Protocol):
    """The transport a journey runs on; times are sale seconds (t = 0 at the opening)."""

    def now(self) -> float: ...

    def wait_until(self, t: float) -> None: ...

    def call(
        self,
        step: str,
        method: str,
        path: str,
        intended: float,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply: ...


class Halt(Exception):
    """Raised by a Client to end a journey early (replay deadline, request budget spent)."""

    def __init__(self, result: str, why: str) -> None:
        super().__init__(why)
        self.result = result


@dataclass(frozen=True)
class Buyer:
    """One row of the arrival schedule: who starts a journey, when, where."""

    journey: int
    kind: int
    account: int
    person: int
    channel: int
    arrived: float


@dataclass
class JourneyLog:
    """The facts a journey row records (NaN = never happened)."""

    started: float = math.nan
    admitted: float = math.nan
    carted: float = math.nan
    finished: float = math.nan
    result: str = "error"
    units: int = 0
    requests: int = 0
    notes: list[str] = field(default_factory=list)


class _Done(Exception):
    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


def client_ip(kind: int, person: int) -> str:
    """A stable fake client address: one per human, one per bot operator (per-IP rate limits)."""
    base = 10 if kind == HUMAN else 11
    return f"{base}.{(person >> 16) & 255}.{(person >> 8) & 255}.{person & 255}"


_SUM = re.compile(r"(-?\d+)\s*([+\-x*])\s*(-?\d+)")


def solve_captcha(prompt: str) -> str:
    """The answer to the reference service's arithmetic prompt (``"3 + 4"`` -> ``"7"``)."""
    m = _SUM.search(prompt)
    if not m:
        return ""
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


class Journey:
    """One journey, human or bot; :meth:`run` plays it to its end and returns the log.

    ``rng`` is this journey's own Generator (seeded from the ``humans`` or ``bots``
    stream, so its draws do not depend on which process runs it); ``key`` makes
    its idempotency keys unique to the replay. ``log`` is readable at any time:
    a journey cut short by the replay's end still has its facts so far.
    """

    def __init__(
        self, sc: Scenario, who: Buyer, client: Client, rng: np.random.Generator, key: str
    ) -> None:
        self.sc, self.who, self.client, self.rng, self.key = sc, who, client, rng, key
        self.paths = sc.target.paths
        self.log = JourneyLog()
        self.next_t = who.arrived
        self.human = who.kind == HUMAN
        self.units = sc.humans.units_per_order if self.human else sc.bots.units_per_order
        self.token: dict[str, str] = {}
        self.errors = 0
        self.retry_limit = sc.humans.retries_on_error if self.human else sc.bots.max_retries
        self.headers = {"X-Forwarded-For": client_ip(who.kind, who.person)}

    # -- timing
    def pause(self) -> float:
        """Gap before the next request: a think time (human) or the bot's cadence."""
        if self.human:
            return float(self.sc.humans.think_s.sample(self.rng, 1)[0])
        return 1.0 / self.sc.bots.request_rate_per_s

    def advance(self, gap: float) -> None:
        # humans act after they read the response; bots keep their own cadence
        base = max(self.next_t, self.client.now()) if self.human else self.next_t
        self.next_t = base + gap

    def send(self, step: str, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        self.client.wait_until(self.next_t)
        self.log.requests += 1
        return self.client.call(step, method, path, self.next_t, body, dict(self.headers))

    def error(self, reply: Reply, result: str) -> None:
        """Count a failed request; end the journey with ``result`` once retries run out."""
        self.errors += 1
        if self.errors > self.retry_limit:
            raise _Done(result)
        self.advance(self.backoff(reply))

    def backoff(self, reply: Reply) -> float:
        """A human honours Retry-After; a bot ignores it and keeps its cadence."""
        if self.human:
            return max(reply.retry_after or 0.0, self.pause())
        return self.pause()

    # -- steps
    def admission(self) -> None:
        d = self.sc.defenses
        if d.waiting_room.enabled:
            self.waiting_room()
        elif d.lottery.enabled:
            self.lottery()
        if d.waiting_room.enabled or d.lottery.enabled:
            self.log.admitted = self.client.now()

    def waiting_room(self) -> None:
        body = {"account": self.who.account}
        joined = self.next_t
        patience = self.patience()
        r = self.send("waiting_room", "POST", self.paths.waiting_room, body)
        while r.status != 201:
            self.error(r, _failure(r.status))
            r = self.send("waiting_room", "POST", self.paths.waiting_room, body)
        ticket = r.body.get("ticket")
        while not r.body.get("admitted"):
            wait = float(r.body.get("retry_after_s") or self.sc.humans.refresh_s)
            self.advance(wait if self.human else max(wait, self.pause()))
            if self.next_t - joined > patience:
                raise _Done("abandoned")
            r = self.send("waiting_room", "GET", f"{self.paths.waiting_room}/{ticket}")
            if r.status != 200:
                self.error(r, _failure(r.status))
        self.token["admission_token"] = str(r.body.get("admission_token", ""))

    def lottery(self) -> None:
        body = {"account": self.who.account}
        r = self.send("lottery", "POST", self.paths.lottery, body)
        while r.status not in (201, 409):
            if r.status == 410:
                raise _Done("rejected")
            if r.status == 425:
                self.advance(r.retry_after or self.sc.humans.refresh_s)
            else:
                self.error(r, _failure(r.status))
            r = self.send("lottery", "POST", self.paths.lottery, body)
        draw_in = float(r.body.get("draw_in_s") or 0.0)
        self.advance(draw_in + self.pause())
        while True:
            r = self.send("lottery", "GET", f"{self.paths.lottery}/{self.who.account}")
            if r.status == 200 and r.body.get("drawn"):
                break
            if r.status == 200:
                self.advance(max(self.sc.humans.refresh_s, self.pause()))
            else:
                self.error(r, _failure(r.status))
        if not r.body.get("won"):
            raise _Done("rejected")
        if "admission_token" in r.body:
            self.token["admission_token"] = str(r.body["admission_token"])

    def captcha(self) -> None:
        if self.human:
            solve_s = self.sc.humans.captcha_solve_s
            passes = self.rng.random() < self.sc.humans.captcha_pass_prob
        else:
            solve_s = self.sc.bots.captcha_solve_s
            passes = self.rng.random() < self.sc.bots.captcha_solve_prob
        r = self.send("captcha", "POST", self.paths.captcha, {"account": self.who.account})
        while r.status != 201:
            self.error(r, _failure(r.status))
            r = self.send("captcha", "POST", self.paths.captcha, {"account": self.who.account})
        answer = solve_captcha(str(r.body.get("prompt", "")))
        if not passes:
            answer = f"{answer}0"
        self.advance(float(solve_s.sample(self.rng, 1)[0]))
        path = f"{self.paths.captcha}/{r.body.get('challenge_id')}"
        r = self.send("captcha", "POST", path, {"account": self.who.account, "answer": answer})
        if r.status != 200:
            raise _Done("rejected")
        self.token["captcha_token"] = str(r.body.get("captcha_token", ""))
        if math.isnan(self.log.admitted):
            self.log.admitted = self.client.now()

    def cart(self) -> Any:
        """Reserve stock; returns the reservation id (as the target spelled it)."""
        captcha_done = False
        if self.sc.defenses.captcha.enabled:
            self.captcha()
            captcha_done = True
        while True:
            body: dict[str, Any] = {
                "account": self.who.account,
                "sku": self.sc.sale.sku,
                "units": self.units,
                "channel": self.sc.sale.channels[self.who.channel].name,
                **self.token,
            }
            r = self.send("cart", "POST", self.paths.cart, body)
            if r.status == 201:
                self.log.carted = self.client.now()
                return r.body["reservation_id"]
            if r.status == 409:
                raise _Done("sold_out")
            if r.status == 425:  # not open yet: wait, not an error
                self.advance(self.backoff(r))
            elif r.status == 403 and r.body.get("error") == "captcha_required" and not captcha_done:
                self.captcha()
                captcha_done = True
            elif r.status in (403, 422):
                raise _Done("rejected")
            elif r.status == 429:
                self.error(r, "rejected")
            else:
                self.error(r, _failure(r.status))

    def pay(self, reservation: Any) -> None:
        attempt = 0
        self.errors = 0
        self.advance(self.pause())
        while True:
            headers_key = f"{self.key}-{self.who.journey}-{attempt}"
            self.headers["Idempotency-Key"] = headers_key
            r = self.send(
                "pay",
                "POST",
                self.paths.pay,
                {"reservation_id": reservation, "account": self.who.account},
            )
            self.headers.pop("Idempotency-Key")
            if r.status == 201:
                self.log.units = int(r.body.get("units", self.units))
                raise _Done("purchased")
            if r.status in (410, 404):
                raise _Done("cart_failed")
            if r.status == 409 and r.body.get("error") == "already_paid":
                self.log.units = self.units
                raise _Done("purchased")
            if r.status != 0 and not (r.status == 409 and r.retry_after is not None):
                attempt += 1  # a definite answer: a retry is a new payment, a new key
            self.error(r, "cart_failed")

    def patience(self) -> float:
        p = self.sc.humans.patience_s
        return float(p.sample(self.rng, 1)[0]) if (self.human and p is not None) else math.inf

    # -- the whole journey
    def view_until_open(self) -> None:
        while True:
            r = self.send("view", "GET", self.paths.status)
            if r.status != 200:
                self.error(r, _failure(r.status))
                continue
            if r.body.get("open"):
                if int(r.body.get("stock_left", 1)) <= 0:
                    raise _Done("sold_out")
                return
            if float(r.body.get("closes_in_s", 1.0)) <= 0:
                raise _Done("sold_out")
            wait = float(r.body.get("opens_in_s") or 0.0)
            self.advance(min(self.sc.humans.refresh_s, wait) if wait > 0 else self.pause())

    def run(self) -> JourneyLog:
        self.log.started = self.client.now()
        try:
            if self.human:
                self.view_until_open()
            self.admission()
            self.advance(self.pause() if self.human else 0.0)
            self.pay(self.cart())
        except _Done as d:
            self.log.result = d.result
        except Halt as h:
            self.log.result = h.result
            self.log.notes.append(str(h))
        self.log.finished = self.client.now()
        return self.log


def _failure(status: int) -> str:
    """How a journey ends when errors of this kind use up its retries."""
    return "timed_out" if status in (0, 504) else "error"
