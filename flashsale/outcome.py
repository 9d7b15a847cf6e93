"""The Outcome contract: what happened in one replication, as three columnar tables.

Both engines write exactly these tables, so metrics, charts and reports never know
which engine ran:

- **journeys**: one row per buyer journey (a human, or one bot account).
- **requests**: one row per request a journey made.
- **timeline**: one row per ``outputs.timeline_interval_s`` interval.

Times are seconds relative to the opening (t = 0 at ``sale.opens_at``); NaN means
"never happened". Enum columns hold small integer codes in memory; on disk they
are Parquet dictionary columns, so the labels travel with the data.

Storage is Parquet (pyarrow): typed columns (CSV would lose dtypes and NaN vs
empty), compressed (a full Poco M3 run has millions of request rows), and readable
by pandas, polars, DuckDB and spreadsheets' import tools alike.

Schema versions (:data:`OUTCOME_SCHEMA`, in every table's metadata):

- ``flashsale.outcome/1``: the tables without the latency parts.
- ``flashsale.outcome/2``: ``requests`` gains ``queue_wait``, ``service_time`` and
  ``gateway_time`` (seconds; NaN = not reported): the parts of a latency. The
  simulation fills them; a replay records what the target reports in its
  ``Server-Timing`` header (the reference service sends ``queue``, ``service`` and
  ``gateway``), NaN without one. A served request's latency is its queue wait +
  service time + gateway time (exactly in the simulation; at least that in a
  replay, which adds the network and the server's own overhead).

A version 1 table still loads: each column added since (:attr:`Column.since`) reads
back all NaN. Columns added since version 1 may also be left out of
:meth:`Outcome.from_columns` (an engine that does not report them): they are NaN.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "JOURNEYS",
    "KIND",
    "OUTCOME_SCHEMA",
    "READABLE_SCHEMAS",
    "REQUESTS",
    "RESULT",
    "SALE",
    "STEP",
    "TIMELINE",
    "Column",
    "Outcome",
    "OutcomeError",
    "TableBuilder",
    "TableSchema",
    "load_outcome",
    "save_outcome",
]

OUTCOME_SCHEMA = "flashsale.outcome/2"
"""Written into every table's metadata; readers take this version and the older ones
(:data:`READABLE_SCHEMAS`) and refuse any other."""

READABLE_SCHEMAS = ("flashsale.outcome/1", OUTCOME_SCHEMA)
"""Versions :func:`load_outcome` reads, oldest first: version *n* is ``[n - 1]``."""

KIND = ("human", "bot")
"""journeys.kind codes."""

RESULT = (
    "purchased",  # paid, and kept the units
    "sold_out",  # no stock left when it tried
    "cart_failed",  # carted, then could not pay (the yellow cart)
    "timed_out",  # a request waited longer than the client would
    "rejected",  # turned away by a defense (limit, rate limit, CAPTCHA, lottery loss, full queue)
    "error",  # the service failed and retries ran out
    "cancelled",  # bought, then cancelled by the post-hoc review
    "abandoned",  # gave up waiting (patience)
)
"""journeys.result codes: every journey ends in exactly one."""

SALE = ("main", "resale")
"""journeys.sale codes: which sale the journey belongs to."""

STEP = ("view", "captcha", "waiting_room", "lottery", "cart", "pay", "order", "login")
"""requests.step codes. New labels are only ever appended: a table written before one
was added (no ``login``) reads back with the same codes."""


@dataclass(frozen=True)
class Column:
    """One column: its name, numpy dtype, enum labels (for coded columns), meaning and
    the schema version that added it (a float column added after version 1 reads NaN
    from an older table)."""

    name: str
    dtype: str
    doc: str
    labels: tuple[str, ...] | None = None
    since: int = 1


@dataclass(frozen=True)
class TableSchema:
    """A table's columns, in order."""

    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


JOURNEYS = TableSchema(
    "journeys",
    (
        Column("journey", "int64", "journey id, unique within the replication"),
        Column("kind", "uint8", "human or bot", KIND),
        Column("account", "int64", "account id (a human has one; an operator many)"),
        Column("person", "int64", "person id: a human, or a bot operator (fairness unit)"),
        Column("channel", "uint8", "index into scenario sale.channels"),
        Column("sale", "uint8", "main sale or the re-sale", SALE),
        Column("arrived", "float64", "scheduled arrival time, s"),
        Column("started", "float64", "actual start; later than arrived if the engine lagged, s"),
        Column("admitted", "float64", "passed the waiting room / lottery / CAPTCHA, s"),
        Column("carted", "float64", "stock reserved in the cart, s"),
        Column("finished", "float64", "journey ended, s"),
        Column("result", "uint8", "how it ended", RESULT),
        Column("units", "int32", "units paid for (kept, or later cancelled)"),
        Column("requests", "int32", "requests the journey sent"),
    ),
)

REQUESTS = TableSchema(
    "requests",
    (
        Column("journey", "int64", "journeys.journey"),
        Column("account", "int64", "journeys.account"),
        Column("step", "uint8", "which endpoint", STEP),
        Column("intended", "float64", "when the request was due to be sent, s"),
        Column("sent", "float64", "when it was sent, s"),
        Column("latency", "float64", "send to response, s"),
        Column("status", "int16", "HTTP status (0 = no response: connection error)"),
        Column(
            "queue_wait",
            "float64",
            "waited for a worker of the step's pool (until refused or given up, if so), s",
            since=2,
        ),
        Column(
            "service_time",
            "float64",
            "on a worker, the payment gateway excluded (NaN: never reached one), s",
            since=2,
        ),
        Column(
            "gateway_time",
            "float64",
            "at the payment gateway (NaN: did not reach it; a time-out: its timeout), s",
            since=2,
        ),
    ),
)

TIMELINE = TableSchema(
    "timeline",
    (
        Column("t", "float64", "interval start, s"),
        Column("stock_left", "int64", "units neither sold nor reserved, at interval end"),
        Column("reserved", "int64", "units held in carts, at interval end"),
        Column("sold_human", "int64", "units paid by humans in the interval"),
        Column("sold_bot", "int64", "units paid by bots in the interval"),
        Column("arrivals", "int64", "journeys arriving in the interval"),
        Column("in_flight", "int64", "requests being served, at interval end"),
        Column("queue", "int64", "requests waiting for a worker, at interval end"),
        Column("errors", "int64", "responses with status >= 500 or 0 in the interval"),
    ),
)

_TABLES = (JOURNEYS, REQUESTS, TIMELINE)


class OutcomeError(ValueError):
    """A table that does not match the Outcome contract."""


def _check(schema: TableSchema, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    cols = _with_later_columns(schema, cols, 1)
    missing = [n for n in schema.names if n not in cols]
    extra = [n for n in cols if n not in schema.names]
    if missing or extra:
        raise OutcomeError(f"{schema.name}: missing columns {missing}, unexpected {extra}")
    lengths = {len(cols[n]) for n in schema.names}
    if len(lengths) > 1:
        raise OutcomeError(f"{schema.name}: columns differ in length: {sorted(lengths)}")
    out = {}
    for c in schema.columns:
        arr = np.asarray(cols[c.name])
        if arr.dtype != np.dtype(c.dtype):
            raise OutcomeError(f"{schema.name}.{c.name}: dtype must be {c.dtype}, got {arr.dtype}")
        if c.labels is not None and arr.size and int(arr.max()) >= len(c.labels):
            raise OutcomeError(
                f"{schema.name}.{c.name}: code {int(arr.max())} out of range; "
                f"allowed: 0..{len(c.labels) - 1} ({', '.join(c.labels)})"
            )
        out[c.name] = arr
    return out


def _with_later_columns(
    schema: TableSchema, cols: Mapping[str, np.ndarray], version: int
) -> Mapping[str, np.ndarray]:
    """``cols`` with each column added after ``version`` that it lacks filled with NaN
    (not reported), as long as the table's other columns agree on its length."""
    later = [c for c in schema.columns if c.since > version and c.name not in cols]
    lengths = {len(v) for v in cols.values()}
    if not later or len(lengths) != 1:
        return cols
    n = lengths.pop()
    return {**cols, **{c.name: np.full(n, np.nan, dtype=c.dtype) for c in later}}


@dataclass(frozen=True)
class Outcome:
    """One replication's tables. Construct through :meth:`from_columns` to get them checked."""

    journeys: dict[str, np.ndarray]
    requests: dict[str, np.ndarray]
    timeline: dict[str, np.ndarray]
    channels: tuple[str, ...]

    @classmethod
    def from_columns(
        cls,
        journeys: Mapping[str, np.ndarray],
        requests: Mapping[str, np.ndarray],
        timeline: Mapping[str, np.ndarray],
        channels: tuple[str, ...],
    ) -> Outcome:
        out = cls(
            _check(JOURNEYS, journeys),
            _check(REQUESTS, requests),
            _check(TIMELINE, timeline),
            tuple(channels),
        )
        ch = out.journeys["channel"]
        if ch.size and int(ch.max()) >= len(channels):
            raise OutcomeError(
                f"journeys.channel: code {int(ch.max())} but only {len(channels)} channels"
            )
        return out

    def table(self, name: str) -> dict[str, np.ndarray]:
        return {"journeys": self.journeys, "requests": self.requests, "timeline": self.timeline}[
            name
        ]


class TableBuilder:
    """Preallocated, growable numpy columns for one table: engines append rows cheaply.

    Rows of Python dicts cost ~10x the memory and time at full scale; this keeps
    one typed array per column and doubles it when full.
    """

    def __init__(self, schema: TableSchema, capacity: int = 1024) -> None:
        self.schema = schema
        self._n = 0
        self._cols = {c.name: np.empty(max(capacity, 16), dtype=c.dtype) for c in schema.columns}

    def __len__(self) -> int:
        return self._n

    def _grow(self, need: int) -> None:
        cap = len(next(iter(self._cols.values())))
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        for name, arr in self._cols.items():
            grown = np.empty(new_cap, dtype=arr.dtype)
            grown[: self._n] = arr[: self._n]
            self._cols[name] = grown

    def append(self, **row: Any) -> int:
        """Add one row; every column must be given. Returns the row index."""
        self._grow(self._n + 1)
        i = self._n
        for name, arr in self._cols.items():
            arr[i] = row[name]
        self._n += 1
        return i

    def extend(self, cols: Mapping[str, np.ndarray]) -> None:
        """Add many rows at once from equal-length arrays, one per column."""
        n = len(next(iter(cols.values())))
        self._grow(self._n + n)
        for name, arr in self._cols.items():
            arr[self._n : self._n + n] = cols[name]
        self._n += n

    def columns(self) -> dict[str, np.ndarray]:
        """The filled part of each column (copies, safe to keep)."""
        return {name: arr[: self._n].copy() for name, arr in self._cols.items()}


def _to_arrow(
    schema: TableSchema, cols: Mapping[str, np.ndarray], channels: tuple[str, ...]
) -> pa.Table:
    import pyarrow as pa

    arrays = []
    for c in schema.columns:
        arr = cols[c.name]
        labels = (
            c.labels
            if c.labels is not None
            else (channels if (schema is JOURNEYS and c.name == "channel") else None)
        )
        if labels is not None:
            arrays.append(
                pa.DictionaryArray.from_arrays(
                    pa.array(arr.astype(np.int8)), pa.array(list(labels), pa.string())
                )
            )
        else:
            arrays.append(pa.array(arr))
    meta = {
        b"flashsale.schema": OUTCOME_SCHEMA.encode(),
        b"flashsale.table": schema.name.encode(),
        b"flashsale.channels": json.dumps(list(channels)).encode(),
    }
    return pa.Table.from_arrays(arrays, names=list(schema.names)).replace_schema_metadata(meta)


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def save_outcome(outcome: Outcome, folder: str | Path) -> None:
    """Write the three tables into ``folder`` as Parquet; each appears whole or not at all."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for schema in _TABLES:
        _atomic_parquet(
            _to_arrow(schema, outcome.table(schema.name), outcome.channels),
            d / f"{schema.name}.parquet",
        )


def _from_arrow(
    schema: TableSchema, table: pa.Table, path: Path
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    import pyarrow as pa

    meta = table.schema.metadata or {}
    version = meta.get(b"flashsale.schema", b"").decode()
    if version not in READABLE_SCHEMAS:
        raise OutcomeError(
            f"{path}: schema {version or 'missing'!r}, this build reads "
            f"{', '.join(repr(v) for v in READABLE_SCHEMAS)}"
        )
    number = READABLE_SCHEMAS.index(version) + 1
    cols: dict[str, np.ndarray] = {}
    channels = tuple(json.loads(meta.get(b"flashsale.channels", b"[]")))
    for c in schema.columns:
        if c.since > number:  # written before the column existed: not reported
            cols[c.name] = np.full(table.num_rows, np.nan, dtype=c.dtype)
            continue
        if c.name not in table.column_names:
            raise OutcomeError(f"{path}: missing column {c.name!r}")
        col = table.column(c.name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            stored = tuple(col.dictionary.to_pylist())
            expected = c.labels if c.labels is not None else channels
            if len(col) and stored != expected[: len(stored)]:  # appended labels: fine
                raise OutcomeError(f"{path}: {c.name} labels {stored} != {expected}")
            cols[c.name] = col.indices.to_numpy(zero_copy_only=False).astype(c.dtype)
        else:
            cols[c.name] = col.to_numpy(zero_copy_only=False).astype(c.dtype, copy=False)
    return cols, channels


def load_outcome(folder: str | Path) -> Outcome:
    """Read the three tables back from ``folder``; dtypes and codes are as written."""
    import pyarrow.parquet as pq

    d = Path(folder)
    loaded: dict[str, dict[str, np.ndarray]] = {}
    channels: tuple[str, ...] = ()
    for schema in _TABLES:
        path = d / f"{schema.name}.parquet"
        if not path.exists():
            raise OutcomeError(f"{path}: missing (the run may be incomplete)")
        cols, ch = _from_arrow(schema, pq.read_table(path), path)
        loaded[schema.name] = cols
        channels = ch or channels
    return Outcome.from_columns(
        loaded["journeys"], loaded["requests"], loaded["timeline"], channels
    )
