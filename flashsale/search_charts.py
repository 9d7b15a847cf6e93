"""A capacity search's charts and page: each threshold's metric against the parameter.

Drawn from search.json alone (every tried value's metric blocks and verdicts), with
the figure plumbing of :mod:`flashsale.figures` and the page pieces of
:mod:`flashsale.html_page`, as the sweep's chart and report are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from flashsale.figures import (
    OKABE_ITO,
    Chart,
    draw_whiskers,
    keep_tick_labels_apart,
    label_unit_axis,
    mean_and_whiskers,
    nan_array,
    new_figure,
    save_chart,
    wrap_label,
)
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.metric_registry import bounds_of, label_of
from flashsale.metrics import fmt_interval, fmt_metric, fmt_undefined
from flashsale.runs import write_text_atomic
from flashsale.search import Number, show
from flashsale.thresholds import BOUND_NAMES

__all__ = [
    "draw_search_charts",
    "judged_markers",
    "judged_points",
    "unfinished_line",
    "write_search_report",
]

_HOLDS = OKABE_ITO["bluish_green"]
_FAILS = OKABE_ITO["vermillion"]

_LOG_SPAN = 30.0
"""A metric whose positive values span more than this factor is drawn on a log axis:
a pay p95 of 100 s at the low end would flatten the 2 s limit into the floor."""


def _by_metric(doc: Mapping[str, Any]) -> dict[str, list[int]]:
    """The index of each threshold in search.json, grouped by the metric it judges."""
    groups: dict[str, list[int]] = {}
    first = next((p for p in doc["points"] if p.get("verdicts")), None)
    for j, v in enumerate(first["verdicts"] if first else []):
        groups.setdefault(v["metric"], []).append(j)
    return groups


def _value(point: Mapping[str, Any]) -> Number:
    value: Number = point["value"]
    return value


def judged_points(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tried values that were judged, ordered by value."""
    return sorted((p for p in doc["points"] if p.get("verdicts")), key=_value)


_NEAR = 5
"""The zoomed panel shows the tried values nearest the answer: bisection crowds them
there, where the whole range's panel has no room to tell them apart."""


def judged_markers(
    points: Sequence[Mapping[str, Any]], idx: Sequence[int]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """What the thresholds ``idx`` (indexes into each point's ``verdicts``, all on one
    metric) judged at each of ``points``: per bound judged (``mean``, ``ci_low``,
    ``ci_high``, in the order the thresholds name them), the judged value at each point
    (NaN where there was none, e.g. no interval with one replication) and whether every
    threshold on that bound holds there. The markers are drawn there, so a failing
    ``.ci_high`` threshold's cross sits above its limit even where the mean is below."""
    bounds = dict.fromkeys(points[0]["verdicts"][j]["bound"] for j in idx)
    drawn = []
    for bound in bounds:
        on = [j for j in idx if points[0]["verdicts"][j]["bound"] == bound]
        judged = nan_array([p["verdicts"][on[0]]["judged"] for p in points])
        holds = np.array([all(p["verdicts"][j]["passed"] for j in on) for p in points], bool)
        drawn.append((bound, judged, holds))
    return drawn


def _judged_names(points: Sequence[Mapping[str, Any]], idx: Sequence[int]) -> list[str]:
    """The interval bounds the thresholds ``idx`` judge, in words (none: the mean)."""
    bounds = dict.fromkeys(points[0]["verdicts"][j]["bound"] for j in idx)
    return [BOUND_NAMES[b] for b in bounds if b != "mean"]


def _panel(
    ax: Axes,
    points: Sequence[Mapping[str, Any]],
    metric: str,
    idx: Sequence[int],
    answer: Number | None,
) -> None:
    """One metric's means and CIs at ``points`` (a marker per verdict, at the quantity
    it judged), its limits and the answer, on ``ax``."""
    x = np.array([float(p["value"]) for p in points])
    blocks = [p["metrics"][metric] for p in points]
    mean, _ = mean_and_whiskers(blocks)
    markers = judged_markers(points, idx)
    on_bound = any(bound != "mean" for bound, _, _ in markers)
    ax.plot(x, mean, color="#555555", lw=1.0, zorder=1, label="mean" if on_bound else None)
    draw_whiskers(ax, x, blocks, ecolor="#555555", elinewidth=1.2, zorder=2)
    undefined = np.zeros(len(points), bool)
    for bound, judged, holds in markers:
        at = "" if bound == "mean" else f" (judged: {BOUND_NAMES[bound]})"
        defined = np.isfinite(judged)
        undefined |= ~defined
        for where, marker, size, color, label in (
            (holds & defined, "o", 36, _HOLDS, f"threshold holds{at}"),
            (~holds & defined, "X", 48, _FAILS, f"threshold fails{at}"),
        ):
            ax.scatter(
                x[where], judged[where], marker=marker, s=size, color=color, zorder=3, label=label
            )
    for xx in x[undefined]:  # nothing to judge (no value, no interval): say so where it belongs
        ax.annotate(
            "n/a",
            (xx, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color=_FAILS,
        )
    limits = [points[0]["verdicts"][j]["limit"] for j in idx]
    for j, limit in zip(idx, limits, strict=True):
        check = points[0]["verdicts"][j]["check"]
        ax.axhline(limit, color="black", ls="--", lw=1.0, label=f"threshold: {check}")
    if answer is not None:
        ax.axvline(
            float(answer), color=OKABE_ITO["blue"], ls=":", lw=1.6, label=f"answer: {show(answer)}"
        )
    drawn = np.concatenate([mean, *(judged for _, judged, _ in markers)])
    span = np.concatenate([drawn[drawn > 0], [v for v in limits if v > 0]])
    if span.size and span.max() / span.min() > _LOG_SPAN:
        ax.set_yscale("log")
    elif not span.size and (lo_hi := bounds_of(metric))[0] is not None:
        # A flat line at 0 (no oversold unit anywhere): not in a frame of negative units.
        floor, top = lo_hi[0], 1.0 if lo_hi[1] is None else lo_hi[1]
        ax.set_ylim(floor - 0.05 * (top - floor), top)
    label_unit_axis(ax, metric)
    keep_tick_labels_apart(ax)
    ax.grid(alpha=0.3)


def draw_search_charts(doc: Mapping[str, Any], folder: Path) -> list[Chart]:
    """One chart per threshold metric: its mean and 95% CI at each tried value (a
    marker per verdict: holds or fails), the threshold's limit as a dashed line and the
    answer as a dotted one, over the whole range and, once bisection has crowded
    values near the answer, zoomed on the nearest ones. Nothing when no value was
    judged."""
    points = judged_points(doc)
    param = doc["parameter"]["path"]
    answer = (doc.get("answer") or {}).get("value")
    near = (
        sorted(sorted(points, key=lambda p: abs(p["value"] - answer))[:_NEAR], key=_value)
        if answer is not None and len(points) > _NEAR
        else []
    )
    n = doc["replications"]
    interval = (
        f"mean of {n} replications, whiskers 95% CI" if n > 1 else "1 replication: no interval"
    )
    charts = []
    for k, (metric, idx) in enumerate(_by_metric(doc).items()):
        fig, axes = new_figure(1, 2 if near else 1, height=4.4)
        checks = "; ".join(
            [points[0]["verdicts"][j]["check"] for j in idx]
            + [f"judged: {name}" for name in _judged_names(points, idx)]
        )
        _panel(axes[0, 0], points, metric, idx, answer)
        axes[0, 0].set_title(f"{label_of(metric)}  ({checks})", fontsize=9)
        axes[0, 0].set_xlabel(f"{param} (whole range)" if near else param, fontsize=9)
        if near:
            _panel(axes[0, 1], near, metric, idx, answer)
            axes[0, 1].set_title(f"near the answer: the {len(near)} closest values", fontsize=9)
            axes[0, 1].set_xlabel(param, fontsize=9)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            fontsize=8,
            ncols=4 if len(handles) <= 4 else 3,
        )
        title = (
            f"{doc['scenario_name']}: {doc['parameter']['goal']} {param} at which every "
            f"threshold holds (seed {doc['seed']} at every value; {interval})"
        )
        fig.suptitle(wrap_label(title, 120), fontsize=9)
        charts.append(
            save_chart(
                fig,
                folder,
                f"threshold-{k}-{metric}",
                f"{label_of(metric)} against {param}",
                f"Each tried value's {metric} ({interval}; the same arrivals and buyers at "
                "every value); circles: the threshold holds there, crosses: it fails, each at "
                "what the threshold judges (the mean, or for a .ci_high or .ci_low threshold "
                "that end of the 95% CI); dashed: "
                "the limit; dotted: the answer; on the right, the values nearest the answer. "
                f"A log axis when the values span more than {_LOG_SPAN:g}x; n/a: no value "
                "(e.g. never sold out).",
            )
        )
    return charts


def _cell(metric: str, block: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The metric's mean, its 95% CI and each of its checks' verdicts at one value."""
    text = escape(fmt_metric(metric, block.get("mean")))
    interval = fmt_interval(metric, block)
    for note in (None if interval is None else f"95% CI {interval}", fmt_undefined(block)):
        if note is not None:
            text += f'<br><span class="muted">{escape(note)}</span>'
    for v in verdicts:
        cls, word = ("pass", "holds") if v["passed"] else ("fail", "fails")
        text += f'<br><span class="{cls}">{word}: {escape(v["check"])}</span>'
    return text


def unfinished_line(doc: Mapping[str, Any]) -> str:
    """What a search that did not finish (no answer in search.json) says instead of
    its answer: its status, the error and how many values it judged."""
    judged = len(judged_points(doc))
    error = f": {doc['error']}" if doc.get("error") else ""
    return (
        f"no answer: the search did not finish (status {doc.get('status')}{error}); "
        f"{judged} value(s) judged"
    )


def write_search_report(doc: Mapping[str, Any], charts: Sequence[Chart], path: Path) -> Path:
    """The search's report.html: the answer, any warning, the range and thresholds, a
    table of every tried value (each threshold metric with its CI and verdict), links
    to each value's run report, and the charts."""
    param = doc["parameter"]
    body = [f"<h1>Flash sale capacity search: {escape(doc['scenario_name'])}</h1>"]
    answer = doc.get("answer")
    if answer is None:
        body.append(f'<p class="warn"><b>Partial report</b>: {escape(unfinished_line(doc))}</p>')
    else:
        body.append(f"<p><b>{escape(answer['line'])}</b></p>")
    body.extend(f'<p class="warn">warning: {escape(w)}</p>' for w in doc.get("warnings", []))
    step = "" if param["integer"] and param["step"] == 1 else f", to within {show(param['step'])}"
    body.append(
        f'<p class="muted">{escape(param["goal"])} <code>{escape(param["path"])}</code> in '
        f"{show(param['low'])}..{show(param['high'])}"
        f"{' (integers)' if param['integer'] else ''}"
        f"{escape(step)}; {doc['replications']} replication(s) per value, root seed "
        f"{escape(doc['seed'])} at every value (common random numbers); scenario file "
        f"{escape(doc['scenario_file'])}. The search assumes every threshold is monotone "
        "in the parameter (once it holds, it holds further on); both ends are tried first, "
        "then bisection.</p>"
    )
    body.append("<h2>Thresholds</h2><ul>")
    body.extend(f"<li><code>{escape(t)}</code></li>" for t in doc["thresholds"])
    body.append("</ul>")
    points = judged_points(doc)
    groups = _by_metric(doc)
    table = []
    for p in points:
        overall = (
            '<span class="pass">every threshold holds</span>'
            if p["passed"]
            else '<span class="fail">fails</span>'
        )
        page = "report.html" if doc.get("report_level") == "full" else "metrics.json"
        table.append(
            [
                f'<a href="{escape(p["folder"])}/{page}">{escape(p["folder"])}</a>',
                escape(show(p["value"])),
                *(
                    _cell(m, p["metrics"][m], [p["verdicts"][j] for j in idx])
                    for m, idx in groups.items()
                ),
                overall,
            ]
        )
    body.append(
        f"<h2>Every tried value (order tried: point number; sorted by {escape(param['path'])})</h2>"
    )
    body.append(html_table(["point", param["path"], *groups, "verdict"], table, num_from=1))
    body.append("<h2>Charts</h2>")
    body.extend(embedded_chart(c) for c in charts)
    return write_text_atomic(path, html_page(f"flashsale search: {doc['scenario_name']}", body))
