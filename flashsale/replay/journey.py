"""One buyer's journey against a checkout API: the same steps and rules the simulation models.

A human views the sale page (refreshing until it opens if early), passes the
waiting room, lottery or CAPTCHA when the target has them on, thinks, adds to
the cart, thinks, pays. A bot account fires at its request rate straight at the
cart and pays at once. What either does after each answer (wait, retry, cart
again, ask for fewer units, give up) is the buyer policy's (flashsale.policy),
the one the simulator follows; the answer's meaning comes from the target's
answer map (flashsale.replay.reference). One retry budget per journey. A
human's patience bounds each wait for a worker, as in the simulation: the
journey draws it per request and sends it in the ``X-Patience-S`` header; the
reference service lets the request leave its queue unserved when it runs out
(499), as a buyer closing the tab would.

The journey is written against :class:`Client`, not Locust: the Locust users
(flashsale.replay.locust_app) adapt a FastHttpSession and gevent's clock to it,
and the contract tests drive it against the real service in process
(tests/test_replay_contract.py). Every request carries its *intended*
send time: for a human, the moment the previous response plus a think time says;
for a bot, its fixed cadence from its start (as wrk2 does), so latency measured
from it includes any wait caused by a slow previous response.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from flashsale.arrivals import HUMAN
from flashsale.outcome import RESULT, STEP
from flashsale.policy import Act, Answer, Pause, decide, journey_result
from flashsale.replay.reference import PATIENCE_HEADER, Reply, meaning
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
        self.allowed = self.units  # what the account limit still allows, after a 403
        self.retries = sc.humans.retries_on_error if self.human else sc.bots.max_retries
        self.token: dict[str, str] = {}  # admission and CAPTCHA tokens sent with the cart
        self.challenge: tuple[str, str] | None = None  # (id, answer) to send before the cart
        self.entered = False  # entered the lottery
        self.reservation: Any = None
        self.pay_attempt = 0
        self.headers = {"X-Forwarded-For": client_ip(who.kind, who.person)}

    # -- timing
    def think(self) -> float:
        """A think time (human) or the bot's request interval."""
        if self.human:
            return float(self.sc.humans.think_s.sample(self.rng, 1)[0])
        return 1.0 / self.sc.bots.request_rate_per_s

    def pause(self, kind: Pause, reply: Reply) -> float:
        """How long the policy's ``kind`` of pause lasts after ``reply`` (after a lottery
        draw, which :meth:`lottery` waited for, a think time)."""
        if kind is Pause.REFRESH:
            return self.sc.humans.refresh_s if self.human else self.think()
        if kind is Pause.SOLVE:
            c = self.sc.humans.captcha_solve_s if self.human else self.sc.bots.captcha_solve_s
            return float(c.sample(self.rng, 1)[0])
        t = self.think()
        if kind is Pause.BACKOFF and self.human and reply.retry_after is not None:
            return max(t, reply.retry_after)  # a bot keeps its cadence
        return t

    def advance(self, gap: float) -> None:
        # humans act after they read the response; bots keep their own cadence
        base = max(self.next_t, self.client.now()) if self.human else self.next_t
        self.next_t = base + gap

    def patience(self) -> float:
        """A fresh patience for one wait (humans; bots wait for the client timeout)."""
        p = self.sc.humans.patience_s
        return float(p.sample(self.rng, 1)[0]) if (self.human and p is not None) else math.inf

    def send(
        self,
        step: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        self.client.wait_until(self.next_t)
        self.log.requests += 1
        sent = {**self.headers, **(headers or {})}
        patience = self.patience() if step != "waiting_room" else math.inf
        if patience < math.inf:  # the buyer leaves the queue after this long (499)
            sent[PATIENCE_HEADER] = f"{patience:.3f}"
        return self.client.call(step, method, path, self.next_t, body, sent)

    # -- steps: each sends its request(s) and returns what the answer means
    def view(self) -> tuple[Answer | None, Reply]:
        r = self.send("view", "GET", self.paths.status)
        return meaning("view", r), r

    def captcha(self) -> tuple[Answer | None, Reply]:
        """Ask for a challenge; the solved answer goes out just before the cart."""
        r = self.send("captcha", "POST", self.paths.captcha, {"account": self.who.account})
        answer = meaning("captcha", r)
        if answer is Answer.OK:
            passes = self.rng.random() < (
                self.sc.humans.captcha_pass_prob if self.human else self.sc.bots.captcha_solve_prob
            )
            right = solve_captcha(str(r.body.get("prompt", "")))
            self.challenge = (str(r.body.get("challenge_id")), right if passes else f"{right}0")
        return answer, r

    def solve(self) -> tuple[Answer | None, Reply] | None:
        """Send the pending CAPTCHA answer; None if it earned a token."""
        assert self.challenge is not None
        cid, answer = self.challenge
        self.challenge = None
        r = self.send(
            "captcha",
            "POST",
            f"{self.paths.captcha}/{cid}",
            {"account": self.who.account, "answer": answer},
        )
        if r.status == 200:
            self.token["captcha_token"] = str(r.body.get("captcha_token", ""))
            if math.isnan(self.log.admitted):
                self.log.admitted = self.client.now()
            return None
        return meaning("cart", r), r  # a wrong answer: no cart without a new challenge

    def lottery(self) -> tuple[Answer | None, Reply]:
        """Enter; on OK, wait for the draw (polling) and learn whether this account won."""
        r = self.send("lottery", "POST", self.paths.lottery, {"account": self.who.account})
        answer = meaning("lottery", r)
        if answer is not Answer.OK:
            return answer, r
        self.entered = True
        self.advance(float(r.body.get("draw_in_s") or 0.0) + self.think())
        while True:
            r = self.send("lottery", "GET", f"{self.paths.lottery}/{self.who.account}")
            if r.status == 200 and r.body.get("drawn"):
                break
            polled = meaning("lottery", r)
            if polled is not Answer.OK:
                return polled, r
            self.advance(max(self.sc.humans.refresh_s, self.think()))
        if not r.body.get("won"):
            return Answer.REJECTED, r
        self.log.admitted = self.client.now()
        if "admission_token" in r.body:
            self.token["admission_token"] = str(r.body["admission_token"])
        return Answer.OK, r

    def cart(self) -> tuple[Answer | None, Reply]:
        if self.challenge is not None:
            refused = self.solve()
            if refused is not None:
                return refused
        body: dict[str, Any] = {
            "account": self.who.account,
            "sku": self.sc.sale.sku,
            "units": self.units,
            "channel": self.sc.sale.channels[self.who.channel].name,
            **self.token,
        }
        r = self.send("cart", "POST", self.paths.cart, body)
        answer = meaning("cart", r)
        if answer is Answer.OK:
            if "reservation_id" not in r.body:
                return None, r  # a protocol error, never a success
            self.reservation = r.body["reservation_id"]
            self.token.pop("captcha_token", None)  # good for one hold
            if math.isnan(self.log.carted):
                self.log.carted = self.client.now()
        elif answer is Answer.LIMIT_REACHED:
            self.allowed = int(r.body.get("allowed_units") or 0)
        return answer, r

    def pay(self) -> tuple[Answer | None, Reply]:
        r = self.send(
            "pay",
            "POST",
            self.paths.pay,
            {"reservation_id": self.reservation, "account": self.who.account},
            {"Idempotency-Key": f"{self.key}-{self.who.journey}-{self.pay_attempt}"},
        )
        answer = meaning("pay", r)
        if answer is not Answer.AMBIGUOUS and answer is not Answer.RETRY:
            self.pay_attempt += 1  # a definite answer: a retry is a new payment, a new key
        if answer is Answer.OK:
            self.log.units = int(r.body.get("units", self.units))
        return answer, r

    def to_cart(self) -> str:
        """The step that leads to the cart: the lottery entry, then a CAPTCHA challenge
        (unless one is pending or a token is held), as in the simulator."""
        d = self.sc.defenses
        if d.lottery.enabled and not self.entered:
            return "lottery"
        if d.captcha.enabled and self.challenge is None and "captcha_token" not in self.token:
            return "captcha"
        return "cart"

    # -- the whole journey
    def run(self) -> JourneyLog:
        """Play the journey to its end: each answer's meaning goes to the buyer policy."""
        self.log.started = self.client.now()
        do = {
            "view": self.view,
            "captcha": self.captcha,
            "lottery": self.lottery,
            "cart": self.cart,
            "pay": self.pay,
        }
        step = "view" if self.human else self.to_cart()
        try:
            if self.sc.defenses.waiting_room.enabled:
                self.waiting_room()
            while True:
                answer, reply = do[step]()
                if answer is None:  # the answer map does not know this answer
                    self.log.notes.append(f"{step}: unexpected answer {reply.status}")
                    self.log.result = "error"
                    break
                d = decide(self.who.kind, STEP.index(step), answer, self.retries, self.allowed)
                if d.act is Act.END:
                    self.log.result = RESULT[d.result]
                    break
                if d.act is Act.NEXT:
                    step = (
                        "pay" if step == "cart" else "cart" if step == "captcha" else self.to_cart()
                    )
                elif d.act is not Act.WAIT:
                    self.retries -= 1
                    if d.act is Act.FEWER:
                        self.units = self.allowed
                    elif d.act is not Act.RETRY:  # the hold or the CAPTCHA answer is gone
                        self.token.pop("captcha_token", None)
                        step = self.to_cart()
                self.advance(self.pause(d.pause, reply))
        except Halt as h:
            self.log.result = h.result
            self.log.notes.append(str(h))
        carted = not math.isnan(self.log.carted)
        self.log.result = RESULT[journey_result(RESULT.index(self.log.result), carted)]
        self.log.finished = self.client.now()
        return self.log

    def waiting_room(self) -> None:
        """Queue in the waiting room until admitted (no patience here, as in the
        simulation: a buyer's patience bounds waits for the checkout's workers)."""
        body = {"account": self.who.account}
        r = self.send("waiting_room", "POST", self.paths.waiting_room, body)
        while r.status != 201:
            if meaning("waiting_room", r) is Answer.AMBIGUOUS or r.status >= 500:
                self.advance(self.pause(Pause.BACKOFF, r))
                r = self.send("waiting_room", "POST", self.paths.waiting_room, body)
                continue
            raise Halt("error", f"waiting room: unexpected answer {r.status}")
        ticket = r.body.get("ticket")
        while not r.body.get("admitted"):
            wait = float(r.body.get("retry_after_s") or self.sc.humans.refresh_s)
            self.advance(wait if self.human else max(wait, self.think()))
            r = self.send("waiting_room", "GET", f"{self.paths.waiting_room}/{ticket}")
            if r.status != 200 and r.status < 500 and r.status != 0:
                raise Halt("error", f"waiting room: unexpected answer {r.status}")
        self.log.admitted = self.client.now()
        self.token["admission_token"] = str(r.body.get("admission_token", ""))
