"""The timeline table of a replay, built from what the client saw.

The simulation knows its stock and its queue at every instant; a replay only
knows its own requests and journeys. So here ``stock_left`` and ``reserved`` are
the client-side view: each answered cart (2xx) holds the journey's units until
the journey's next definite payment answer (paid: sold; declined, timed out or
hold expired: released, as the service's rules in flashsale.checkout say) or
until the scenario's ``cart_hold_s`` expires, whichever comes first; so sold +
reserved + left is the sale's units at every row. ``in_flight`` counts requests sent
and not yet answered, and ``queue`` is 0: a client cannot see the service's
queue (its effect is in the latencies). The audit of the service, in the
manifest, is the server-side truth the metrics cross-check.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flashsale.arrivals import BOT, HUMAN
from flashsale.outcome import RESULT, STEP
from flashsale.scenario import Scenario

__all__ = ["build_timeline"]

_PURCHASED = RESULT.index("purchased")
_CART, _PAY = STEP.index("cart"), STEP.index("pay")
_RELEASES = (402, 404, 410, 504)
"""Payment answers after which the hold is gone (declined, unknown, expired, timed out)."""


def _count_before(
    times: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Sum of ``weights`` (or count) of events with time < each edge."""
    t = times[~np.isnan(times)]
    w = weights[~np.isnan(times)] if weights is not None else np.ones(t.size, dtype=np.int64)
    order = np.argsort(t)
    cum = np.concatenate([[0], np.cumsum(w[order])])
    return cum[np.searchsorted(t[order], edges, side="left")]


def _holds(
    scenario: Scenario, journeys: Mapping[str, np.ndarray], requests: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every hold the client saw: (start, end, units), one per answered cart. A hold's
    units are what the journey bought, else its order, cut to the account limit when
    one is on (the table does not record what each cart asked for)."""
    order = np.lexsort((requests["sent"], requests["journey"]))
    jr, step = requests["journey"][order], requests["step"][order]
    status = requests["status"][order]
    answered = (requests["sent"] + requests["latency"])[order]
    row_of = np.full(int(journeys["journey"].max(initial=-1)) + 1, -1, dtype=np.int64)
    row_of[journeys["journey"]] = np.arange(journeys["journey"].size)
    per_order = np.where(
        journeys["kind"] == HUMAN, scenario.humans.units_per_order, scenario.bots.units_per_order
    ).astype(np.int64)
    limit = scenario.defenses.account_limit
    if limit.enabled:  # a cart refused by the limit asks for what it still allows
        per_order = np.minimum(per_order, limit.max_units)
    size_of = np.where(journeys["result"] == _PURCHASED, journeys["units"], per_order)
    hold_s = scenario.service.cart_hold_s
    starts: list[float] = []
    stops: list[float] = []
    sizes: list[int] = []
    open_at, open_j = np.nan, -1
    for j, s, code, at in zip(
        jr.tolist(), step.tolist(), status.tolist(), answered.tolist(), strict=True
    ):
        if j != open_j and open_j >= 0:  # the journey's last hold ran to its expiry
            stops.append(open_at + hold_s)
            open_j = -1
        if s == _CART and 200 <= code < 300:
            if open_j >= 0:  # a new hold before the last one ended: that one expired
                stops.append(min(at, open_at + hold_s))
            starts.append(at)
            sizes.append(int(size_of[row_of[j]]))
            open_at, open_j = at, j
        elif s == _PAY and open_j == j and (200 <= code < 300 or code in _RELEASES):
            stops.append(min(at, open_at + hold_s))
            open_j = -1
    if open_j >= 0:
        stops.append(open_at + hold_s)
    return np.array(starts), np.array(stops), np.array(sizes, dtype=np.int64)


def build_timeline(
    scenario: Scenario, journeys: Mapping[str, np.ndarray], requests: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One row per ``outputs.timeline_interval_s`` from the first arrival to the last event."""
    dt = scenario.outputs.timeline_interval_s
    times = [journeys["arrived"], journeys["finished"], requests["sent"] + requests["latency"]]
    finite = np.concatenate([x[~np.isnan(x)] for x in times] + [np.zeros(1)])
    start = np.floor(min(finite.min(), 0.0) / dt) * dt
    n = int(np.ceil((finite.max() - start) / dt)) + 1
    t = start + dt * np.arange(n)
    ends = t + dt

    units = journeys["units"].astype(np.int64)
    bought = journeys["result"] == _PURCHASED
    start, end, size = _holds(scenario, journeys, requests)
    held = _count_before(start, ends, size) - _count_before(end, ends, size)

    def sold(kind: np.uint8) -> np.ndarray:
        mask = bought & (journeys["kind"] == kind)
        fin, u = journeys["finished"][mask], units[mask]
        return np.diff(_count_before(fin, np.concatenate([t[:1], ends]), u))

    sold_h, sold_b = sold(HUMAN), sold(BOT)
    sold_total = np.cumsum(sold_h + sold_b)
    done = requests["sent"] + requests["latency"]
    status = requests["status"]
    err = (status >= 500) | (status == 0)
    return {
        "t": t.astype(np.float64),
        "stock_left": np.maximum(scenario.sale.units - sold_total - held, 0).astype(np.int64),
        "reserved": held.astype(np.int64),
        "sold_human": sold_h.astype(np.int64),
        "sold_bot": sold_b.astype(np.int64),
        "arrivals": np.diff(
            _count_before(journeys["arrived"], np.concatenate([t[:1], ends]))
        ).astype(np.int64),
        "in_flight": (_count_before(requests["sent"], ends) - _count_before(done, ends)).astype(
            np.int64
        ),
        "queue": np.zeros(n, dtype=np.int64),
        "errors": np.diff(_count_before(done[err], np.concatenate([t[:1], ends]))).astype(np.int64),
    }
