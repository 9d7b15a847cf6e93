"""One buyer's journey against a checkout API: the same steps and rules the simulation models.

A human views the sale page (refreshing until it opens if early), passes the
waiting room, lottery or CAPTCHA when the target has them on, thinks, adds to
the cart, thinks, pays. A bot account fires at its request rate straight at the
cart and pays at once. What either does after each answer (wait, retry, cart
again, ask for fewer units, give up) is the buyer policy's (flashsale.policy),
the one the simulator follows. How each request is written and what each answer
means is the target's protocol (flashsale.protocol: the reference service's by
default): the journey never reads a status code itself. An answer the protocol
does not know ends the journey ``error`` with a *protocol error* recorded
against its step, never a success. One retry budget per journey. A human's
patience bounds each wait for a worker, as in the simulation: with the
protocol's ``patience_header`` (the reference service's ``X-Patience-S``), the
journey draws it per request and sends it; the service lets the request leave
its queue unserved when it runs out (499, ``abandoned``). Each journey keeps its
own cookie jar (a guest session) and its own captured values.

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
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, NamedTuple, NoReturn, Protocol

import numpy as np

from flashsale.arrivals import HUMAN
from flashsale.outcome import KIND, RESULT, STEP
from flashsale.policy import Act, Answer, Pause, decide, journey_result
from flashsale.protocol import (
    RECORDED_AS,
    ProtocolError,
    Reply,
    as_number,
    capture,
    match,
    render,
    render_body,
)
from flashsale.replay.custom import StepContext, Steps, handles, meaning_of
from flashsale.scenario import Scenario

__all__ = [
    "Buyer",
    "Client",
    "Ended",
    "Halt",
    "Journey",
    "JourneyLog",
    "Judge",
    "Reply",
    "Request",
    "Trace",
    "client_ip",
    "parse_cookies",
    "solve_captcha",
]


class Request(NamedTuple):
    """One request, built from the protocol: ``json`` or ``form`` is the body (or neither)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] | None = None


Judge = Callable[["Reply"], "str | None"]
"""Reads an answer for the transport: why it counts as a failed request (a protocol
error, no answer, an overloaded target), or None."""


Trace = Callable[
    ["str", "Request | None", "Reply | None", "tuple[Answer, dict[str, Any]] | str | None", Any],
    None,
]
"""Sees each exchange: protocol step, request, answer, what it was read as (meaning and
captures, or the protocol error) and the answer rule that matched (or None). A
python_class step's requests come with no reading (None); its reading comes after
them, with no request."""


class Client(Protocol):
    """The transport a journey runs on; times are sale seconds (t = 0 at the opening).

    ``call`` sends ``request`` and returns the answer, recorded under ``step`` (a
    flashsale.outcome.STEP name); a lost answer (timeout, reset) is status 0.
    ``judge`` tells the transport whether to count the request failed."""

    def now(self) -> float: ...

    def wait_until(self, t: float) -> None: ...

    def call(self, step: str, request: Request, intended: float, judge: Judge) -> Reply: ...


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
    """The facts a journey row records (NaN = never happened), the protocol errors
    met (``(protocol step, what was wrong)``) and the meanings of the answers seen."""

    started: float = math.nan
    admitted: float = math.nan
    carted: float = math.nan
    finished: float = math.nan
    result: str = "error"
    units: int = 0
    requests: int = 0
    notes: list[str] = field(default_factory=list)
    protocol_errors: list[tuple[str, str]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # "step:meaning" -> answers


def client_ip(kind: int, person: int) -> str:
    """A stable fake client address: one per human, one per bot operator (per-IP rate limits)."""
    base = 10 if kind == HUMAN else 11
    return f"{base}.{(person >> 16) & 255}.{(person >> 8) & 255}.{person & 255}"


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SUM = re.compile(r"(-?\d+)\s*([+\-x*])\s*(-?\d+)")


def solve_captcha(prompt: str) -> str:
    """The answer to the reference service's arithmetic prompt (``"3 + 4"`` -> ``"7"``)."""
    m = _SUM.search(prompt)
    if not m:
        return ""
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


def parse_cookies(set_cookie: list[str]) -> dict[str, str]:
    """Name -> value of each ``Set-Cookie`` header (RFC 6265); attributes are ignored:
    a journey's jar talks to one host for minutes."""
    out: dict[str, str] = {}
    for header in set_cookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except Exception:
            name, _, rest = header.partition("=")
            if name.strip():
                out[name.strip()] = rest.split(";", 1)[0].strip()
            continue
        out.update({k: m.value for k, m in jar.items()})
    return out


class Ended(Exception):
    """Raised inside a journey to end it with ``result`` (after a protocol error, the
    reason is the log's last ``protocol_errors`` entry)."""

    def __init__(self, result: str) -> None:
        self.result = result


class Journey:
    """One journey, human or bot; :meth:`run` plays it to its end and returns the log.

    ``rng`` is this journey's own Generator (seeded from the ``humans`` or ``bots``
    stream, so its draws do not depend on which process runs it); ``key`` makes
    its idempotency keys unique to the replay; ``user`` is the account's row of the
    protocol's accounts file (``{user.FIELD}``); ``custom`` the protocol's Python
    class, if it names one (flashsale.replay.custom). ``log`` is readable at any time: a
    journey cut short by the replay's end still has its facts so far.
    """

    def __init__(
        self,
        sc: Scenario,
        who: Buyer,
        client: Client,
        rng: np.random.Generator,
        key: str,
        user: Mapping[str, str] | None = None,
        custom: type[Steps] | None = None,
    ) -> None:
        self.sc, self.who, self.client, self.rng, self.key = sc, who, client, rng, key
        self.target = sc.target
        self.log = JourneyLog()
        self.next_t = who.arrived
        self.human = who.kind == HUMAN
        self.units = sc.humans.units_per_order if self.human else sc.bots.units_per_order
        self.allowed = self.units  # what the account limit still allows, after a 403
        self.retries = sc.humans.retries_on_error if self.human else sc.bots.max_retries
        self.entered = False  # entered the lottery
        self.challenge = False  # a CAPTCHA answer is ready to go before the cart
        self.pay_attempt = 0
        self.cookies: dict[str, str] = {}
        self.vars: dict[str, Any] = {
            "account": who.account,
            "person": who.person,
            "kind": KIND[who.kind],
            "journey": who.journey,
            "sku": sc.sale.sku,
            "channel": sc.sale.channels[who.channel].name,
        }
        self.vars.update({f"user.{k}": v for k, v in (user or {}).items()})
        self.last: dict[str, Any] = {}  # what the latest answer captured
        self.custom = custom(who) if custom is not None else None
        self.trace: Trace | None = None  # sees every exchange (flashsale probe)

    # -- timing
    def think(self) -> float:
        """A think time (human) or the bot's request interval."""
        if self.human:
            return float(self.sc.humans.think_s.sample(self.rng, 1)[0])
        return 1.0 / self.sc.bots.request_rate_per_s

    def retry_after(self, reply: Reply) -> float | None:
        """The wait the target asked for: a captured ``retry_after_s``, else Retry-After."""
        asked = as_number(self.last.get("retry_after_s"))
        return asked if asked is not None and asked >= 0 else reply.retry_after

    def pause(self, kind: Pause, reply: Reply) -> float:
        """How long the policy's ``kind`` of pause lasts after ``reply`` (after a lottery
        draw, which :meth:`lottery` waited for, a think time)."""
        if kind is Pause.REFRESH:
            return self.sc.humans.refresh_s if self.human else self.think()
        if kind is Pause.SOLVE:
            c = self.sc.humans.captcha_solve_s if self.human else self.sc.bots.captcha_solve_s
            return float(c.sample(self.rng, 1)[0])
        t = self.think()
        asked = self.retry_after(reply)
        if kind is Pause.BACKOFF and self.human and asked is not None:
            return max(t, asked)  # a bot keeps its cadence
        return t

    def advance(self, gap: float) -> None:
        # humans act after they read the response; bots keep their own cadence
        base = max(self.next_t, self.client.now()) if self.human else self.next_t
        self.next_t = base + gap

    def patience(self) -> float:
        """A fresh patience for one wait (humans; bots wait for the client timeout)."""
        p = self.sc.humans.patience_s
        return float(p.sample(self.rng, 1)[0]) if (self.human and p is not None) else math.inf

    # -- one exchange, as the protocol says
    def values(self) -> dict[str, Any]:
        """Every variable a template may use now."""
        env = {f"env.{k}": v for k, v in os.environ.items()}
        jar = {f"cookie.{k}": v for k, v in self.cookies.items()}
        return {**env, **jar, **self.vars, "units": self.units}

    def headers(self, values: Mapping[str, Any], own: Mapping[str, str]) -> dict[str, str]:
        """The target's headers and a step's ``own`` (rendered; an unset optional one is
        not sent), X-Forwarded-For if the protocol says so, and the journey's cookies."""
        rendered = {k: render(v, values) for k, v in {**self.target.headers, **own}.items()}
        headers = {k: v for k, v in rendered.items() if v}
        for k, v in headers.items():
            if _CONTROL.search(v):  # a captured value would split the header
                raise ProtocolError(f"header {k}: its value holds a line break (not shown)")
        if self.target.forwarded_for:
            headers.setdefault("X-Forwarded-For", client_ip(self.who.kind, self.who.person))
        if self.cookies and not any(k.lower() == "cookie" for k in headers):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def request(self, step: str) -> Request:
        """The request of protocol ``step``, filled in (raises ProtocolError)."""
        spec = self.target.steps[step]
        values = self.values()
        form = None
        if spec.form is not None:
            form = {k: render(v, values) for k, v in spec.form.items()}
        body = render_body(spec.json_, values) if spec.json_ is not None else None
        path = render(spec.path, values, quote_values=True)
        return Request(spec.method, path, self.headers(values, spec.headers), body, form)

    def send(self, step: str, req: Request, judge: Judge) -> Reply:
        """Send ``req`` for protocol ``step`` when the journey is due; keep its cookies."""
        self.client.wait_until(self.next_t)
        self.log.requests += 1
        if self.target.patience_header and not step.startswith("waiting_room"):
            patience = self.patience()
            if patience < math.inf:  # the buyer leaves the queue after this long
                req.headers[self.target.patience_header] = f"{patience:.3f}"
        reply = self.client.call(RECORDED_AS[step], req, self.next_t, judge)
        self.cookies.update(reply.cookies)
        return reply

    def exchange(self, step: str) -> tuple[Answer, Reply]:
        """Send protocol ``step``; its meaning and the answer. A request that cannot be
        built or an answer the map does not know ends the journey (protocol error)."""
        if self.custom is not None and handles(type(self.custom), step):
            return self.custom_exchange(step)
        try:
            req = self.request(step)
        except ProtocolError as e:
            self.protocol_error(step, str(e))
        read: list[tuple[Answer, dict[str, Any]] | str] = []

        def judge(reply: Reply) -> str | None:
            read.append(self.read(step, reply))
            return _verdict(read[-1])

        reply = self.send(step, req, judge)
        got = read[-1] if read else self.read(step, reply)
        if self.trace is not None:
            found = match(self.target.rules(step), reply)
            self.trace(step, req, reply, got, found[1] if found else None)
        return self.answered(step, got), reply

    def custom_exchange(self, step: str) -> tuple[Answer, Reply]:
        """Protocol ``step`` by the target's Python class (flashsale.replay.custom)."""
        values = self.values()
        replies: list[Reply] = []

        def sender(method: str, path: str, **kw: Any) -> Reply:
            # the values now: a cookie an earlier request of this method set counts
            req = Request(method, path, self.headers(self.values(), kw.pop("headers")), **kw)
            reply = self.send(step, req, _no_answer)
            replies.append(reply)
            if self.trace is not None:
                self.trace(step, req, reply, None, None)  # read by the class, below
            return reply

        try:
            got = meaning_of(getattr(self.custom, step)(StepContext(step, values, sender)))
        except Halt:
            raise
        except Exception as e:
            got = f"{type(self.custom).__name__}.{step} raised {type(e).__name__}: {e}"
        if self.trace is not None:
            self.trace(step, None, None, got, None)
        return self.answered(step, got), replies[-1] if replies else Reply(0)

    def answered(self, step: str, got: tuple[Answer, dict[str, Any]] | str) -> Answer:
        """Keep what an answer gave (or end the journey on a protocol error)."""
        if isinstance(got, str):
            self.protocol_error(step, got)
        answer, self.last = got
        self.vars.update(self.last)
        key = f"{step}:{answer.name.lower()}"
        self.log.seen[key] = self.log.seen.get(key, 0) + 1
        return answer

    def read(self, step: str, reply: Reply) -> tuple[Answer, dict[str, Any]] | str:
        """What ``reply`` means and what it gives to keep, or why it is a protocol error."""
        found = match(self.target.rules(step), reply)
        if found is None:
            return f"no rule matches {_describe(reply)}"
        answer, rule = found
        try:
            return answer, capture(rule, reply) if rule is not None else {}
        except ProtocolError as e:
            return f"{e}: {_describe(reply)}"

    def protocol_error(self, step: str, what: str) -> NoReturn:
        self.log.protocol_errors.append((step, what))
        self.log.notes.append(f"{step}: protocol error: {what}")
        raise Ended("error")

    # -- steps: each sends its request(s) and returns what the answer means
    def view(self) -> tuple[Answer, Reply]:
        return self.exchange("view")

    def captcha(self) -> tuple[Answer, Reply]:
        """Ask for a challenge; the answer (right or wrong by the buyer's draw) goes out
        just before the cart."""
        answer, r = self.exchange("captcha")
        if answer is Answer.OK:
            passes = self.rng.random() < (
                self.sc.humans.captcha_pass_prob if self.human else self.sc.bots.captcha_solve_prob
            )
            right = solve_captcha(str(self.vars.get("prompt", "")))
            self.vars["captcha_answer"] = right if passes else f"{right}0"
            self.challenge = True
        return answer, r

    def lottery(self) -> tuple[Answer, Reply]:
        """Enter; on OK, wait for the draw (polling) and learn whether this account won."""
        answer, r = self.exchange("lottery")
        if answer is not Answer.OK:
            return answer, r
        self.entered = True
        self.advance((as_number(self.last.get("draw_in_s")) or 0.0) + self.think())
        while True:
            answer, r = self.exchange("lottery_poll")
            if answer is not Answer.NOT_OPEN:  # drawn: won (OK) or lost, or refused
                break
            self.advance(max(self.sc.humans.refresh_s, self.think()))
        if answer is Answer.OK:
            self.log.admitted = self.client.now()
        return answer, r

    def cart(self) -> tuple[Answer, Reply]:
        if self.challenge:
            self.challenge = False
            answer, r = self.exchange("captcha_answer")
            if answer is not Answer.OK:
                return answer, r  # a wrong answer: no cart without a new challenge
            if math.isnan(self.log.admitted):
                self.log.admitted = self.client.now()
        answer, r = self.exchange("cart")
        if answer is Answer.OK:
            self.vars.pop("captcha_token", None)  # good for one hold
            if math.isnan(self.log.carted):
                self.log.carted = self.client.now()
        elif answer is Answer.LIMIT_REACHED:
            self.allowed = int(as_number(self.last.get("allowed_units")) or 0)
        return answer, r

    def pay(self) -> tuple[Answer, Reply]:
        self.vars["idempotency_key"] = f"{self.key}-{self.who.journey}-{self.pay_attempt}"
        answer, r = self.exchange("pay")
        if answer is not Answer.AMBIGUOUS and answer is not Answer.RETRY:
            self.pay_attempt += 1  # a definite answer: a retry is a new payment, a new key
        if answer is Answer.OK:
            bought = as_number(self.last.get("units_bought"))
            self.log.units = int(bought) if bought is not None else self.units
            if "order" in self.target.steps:
                self.advance(self.think())
                if self.exchange("order")[0] is not Answer.OK:
                    self.log.notes.append("order: the paid order did not read back ok")
        return answer, r

    def to_cart(self) -> str:
        """The step that leads to the cart: the lottery entry, then a CAPTCHA challenge
        (unless one is pending or a token is held), as in the simulator."""
        d = self.sc.defenses
        if d.lottery.enabled and not self.entered:
            return "lottery"
        if d.captcha.enabled and not self.challenge and "captcha_token" not in self.vars:
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
        steps = self.target.steps
        step = "view" if self.human and "view" in steps else self.to_cart()
        try:
            if "login" in steps:
                self.login()
            if self.sc.defenses.waiting_room.enabled:
                self.waiting_room()
            while True:
                answer, reply = do[step]()
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
                        self.vars.pop("captcha_token", None)
                        step = self.to_cart()
                self.advance(self.pause(d.pause, reply))
        except Ended as e:
            self.log.result = e.result
        except Halt as h:
            self.log.result = h.result
            self.log.notes.append(str(h))
        carted = not math.isnan(self.log.carted)
        self.log.result = RESULT[journey_result(RESULT.index(self.log.result), carted)]
        self.log.finished = self.client.now()
        return self.log

    def login(self) -> None:
        """Log in once, before anything else; the page view's rules decide what follows
        any other answer (wait, back off and send again, or end)."""
        while True:
            answer, reply = self.exchange("login")
            if answer is Answer.OK:
                return
            d = decide(self.who.kind, STEP.index("view"), answer, self.retries, self.allowed)
            if d.act is Act.END:
                raise Ended(RESULT[d.result])
            if d.act is not Act.WAIT:
                self.retries -= 1
            self.advance(self.pause(d.pause, reply))

    def waiting_room(self) -> None:
        """Queue in the waiting room until admitted (no patience here, as in the
        simulation: a buyer's patience bounds waits for the checkout's workers). A lost
        or refused-for-now answer is sent again after a back-off; sold out or rejected
        ends the journey; anything else the protocol maps is a protocol error here."""
        step = "waiting_room"
        while True:
            answer, r = self.exchange(step)
            if answer is Answer.OK:
                break
            if answer is Answer.NOT_OPEN:  # queued: poll when the room says
                step = "waiting_room_poll"
                asked = self.retry_after(r)
                wait = asked if asked is not None else self.sc.humans.refresh_s
                self.advance(wait if self.human else max(wait, self.think()))
            elif answer in _TRANSIENT:
                self.advance(self.pause(Pause.BACKOFF, r))
            elif answer in (Answer.SOLD_OUT, Answer.REJECTED):
                raise Ended(answer.name.lower())
            else:
                self.protocol_error(step, f"{answer.name.lower()} is not a waiting-room answer")
        self.log.admitted = self.client.now()


def _verdict(got: tuple[Answer, dict[str, Any]] | str) -> str | None:
    """Why a transport counts the request failed, or None."""
    if isinstance(got, str):
        return f"protocol error: {got}"
    return got[0].name.lower() if got[0] in _FAILED else None


def _no_answer(reply: Reply) -> str | None:
    return "ambiguous" if reply.status == 0 else None


_FAILED = frozenset({Answer.AMBIGUOUS, Answer.OVERLOADED, Answer.QUEUE_TIMEOUT})
"""Answers a transport counts as failed requests (besides protocol errors)."""

_TRANSIENT = frozenset(
    {
        Answer.AMBIGUOUS,
        Answer.OVERLOADED,
        Answer.QUEUE_TIMEOUT,
        Answer.RATE_LIMITED,
        Answer.RETRY,
    }
)


def _describe(reply: Reply) -> str:
    """An answer in one short line: status and the start of its body."""
    text = " ".join(reply.text.split())
    return f"{reply.status} {text[:120]!r}" if text else f"{reply.status} (empty body)"
