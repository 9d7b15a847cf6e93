"""A sweep's chart and report page: key metrics against the varied parameter(s).

It draws only what the points' metrics.json documents already hold (mean and
95% CI across replications), with the figure plumbing of :mod:`flashsale.figures`
and the page pieces of :mod:`flashsale.html_page`, as the run and comparison
charts and reports do: the same palette, axes with units and self-contained
HTML, not new copies of them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import NullLocator

from flashsale.figures import (
    RUN_COLORS,
    Chart,
    draw_whiskers,
    finish_grid,
    keep_tick_labels_apart,
    label_unit_axis,
    mean_and_whiskers,
    new_figure,
    wrap_label,
)
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.metric_registry import SWEEP_COLUMNS, lookup
from flashsale.metrics import fmt_interval, fmt_judged, fmt_metric, fmt_undefined
from flashsale.runs import write_text_atomic

__all__ = ["draw_sweep_charts", "metric_block", "write_sweep_report"]


def metric_block(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The mean, CI, n and per-replication values (null where the metric is undefined)
    of a (dotted) metric in a metrics.json document; all None when the run has no such
    block (e.g. no pay request ever completed)."""
    block = lookup(doc["metrics"], name) or {}
    return {k: block.get(k) for k in ("mean", "ci_low", "ci_high", "n", "values")}


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _tick(value: Any) -> str:
    """A grid value as a tick label: a table one key per line (``mean=1``), so two
    tables side by side stay apart; anything else as in the report."""
    if isinstance(value, Mapping):
        return "\n".join(f"{k}={_show(v)}" for k, v in value.items()) or "{}"
    return _show(value)


def _geometric_base(values: Sequence[Any]) -> float | None:
    """The log base to draw a geometric grid with (2 for a doubling grid such as 64,
    128, 256; 10 for 1, 10, 100; the ratio itself otherwise), or None when the grid
    is not geometric: fewer than three values, not all positive numbers, or unequal
    ratios between neighbours."""
    if len(values) < 3 or not _numeric(values):
        return None
    xs = sorted({float(v) for v in values})
    if len(xs) < 3 or xs[0] <= 0:
        return None
    ratios = [b / a for a, b in itertools.pairwise(xs)]
    r = ratios[0]
    if r <= 1 or any(not math.isclose(q, r, rel_tol=1e-6) for q in ratios):
        return None
    for base in (2.0, 10.0):
        k = math.log(r, base)
        if math.isclose(k, round(k), abs_tol=1e-9):
            return base
    return r


def _lines(sweep: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows grouped into lines: one per combination of the axes after the first,
    each ordered along the first axis."""
    first, *rest = [g["path"] for g in sweep["grid"]]
    lines: dict[str, list[Any]] = {}
    for row in rows:
        key = ", ".join(f"{p}={_show(row['settings'][p])}" for p in rest)
        lines.setdefault(key, []).append(row)
    order = {json.dumps(v): i for i, v in enumerate(sweep["grid"][0]["values"])}
    for group in lines.values():
        group.sort(key=lambda r: order[json.dumps(r["settings"][first])])
    return lines


def draw_sweep_charts(
    sweep: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], folder: Path
) -> list[Chart]:
    """One figure: a panel per key metric, mean and 95% CI against the first varied
    parameter, one line per value of the others."""
    first = sweep["grid"][0]["path"]
    xs_all = sweep["grid"][0]["values"]
    numeric = _numeric(xs_all)
    # A geometric grid (64, 128, 256) on a log axis: evenly spaced, as it was meant;
    # on a linear one its small values crowd together and their labels merge.
    base = _geometric_base(xs_all)
    pos = {json.dumps(v): (float(v) if numeric else float(i)) for i, v in enumerate(xs_all)}

    def scaled(v: np.ndarray | float) -> Any:  # where the axis spaces values evenly
        return np.log(v) / math.log(base) if base is not None else v

    span = float(scaled(max(pos.values())) - scaled(min(pos.values()))) or 1.0
    lines = _lines(sweep, rows)
    n = sweep["replications"]
    cols = 3
    nrows = -(-len(SWEEP_COLUMNS) // cols)
    fig, axes = new_figure(nrows, cols, height=1.6 + 3.0 * nrows)
    for ax, (name, label) in zip(axes.flat, SWEEP_COLUMNS, strict=False):
        if base is not None:
            ax.set_xscale("log", base=base)
        for j, (key, group) in enumerate(lines.items()):
            # A small sideways nudge per line so the error bars of equal x do not overlap
            # (in the axis' own spacing: a factor on a log axis).
            nudge = (j - (len(lines) - 1) / 2) * 0.012 * span
            x0 = np.array([pos[json.dumps(r["settings"][first])] for r in group])
            x = x0 * base**nudge if base is not None else x0 + nudge
            blocks = [r["metrics"][name] for r in group]
            mean, _err = mean_and_whiskers(blocks)
            color = RUN_COLORS[j % len(RUN_COLORS)]
            ax.plot(
                x,
                mean,
                color=color,
                marker="o",
                ms=4,
                lw=1.4,
                label=wrap_label(key, 40) if key else None,
            )
            # Whiskers only where there is an interval: none with one replication.
            draw_whiskers(ax, x, blocks, ecolor=color, elinewidth=1.4)
            for xx, m in zip(x, mean, strict=True):
                if np.isnan(m):  # undefined at this point (e.g. nothing sold): say so
                    ax.text(xx, 0, "n/a", ha="center", va="bottom", fontsize=7, color=color)
        ax.set_title(label, fontsize=9)
        label_unit_axis(ax, name)
        ax.set_xlabel(first + (f" (log{base:g} scale)" if base is not None else ""), fontsize=8)
        ax.set_xticks([pos[json.dumps(v)] for v in xs_all], [_tick(v) for v in xs_all], fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())  # only the grid's own values are labelled
        if not numeric:  # categories: room for the first and last label
            ax.set_xlim(-0.5, len(xs_all) - 0.5)
        keep_tick_labels_apart(ax)
        top = ax.get_ylim()[1]  # headroom: a flat line must not sit on the frame
        ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
        ax.grid(alpha=0.3)
    points = (
        f"mean of {n} replications; whiskers: 95% CI" if n > 1 else "1 replication: no interval"
    )
    # One line per value of the other varied parameters: a legend only when there are several.
    handles = axes.flat[0].get_legend_handles_labels()[0] if len(lines) > 1 else None
    return [
        finish_grid(
            fig,
            axes,
            len(SWEEP_COLUMNS),
            suptitle=f"{sweep['scenario_name']}: key metrics against {first} "
            f"(points: {points}; seed {sweep['seed']} at every point)",
            folder=folder,
            name="sweep_metrics",
            title=f"Key metrics against {first}",
            caption="Every point ran the same arrivals and buyers (same seed): a change between "
            "neighbouring points is the parameter's doing; gaps mean no value (e.g. not sold "
            "out, or no unit sold: no Gini; marked n/a); a point undefined in some "
            "replications shows the mean of the others (the report's table says how many).",
            legend_handles=handles,
            legend_ncols=2,
            suptitle_size=10,
        )
    ]


def _cell(name: str, m: Mapping[str, Any]) -> str:
    """Mean, 95% CI and, when some replications had no value, how many."""
    text = escape(fmt_metric(name, m["mean"]))
    for note in (fmt_interval(name, m), fmt_undefined(m)):
        if note is not None:
            text += f'<br><span class="muted">{escape(note)}</span>'
    return text


def _point_page(folder: Path, point: str) -> str:
    """A point's report.html, or its metrics.json when its report is a summary only."""
    page = f"{point}/report.html"
    return page if (folder / page).exists() else f"{point}/metrics.json"


def _breaches(row: Mapping[str, Any]) -> list[str]:
    """A point's failed checks, each with the value it judged (``latency_p95_s.pay <= 2:
    2.11 s``) or why it had none; escaped."""
    failed = [t for t in row.get("thresholds", []) if not t["passed"]]
    if not failed:  # a sweep.json written before verdicts were kept: the checks alone
        return [escape(c) for c in row["breached"]]
    return [escape(f"{t['check']}: {fmt_judged(t)}") for t in failed]


def write_sweep_report(
    sweep: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    charts: Sequence[Chart],
    compare: Path | None,
    path: Path,
) -> Path:
    """The sweep's report.html: the grid, a table of points x key metrics, the chart,
    links to each point's report and to the paired comparison of all points."""
    paths = [g["path"] for g in sweep["grid"]]
    body = [f"<h1>Flash sale sweep: {escape(sweep['scenario_name'])}</h1>"]
    body.append(
        f'<p class="muted">{len(rows)} points x {sweep["replications"]} replication(s), '
        f"root seed {escape(sweep['seed'])} at every point (common random numbers); "
        f"scenario file {escape(sweep['scenario_file'])}</p>"
    )
    body.append("<h2>Grid</h2>")
    body.append(
        html_table(
            ["parameter", "values"],
            [
                (
                    f"<code>{escape(g['path'])}</code>",
                    escape(", ".join(_show(v) for v in g["values"])),
                )
                for g in sweep["grid"]
            ],
            num_from=9,
        )
    )
    body.append("<h2>Key metrics per point (mean, 95% CI)</h2>")
    table = []
    for r in rows:
        verdict = (
            '<span class="fail">' + "<br>".join(_breaches(r)) + "</span>"
            if r["breached"]
            else '<span class="pass">held</span>'
        )
        table.append(
            [
                f'<a href="{escape(_point_page(path.parent, r["folder"]))}">'
                f"{escape(r['folder'])}</a>",
                *(escape(_show(r["settings"][p])) for p in paths),
                *(_cell(name, r["metrics"][name]) for name, _ in SWEEP_COLUMNS),
                verdict,
            ]
        )
    head = ["point", *paths, *(label for _, label in SWEEP_COLUMNS), "thresholds"]
    body.append(html_table(head, table, num_from=1 + len(paths)))
    if compare is not None:
        link = compare.relative_to(path.parent)
        body.append(
            f"<p>Paired differences of every point against {escape(rows[0]['folder'])}: "
            f'<a href="{escape(link)}">the comparison report</a>.</p>'
        )
    elif len(rows) > 1:  # --report summary: neither the points' pages nor the comparison
        body.append(
            '<p class="muted">Summary report (<code>--report summary</code>): each point '
            "links to its metrics.json; <code>flashsale report "
            f"{escape(path.parent)}</code> draws every point's report and the paired "
            "comparison of all points.</p>"
        )
    body.append("<h2>Charts</h2>")
    body.extend(embedded_chart(c) for c in charts)
    return write_text_atomic(path, html_page(f"flashsale sweep: {sweep['scenario_name']}", body))
