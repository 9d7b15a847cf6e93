"""Charts: matplotlib figures drawn from a metrics.json document. They compute nothing.

Every curve and band was already reduced across replications by
:mod:`flashsale.metrics`; here it is only drawn. Every chart has a title, axes
with units and a legend; colours are the Okabe-Ito palette, which stays
distinguishable under the common colour-vision deficiencies; shaded bands are
95% confidence intervals across replications (absent with one replication).

Figures are built and saved as PNG with :mod:`flashsale.figures` (the object API
on the Agg canvas: no pyplot global state, no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter

from flashsale.figures import (
    BOT_COLOR,
    HUMAN_COLOR,
    OKABE_ITO,
    RUN_COLORS,
    Chart,
    draw_band,
    draw_whiskers,
    finish_grid,
    has_interval,
    keep_tick_labels_apart,
    label_bars,
    label_unit_axis,
    mean_and_whiskers,
    nan_array,
    new_figure,
    save_chart,
    wrap_label,
)
from flashsale.metric_registry import unit_of
from flashsale.metrics import fmt_metric, fmt_signed, fmt_undefined

__all__ = ["draw_compare_charts", "draw_run_charts"]

_PCT_COLORS = {50: OKABE_ITO["bluish_green"], 95: OKABE_ITO["orange"], 99: OKABE_ITO["vermillion"]}


def _thousands() -> FuncFormatter:
    """Counts on an axis with thousands separators: 50,000 reads faster than 50000;
    fractions kept (a bin mean of 0.2 requests in flight is not "0")."""
    return FuncFormatter(lambda x, _pos: format(float(x) + 0.0, ",.12g"))


_NO_INTERVAL = "1 replication: no interval"
"""Said wherever a run of one replication would otherwise look like a zero-width CI."""


def _legend_below(fig: Figure, ax: Axes, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """The legend under the axes, never over the data it explains."""
    if handles:
        ncols = 1 if len(handles) <= 3 else 2
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=ncols)


def _ci_note(n_reps: int) -> str:
    return (
        f"lines: mean of {n_reps} replications; shaded: 95% CI"
        if n_reps > 1
        else f"{_NO_INTERVAL} (no confidence band)"
    )


# ---------------------------------------------------------------- one run


def _stock(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    windows = doc["series"]["timeline"]
    if not windows:
        return None
    fig, axes = new_figure(1, len(windows))
    units = doc["metrics"]["units_sold"]
    sell = doc["metrics"]["sellout_time_s"]
    for ax, (name, tc) in zip(axes[0], windows.items(), strict=True):
        # States are recorded at the end of each interval: drawn there, joined by lines.
        draw_band(ax, tc["t_end_s"], tc["stock_left"], OKABE_ITO["blue"], "stock left", steps=False)
        draw_band(
            ax, tc["t_end_s"], tc["reserved"], OKABE_ITO["orange"], "held in carts", steps=False
        )
        if name == "main" and sell["mean"] is not None:
            ax.axvline(
                sell["mean"],
                color=OKABE_ITO["black"],
                ls="--",
                lw=1.2,
                label=f"sold out at {sell['mean']:.1f} s (mean)",
            )
            if sell["ci_low"] is not None:
                ax.axvspan(
                    sell["ci_low"],
                    sell["ci_high"],
                    color=OKABE_ITO["black"],
                    alpha=0.12,
                    label="sell-out 95% CI",
                )
        ax.set_title("main sale" if name == "main" else "re-sale")
        ax.set_xlabel("time from the opening (s)")
        ax.set_ylabel("units")
        ax.yaxis.set_major_formatter(_thousands())
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"Stock left over time (units kept: {units['mean']:,.0f} mean)\n"
        f"{_ci_note(len(doc['replications']))}",
        fontsize=11,
    )
    return save_chart(
        fig,
        folder,
        "stock_left",
        "Stock left over time",
        f"Units neither sold nor held in a cart. {_ci_note(len(doc['replications']))}.",
    )


def _sales(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    tc = doc["series"]["timeline"].get("main")
    if tc is None:
        return None
    fig, axes = new_figure()
    ax = axes[0][0]
    draw_band(ax, tc["t_s"], tc["sold_human_per_s"], HUMAN_COLOR, "humans")
    draw_band(ax, tc["t_s"], tc["sold_bot_per_s"], BOT_COLOR, "bots")
    ax.set_title(
        f"Units paid per second, humans vs bots (bins of {tc['bin_s']:g} s)\n"
        f"{_ci_note(len(doc['replications']))}"
    )
    ax.set_xlabel("time from the opening (s)")
    ax.set_ylabel("units paid per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return save_chart(
        fig,
        folder,
        "sales_per_second",
        "Sales per second, humans vs bots",
        f"Who the stock went to, as it went. {_ci_note(len(doc['replications']))}.",
    )


def _success(doc: Mapping[str, Any], folder: Path) -> Chart:
    sba = doc["metrics"]["success_by_arrival"]
    n_reps = len(doc["replications"])
    x = np.asarray(sba["bin_start_s"], dtype=float)
    mean = nan_array(sba["mean"])
    fig, axes = new_figure(height=5.0)
    ax = axes[0][0]
    ax.bar(
        x,
        np.nan_to_num(mean),
        width=sba["bin_s"],
        align="edge",
        color=HUMAN_COLOR,
        alpha=0.85,
        edgecolor="white",
        label="humans who got a unit",
    )
    # Whiskers only on bins with an interval: none at all with one replication.
    draw_whiskers(
        ax,
        x + sba["bin_s"] / 2,
        [
            {"mean": m, "ci_low": lo, "ci_high": hi}
            for m, lo, hi in zip(sba["mean"], sba["ci_low"], sba["ci_high"], strict=True)
        ],
        capsize=2,
        label="95% CI",
    )
    ax.axvline(0, color=OKABE_ITO["black"], ls=":", lw=1, label="opening (t = 0)")
    # How many arrived in each bin: a 0% bar over 5 humans means less than over 5,000.
    ax2 = ax.twinx()
    ax2.plot(
        x + sba["bin_s"] / 2,
        sba["humans_per_bin"],
        color="#7f7f7f",
        lw=1,
        marker=".",
        ms=3,
        label="humans arriving per bin (right axis)",
    )
    ax2.set_ylabel("humans arriving per bin (mean)", color="#555555")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    reps = f"bars: mean of {n_reps} replications; whiskers: 95% CI" if n_reps > 1 else _NO_INTERVAL
    ax.set_title(f"Success chance by arrival time, humans (bins of {sba['bin_s']:g} s)\n{reps}")
    ax.set_xlabel("arrival offset from the opening (s)")
    ax.set_ylabel("share of humans who got a unit")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    _legend_below(fig, ax, h1 + h2, l1 + l2)
    return save_chart(
        fig,
        folder,
        "success_by_arrival",
        "Success chance by arrival offset",
        "Does arriving a few seconds late doom you? Empty bins had no arrivals.",
    )


def _lorenz(doc: Mapping[str, Any], folder: Path) -> Chart:
    lz = doc["series"]["lorenz"]
    g = doc["metrics"]["units_per_person_gini"]
    fig, axes = new_figure(height=5.2)
    ax = axes[0][0]
    p = lz["population_share"]
    ax.plot([0, 1], [0, 1], color=OKABE_ITO["black"], ls="--", lw=1, label="perfect equality")
    ci = f" (95% CI {g['ci_low']:.3f} to {g['ci_high']:.3f})" if g["ci_low"] is not None else ""
    # No unit kept: no curve and no Gini (undefined, not "perfectly fair").
    gini = "undefined: no unit kept" if g["mean"] is None else f"{g['mean']:.3f}{ci}"
    undefined = fmt_undefined(g)
    if g["mean"] is not None and undefined is not None:
        gini += f", {undefined}"
    draw_band(ax, p, lz, OKABE_ITO["reddish_purple"], f"units per person, Gini {gini}", steps=False)
    ax.set_title("Lorenz curve of units per person (an operator's accounts count once)")
    ax.set_xlabel("share of persons, fewest units first")
    ax.set_ylabel("share of units kept")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return save_chart(
        fig,
        folder,
        "lorenz",
        "Lorenz curve of units per person",
        "The further the curve sags below the diagonal, the more the stock "
        "concentrated on few persons.",
    )


def _outcomes(doc: Mapping[str, Any], folder: Path) -> Chart:
    rates = doc["metrics"]["outcome_rates"]
    results = list(next(iter(rates.values())))
    fig, axes = new_figure(height=5.2)
    ax = axes[0][0]
    y = np.arange(len(results))
    h = 0.38
    for i, (kind, color) in enumerate((("human", HUMAN_COLOR), ("bot", BOT_COLOR))):
        if kind not in rates or all(rates[kind][r]["mean"] is None for r in results):
            continue
        blocks = [rates[kind][r] for r in results]
        m, whiskers = mean_and_whiskers(blocks)
        pos = y + (i - 0.5) * h
        ax.barh(pos, np.nan_to_num(m), height=h, color=color, label=f"{kind}s")
        draw_whiskers(ax, pos, blocks, horizontal=True, capsize=2)
        ends = m + whiskers[1]  # the bar or its CI, whichever reaches further
        for yy, v, end in zip(pos, m, ends, strict=True):
            if np.isfinite(v) and v > 0:
                ax.text(end + 0.01, yy, f"{100 * v:.1f}%", va="center", fontsize=7)
    ax.set_yticks(y, [r.replace("_", " ") for r in results])
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("share of journeys of that kind")
    n_reps = len(doc["replications"])
    ax.set_title(
        "How journeys ended, per kind"
        + (f" ({_NO_INTERVAL})" if n_reps == 1 else " (whiskers: 95% CI)")
    )
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right")
    return save_chart(
        fig,
        folder,
        "outcomes",
        "Outcome breakdown per kind",
        "Each kind's journeys sum to 100%; whiskers are 95% CIs across replications.",
    )


def _latency(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    lat = doc["series"]["latency"].get("main")
    if not lat:
        return None
    steps = [s for s in lat if s not in ("t_s", "bin_s")]
    if not steps:
        return None
    fig, axes = new_figure(len(steps), 1, height=1.0 + 2.0 * len(steps), sharex=True)
    for ax, step in zip(axes[:, 0], steps, strict=True):
        for p, b in lat[step].items():
            # Only p95 gets its band: three overlapping bands hide the lines.
            draw_band(ax, lat["t_s"], b, _PCT_COLORS[int(p[1:])], p, shade=p == "p95", log=True)
        ax.set_yscale("log")
        ax.set_ylabel(f"{step}\nlatency (s)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("time the request was sent, from the opening (s)")
    fig.suptitle(
        f"Latency percentiles over time per step (bins of {lat['bin_s']:g} s, log scale)\n"
        f"{_ci_note(len(doc['replications']))}"
        + (" (p95 only)" if len(doc["replications"]) > 1 else ""),
        fontsize=11,
    )
    return save_chart(
        fig,
        folder,
        "latency",
        "Latency percentiles over time",
        "Send-to-response seconds; gaps are bins without requests of that step.",
    )


def _load(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    tc = doc["series"]["timeline"].get("main")
    if tc is None:
        return None
    # A replay is the client's view: it cannot see the service's queue, and its
    # timeline holds 0 there by design (README, "Lateness and coordinated omission").
    # A flat zero would read as "no queue", so the panel is left out and said so.
    replay = doc.get("run", {}).get("engine") == "replay"
    panels = [
        ("queue", "queue length\n(requests)", OKABE_ITO["orange"], "waiting for a worker"),
        ("in_flight", "in flight\n(requests)", OKABE_ITO["blue"], "being served"),
        ("errors_per_s", "errors per s", OKABE_ITO["vermillion"], "status >= 500 or no response"),
    ][1 if replay else 0 :]
    fig, axes = new_figure(len(panels), 1, height=1.4 + 1.9 * len(panels), sharex=True)
    for ax, (col, ylabel, color, label) in zip(axes[:, 0], panels, strict=True):
        draw_band(ax, tc["t_s"], tc[col], color, label)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        if col != "errors_per_s":  # a rate: fractions matter
            ax.yaxis.set_major_formatter(_thousands())
            # Counts: a series that stays at 0 gets an axis up to 1, not 0 to 0.05.
            ax.set_ylim(top=max(ax.get_ylim()[1], 1.0))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time from the opening (s)")
    n_reps = len(doc["replications"])
    what = (
        "Requests in flight and errors"
        if replay
        else "Checkout queue, requests in flight and errors"
    )
    unseen = "no queue panel: a replay sees the service from the client, which cannot see its queue"
    fig.suptitle(
        f"{what} (bins of {tc['bin_s']:g} s)\n{_ci_note(n_reps)}"
        + (f"\n{unseen}" if replay else ""),
        fontsize=11,
    )
    return save_chart(
        fig,
        folder,
        "load",
        "Requests in flight and errors" if replay else "Queue length and requests in flight",
        ("In-flight is a bin mean; " + unseen if replay else "Queue and in-flight are bin means")
        + f". {_ci_note(n_reps)}.",
    )


def draw_run_charts(doc: Mapping[str, Any], folder: Path) -> list[Chart]:
    """Draw every chart of one run into ``folder``; charts without data are skipped."""
    drawn = [
        _stock(doc, folder),
        _sales(doc, folder),
        _success(doc, folder),
        _lorenz(doc, folder),
        _outcomes(doc, folder),
        _latency(doc, folder),
        _load(doc, folder),
    ]
    return [c for c in drawn if c is not None]


# ---------------------------------------------------------------- comparison


def _bars(
    docs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    metrics: Sequence[tuple[str, str]],
    folder: Path,
) -> Chart:
    cols = 3
    rows = -(-len(metrics) // cols)
    fig, axes = new_figure(rows, cols, height=1.2 + 2.6 * rows)
    x = np.arange(len(docs))
    n_reps = [len(d["replications"]) for d in docs]
    for ax, (name, label) in zip(axes.flat, metrics, strict=False):
        blocks = [d["metrics"][name] for d in docs]
        mean, err = mean_and_whiskers(blocks)
        colors = [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(docs))]
        bars = ax.bar(x, np.nan_to_num(mean), color=colors)
        # No whisker (and no cap) for a run without an interval (one replication).
        draw_whiskers(ax, x, blocks)
        ax.set_ylim(bottom=0)  # every key metric is >= 0 (Metric.bounds)
        # The value in white inside a bar that can hold it, else in black above it.
        ends = [
            float(m + e) if has_interval(b) else float(m)
            for m, e, b in zip(mean, err[1], blocks, strict=True)
        ]
        lows = [
            float(m - e) if has_interval(b) else None
            for m, e, b in zip(mean, err[0], blocks, strict=True)
        ]
        label_bars(
            ax,
            list(bars),
            ["n/a" if np.isnan(v) else fmt_metric(name, float(v)) for v in mean],
            ends,
            lows,
        )
        ax.set_title(label, fontsize=9)
        label_unit_axis(ax, name)
        ax.set_xticks(x, [f"run {i + 1}" for i in x], fontsize=8)
        keep_tick_labels_apart(ax)
        ax.grid(alpha=0.3, axis="y")
    whiskers = (
        "1 replication each: no interval"
        if max(n_reps) == 1
        else "whiskers: 95% CI across replications"
        + ("; none for a run of 1 replication" if min(n_reps) == 1 else "")
    )
    return finish_grid(
        fig,
        axes,
        len(metrics),
        suptitle=f"Key metrics per run (bars: mean; {whiskers})",
        folder=folder,
        name="compare_metrics",
        title="Key metrics side by side",
        caption="Overlapping whiskers do not prove two runs equal; see the paired differences.",
        # Which runs have no interval, when only some (the title says so when none has).
        legend_handles=_run_patches(labels, n_reps=n_reps if max(n_reps) > 1 else None),
    )


def _run_patches(
    labels: Sequence[str], baseline: bool = False, n_reps: Sequence[int] | None = None
) -> list[Patch]:
    """One legend entry per run; ``baseline`` marks run 1 as what the others are compared
    to; a run of one replication says it has no interval."""
    return [
        Patch(
            color=RUN_COLORS[i % len(RUN_COLORS)],
            label=f"run {i + 1}{' (baseline)' if baseline and i == 0 else ''}: "
            f"{wrap_label(lab, 70)}"
            + (f" ({_NO_INTERVAL})" if n_reps is not None and n_reps[i] == 1 else ""),
        )
        for i, lab in enumerate(labels)
    ]


def _overlay(
    docs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    folder: Path,
    name: str,
    title: str,
    pick: Any,
    ylabel: str,
    xlabel: str,
    caption: str,
    percent_y: bool = False,
    percent_x: bool = False,
    equality: bool = False,
    steps: bool = True,
) -> Chart | None:
    curves = [pick(d) for d in docs]
    if all(c is None for c in curves):
        return None
    drawn = sum(c is not None for c in curves)
    # Which runs have no band, when only some; the title says so when none has.
    banded = any(len(d["replications"]) > 1 for d in docs)
    # The legend goes under the axes (never over the curves): the figure grows with it.
    fig, axes = new_figure(height=5.0 + (0.3 * drawn if drawn > 3 else 0.0))
    ax = axes[0][0]
    for i, (c, lab, d) in enumerate(zip(curves, labels, docs, strict=True)):
        if c is not None:
            x, b = c
            one = f" ({_NO_INTERVAL})" if len(d["replications"]) == 1 and banded else ""
            draw_band(
                ax,
                x,
                b,
                RUN_COLORS[i % len(RUN_COLORS)],
                f"run {i + 1}: {wrap_label(lab)}{one}",
                steps,
                alpha=0.25 if drawn <= 3 else 0.12,  # many bands: lighter, to see through
            )
    ax.set_title(title if banded else f"{title}\n1 replication each: no interval")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if percent_y:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if percent_x:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if equality:
        ax.plot([0, 1], [0, 1], color=OKABE_ITO["black"], ls="--", lw=1, label="perfect equality")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, *ax.get_legend_handles_labels())
    return save_chart(fig, folder, name, title, caption)


def _paired(
    pairs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    metrics: Sequence[tuple[str, str]],
    folder: Path,
) -> Chart | None:
    """Paired differences vs run 1: one panel per metric, one bar per other run."""
    if not pairs:
        return None
    titles = dict(metrics)
    names = [n for n, _ in metrics if n in pairs[0]["metrics"]]
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = new_figure(rows, cols, height=1.2 + 2.6 * rows)
    for ax, name in zip(axes.flat, names, strict=False):
        blocks = [p["metrics"][name] for p in pairs]
        mean, _err = mean_and_whiskers(blocks)
        x = np.arange(len(pairs))
        colors = [RUN_COLORS[p["run"] % len(RUN_COLORS)] for p in pairs]
        ax.bar(x, np.nan_to_num(mean), color=colors)
        draw_whiskers(ax, x, blocks)
        ax.axhline(0, color=OKABE_ITO["black"], lw=0.8)
        ax.set_title(titles[name], fontsize=9)
        label_unit_axis(ax, name)
        if unit_of(name) == "share":  # a difference of shares: points, not a percent
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:+.3g} pp"))
            ax.set_ylabel("difference (percentage points)", fontsize=8)
        else:
            ax.set_ylabel(f"difference ({ax.get_ylabel()})", fontsize=8)
        diffs = [fmt_signed(name, None if np.isnan(m) else float(m)) for m in mean]
        # "run N" and its difference from run 1 (the figure's title says "vs run 1");
        # turned upright (or thinned) if even so they would run into each other.
        ticks = [f"run {p['run'] + 1}\n{d}" for p, d in zip(pairs, diffs, strict=True)]
        ax.set_xticks(x, ticks, fontsize=8)
        keep_tick_labels_apart(ax)
        ax.grid(alpha=0.3, axis="y")
    return finish_grid(
        fig,
        axes,
        len(names),
        suptitle="Paired differences vs run 1 (same seed: common random numbers), 95% CI",
        folder=folder,
        name="compare_paired",
        title="Paired differences vs run 1",
        caption="A whisker that does not cross zero is a difference the replications support.",
        legend_handles=_run_patches(labels, baseline=True),
    )


def draw_compare_charts(
    docs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    key_metrics: Sequence[tuple[str, str]],
    pairs: Sequence[Mapping[str, Any]],
    folder: Path,
) -> list[Chart]:
    """Charts of several runs: key-metric bars with CIs, overlaid curves, paired differences."""

    def timeline(col: str, at: str = "t_s") -> Any:
        def pick(d: Mapping[str, Any]) -> Any:
            tc = d["series"]["timeline"].get("main")
            return None if tc is None else (tc[at], tc[col])

        return pick

    drawn = [
        _bars(docs, labels, key_metrics, folder),
        _paired(pairs, labels, key_metrics, folder),
        _overlay(
            docs,
            labels,
            folder,
            "compare_stock_left",
            "Stock left over time",
            timeline("stock_left", "t_end_s"),
            "units",
            "time from the opening (s)",
            "Steeper = sold faster; shaded: 95% CI across replications.",
            steps=False,
        ),
        _overlay(
            docs,
            labels,
            folder,
            "compare_human_sales",
            "Units paid per second by humans",
            timeline("sold_human_per_s"),
            "units per second",
            "time from the opening (s)",
            "Humans' sales per second in each run.",
        ),
        _overlay(
            docs,
            labels,
            folder,
            "compare_bot_sales",
            "Units paid per second by bots",
            timeline("sold_bot_per_s"),
            "units per second",
            "time from the opening (s)",
            "Bots' sales per second in each run.",
        ),
        _overlay(
            docs,
            labels,
            folder,
            "compare_success_by_arrival",
            "Humans' success chance by arrival offset",
            lambda d: (
                d["metrics"]["success_by_arrival"]["bin_start_s"],
                d["metrics"]["success_by_arrival"],
            ),
            "share of humans who got a unit",
            "arrival offset from the opening (s)",
            "Flat = arrival time does not matter (a lottery or a shuffled pre-queue).",
            percent_y=True,
        ),
        _overlay(
            docs,
            labels,
            folder,
            "compare_lorenz",
            "Lorenz curves of units per person",
            lambda d: (d["series"]["lorenz"]["population_share"], d["series"]["lorenz"]),
            "share of units kept",
            "share of persons, fewest units first",
            "Closer to the diagonal = fairer.",
            percent_y=True,
            percent_x=True,
            equality=True,
            steps=False,
        ),
    ]
    return [c for c in drawn if c is not None]
