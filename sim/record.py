"""The engine's log: request rows appended to typed arrays, journey rows filled in place.

A full Poco M3 replication sends over a million requests; ``array.array`` columns
append a number in tens of nanoseconds and store it in 8 bytes (a list of dicts
costs about ten times both). Journeys are known in advance, so their columns are
preallocated numpy arrays indexed by journey id.
"""

from __future__ import annotations

from array import array

import numpy as np

from flashsale.arrivals import Schedule
from flashsale.outcome import SALE
from flashsale.policy import journey_result

__all__ = ["Recorder"]


class Recorder:
    """Requests and journeys of one replication, as Outcome columns."""

    def __init__(self, schedule: Schedule) -> None:
        n = len(schedule)
        self._schedule = schedule
        # request columns: the shop appends to them directly (hot path); a request's
        # account is its journey's, looked up after the run
        self.r_journey = array("q")
        self.r_step = array("B")
        self.r_sent = array("d")
        self.r_latency = array("d")
        self.r_status = array("h")
        # the latency's parts (NaN: not part of this request's path)
        self.r_queue_wait = array("d")
        self.r_service_time = array("d")
        self.r_gateway_time = array("d")
        # journey rows, by id: (result, finished, carted, admitted, units, requests)
        self._rows: list[tuple[int, float, float, float, int, int] | None] = [None] * n

    def finish(
        self,
        journey: int,
        result: int,
        at: float,
        *,
        carted: float,
        units: int,
        requests: int,
        admitted: float = np.nan,
    ) -> None:
        """Close a journey. A journey that carted but did not buy ends ``cart_failed``."""
        if self._rows[journey] is not None:
            raise RuntimeError(f"journey {journey} finished twice")
        result = journey_result(result, carted == carted)  # carted is not NaN
        self._rows[journey] = (result, at, carted, admitted, units, requests)

    def journeys(self) -> dict[str, np.ndarray]:
        """The journeys table; raises if a journey never finished (every one must end once)."""
        unfinished = self._rows.count(None)
        if unfinished:
            raise RuntimeError(f"{unfinished} journeys never finished")
        s = self._schedule
        # one float64 matrix, converted in C; the int fields are small, hence exact
        rows = np.array(self._rows, dtype=np.float64).reshape(len(self._rows), 6)
        result, finished, carted, admitted, units, requests = (
            rows[:, i].astype(t)
            for i, t in enumerate(("uint8", "float64", "float64", "float64", "int32", "int32"))
        )
        return {
            "journey": np.arange(len(s), dtype=np.int64),
            "kind": s.kind,
            "account": s.account,
            "person": s.person,
            "channel": s.channel,
            "sale": np.full(len(s), SALE.index("main"), dtype=np.uint8),
            "arrived": s.t,
            "started": s.t,
            "admitted": admitted,
            "carted": carted,
            "finished": finished,
            "result": result,
            "units": units,
            "requests": requests,
        }

    def requests_table(self) -> dict[str, np.ndarray]:
        sent = np.frombuffer(self.r_sent, dtype=np.float64).copy()
        journey = np.frombuffer(self.r_journey, dtype=np.int64).copy()
        return {
            "journey": journey,
            "account": self._schedule.account[journey].astype(np.int64),
            "step": np.frombuffer(self.r_step, dtype=np.uint8).copy(),
            "intended": sent,
            "sent": sent.copy(),
            "latency": np.frombuffer(self.r_latency, dtype=np.float64).copy(),
            "status": np.frombuffer(self.r_status, dtype=np.int16).copy(),
            "queue_wait": np.frombuffer(self.r_queue_wait, dtype=np.float64).copy(),
            "service_time": np.frombuffer(self.r_service_time, dtype=np.float64).copy(),
            "gateway_time": np.frombuffer(self.r_gateway_time, dtype=np.float64).copy(),
        }
