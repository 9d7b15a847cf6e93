"""The one list of metrics: name, label, unit, bounds, meaning, and where each is shown.

metrics.json's ``doc``, the summary printed after a run, the report's key figures and
definitions, compare's metrics, the sweep's columns, the values a threshold may name
and the README's metric table are all read from :data:`METRICS`; nothing else lists
metrics. ``tests/test_docs.py`` checks the README table against
:func:`markdown_table`.

A metric may have parts: per step (``latency_p95_s.pay``, a step of
:data:`flashsale.outcome.STEP`) or per kind and result
(``outcome_rates.human.purchased``). A *threshold key* is a scalar metric's full
name, optionally followed by the bound judged: ``.mean`` (the default), ``.ci_low``
or ``.ci_high`` of the 95% interval (``latency_p95_s.pay.ci_high``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from flashsale.outcome import KIND, RESULT, STEP

__all__ = [
    "BOUNDS",
    "KEY_FIGURES",
    "LATE_START_S",
    "METRICS",
    "REPLAY_FIGURES",
    "SUMMARY_FIGURES",
    "SWEEP_COLUMNS",
    "UNIT_LABELS",
    "Bound",
    "Metric",
    "Unit",
    "bounds_of",
    "find",
    "label_of",
    "lookup",
    "markdown_table",
    "meanings",
    "parse_threshold_key",
    "unit_of",
]

Unit = Literal["units", "requests", "s", "share", "index", "orders/s"]
UNIT_LABELS: dict[str, str] = {
    "units": "units",
    "requests": "requests",
    "s": "seconds",
    "share": "share",
    "index": "index",
    "orders/s": "orders per second",
}
"""Each unit as a chart axis says it."""

LATE_START_S = 1.0
"""A journey that started more than this after its scheduled arrival started late."""

Bound = Literal["mean", "ci_low", "ci_high"]
BOUNDS: tuple[Bound, ...] = ("mean", "ci_low", "ci_high")
"""What of a metric block a threshold judges: the mean across replications (default)
or a bound of its 95% interval."""

Figure = Literal["summary", "key", "replay"]


@dataclass(frozen=True)
class Metric:
    """One metric of metrics.json.

    ``figure``: ``"summary"`` printed after every run and a key figure; ``"key"`` a key
    figure (the report's first table, compared between runs); ``"replay"`` a key figure
    of a replay that has an audit; None only in the report's table of every metric.
    ``sweep``: a column of the sweep's table and chart (True), or, for a per-step metric,
    the step whose column is shown. ``threshold``: a ``[thresholds]`` entry may judge it
    (every scalar metric; not a curve).
    """

    name: str
    label: str
    unit: Unit
    meaning: str
    parts: tuple[tuple[str, ...], ...] = ()
    """The names of each level below the metric: per step ``(STEP,)``."""
    figure: Figure | None = None
    sweep: bool | str = False
    threshold: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sweep, str) and self.sweep not in (self.parts or ((),))[0]:
            raise ValueError(f"{self.name}: sweep={self.sweep!r} is not one of its parts")
        if self.sweep is True and self.parts:
            raise ValueError(f"{self.name}: has parts; sweep must name one")

    @property
    def per_step(self) -> bool:
        return self.parts == (STEP,)

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The values it can take: shares and indices in [0, 1], the rest >= 0 (a
        metric's 95% interval is clipped to them)."""
        return (0.0, 1.0) if self.unit in ("share", "index") else (0.0, None)


_PER_STEP = (STEP,)

METRICS: tuple[Metric, ...] = (
    Metric(
        "units_sold",
        "units sold (kept)",
        "units",
        "units paid for and kept (journeys ending purchased), main sale and re-sale; a "
        "replay with an audit: the target's own count (the journeys' count is the cross-check)",
        figure="summary",
    ),
    Metric(
        "sellout_time_s",
        "sell-out time",
        "s",
        "seconds from the opening until the main sale's paid units reached sale.units, at "
        "the timeline's resolution; null when it did not sell out",
        figure="summary",
        sweep=True,
    ),
    Metric(
        "bot_unit_share",
        "bot share of units",
        "share",
        "share of the kept units that went to bot accounts; null when no unit was kept",
        figure="summary",
        sweep=True,
    ),
    Metric(
        "human_success_share",
        "human success share",
        "share",
        "humans who kept at least one unit / humans who tried; null when no human tried",
        figure="summary",
        sweep=True,
    ),
    Metric(
        "units_per_person_gini",
        "Gini, units per person",
        "index",
        "Gini coefficient of kept units per person (a human, or a bot operator with all its "
        "accounts); 0 = equal, towards 1 = one person got all; null when no unit was kept "
        "(a sale that sold nothing is not perfectly fair)",
        figure="key",
        sweep=True,
    ),
    Metric(
        "units_per_person_jain",
        "Jain's index, units per person",
        "index",
        "Jain's fairness index (sum x)^2 / (n sum x^2) of kept units per person; 1 = equal, "
        "1/n = one person got all; null when no unit was kept (0/0)",
        figure="key",
    ),
    Metric(
        "yellow_cart_rate",
        "yellow-cart rate",
        "share",
        "journeys that reserved stock in a cart but never paid / journeys that carted; null "
        "when nobody carted",
        figure="summary",
        sweep=True,
    ),
    Metric(
        "oversold_units",
        "oversold units",
        "units",
        "units paid beyond the stock on offer (main sale: sale.units; re-sale: the units it "
        "offered), or the timeline's stock below zero, or the audit's oversold_units, "
        "whichever is largest; must be 0; a replay without an audit: null, unknown (a "
        "threshold on it fails)",
        figure="summary",
    ),
    Metric(
        "throughput_peak_orders_per_s",
        "peak orders per second",
        "orders/s",
        "most successful payments (pay step, status 2xx) completed within one second",
        figure="key",
    ),
    Metric(
        "time_to_purchase_p50_human_s",
        "time to purchase, humans (median)",
        "s",
        "median seconds from the later of arrival and the opening to the first successful "
        "payment, humans; null when no human paid",
        figure="key",
    ),
    Metric(
        "time_to_purchase_p50_bot_s",
        "time to purchase, bots (median)",
        "s",
        "median time to purchase, bot accounts; null when no bot paid",
        figure="key",
    ),
    Metric(
        "error_rate",
        "error rate (requests)",
        "share",
        "requests answered with status >= 500 or not answered (status 0) / requests; null "
        "without requests",
        figure="key",
    ),
    Metric(
        "audit_mismatch_units",
        "units sold: journeys vs the service's audit",
        "units",
        "|units_sold - the service audit's units_sold| (replay only; null without an audit)",
        figure="replay",
    ),
    Metric(
        "late_start_share",
        f"journeys started > {LATE_START_S:g} s late",
        "share",
        f"journeys that started more than {LATE_START_S:g} s after their scheduled arrival / "
        "journeys "
        "(replay lateness; 0 in a simulation); null without journeys",
        figure="replay",
    ),
    Metric(
        "time_to_purchase_p95_human_s",
        "time to purchase, humans (p95)",
        "s",
        "95th percentile of seconds from the later of arrival and the opening to the first "
        "successful payment, humans; null when no human paid",
    ),
    Metric(
        "time_to_purchase_p95_bot_s",
        "time to purchase, bots (p95)",
        "s",
        "95th percentile of time to purchase, bot accounts; null when no bot paid",
    ),
    Metric(
        "success_by_arrival",
        "success by arrival time",
        "share",
        "humans of the main sale: share who kept a unit, per arrival-offset bin (bins fixed "
        "by the scenario: from -early_window_s to sale.window_s, about 30 bins of 1, 2 or "
        "5 x 10^k s); null for a bin nobody arrived in (a curve: no threshold)",
        threshold=False,
    ),
    Metric(
        "outcome_rates",
        "journeys ending",
        "share",
        "per kind (human, bot) and result (" + ", ".join(RESULT) + "): share of that "
        "kind's journeys ending so; null for a kind with no journeys",
        parts=(KIND, RESULT),
    ),
    Metric(
        "timeout_rate",
        "timeout rate (requests)",
        "share",
        "requests not answered in time (status 0, 408 or 504) / requests; null without requests",
    ),
    Metric(
        "latency_p50_s",
        "latency p50",
        "s",
        "per step: median seconds from send to response (a step with no answered request "
        "has no entry)",
        parts=_PER_STEP,
    ),
    Metric(
        "latency_p95_s",
        "latency p95",
        "s",
        "per step: 95th percentile of send-to-response seconds",
        parts=_PER_STEP,
        sweep="pay",
    ),
    Metric(
        "latency_p99_s",
        "latency p99",
        "s",
        "per step: 99th percentile of send-to-response seconds",
        parts=_PER_STEP,
    ),
    Metric(
        "intended_latency_p95_s",
        "latency p95 from the intended send",
        "s",
        "per step: 95th percentile of seconds from when the request was due to its response "
        "(a lagging replay cannot hide its delay: no coordinated omission)",
        parts=_PER_STEP,
    ),
    Metric(
        "ambiguous_requests",
        "answers lost",
        "requests",
        "per step: requests whose answer was lost (no response: a timeout, a reset "
        "connection); a cart or a payment among them may have taken stock, so the journey "
        "never re-sends a cart after one",
        parts=_PER_STEP,
    ),
    Metric(
        "cancelled_units",
        "units cancelled by the review",
        "units",
        "units paid for, then cancelled by the post-hoc review",
    ),
    Metric(
        "review_precision",
        "review precision",
        "share",
        "cancelled journeys that were bots / cancelled journeys; null without a review or "
        "when it cancelled nothing",
    ),
    Metric(
        "review_recall",
        "review recall",
        "share",
        "cancelled bot journeys / bot journeys that paid in the main sale; null without a review",
    ),
    Metric(
        "resale_units_to_humans",
        "re-sale units to humans",
        "units",
        "units kept by humans in the re-sale; null without a re-sale",
    ),
)
"""Every metric in metrics.json, in the order the report and compare show them."""

_BY_NAME = {m.name: m for m in METRICS}


def _column(m: Metric) -> str:
    return f"{m.name}.{m.sweep}" if isinstance(m.sweep, str) else m.name


def _pairs(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((n, label_of(n)) for n in names)


def find(name: str) -> Metric:
    """The metric a (dotted) name belongs to: ``latency_p95_s.pay`` -> latency_p95_s.
    Raises KeyError for an unknown metric."""
    return _BY_NAME[name.split(".", 1)[0]]


def unit_of(name: str) -> Unit:
    """The unit of a (dotted) metric name."""
    return find(name).unit


def bounds_of(name: str) -> tuple[float | None, float | None]:
    """The values a (dotted) metric can take (see :attr:`Metric.bounds`)."""
    return find(name).bounds


def label_of(name: str) -> str:
    """A reader's label for a (dotted) metric name: ``latency_p95_s.pay`` -> "latency
    p95, pay step"; ``outcome_rates.human.sold_out`` -> "journeys ending, human sold_out"."""
    m = find(name)
    rest = name.split(".")[1:]
    if not rest:
        return m.label
    return f"{m.label}, {' '.join(rest)}{' step' if m.per_step else ''}"


def meanings() -> dict[str, str]:
    """Every metric's meaning by name: metrics.json's ``doc``, the report's definitions."""
    return {m.name: m.meaning for m in METRICS}


SUMMARY_FIGURES = _pairs(tuple(m.name for m in METRICS if m.figure == "summary"))
"""(name, label) of the figures printed after every run."""
KEY_FIGURES = _pairs(tuple(m.name for m in METRICS if m.figure in ("summary", "key")))
"""(name, label) of the figures shown first in a report and compared between runs."""
REPLAY_FIGURES = _pairs(tuple(m.name for m in METRICS if m.figure == "replay"))
"""(name, label) of a replay's honesty figures, key figures when it has an audit."""
SWEEP_COLUMNS = _pairs(tuple(_column(m) for m in METRICS if m.sweep))
"""(name, label) of what a capacity planner reads off a sweep (dotted: a step's)."""


def lookup(metrics: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The block (``values``, ``mean``, ``ci_low``, ``ci_high``, ``n``) of a (dotted)
    metric in metrics.json's ``metrics``, or None when the run has none (e.g. a step no
    request reached)."""
    node: Any = metrics
    for part in name.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) and "mean" in node else None


def _levels(m: Metric) -> tuple[str, ...]:
    """What each level of a metric's parts is called: ("step",) or ("kind", "result")."""
    return ("step",) if m.per_step else ("kind", "result")[: len(m.parts)]


def _shape(m: Metric) -> str:
    """How a metric's full name is written: ``latency_p95_s.<step>``."""
    return m.name + "".join(f".<{level}>" for level in _levels(m))


def parse_threshold_key(key: str) -> tuple[str, Bound]:
    """A ``[thresholds]`` key -> (full metric name, bound judged).

    ``latency_p95_s.pay.ci_high`` -> ("latency_p95_s.pay", "ci_high"); without a bound,
    "mean". Raises ValueError naming what is allowed for an unknown metric or a curve,
    a per-step metric without its step, a step (or anything but a bound) after a
    metric that is not per step, an unknown step or part, or an unknown bound.
    """
    bounds = ", ".join(f".{b}" for b in BOUNDS)
    head, *rest = key.split(".")
    m = _BY_NAME.get(head)
    if m is None or not m.threshold:
        allowed = ", ".join(_shape(x) for x in METRICS if x.threshold)
        why = f"unknown metric {head!r}" if m is None else f"{head} is a curve, not a number"
        raise ValueError(f"{why}; allowed: {allowed}, each optionally followed by one of {bounds}")
    parts, tail = rest[: len(m.parts)], rest[len(m.parts) :]
    for level, allowed_parts, i in zip(_levels(m), m.parts, range(len(m.parts)), strict=True):
        if i >= len(parts) or (i == len(parts) - 1 and not tail and parts[i] in BOUNDS):
            raise ValueError(
                f"{m.name} is per {level}: write {_shape(m)}[.bound], {level} one of "
                f"{', '.join(allowed_parts)}"
            )
        if parts[i] not in allowed_parts:
            raise ValueError(f"unknown {level} {parts[i]!r}; allowed: {', '.join(allowed_parts)}")
    if len(tail) > 1 or (tail and tail[0] not in BOUNDS):
        not_per = "" if m.parts else f" ({m.name} is not per step)"
        raise ValueError(
            f"{'.'.join(tail)!r} after {'.'.join([head, *parts])}{not_per}: allowed "
            f"after it: {bounds}"
        )
    bound = cast(Bound, tail[0] if tail else "mean")
    return ".".join([head, *parts]), bound


def markdown_table() -> str:
    """The README's metric table, one row per metric (``tests/test_docs.py`` checks it)."""
    rows = ["| metric | unit | shown first in | meaning |", "|---|---|---|---|"]
    shown = {
        "summary": "run summary, report, compare",
        "key": "report, compare",
        "replay": "a replay's report",
        None: "",
    }
    for m in METRICS:
        name = f"`{_shape(m)}`"
        where = [shown[m.figure]] if m.figure else []
        if m.sweep:
            where.append("sweep" if m.sweep is True else f"sweep (`{m.sweep}` step)")
        meaning = m.meaning.replace("|", "\\|")
        rows.append(f"| {name} | {m.unit} | {', '.join(where)} | {meaning} |")
    return "\n".join(rows)
