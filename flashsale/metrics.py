"""Metrics: pure functions of (Scenario, Outcome tables[, replay audit]) -> numbers with CIs.

Nothing here knows which engine ran: the simulator and the Locust replay write the
same tables, so the same code measures both and the figures can be compared.

Fairness is measured over *persons*, not accounts: a bot operator with 100 accounts
is one person, because spreading buys over accounts is exactly how scalping hides.
A unit counts as *kept* when its journey ended ``purchased``; units paid for and
then cancelled by the post-hoc review are counted in ``cancelled_units`` instead.

:func:`compute_metrics` returns the JSON document written to ``metrics.json``
(schema ``flashsale.metrics/1``): every metric's per-replication values, mean and
95% Student t interval (see :mod:`flashsale.stats` for why t), plus the curves the
charts draw, already reduced across replications (charts compute nothing).

A metric that is a ratio whose denominator is zero in a replication is null there,
never a made-up number: a sale that sold nothing has no Gini, no Jain index, no bot
share of units and no time to purchase (it is not "perfectly fair"). The mean and
interval then cover the replications where it is defined (``n`` of them), and a
threshold on it fails (:mod:`flashsale.thresholds`).
All work is vectorised numpy: a full Poco M3 replication has ~255k journeys and
millions of request rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flashsale.metric_registry import LATE_START_S, bounds_of, meanings, unit_of
from flashsale.outcome import KIND, RESULT, SALE, STEP, Outcome
from flashsale.scenario import BurstArrivals, Scenario
from flashsale.stats import CI_LEVEL, CI_METHOD, band, summarize

__all__ = [
    "LATE_START_S",
    "LORENZ_GRID",
    "METRICS_SCHEMA",
    "PERCENTILES",
    "compute_metrics",
    "fmt_interval",
    "fmt_judged",
    "fmt_metric",
    "fmt_signed",
    "fmt_undefined",
    "gini",
    "grouped_quantiles",
    "jain",
    "lorenz",
    "replication_metrics",
    "units_per_person",
]

METRICS_SCHEMA = "flashsale.metrics/1"

PERCENTILES = (50, 95, 99)
"""Latency percentiles reported per step."""


def fmt_metric(name: str, value: float | None) -> str:
    """A metric value as a reader wants it: shares in %, seconds with s, counts grouped."""
    if value is None:
        return "n/a"
    unit = unit_of(name)
    if unit == "share":
        return f"{100 * value:.2f}%"
    if unit == "s":
        return (
            f"{value:.3g} s"
            if value < 0.1
            else f"{value:.2f} s"
            if value < 10
            else f"{value:,.1f} s"
        )
    if unit == "orders/s":
        return f"{value:,.1f}"
    if unit == "index":
        return f"{value:.4f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_judged(verdict: Mapping[str, Any]) -> str:
    """What a threshold verdict (``Verdict.as_json()``) judged, as a reader wants it:
    ``2.11 s`` for a mean, ``95% CI high 2.11 s`` for a bound, or why it had no value."""
    if verdict.get("reason"):
        return str(verdict["reason"])
    text = fmt_metric(verdict["metric"], verdict["judged"])
    bound = verdict.get("bound", "mean")
    return text if bound == "mean" else f"95% CI {bound.removeprefix('ci_')} {text}"


def fmt_signed(name: str, value: float | None) -> str:
    """A difference between two runs' values, always with its sign. A difference of
    shares is in percentage points (+2.16 pp, -25.40 pp): "+2.16%" would read as a
    relative change."""
    if value is None:
        return "n/a"
    share = unit_of(name) == "share"
    text = f"{100 * abs(value):.2f} pp" if share else fmt_metric(name, abs(value))
    return f"+{text}" if value >= 0 else f"-{text}"


def fmt_interval(name: str, block: Mapping[str, Any], signed: bool = False) -> str | None:
    """A metric block's 95% interval as "low to high" (each with its sign for a
    difference), or None when there is none (one replication, no value)."""
    lo, hi = block.get("ci_low"), block.get("ci_high")
    if lo is None or hi is None:
        return None
    fmt = fmt_signed if signed else fmt_metric
    return f"{fmt(name, lo)} to {fmt(name, hi)}"


def fmt_undefined(block: Mapping[str, Any]) -> str | None:
    """How many replications a metric block (or a paired difference) has no value in,
    as "undefined in k of N replications", or None when it has one in every replication;
    the block's mean and interval cover only the other N - k."""
    values = block.get("values")
    if not values:
        return None
    k = sum(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
    if k == 0:
        return None
    return f"undefined in {k} of {len(values)} replication{'s' if len(values) != 1 else ''}"


_R = {name: i for i, name in enumerate(RESULT)}
_HUMAN = KIND.index("human")
_BOT = KIND.index("bot")
_MAIN = SALE.index("main")
_RESALE = SALE.index("resale")
_PAY = STEP.index("pay")
LORENZ_GRID = np.unique(
    np.concatenate((np.linspace(0.0, 1.0, 101), 1.0 - np.geomspace(0.1, 1e-4, 41)))
)
"""Population shares the Lorenz curve is sampled at: even steps, plus a dense tail near 1,
where a few operators among hundreds of thousands of persons hold much of the stock."""
_TIMELINE_POINTS = 500
_LATENCY_POINTS = 60
_ARRIVAL_BINS = 30


# ------------------------------------------------------------------ fairness


def gini(units: np.ndarray) -> float | None:
    """Gini of units per *person*. An operator with 40 accounts counts once:
    spreading buys over accounts is how scalping hides. None when nobody got
    anything (0/0): a sale that sold nothing is not "perfectly fair"."""
    x = np.sort(np.asarray(units, dtype=float))
    if x.sum() == 0:
        return None
    i = np.arange(1, x.size + 1)
    return float((2 * i - x.size - 1) @ x / (x.size * x.sum()))


def jain(units: np.ndarray) -> float | None:
    """Jain's index (sum x)^2 / (n sum x^2): 1 when all equal, 1/n when one person has all.
    None when nobody got anything: 0/0, not "all equal"."""
    x = np.asarray(units, dtype=float)
    sq = float((x * x).sum())
    if sq == 0:
        return None
    return float(x.sum() ** 2 / (x.size * sq))


def lorenz(units: np.ndarray, grid: np.ndarray = LORENZ_GRID) -> np.ndarray:
    """Share of units held by the poorest share p of persons, for each p in ``grid``;
    all NaN when nobody got anything (no units to share: the curve is undefined)."""
    x = np.sort(np.asarray(units, dtype=float))
    p = np.asarray(grid, dtype=float)
    if x.size == 0 or x.sum() == 0:
        return np.full(p.shape, np.nan)
    pop = np.arange(x.size + 1) / x.size
    cum = np.concatenate(([0.0], np.cumsum(x))) / x.sum()
    return np.asarray(np.interp(p, pop, cum), dtype=float)


def units_per_person(journeys: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Kept units per person and each person's kind, every person who tried included.

    A person is keyed by (kind, person id), so a human and an operator never merge.
    """
    kind = journeys["kind"].astype(np.int64)
    key = journeys["person"].astype(np.int64) * len(KIND) + kind
    persons, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    kept = _kept_units(journeys)
    per_person = np.bincount(inverse, weights=kept, minlength=persons.size)
    return per_person, kind[first]


def _kept_units(journeys: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.where(journeys["result"] == _R["purchased"], journeys["units"], 0).astype(float)


def _paid_units(journeys: Mapping[str, np.ndarray]) -> np.ndarray:
    paid = np.isin(journeys["result"], (_R["purchased"], _R["cancelled"]))
    return np.where(paid, journeys["units"], 0).astype(np.int64)


# ------------------------------------------------------------------ helpers


def grouped_quantiles(
    group: np.ndarray, values: np.ndarray, n_groups: int, qs: Sequence[float]
) -> np.ndarray:
    """Quantiles ``qs`` (in [0, 1]) of ``values`` within each group 0..n_groups-1.

    Sorted once for all groups (numpy's default linear interpolation); empty groups
    are NaN. Returns an array of shape (len(qs), n_groups).
    """
    # Sort by value, then stably by group: with few groups the second sort is a
    # radix sort on uint16, several times faster than lexsort on millions of rows.
    by_value = np.argsort(values)
    small = group.dtype if n_groups > np.iinfo(np.uint16).max else np.uint16
    by_group = np.argsort(group[by_value].astype(small), kind="stable")
    v = values[by_value][by_group]
    counts = np.bincount(group, minlength=n_groups)[:n_groups]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full((len(qs), n_groups), np.nan)
    has = counts > 0
    c = counts[has]
    s = starts[has]
    for i, q in enumerate(qs):
        pos = q * (c - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, c - 1)
        a, b = v[s + lo], v[s + hi]
        out[i, has] = a + (pos - lo) * (b - a)
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _pct(values: np.ndarray, q: float) -> float | None:
    return None if values.size == 0 else float(np.percentile(values, q))


def _nice_step(raw: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``raw``."""
    exp = math.floor(math.log10(raw))
    for m in (5, 2, 1):
        if m * 10**exp <= raw:
            return float(m * 10**exp)
    return float(10**exp)


def _arrival_edges(scenario: Scenario) -> np.ndarray:
    """Fixed arrival-offset bins from the scenario, so replications share them."""
    prof = scenario.humans.arrivals
    lo = -prof.early_window_s if isinstance(prof, BurstArrivals) else 0.0
    hi = scenario.sale.window_s
    if not isinstance(prof, BurstArrivals):
        hi = max(hi, scenario.humans.count / prof.rate_per_s)
    width = _nice_step((hi - lo) / _ARRIVAL_BINS)
    start = math.floor(lo / width) * width
    n = math.ceil((hi - start) / width)
    return start + width * np.arange(n + 1)


def _resale_offered(scenario: Scenario, journeys: Mapping[str, np.ndarray]) -> int:
    rs = scenario.defenses.resale
    if not rs.enabled:
        return 0
    if rs.units == "cancelled":
        main = journeys["sale"] == _MAIN
        return int(journeys["units"][main & (journeys["result"] == _R["cancelled"])].sum())
    return int(rs.units)


def _main_part(scenario: Scenario, t: np.ndarray) -> np.ndarray:
    """Timeline rows of the main sale (before the re-sale opens)."""
    rs = scenario.defenses.resale
    return t < rs.at_s if rs.enabled else np.ones(t.size, dtype=bool)


# ------------------------------------------------------------ one replication


def replication_metrics(
    scenario: Scenario, outcome: Outcome, audit: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every metric of one replication, as flat ``name`` or ``name.sub.sub`` keys."""
    j, rq, tl = outcome.journeys, outcome.requests, outcome.timeline
    kind, result, sale = j["kind"], j["result"], j["sale"]
    kept = _kept_units(j)
    paid = _paid_units(j)
    out: dict[str, Any] = {}

    units_sold = int(kept.sum())
    out["units_sold"] = units_sold

    main = sale == _MAIN
    over = max(0, int(paid[main].sum()) - scenario.sale.units)
    over += max(0, int(paid[~main].sum()) - _resale_offered(scenario, j))
    if tl["stock_left"].size:
        over = max(over, -int(tl["stock_left"].min()))
    if audit is not None:  # a replay: the target's books are the authority
        told, sold = audit.get("oversold_units"), audit.get("units_sold")
        out["oversold_units"] = None if told is None else max(over, int(told))
        out["units_sold"] = units_sold if sold is None else int(sold)
    else:
        out["oversold_units"] = over

    in_main = _main_part(scenario, tl["t"])
    cum = np.cumsum(tl["sold_human"][in_main] + tl["sold_bot"][in_main])
    reached = np.flatnonzero(cum >= scenario.sale.units)
    out["sellout_time_s"] = (
        float(tl["t"][in_main][reached[0]] + scenario.outputs.timeline_interval_s)
        if reached.size
        else None
    )

    ok_pay = (rq["step"] == _PAY) & (rq["status"] >= 200) & (rq["status"] < 300)
    paid_at = rq["sent"][ok_pay] + rq["latency"][ok_pay]
    paid_at = paid_at[np.isfinite(paid_at)]
    out["throughput_peak_orders_per_s"] = (
        int(np.bincount(np.floor(paid_at - paid_at.min()).astype(np.int64)).max())
        if paid_at.size
        else 0
    )

    out["bot_unit_share"] = _ratio(kept[kind == _BOT].sum(), units_sold)
    per_person, person_kind = units_per_person(j)
    humans = person_kind == _HUMAN
    out["human_success_share"] = _ratio((per_person[humans] > 0).sum(), humans.sum())
    out["units_per_person_gini"] = gini(per_person)
    out["units_per_person_jain"] = jain(per_person)

    _time_to_purchase(scenario, j, rq, ok_pay, out)

    for k, kname in enumerate(KIND):
        of_kind = kind == k
        counts = np.bincount(result[of_kind], minlength=len(RESULT))
        for r, rname in enumerate(RESULT):
            out[f"outcome_rates.{kname}.{rname}"] = _ratio(counts[r], of_kind.sum())

    carted = np.isfinite(j["carted"])
    out["yellow_cart_rate"] = _ratio((carted & (paid == 0)).sum(), carted.sum())
    status = rq["status"]
    out["error_rate"] = _ratio(((status >= 500) | (status == 0)).sum(), status.size)
    out["timeout_rate"] = _ratio(np.isin(status, (0, 408, 504)).sum(), status.size)
    _latencies(rq, out)

    late = (j["started"] - j["arrived"]) > LATE_START_S
    out["late_start_share"] = _ratio(late.sum(), late.size)

    cancelled = result == _R["cancelled"]
    out["cancelled_units"] = int(j["units"][cancelled].sum())
    review = scenario.defenses.review.enabled
    bots_cancelled = (cancelled & (kind == _BOT)).sum()
    out["review_precision"] = _ratio(bots_cancelled, cancelled.sum()) if review else None
    bots_paid = ((kind == _BOT) & main & (paid > 0)).sum()
    out["review_recall"] = _ratio(bots_cancelled, bots_paid) if review else None
    out["resale_units_to_humans"] = (
        int(kept[(sale == _RESALE) & (kind == _HUMAN)].sum())
        if scenario.defenses.resale.enabled
        else None
    )
    sold_by_audit = None if audit is None else audit.get("units_sold")
    out["audit_mismatch_units"] = (
        None if sold_by_audit is None else abs(units_sold - int(sold_by_audit))
    )
    return out


def _time_to_purchase(
    scenario: Scenario,
    j: Mapping[str, np.ndarray],
    rq: Mapping[str, np.ndarray],
    ok_pay: np.ndarray,
    out: dict[str, Any],
) -> None:
    """Seconds from the later of arrival and the sale's opening to the first paid order.

    Payment times come from the requests (pay step, 2xx), so an order cancelled
    later by the review still counts when it was bought.
    """
    done = rq["sent"][ok_pay] + rq["latency"][ok_pay]
    jid = rq["journey"][ok_pay]
    order = np.argsort(done, kind="stable")
    first_jid, first = np.unique(jid[order], return_index=True)
    first_done = done[order][first]
    row = _rows_of(j["journey"], first_jid)
    known = row >= 0
    row, first_done = row[known], first_done[known]
    opening = np.where(j["sale"][row] == _RESALE, scenario.defenses.resale.at_s, 0.0)
    ttp = first_done - np.maximum(j["arrived"][row], opening)
    for k, kname in ((_HUMAN, "human"), (_BOT, "bot")):
        sel = ttp[j["kind"][row] == k]
        sel = sel[np.isfinite(sel)]
        out[f"time_to_purchase_p50_{kname}_s"] = _pct(sel, 50)
        out[f"time_to_purchase_p95_{kname}_s"] = _pct(sel, 95)


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row index of each wanted journey id in ``ids`` (unique), -1 where absent."""
    if ids.size == 0:
        return np.full(wanted.size, -1, dtype=np.int64)
    sort = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids, wanted, sorter=sort), 0, ids.size - 1)
    row = sort[pos]
    return np.where(ids[row] == wanted, row, -1)


def _latencies(rq: Mapping[str, np.ndarray], out: dict[str, Any]) -> None:
    """Per-step latency percentiles, from send and from the intended send time."""
    lat = rq["latency"]
    ok = np.isfinite(lat)
    step = rq["step"][ok].astype(np.int64)
    qs = [p / 100 for p in PERCENTILES]
    from_send = grouped_quantiles(step, lat[ok], len(STEP), qs)
    due = (rq["sent"] + lat - rq["intended"])[ok]
    fin = np.isfinite(due)
    from_due = grouped_quantiles(step[fin], due[fin], len(STEP), [0.95])
    for s in np.unique(step):
        name = STEP[s]
        for i, p in enumerate(PERCENTILES):
            out[f"latency_p{p}_s.{name}"] = _float(from_send[i, s])
        out[f"intended_latency_p95_s.{name}"] = _float(from_due[0, s])
    lost = np.bincount(rq["step"][rq["status"] == 0].astype(np.int64), minlength=len(STEP))
    for s in np.unique(rq["step"]):
        out[f"ambiguous_requests.{STEP[s]}"] = int(lost[s])


def _float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


# ------------------------------------------------------------------ curves


def _window(
    outcomes: Sequence[Outcome], interval: float, keep: Any, points: int
) -> tuple[float, float, int] | None:
    """A common (start, bin width, bins) grid over the selected timeline rows of all runs."""
    ts = [o.timeline["t"][keep(o.timeline["t"])] for o in outcomes]
    ts = [t for t in ts if t.size]
    if not ts:
        return None
    lo = min(float(t.min()) for t in ts)
    hi = max(float(t.max()) for t in ts) + interval
    width = interval * math.ceil((hi - lo) / interval / points)
    return lo, width, max(1, math.ceil((hi - lo) / width - 1e-9))


_ACTIVITY = ("arrivals", "sold_human", "sold_bot", "in_flight", "queue", "errors", "reserved")


def _active_end(outcomes: Sequence[Outcome], keep: Any, at_least: float) -> float:
    """Last timeline time with any activity among the kept rows (at least ``at_least``).

    Charts of a sale end there: an engine may record quiet intervals up to a re-sale
    days later, which would squeeze the sale itself into a sliver of the chart.
    """
    end = at_least
    for o in outcomes:
        tl = o.timeline
        busy = keep(tl["t"]) & np.any([tl[c] != 0 for c in _ACTIVITY], axis=0)
        if busy.any():
            end = max(end, float(tl["t"][busy].max()))
    return end


def _timeline_rows(tl: Mapping[str, np.ndarray], lo: float, w: float, nb: int) -> dict[str, Any]:
    """One replication's timeline on the grid: states at bin end, counts per second."""
    order = np.argsort(tl["t"], kind="stable")
    tl = {k: v[order] for k, v in tl.items()}
    b = np.floor((tl["t"] - lo) / w + 1e-9).astype(np.int64)
    inside = (b >= 0) & (b < nb)
    b = b[inside]
    rows: dict[str, Any] = {}
    n = np.bincount(b, minlength=nb)
    last = np.searchsorted(b, np.arange(nb), side="right") - 1
    for col in ("stock_left", "reserved"):
        v = tl[col][inside].astype(float)
        if v.size == 0:
            rows[col] = np.full(nb, np.nan)
            continue
        rows[col] = np.where(last >= 0, v[np.maximum(last, 0)], v[0])
    for col in ("in_flight", "queue"):
        s = np.bincount(b, weights=tl[col][inside].astype(float), minlength=nb)
        rows[col] = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    for col in ("sold_human", "sold_bot", "arrivals", "errors"):
        rows[f"{col}_per_s"] = np.bincount(b, weights=tl[col][inside], minlength=nb) / w
    return rows


def _timeline_curves(
    outcomes: Sequence[Outcome], interval: float, keep: Any
) -> dict[str, Any] | None:
    grid = _window(outcomes, interval, keep, _TIMELINE_POINTS)
    if grid is None:
        return None
    lo, w, nb = grid
    per_rep = [_timeline_rows(o.timeline, lo, w, nb) for o in outcomes]
    curves: dict[str, Any] = {
        "t_s": (lo + w * np.arange(nb)).tolist(),
        "t_end_s": (lo + w * np.arange(1, nb + 1)).tolist(),
        "bin_s": w,
    }
    for name in per_rep[0]:
        curves[name] = band(np.vstack([r[name] for r in per_rep]), bounds=(0.0, None))
    return curves


def _latency_curves(
    outcomes: Sequence[Outcome], interval: float, keep: Any
) -> dict[str, Any] | None:
    grid = _window(outcomes, interval, keep, _LATENCY_POINTS)
    if grid is None:
        return None
    lo, w, nb = grid
    qs = [p / 100 for p in PERCENTILES]
    per_rep = []
    for o in outcomes:
        rq = o.requests
        b = np.floor((rq["sent"] - lo) / w).astype(np.int64)
        ok = (b >= 0) & (b < nb) & np.isfinite(rq["latency"])
        key = rq["step"][ok].astype(np.int64) * nb + b[ok]
        per_rep.append(grouped_quantiles(key, rq["latency"][ok], len(STEP) * nb, qs))
    steps = sorted({s for o in outcomes for s in np.unique(o.requests["step"]).tolist()})
    curves: dict[str, Any] = {"t_s": (lo + w * np.arange(nb)).tolist(), "bin_s": w}
    for s in steps:
        curves[STEP[s]] = {
            f"p{p}": band(
                np.vstack([r[i, s * nb : (s + 1) * nb] for r in per_rep]), bounds=(0.0, None)
            )
            for i, p in enumerate(PERCENTILES)
        }
    return curves


def _success_by_arrival(scenario: Scenario, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    edges = _arrival_edges(scenario)
    nb = edges.size - 1
    shares, tried = [], []
    for o in outcomes:
        j = o.journeys
        sel = (j["kind"] == _HUMAN) & (j["sale"] == _MAIN)
        b = np.searchsorted(edges, j["arrived"][sel], side="right") - 1
        ok = (b >= 0) & (b < nb)
        won = (_kept_units(j)[sel] > 0)[ok]
        n = np.bincount(b[ok], minlength=nb).astype(float)
        got = np.bincount(b[ok], weights=won, minlength=nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.where(n > 0, got / n, np.nan))
        tried.append(n)
    return {
        "bin_start_s": edges[:-1].tolist(),
        "bin_s": float(edges[1] - edges[0]),
        "values": [[None if math.isnan(v) else float(v) for v in s] for s in shares],
        **band(np.vstack(shares), bounds=(0.0, 1.0)),
        "humans_per_bin": np.mean(np.vstack(tried), axis=0).tolist(),
    }


# ------------------------------------------------------------------ the document


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def compute_metrics(
    scenario: Scenario,
    outcomes: Sequence[Outcome],
    audits: Sequence[Mapping[str, Any]] | None = None,
    *,
    replications: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The metrics.json document for a run: every metric per replication, mean and CI.

    ``audits`` (a replay's manifest ``audit`` list) has one entry per outcome;
    ``replications`` are the replication numbers (default 0..n-1), kept so that
    two runs can be paired replication by replication.
    """
    if not outcomes:
        raise ValueError("compute_metrics needs at least one replication")
    if audits is not None and len(audits) != len(outcomes):
        raise ValueError(f"{len(audits)} audit entries for {len(outcomes)} replications")
    reps = list(replications) if replications is not None else list(range(len(outcomes)))
    if len(reps) != len(outcomes):
        raise ValueError(f"{len(reps)} replication numbers for {len(outcomes)} outcomes")

    per_rep = [
        replication_metrics(scenario, o, None if audits is None else audits[i])
        for i, o in enumerate(outcomes)
    ]
    keys = list(dict.fromkeys(k for r in per_rep for k in r))
    flat = {k: summarize([r.get(k) for r in per_rep], bounds=bounds_of(k)) for k in keys}
    metrics = _nest(flat)
    metrics["success_by_arrival"] = _success_by_arrival(scenario, outcomes)

    interval = scenario.outputs.timeline_interval_s
    rs = scenario.defenses.resale
    main_end = _active_end(outcomes, lambda t: _main_part(scenario, t), scenario.sale.window_s)
    windows = {"main": lambda t: _main_part(scenario, t) & (t <= main_end)}
    if rs.enabled:
        resale_end = _active_end(outcomes, lambda t: t >= rs.at_s, rs.at_s + rs.window_s)
        windows["resale"] = lambda t: (t >= rs.at_s) & (t <= resale_end)
    persons = [units_per_person(o.journeys)[0] for o in outcomes]
    series: dict[str, Any] = {
        "lorenz": {
            "population_share": LORENZ_GRID.tolist(),
            **band(np.vstack([lorenz(p) for p in persons]), bounds=(0.0, 1.0)),
        },
        "timeline": {},
        "latency": {},
    }
    for name, keep in windows.items():
        tc = _timeline_curves(outcomes, interval, keep)
        if tc is not None:
            series["timeline"][name] = tc
            lat = _latency_curves(outcomes, interval, keep)
            if lat is not None:
                series["latency"][name] = lat

    return {
        "schema": METRICS_SCHEMA,
        "scenario": scenario.name,
        "replications": reps,
        "ci": {
            "level": CI_LEVEL,
            "method": CI_METHOD,
            "why": "replications are independent runs and each metric is an aggregate over "
            "many journeys, so close to normal; with few replications Student t (n - 1 "
            "degrees of freedom) covers the unknown variance, where a bootstrap of a "
            "handful of values under-covers. A metric undefined (null) in a replication, "
            "e.g. the Gini of a replication that sold nothing, is left out: the mean and "
            "interval cover the n replications where it is defined, and a threshold on a "
            "metric undefined in any replication fails.",
        },
        "doc": meanings(),
        "metrics": metrics,
        "series": series,
    }
