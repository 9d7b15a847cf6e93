"""Hand-made Outcome tables and run folders for the metrics, charts, report and compare tests.

Small tables whose metrics can be worked out by hand; plus a synthetic sale
(pure numpy, no engine) big enough to give every chart something to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flashsale.outcome import JOURNEYS, KIND, REQUESTS, RESULT, SALE, STEP, TIMELINE, Outcome
from flashsale.runs import RunFolder, open_run
from flashsale.scenario import Scenario, parse_scenario

__all__ = ["make_outcome", "make_run", "scenario", "synthetic_outcome"]

_NAN = float("nan")


def scenario(**overrides: Any) -> Scenario:
    """A small sale: 4 units, two humans' worth of defaults, overridable by section."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "hand",
        "seed": 3,
        "sale": {"units": 4, "window_s": 20},
        "humans": {"count": 4, "arrivals": {"profile": "burst", "early_window_s": 10}},
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_scenario(data, "<test>")


def _code(labels: Sequence[str], value: Any) -> Any:
    return labels.index(value) if isinstance(value, str) else value


def make_outcome(
    journeys: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]] = (),
    timeline: Sequence[Mapping[str, Any]] = (),
    channels: tuple[str, ...] = ("web",),
) -> Outcome:
    """Tables from row dicts; omitted columns take plain defaults (labels may be names)."""
    jdef = {
        "kind": "human",
        "channel": 0,
        "sale": "main",
        "arrived": 0.0,
        "admitted": _NAN,
        "carted": _NAN,
        "finished": 1.0,
        "result": "sold_out",
        "units": 0,
        "requests": 1,
    }
    jrows = []
    for i, r in enumerate(journeys):
        row = {**jdef, "journey": i, "account": i, "person": i, **r}
        row.setdefault("started", row["arrived"])
        row["kind"] = _code(KIND, row["kind"])
        row["sale"] = _code(SALE, row["sale"])
        row["result"] = _code(RESULT, row["result"])
        jrows.append(row)
    rdef = {"journey": 0, "account": 0, "step": "view", "sent": 0.0, "latency": 0.01, "status": 200}
    rdef |= {"queue_wait": _NAN, "service_time": _NAN, "gateway_time": _NAN}  # not reported
    rrows = []
    for r in requests:
        row = {**rdef, **r}
        row.setdefault("intended", row["sent"])
        row["step"] = _code(STEP, row["step"])
        rrows.append(row)
    tdef = {
        "stock_left": 0,
        "reserved": 0,
        "sold_human": 0,
        "sold_bot": 0,
        "arrivals": 0,
        "in_flight": 0,
        "queue": 0,
        "errors": 0,
    }
    trows = [{**tdef, **r} for r in timeline]

    def cols(schema: Any, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return {c.name: np.array([r[c.name] for r in rows], dtype=c.dtype) for c in schema.columns}

    return Outcome.from_columns(
        cols(JOURNEYS, jrows), cols(REQUESTS, rrows), cols(TIMELINE, trows), channels
    )


def synthetic_outcome(sc: Scenario, rng: np.random.Generator) -> Outcome:
    """A plausible sale drawn straight from numpy: early birds and bots win, stock runs out.

    Not a model of anything: it only gives charts and the report realistic shapes.
    """
    h, ops, per_op = sc.humans.count, sc.bots.operators, sc.bots.accounts_per_operator
    n_bot = ops * per_op
    arrived = np.concatenate(
        [
            np.where(rng.random(h) < 0.2, rng.uniform(-10, 0, h), rng.exponential(8, h)),
            rng.uniform(-0.5, 0, n_bot),
        ]
    )
    kind = np.concatenate([np.zeros(h, np.uint8), np.ones(n_bot, np.uint8)])
    person = np.concatenate([np.arange(h), h + np.repeat(np.arange(ops), per_op)])
    n = h + n_bot
    speed = np.where(kind == 1, 0.3, 2.0) * rng.exponential(1.0, n)
    paid_at = np.maximum(arrived, 0) + speed + rng.exponential(0.5, n)
    units_each = np.where(kind == 1, sc.bots.units_per_order, 1)
    order = np.argsort(paid_at)
    cum = np.cumsum(units_each[order])
    wins = np.zeros(n, bool)
    wins[order[cum <= sc.sale.units]] = True
    carted = np.where(rng.random(n) < 0.6, paid_at - 0.2, np.nan)
    carted[wins] = paid_at[wins] - 0.2
    result = np.where(wins, RESULT.index("purchased"), RESULT.index("sold_out"))
    result[~wins & np.isfinite(carted)] = RESULT.index("cart_failed")
    result[~wins & (rng.random(n) < 0.05)] = RESULT.index("timed_out")
    journeys = {
        "journey": np.arange(n, dtype=np.int64),
        "kind": kind,
        "account": np.arange(n, dtype=np.int64),
        "person": person.astype(np.int64),
        "channel": (rng.random(n) < 0.3).astype(np.uint8),
        "sale": np.zeros(n, np.uint8),
        "arrived": arrived,
        "started": arrived,
        "admitted": np.full(n, np.nan),
        "carted": carted,
        "finished": paid_at,
        "result": result.astype(np.uint8),
        "units": np.where(wins, units_each, 0).astype(np.int32),
        "requests": np.full(n, 3, np.int32),
    }
    steps = np.array([STEP.index(s) for s in ("view", "cart", "pay")], np.uint8)
    rj = np.repeat(np.arange(n), 3)
    rstep = np.tile(steps, n)
    sent = np.repeat(paid_at, 3) - np.tile([1.0, 0.5, 0.1], n)
    status = np.full(3 * n, 200, np.int16)
    status[(rstep == steps[2]) & ~np.repeat(wins, 3)] = 409
    status[rng.random(3 * n) < 0.02] = 503
    requests = {
        "journey": rj.astype(np.int64),
        "account": rj.astype(np.int64),
        "step": rstep,
        "intended": sent,
        "sent": sent,
        "latency": rng.lognormal(-3, 0.6, 3 * n) * (1 + rstep),
        "status": status,
    }
    t = np.arange(-10.0, 40.0)
    won_at = np.searchsorted(t + 1, paid_at[wins], side="left")
    sold_h = np.bincount(won_at[kind[wins] == 0], units_each[wins][kind[wins] == 0], t.size)
    sold_b = np.bincount(won_at[kind[wins] == 1], units_each[wins][kind[wins] == 1], t.size)
    stock = sc.sale.units - np.cumsum(sold_h + sold_b)
    timeline = {
        "t": t,
        "stock_left": stock.astype(np.int64),
        "reserved": np.zeros(t.size, np.int64),
        "sold_human": sold_h.astype(np.int64),
        "sold_bot": sold_b.astype(np.int64),
        "arrivals": np.bincount(
            np.clip(np.searchsorted(t + 1, arrived), 0, t.size - 1), minlength=t.size
        ).astype(np.int64),
        "in_flight": rng.integers(0, 8, t.size).astype(np.int64),
        "queue": np.maximum(0, 200 - 10 * (t + 10)).astype(np.int64),
        "errors": rng.integers(0, 5, t.size).astype(np.int64),
    }
    return Outcome.from_columns(journeys, requests, timeline, ("web", "app"))


def make_run(
    path: Path,
    sc: Scenario,
    outcomes: Sequence[Outcome],
    *,
    engine: str = "test",
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> RunFolder:
    """A complete run folder holding ``outcomes`` as its replications."""
    with open_run(
        sc,
        engine,
        out=path,
        seed=sc.seed if seed is None else seed,
        replications=len(outcomes),
        argv=["test"],
        extra=extra,
    ) as run:
        for i, o in enumerate(outcomes):
            run.save_replication(i, o)
    return RunFolder.load(path)


def test_synthetic_outcome_is_a_valid_sale(smoke_path: Path) -> None:
    from flashsale.scenario import load_scenario

    sc = load_scenario(smoke_path)
    o = synthetic_outcome(sc, np.random.default_rng(1))
    kept = o.journeys["units"][o.journeys["result"] == RESULT.index("purchased")].sum()
    assert 0 < kept <= sc.sale.units
    assert o.timeline["stock_left"].min() >= 0
