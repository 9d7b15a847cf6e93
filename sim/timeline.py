"""The timeline table, computed after the run from the raw facts the engine logged.

Decisions are taken ahead of simulated time (flashsale.sim.service), so the state
at an interval's end is not known when the simulation passes it; it is known
once the run is over. Everything here is vectorised: bincounts and searchsorted
over the logs, no sampling process in the simulation.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from flashsale.arrivals import BOT, HUMAN, Schedule

from .service import CheckoutService
from .stock import Stock

__all__ = ["build_timeline"]


def _f(a: array[Any], dtype: str = "float64") -> np.ndarray:
    """A typed array's contents as numpy (no copy)."""
    return np.frombuffer(a, dtype=dtype)


def build_timeline(
    interval_s: float,
    schedule: Schedule,
    stock: Stock,
    pools: Sequence[CheckoutService],
    requests: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One row per ``interval_s`` from the first arrival to the last thing that happened;
    ``in_flight`` and ``queue`` count every worker pool's."""
    responses = requests["sent"] + requests["latency"]
    log_t = _f(stock.log_t)
    ends = [x.max() for x in (schedule.t, responses, log_t) if x.size]
    if not ends:
        return {name: np.zeros(0, dtype=np.int64) for name in _INT_COLUMNS} | {"t": np.zeros(0)}
    first = min(float(x.min()) for x in (schedule.t, responses, log_t) if x.size)
    k0 = math.floor(first / interval_s)
    n = math.floor(float(max(ends)) / interval_s) - k0 + 1
    t = (k0 + np.arange(n)) * interval_s
    t_end = t + interval_s

    def bins(x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(x / interval_s).astype(np.int64) - k0, 0, n - 1)

    def per_bin(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(bins(x), weights=weights, minlength=n).round().astype(np.int64)

    def at_end(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """How many [start, stop) spans contain each interval's end."""
        return (
            np.searchsorted(np.sort(start), t_end, side="right")
            - np.searchsorted(np.sort(stop), t_end, side="right")
        ).astype(np.int64)

    sold = _f(stock.log_sold, "int64").astype(np.float64)
    kind = _f(stock.log_kind, "uint8")
    status = requests["status"]
    errors = (status >= 500) | (status == 0)
    return {
        "t": t,
        "stock_left": stock.units
        + np.cumsum(per_bin(log_t, _f(stock.log_avail, "int64").astype(np.float64))),
        "reserved": np.cumsum(per_bin(log_t, _f(stock.log_reserved, "int64").astype(np.float64))),
        "sold_human": per_bin(log_t, sold * (kind == HUMAN)),
        "sold_bot": per_bin(log_t, sold * (kind == BOT)),
        "arrivals": per_bin(schedule.t),
        "in_flight": at_end(_pooled(pools, "started"), _pooled(pools, "released")),
        "queue": at_end(_pooled(pools, "arrived"), _pooled(pools, "left_queue")),
        "errors": per_bin(responses[errors]),
    }


def _pooled(pools: Sequence[CheckoutService], log: str) -> np.ndarray:
    """One raw log (``started``, ``released``, ...) of every pool, end to end."""
    return np.concatenate([_f(getattr(q, log)) for q in pools])


_INT_COLUMNS = (
    "stock_left",
    "reserved",
    "sold_human",
    "sold_bot",
    "arrivals",
    "in_flight",
    "queue",
    "errors",
)
