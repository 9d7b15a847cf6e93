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

from flashsale.figures import (
    OKABE_ITO,
    Chart,
    draw_whiskers,
    label_unit_axis,
    mean_and_whiskers,
    new_figure,
    save_chart,
)
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.metric_registry import label_of
from flashsale.metrics import fmt_interval, fmt_metric, fmt_undefined
from flashsale.runs import write_text_atomic

__all__ = ["draw_search_charts", "write_search_report"]

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


def _judged(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tried values that were judged, ordered by value."""
    return sorted((p for p in doc["points"] if p.get("verdicts")), key=lambda p: p["value"])


def draw_search_charts(doc: Mapping[str, Any], folder: Path) -> list[Chart]:
    """One chart per threshold metric: its mean and 95% CI at each tried value (a
    marker per verdict: holds or fails), the threshold's limit as a dashed line and the
    answer as a dotted one. Nothing when no value was judged."""
    points = _judged(doc)
    param = doc["parameter"]["path"]
    answer = (doc.get("answer") or {}).get("value")
    n = doc["replications"]
    charts = []
    for k, (metric, idx) in enumerate(_by_metric(doc).items()):
        fig, axes = new_figure(height=4.4)
        ax = axes[0, 0]
        x = np.array([float(p["value"]) for p in points])
        blocks = [p["metrics"][metric] for p in points]
        mean, _ = mean_and_whiskers(blocks)
        ax.plot(x, mean, color="#555555", lw=1.0, zorder=1)
        draw_whiskers(ax, x, blocks, ecolor="#555555", elinewidth=1.2, zorder=2)
        holds = np.array([all(p["verdicts"][j]["passed"] for j in idx) for p in points], bool)
        defined = np.isfinite(mean)
        ax.scatter(
            x[holds & defined],
            mean[holds & defined],
            marker="o",
            s=36,
            color=_HOLDS,
            zorder=3,
            label="threshold holds",
        )
        ax.scatter(
            x[~holds & defined],
            mean[~holds & defined],
            marker="X",
            s=48,
            color=_FAILS,
            zorder=3,
            label="threshold fails",
        )
        for xx in x[~defined]:  # no value in any replication: say so where it belongs
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
        for j in idx:
            v = points[0]["verdicts"][j] if points else None
            if v is not None:
                ax.axhline(
                    v["limit"], color="black", ls="--", lw=1.0, label=f"threshold: {v['check']}"
                )
        if answer is not None:
            ax.axvline(
                float(answer), color=OKABE_ITO["blue"], ls=":", lw=1.6, label=f"answer: {answer:g}"
            )
        positive = mean[defined & (mean > 0)]
        limits = [points[0]["verdicts"][j]["limit"] for j in idx] if points else []
        span = np.concatenate([positive, [v for v in limits if v > 0]])
        if span.size and span.min() > 0 and span.max() / span.min() > _LOG_SPAN:
            ax.set_yscale("log")
        label_unit_axis(ax, metric)
        ax.set_xlabel(param, fontsize=9)
        ax.grid(alpha=0.3)
        checks = "; ".join(points[0]["verdicts"][j]["check"] for j in idx) if points else metric
        ax.set_title(f"{label_of(metric)} against {param}  ({checks})", fontsize=10)
        fig.legend(loc="outside lower center", fontsize=8, ncols=4)
        interval = (
            f"mean of {n} replications, whiskers 95% CI" if n > 1 else "1 replication: no interval"
        )
        fig.suptitle(
            f"{doc['scenario_name']}: {doc['parameter']['goal']} {param} at which every "
            f"threshold holds (seed {doc['seed']} at every value; {interval})",
            fontsize=9,
        )
        charts.append(
            save_chart(
                fig,
                folder,
                f"threshold-{k}-{metric}",
                f"{label_of(metric)} against {param}",
                f"Each tried value's {metric} ({interval}; the same arrivals and buyers at "
                "every value); circles: the threshold holds there, crosses: it fails; dashed: "
                "the limit; dotted: the answer. A log axis when the values span more than "
                f"{_LOG_SPAN:g}x; n/a: no value (e.g. never sold out).",
            )
        )
    return charts


def _cell(metric: str, block: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The metric's mean, its 95% CI and each of its checks' verdicts at one value."""
    text = escape(fmt_metric(metric, block.get("mean")))
    for note in (fmt_interval(metric, block), fmt_undefined(block)):
        if note is not None:
            text += f'<br><span class="muted">{escape(note)}</span>'
    for v in verdicts:
        cls, word = ("pass", "holds") if v["passed"] else ("fail", "fails")
        text += f'<br><span class="{cls}">{word}: {escape(v["check"])}</span>'
    return text


def write_search_report(doc: Mapping[str, Any], charts: Sequence[Chart], path: Path) -> Path:
    """The search's report.html: the answer, any warning, the range and thresholds, a
    table of every tried value (each threshold metric with its CI and verdict), links
    to each value's run report, and the charts."""
    param = doc["parameter"]
    body = [f"<h1>Flash sale capacity search: {escape(doc['scenario_name'])}</h1>"]
    answer = doc.get("answer") or {}
    body.append(
        f"<p><b>{escape(answer.get('line', 'no answer: the search did not finish'))}</b></p>"
    )
    body.extend(f'<p class="warn">warning: {escape(w)}</p>' for w in doc.get("warnings", []))
    step = "" if param["integer"] and param["step"] == 1 else f", to within {param['step']:g}"
    body.append(
        f'<p class="muted">{escape(param["goal"])} <code>{escape(param["path"])}</code> in '
        f"{param['low']:g}..{param['high']:g}{'' if not param['integer'] else ' (integers)'}"
        f"{escape(step)}; {doc['replications']} replication(s) per value, root seed "
        f"{escape(doc['seed'])} at every value (common random numbers); scenario file "
        f"{escape(doc['scenario_file'])}. The search assumes every threshold is monotone "
        "in the parameter (once it holds, it holds further on); both ends are tried first, "
        "then bisection.</p>"
    )
    body.append("<h2>Thresholds</h2><ul>")
    body.extend(f"<li><code>{escape(t)}</code></li>" for t in doc["thresholds"])
    body.append("</ul>")
    points = _judged(doc)
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
                escape(f"{p['value']:g}"),
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
