"""Talk to a target before the replay: one exchange or a whole probe journey, over httpx.

:class:`HttpClient` is a :class:`flashsale.replay.journey.Client` on a plain
blocking httpx client and the wall clock, keeping every exchange it makes
(:class:`Exchange`). :func:`preflight` uses it to read the sale page (after
the login, when the protocol has one) exactly as a journey would, with the
protocol's headers and secrets: an answer the protocol does not know is a
TargetError (exit 2, before any load is sent), and so is a sale already
closed or sold out unless the target says it expects that. ``flashsale probe``
uses it to run whole journeys and print each exchange.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

from flashsale.arrivals import BOT, HUMAN
from flashsale.policy import Answer
from flashsale.protocol import Reply
from flashsale.replay.journey import Buyer, Ended, Halt, Journey, Judge, Request, parse_cookies
from flashsale.replay.target import TargetError, load_accounts, load_custom
from flashsale.scenario import Scenario

__all__ = ["Exchange", "HttpClient", "SaleState", "Unreachable", "preflight", "probe_buyer"]


class Unreachable(RuntimeError):
    """The target gave no answer at all (nothing listening, a timeout): the replay
    fails (exit 1), as when the target stops answering mid-run."""


@dataclass
class Exchange:
    """One request and its answer, as a journey saw them."""

    step: str
    request: Request
    reply: Reply
    verdict: str | None  # why the transport counted it failed, else None


@dataclass
class HttpClient:
    """A journey's transport over httpx on the wall clock (sale t = 0 at ``t0``).

    Bounded: no request is sent after ``deadline`` (an epoch) or beyond
    ``max_requests``; either ends the journey (:class:`Halt`)."""

    base_url: str
    t0: float
    timeout_s: float
    deadline: float
    max_requests: int = 100
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # why answers were lost

    def now(self) -> float:
        return time.time() - self.t0

    def wait_until(self, t: float) -> None:
        if self.t0 + t > self.deadline:
            raise Halt("timed_out", "the probe's time ran out")
        delay = self.t0 + t - time.time()
        if delay > 0:
            time.sleep(delay)

    def call(self, step: str, request: Request, intended: float, judge: Judge) -> Reply:
        if len(self.exchanges) >= self.max_requests:
            raise Halt("error", f"more than {self.max_requests} requests in one journey")
        headers = dict(request.headers)
        content = None
        if request.form is not None:
            content = urlencode(request.form)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif request.json is not None:
            content = json.dumps(request.json)
            headers.setdefault("Content-Type", "application/json")
        try:
            r = httpx.request(
                request.method,
                f"{self.base_url}{request.path}",
                headers=headers,
                content=content,
                timeout=self.timeout_s,
            )
            reply = _reply(r)
        except httpx.HTTPError as e:
            self.failures.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            reply = Reply(0)
        self.exchanges.append(Exchange(step, request, reply, judge(reply)))
        return reply


def _reply(r: httpx.Response) -> Reply:
    text = r.text
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    headers = {k.lower(): v for k, v in r.headers.items()}
    cookies = parse_cookies(r.headers.get_list("set-cookie"))
    return Reply(r.status_code, body, text, headers, cookies)


def probe_buyer(kind: int, scenario: Scenario, at: float = 0.0) -> Buyer:
    """The first human (account 0) or the first bot account of ``scenario``."""
    account = 0 if kind == HUMAN else scenario.humans.count
    return Buyer(journey=0, kind=kind, account=account, person=0, channel=0, arrived=at)


@dataclass(frozen=True)
class SaleState:
    """What the sale page said before the replay: its meaning, and the seconds to the
    opening when the protocol captures ``opens_in_s`` (else None)."""

    answer: Answer
    opens_in_s: float | None
    exchanges: tuple[Exchange, ...]


def preflight(base_url: str, scenario: Scenario, source: str) -> SaleState | None:
    """Log in (if the protocol has a login) and read the sale page once, as the first
    human would; None when the protocol has no sale page.

    Raises TargetError (one line per problem, naming ``source``) for an answer the
    protocol does not know, a target that does not answer, or a sale already closed
    or sold out when ``target.expect_sold_out`` is false."""
    t = scenario.target
    if "view" not in t.steps:
        return None
    client = HttpClient(base_url, time.time(), t.request_timeout_s, time.time() + 60.0, 10)
    buyer = probe_buyer(int(HUMAN if scenario.humans.count else BOT), scenario)
    journey = Journey(
        scenario,
        buyer,
        client,
        np.random.default_rng(0),
        "preflight",
        load_accounts(t).get(buyer.account),
        load_custom(t),
    )
    log = journey.log
    try:
        if "login" in t.steps:
            journey.exchange("login")
        answer, _ = journey.exchange("view")
    except Halt as h:
        raise TargetError(f"{source}: preflight: {h}") from None
    except Ended as e:  # a protocol error
        step, what = log.protocol_errors[-1]
        raise TargetError(f"{source}: target.steps.{step}: protocol error: {what}") from e
    if answer is Answer.AMBIGUOUS:
        req = client.exchanges[-1].request
        why = client.failures[-1] if client.failures else "no answer"
        raise Unreachable(f"{base_url}: cannot reach the target: {why} ({req.method} {req.path})")
    if answer is Answer.SOLD_OUT and not t.expect_sold_out:
        raise TargetError(
            f"{source}: the sale is already closed or sold out (target.steps.view answered "
            f"{client.exchanges[-1].reply.status}): reset it first (target.reset; the "
            "reference service's needs its admin token in FLASHSALE_ADMIN_TOKEN), or set "
            "target.expect_sold_out = true to replay it as it is"
        )
    opens = journey.last.get("opens_in_s")
    opens_in = (
        float(opens) if isinstance(opens, int | float) and not isinstance(opens, bool) else None
    )
    return SaleState(answer, opens_in, tuple(client.exchanges))
