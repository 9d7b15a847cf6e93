"""The replay's journeys against the real reference service, in process, on a stepped clock.

No fake: the app is flashsale.service's own (its store on SQLite or PostgreSQL),
reached through Starlette's TestClient; only the clock is the test's. Each
journey runs in a thread and exactly one runs at a time: the one with the
earliest wake-up goes next, with the clock jumped there. A sale of minutes then
replays in milliseconds, deterministically.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.testclient import TestClient

from flashsale.policy import Answer
from flashsale.protocol import Reply, Target, match
from flashsale.replay.journey import Buyer, Journey, Judge, Request, parse_cookies
from flashsale.scenario import Scenario
from flashsale.service.app import create_app
from flashsale.service.backends import open_store
from flashsale.service.runtime import Runtime

T0 = 1_700_000_000.0
TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    """Wall-clock stand-in: epoch seconds the test sets."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(db: str, sc: Scenario, clock: Clock, opens_in_s: float = 0.0) -> TestClient:
    """The service with its sale opening at ``T0 + opens_in_s``."""
    clock.now = T0
    rt = Runtime(
        open_store(db, pool_size=4), sc, TOKEN, fresh=True, opens_in_s=opens_in_s, clock=clock
    )
    return TestClient(create_app(rt))


def audit(c: TestClient) -> dict[str, Any]:
    """The service's books, checked to balance and never oversold."""
    a: dict[str, Any] = c.get("/admin/audit", headers=ADMIN).json()
    assert a["units_sold"] + a["units_reserved"] + a["stock_left"] == a["units"]
    assert a["oversold_units"] == 0
    return a


class Conductor:
    """Runs journeys one at a time in sale-time order on the test's clock."""

    def __init__(self, c: TestClient, clock: Clock, opens_at: float, journeys: int) -> None:
        self.c, self.clock, self.opens_at = c, clock, opens_at
        self.cv = threading.Condition()
        self.asleep: dict[int, float] = {}  # journey -> sale time it waits for
        self.live = journeys
        self.turn: int | None = None

    def _next(self) -> None:
        if self.turn is None and self.asleep and len(self.asleep) == self.live:
            self.turn = min(self.asleep, key=lambda j: (self.asleep[j], j))
            t = self.asleep.pop(self.turn)
            self.clock.now = max(self.clock.now, self.opens_at + t)
            self.cv.notify_all()

    def wait_until(self, j: int, t: float) -> None:
        with self.cv:
            self.asleep[j], self.turn = t, None
            self._next()
            self.cv.wait_for(lambda: self.turn == j, timeout=60)
            assert self.turn == j, "journeys deadlocked"

    def done(self) -> None:
        with self.cv:
            self.live, self.turn = self.live - 1, None
            self._next()

    def run(self, journeys: list[Journey]) -> list[str]:
        out = [""] * len(journeys)

        def play(k: int) -> None:
            try:
                out[k] = journeys[k].run().result
            finally:
                self.done()

        threads = [threading.Thread(target=play, args=(k,)) for k in range(len(journeys))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        return out


@dataclass
class Sent:
    """One exchange as a journey saw it."""

    journey: int
    step: str
    method: str
    path: str
    body: dict[str, Any] | None
    reply: Reply
    intended: float = math.nan
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StepClient:
    """flashsale.replay.journey.Client for journey ``j`` of a Conductor; every exchange
    goes into ``log``. ``lose`` names requests (by this journey's count, from 0) whose
    answer is lost after the service handled them: the journey sees no answer."""

    conductor: Conductor
    j: int
    log: list[Sent] = field(default_factory=list)
    lose: frozenset[int] = frozenset()

    def now(self) -> float:
        return self.conductor.clock.now - self.conductor.opens_at

    def wait_until(self, t: float) -> None:
        self.conductor.wait_until(self.j, t)

    def call(self, step: str, request: Request, intended: float, judge: Judge) -> Reply:
        r = self.conductor.c.request(
            request.method,
            request.path,
            json=request.json,
            data=request.form,
            headers=request.headers,
        )
        reply = Reply(
            r.status_code,
            r.json() if r.content else None,
            r.text,
            {k.lower(): v for k, v in r.headers.items()},
            parse_cookies(r.headers.get_list("set-cookie")),
        )
        if len([s for s in self.log if s.journey == self.j]) in self.lose:
            reply = Reply(0)
        judge(reply)
        self.log.append(
            Sent(
                self.j,
                step,
                request.method,
                request.path,
                request.json,
                reply,
                intended,
                request.headers,
            )
        )
        return reply


REFERENCE = Target()
"""The reference service's protocol (the default ``[target]``)."""


def meaning(step: str, reply: Reply) -> Answer | None:
    """What the reference protocol says ``reply`` to protocol ``step`` means (None: a
    protocol error)."""
    found = match(REFERENCE.rules(step), reply)
    return None if found is None else found[0]


def play(
    db: str,
    sc: Scenario,
    buyers: list[tuple[int, float]],
    opens_in_s: float = 5.0,
    lose: dict[int, frozenset[int]] | None = None,
) -> tuple[list[str], list[Sent], dict[str, Any]]:
    """Replay journeys ``buyers`` = [(kind, arrival sale time)] (account = journey id)
    against the service; returns (results, every exchange in order, the books)."""
    clock = Clock()
    log: list[Sent] = []
    with service(db, sc, clock, opens_in_s=opens_in_s) as c:
        conductor = Conductor(c, clock, T0 + opens_in_s, len(buyers))
        journeys = [
            Journey(
                sc,
                Buyer(journey=j, kind=int(kind), account=j, person=j, channel=0, arrived=at),
                StepClient(conductor, j, log, (lose or {}).get(j, frozenset())),
                np.random.default_rng(j),
                "replay",
            )
            for j, (kind, at) in enumerate(buyers)
        ]
        results = conductor.run(journeys)
        books = audit(c)
    return results, log, books
