"""Raw facts of a replay, one row per journey and per request, and their merge.

Locust's own statistics bucket response times (locust/stats.py rounds them to
save bandwidth between workers and master); percentiles from those buckets are
approximate. Metrics here are computed from raw rows instead: every request event
becomes one row of the Outcome ``requests`` table, every finished journey one row
of ``journeys``. Each Locust process records its own share; the master merges
the shares with :func:`merge_parts`, which refuses a journey recorded twice, and
a journey missing unless the merge is explicitly partial (a replay stopped before
every journey ended: the journeys never started have no row).

The parts of a latency come from the target, when it says: the standard
``Server-Timing`` response header (W3C Server Timing), whose ``queue``, ``service``
and ``gateway`` metrics (``dur`` in milliseconds; the reference service sends
them) become the ``queue_wait``, ``service_time`` and ``gateway_time`` columns, in
seconds. A target that does not send them leaves the columns NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from flashsale.outcome import JOURNEYS, REQUESTS, RESULT, STEP, TableBuilder, TableSchema
from flashsale.replay.journey import Buyer, JourneyLog

__all__ = [
    "LATENCY_PARTS",
    "MergeError",
    "Recorder",
    "decode_part",
    "encode_part",
    "latency_parts",
    "lateness",
    "merge_parts",
    "server_timing",
]

LATENCY_PARTS = {"queue": "queue_wait", "service": "service_time", "gateway": "gateway_time"}
"""``Server-Timing`` metric -> requests column it fills (ms on the wire, s in the table)."""

_MAX_TIMING_CHARS = 4096  # a header longer than this is read no further
_DUR = re.compile(r'^\s*dur\s*=\s*"?(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"?\s*$', re.IGNORECASE)

_CHUNK_ROWS = 100_000


class MergeError(ValueError):
    """Shares of a replay that do not add up to one Outcome."""


class Recorder:
    """Accumulates one process's journeys and requests in preallocated numpy columns."""

    def __init__(self, t0_epoch: float) -> None:
        self.t0 = t0_epoch
        self.journeys = TableBuilder(JOURNEYS, 1024)
        self.requests = TableBuilder(REQUESTS, 8192)

    def request(
        self,
        *,
        journey: int,
        account: int,
        step: str,
        intended: float,
        sent_epoch: float,
        latency_s: float,
        status: int,
        server_timing: str = "",
    ) -> None:
        """One request as Locust's ``request`` event saw it (epoch send time, raw latency)
        and the ``Server-Timing`` header of its answer ("" if none)."""
        queue_wait, service_time, gateway_time = latency_parts(server_timing)
        self.requests.append(
            journey=journey,
            account=account,
            step=STEP.index(step),
            intended=intended,
            sent=sent_epoch - self.t0,
            latency=latency_s,
            status=status,
            queue_wait=queue_wait,
            service_time=service_time,
            gateway_time=gateway_time,
        )

    def journey(self, who: Buyer, log: JourneyLog) -> None:
        self.journeys.append(
            journey=who.journey,
            kind=who.kind,
            account=who.account,
            person=who.person,
            channel=who.channel,
            sale=0,
            arrived=who.arrived,
            started=log.started,
            admitted=log.admitted,
            carted=log.carted,
            finished=log.finished,
            result=RESULT.index(log.result),
            units=log.units if log.result == "purchased" else 0,
            requests=log.requests,
        )


def server_timing(header: str) -> dict[str, float]:
    """Metric name (lower case) -> ``dur`` in milliseconds, from a ``Server-Timing``
    header (W3C Server Timing: ``queue;dur=12.3, service;dur=4.5;desc="db"``; several
    header lines arrive joined by commas). A metric without a ``dur``, or whose ``dur``
    is not a finite decimal number >= 0, reads NaN; other parameters are ignored; the
    first of a repeated metric counts. Never raises: a header that cannot be read gives what
    could be read (at most the first 4,096 characters are read)."""
    out: dict[str, float] = {}
    for entry in header[:_MAX_TIMING_CHARS].split(","):
        name, *params = entry.split(";")
        name = name.strip().lower()
        if not name or name in out:
            continue
        durs = [m.group(1) for m in map(_DUR.match, params) if m]
        dur = float(durs[0]) if durs else math.nan
        out[name] = dur if dur < math.inf else math.nan
    return out


def latency_parts(header: str) -> tuple[float, float, float]:
    """``(queue_wait, service_time, gateway_time)`` in seconds from a ``Server-Timing``
    header (:data:`LATENCY_PARTS`); NaN for each part it does not report."""
    found = server_timing(header) if header else {}
    q, s, g = (found.get(metric, math.nan) / 1000.0 for metric in LATENCY_PARTS)
    return q, s, g


def _encode(cols: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {name: [str(arr.dtype), arr.tobytes()] for name, arr in cols.items()}


def _decode(schema: TableSchema, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if set(data) != set(schema.names):
        raise MergeError(f"{schema.name}: share has columns {sorted(data)}")
    return {
        c.name: np.frombuffer(data[c.name][1], dtype=np.dtype(data[c.name][0])).astype(c.dtype)
        for c in schema.columns
    }


def encode_part(recorder: Recorder) -> Iterator[dict[str, Any]]:
    """A process's share as message payloads (plain bytes and strings, msgpack-safe).

    Large shares go in chunks of at most 100,000 rows per table, so no single
    message between a worker and the master grows without bound.
    """
    tables = {"journeys": recorder.journeys.columns(), "requests": recorder.requests.columns()}
    for name, cols in tables.items():
        n = len(next(iter(cols.values())))
        for lo in range(0, max(n, 1), _CHUNK_ROWS):
            yield {
                "table": name,
                "columns": _encode({k: v[lo : lo + _CHUNK_ROWS] for k, v in cols.items()}),
            }


def decode_part(payload: Mapping[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    """Inverse of :func:`encode_part` for one payload: (table name, columns)."""
    name = payload.get("table")
    schema = {"journeys": JOURNEYS, "requests": REQUESTS}.get(str(name))
    if schema is None:
        raise MergeError(f"unknown table {name!r} in a share")
    return str(name), _decode(schema, payload["columns"])


def _concat(schema: TableSchema, chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {c.name: np.empty(0, dtype=c.dtype) for c in schema.columns}
    return {c.name: np.concatenate([ch[c.name] for ch in chunks]) for c in schema.columns}


def merge_parts(
    chunks: Iterable[tuple[str, dict[str, np.ndarray]]],
    expected_journeys: int,
    *,
    partial: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One journeys table and one requests table from every process's chunks.

    Journeys are sorted by id and requests by (send time, journey). Nothing may be
    counted twice and nothing lost: a journey id seen twice, an id outside the
    ``expected_journeys`` scheduled (0 to ``expected_journeys - 1``), a count
    different from ``expected_journeys``, or a request of an unknown journey is an
    error. With ``partial`` (asked for explicitly: a replay stopped before every
    journey ended), fewer journeys than scheduled are accepted; the rest still holds.
    """
    by_table: dict[str, list[dict[str, np.ndarray]]] = {"journeys": [], "requests": []}
    for name, cols in chunks:
        by_table[name].append(cols)
    jr = _concat(JOURNEYS, by_table["journeys"])
    rq = _concat(REQUESTS, by_table["requests"])
    ids = jr["journey"]
    order = np.argsort(ids, kind="stable")
    jr = {k: v[order] for k, v in jr.items()}
    ids = jr["journey"]
    if ids.size and np.any(ids[1:] == ids[:-1]):
        dup = ids[1:][ids[1:] == ids[:-1]]
        raise MergeError(f"journeys recorded twice: {dup[:5].tolist()}")
    stray = ids[(ids < 0) | (ids >= expected_journeys)]
    if stray.size:
        raise MergeError(
            f"journeys {stray[:5].tolist()} recorded, {expected_journeys} scheduled "
            f"(ids 0 to {expected_journeys - 1})"
        )
    if ids.size != expected_journeys and not partial:
        raise MergeError(f"{ids.size} journeys recorded, {expected_journeys} scheduled")
    known = np.isin(rq["journey"], ids)
    if not known.all():
        raise MergeError(f"{int((~known).sum())} requests of journeys nobody recorded")
    rorder = np.lexsort((rq["journey"], rq["sent"]))
    return jr, {k: v[rorder] for k, v in rq.items()}


def lateness(journeys: Mapping[str, np.ndarray]) -> dict[str, float]:
    """How late the replay started its journeys (like k6's dropped_iterations)."""
    late = journeys["started"] - journeys["arrived"]
    started = late[~np.isnan(late)]
    return {
        "journeys": int(late.size),
        "not_started": int(np.isnan(late).sum()),
        "late_over_1s": int((started > 1.0).sum()),
        "late_over_100ms": int((started > 0.1).sum()),
        "max_late_s": float(started.max()) if started.size else math.nan,
        "p99_late_s": float(np.percentile(started, 99)) if started.size else math.nan,
    }
