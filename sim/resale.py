"""The extra sale after a review (Poco M3: 29 Jan 2021, 10:00, for the cancelled buyers).

Who comes: every human whose order the review cancelled, each with probability
``resale.returning_human_share`` (a draw per journey from the ``defense.resale``
stream), and every bot account whose order was cancelled (the operators keep
their accounts and scripts). The re-sale was announced for a fixed time, so the
humans arrive around its opening, uniformly from one minute before to one minute
after; bots start as in the main sale. What is offered: the cancelled units, or
``resale.units``, split over the channels like the main stock.

The re-sale runs through the same engine (flashsale.sim.engine) on its own clock;
:func:`append_resale` shifts its times by ``resale.at_s`` and appends its rows
(``sale = resale``, journey ids after the main sale's) to the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flashsale.arrivals import BOT, HUMAN, Schedule
from flashsale.outcome import RESULT, SALE
from flashsale.scenario import Scenario

if TYPE_CHECKING:
    from .engine import _Sale

__all__ = ["ARRIVAL_SPREAD_S", "ResalePlan", "append_resale", "plan_resale"]

ARRIVAL_SPREAD_S = 60.0
"""Returning humans arrive uniformly within this many seconds either side of the opening."""

_CANCELLED = RESULT.index("cancelled")
_TIMES = ("arrived", "started", "admitted", "carted", "finished")

Tables = tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ResalePlan:
    """The re-sale to run: a scenario with its stock and window, and who arrives when."""

    scenario: Scenario
    schedule: Schedule


def plan_resale(
    scenario: Scenario, journeys: dict[str, np.ndarray], rng: np.random.Generator
) -> ResalePlan | None:
    """The re-sale after the main sale's (reviewed) journeys; None if nothing is offered."""
    rs = scenario.defenses.resale
    cancelled = journeys["result"] == _CANCELLED
    units = int(journeys["units"][cancelled].sum()) if rs.units == "cancelled" else int(rs.units)
    returns = rng.random(cancelled.size) < rs.returning_human_share  # one draw per journey
    human = journeys["kind"] == HUMAN
    come = cancelled & ((human & returns) | (journeys["kind"] == BOT))
    if units == 0:
        return None
    rows = np.flatnonzero(come)
    is_human = human[rows]
    bots = scenario.bots
    t = np.where(
        is_human,
        rng.uniform(-ARRIVAL_SPREAD_S, ARRIVAL_SPREAD_S, rows.size),
        bots.start_offset_s + rng.uniform(0.0, bots.start_jitter_s, rows.size),
    )
    order = np.argsort(t, kind="stable")
    rows = rows[order]
    schedule = Schedule(
        t=t[order],
        kind=journeys["kind"][rows],
        account=journeys["account"][rows],
        person=journeys["person"][rows],
        channel=journeys["channel"][rows],
        operator=np.where(
            journeys["kind"][rows] == BOT,
            journeys["person"][rows] - scenario.humans.count,
            -1,
        ),
    )
    sale = scenario.sale.model_copy(update={"units": units, "window_s": rs.window_s})
    return ResalePlan(scenario.model_copy(update={"sale": sale}), schedule)


def append_resale(scenario: Scenario, main: Tables, plan: ResalePlan, resale: _Sale) -> Tables:
    """The main sale's tables with the re-sale's rows appended, on the main sale's clock."""
    at = scenario.defenses.resale.at_s
    journeys, requests, timeline = main
    first_id = len(journeys["journey"])
    rj = dict(resale.journeys)
    rj["journey"] = rj["journey"] + first_id
    rj["sale"] = np.full(len(rj["journey"]), SALE.index("resale"), dtype=np.uint8)
    for col in _TIMES:
        rj[col] = rj[col] + at
    rq = dict(resale.requests)
    rq["journey"] = rq["journey"] + first_id
    rq["intended"] = rq["intended"] + at
    rq["sent"] = rq["sent"] + at
    rt = dict(resale.timeline)
    rt["t"] = rt["t"] + at
    return (
        {k: np.concatenate([v, rj[k]]) for k, v in journeys.items()},
        {k: np.concatenate([v, rq[k]]) for k, v in requests.items()},
        {k: np.concatenate([v, rt[k]]) for k, v in timeline.items()},
    )
