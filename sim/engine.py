"""One replication of a scenario: a Scenario and a replication index in, an Outcome out.

Composition: the shared arrival schedule (flashsale.arrivals), one SimPy process
per journey (flashsale.sim.journey) driven by human or bot behaviour, a shop
answering requests (flashsale.sim.shop) over the FIFO worker pools and the stock,
and the enabled defenses. Every random quantity comes from its own named stream
(flashsale.streams), so switching a defense on changes nothing else.

A defense the engine does not model is refused (:class:`UnsupportedScenario`),
never silently ignored.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import simpy
from simpy.events import Timeout

from flashsale.arrivals import BOT, HUMAN, Schedule, build_schedule
from flashsale.outcome import Outcome
from flashsale.scenario import Scenario
from flashsale.streams import Streams

from .account_limit import AccountLimit
from .bots import bot_behaviour
from .defense import Defense
from .humans import human_behaviour
from .journey import Behaviour, Journey
from .lottery import LotteryDriver
from .rate_limit import RateLimit
from .resale import append_resale, plan_resale
from .review import review_journeys
from .service import CheckoutService
from .shop import Shop
from .timeline import build_timeline
from .waiting_room import RoomDriver

KIND_HUMAN, KIND_BOT = int(HUMAN), int(BOT)

__all__ = ["MODELLED_DEFENSES", "SimResult", "UnsupportedScenario", "check_supported", "simulate"]

MODELLED_DEFENSES = (
    "account_limit",
    "rate_limit",
    "review",
    "resale",
    "captcha",
    "waiting_room",
    "lottery",
)
"""Defenses this engine models; a scenario enabling any other is refused."""


class UnsupportedScenario(ValueError):
    """The scenario asks for something the simulator does not model; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def check_supported(scenario: Scenario) -> None:
    """Raise UnsupportedScenario for the first enabled defense the engine does not model."""
    for name in type(scenario.defenses).model_fields:
        if name not in MODELLED_DEFENSES and getattr(scenario.defenses, name).enabled:
            raise UnsupportedScenario(
                f"defenses.{name}.enabled",
                f"the simulator does not model this defense yet (it models: "
                f"{', '.join(MODELLED_DEFENSES)}); disable it to simulate",
            )


@dataclass(frozen=True)
class SimResult:
    """The Outcome, plus the raw queue logs of the main sale (tests compare them with
    queueing theory): ``service`` is the default pool's, ``pools`` every pool's by name
    (``"default"`` and each ``[service.pools.NAME]``)."""

    outcome: Outcome
    service: CheckoutService
    events: int  # SimPy events processed
    pools: dict[str, CheckoutService]


def _defenses(scenario: Scenario) -> list[Defense]:
    d = scenario.defenses
    out: list[Defense] = []
    if d.rate_limit.enabled:
        out.append(RateLimit(d.rate_limit))
    if d.account_limit.enabled:
        out.append(AccountLimit(d.account_limit))
    return out


@dataclass(frozen=True)
class _Sale:
    """One sale's tables (times relative to its own opening) and its queue log."""

    journeys: dict[str, np.ndarray]
    requests: dict[str, np.ndarray]
    timeline: dict[str, np.ndarray]
    pools: dict[str, CheckoutService]
    events: int


def _run_sale(scenario: Scenario, schedule: Schedule, streams: Streams) -> _Sale:
    """Simulate one sale of ``scenario.sale.units`` over ``schedule``, to the last event."""
    start = float(schedule.t[0]) if len(schedule) else 0.0
    env = simpy.Environment(initial_time=min(start, 0.0))
    shop = Shop(
        scenario, env, schedule, streams["service"], streams["payment"], _defenses(scenario)
    )
    captcha = streams["defense.captcha"] if scenario.defenses.captcha.enabled else None
    lottery = scenario.defenses.lottery.enabled
    humans = human_behaviour(scenario.humans, streams["humans"], captcha, lottery)
    bots = bot_behaviour(
        scenario.bots,
        streams["bots"],
        scenario.humans.count + scenario.bots.accounts,
        captcha,
        lottery,
    )
    if scenario.defenses.lottery.enabled:
        shop.lottery = LotteryDriver(env, scenario, streams["defense.lottery"])
    room = None
    if scenario.defenses.waiting_room.enabled:
        room = RoomDriver(env, scenario.defenses.waiting_room, streams["defense.waiting_room"])
        shop.on_finish = room.leave
    _Arrivals(env, shop, schedule, humans, bots, room).start()
    events = 0
    # Hundreds of thousands of live journeys and events, and no reference cycles among
    # them: the cyclic collector would rescan them all, again and again, for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        while True:
            env.step()
            events += 1
    except simpy.core.EmptySchedule:
        pass
    finally:
        if collecting:
            gc.enable()
    shop.stock.settle()
    journeys = shop.recorder.journeys()
    shop.stock.audit(int(journeys["units"].sum(dtype=np.int64)))
    requests = shop.recorder.requests_table()
    timeline = build_timeline(
        scenario.outputs.timeline_interval_s,
        schedule,
        shop.stock,
        list(shop.pools.values()),
        requests,
    )
    return _Sale(journeys, requests, timeline, shop.pools, events)


def simulate(
    scenario: Scenario,
    replication: int = 0,
    seed: int | None = None,
    schedule: Schedule | None = None,
) -> SimResult:
    """Run one replication. ``seed`` defaults to the scenario's; ``schedule`` replaces the
    generated arrivals (tests use fixed arrival times)."""
    check_supported(scenario)
    streams = Streams.for_replication(scenario.seed if seed is None else seed, replication)
    arrivals = build_schedule(scenario, streams["arrivals"])
    main = _run_sale(scenario, arrivals if schedule is None else schedule, streams)
    journeys, requests, timeline = main.journeys, main.requests, main.timeline
    events = main.events
    d = scenario.defenses
    if d.review.enabled:
        journeys = review_journeys(journeys, d.review, streams["defense.review"])
    if d.resale.enabled:
        plan = plan_resale(scenario, journeys, streams["defense.resale"])
        if plan is not None:
            resale = _run_sale(plan.scenario, plan.schedule, streams)
            journeys, requests, timeline = append_resale(
                scenario, (journeys, requests, timeline), plan, resale
            )
            events += resale.events
    outcome = Outcome.from_columns(
        journeys, requests, timeline, tuple(c.name for c in scenario.sale.channels)
    )
    return SimResult(outcome, main.pools["default"], events, main.pools)


class _Arrivals:
    """Starts each journey at its arrival time: one SimPy timeout per distinct arrival time,
    each scheduling the next, so the event queue never holds the whole schedule."""

    def __init__(
        self,
        env: simpy.Environment,
        shop: Shop,
        s: Schedule,
        humans: Behaviour,
        bots: Behaviour,
        room: RoomDriver | None,
    ) -> None:
        self._env, self._shop, self._room = env, shop, room
        self._humans, self._bots = humans, bots
        self._t = s.t.tolist()
        self._human = (s.kind == HUMAN).tolist()
        self._rows = list(
            zip(s.account.tolist(), s.person.tolist(), s.channel.tolist(), strict=True)
        )
        self._i = 0

    def start(self) -> None:
        if self._t:
            Timeout(self._env, self._t[0] - self._env.now).callbacks.append(self._arrive)

    def _arrive(self, _woke: object = None) -> None:
        now, t, i = self._env.now, self._t, self._i
        while i < len(t) and t[i] <= now:
            account, person, channel = self._rows[i]
            human = self._human[i]
            j = Journey(
                i,
                account,
                person,
                KIND_HUMAN if human else KIND_BOT,
                channel,
                self._shop,
                self._humans if human else self._bots,
            )
            if self._room is None:
                j.act()
            else:
                self._room.join(j)
            i += 1
        self._i = i
        if i < len(t):
            Timeout(self._env, t[i] - now).callbacks.append(self._arrive)
