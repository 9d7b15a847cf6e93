"""The prediction view's charts and page, drawn from a predict.json document.

Each chart holds the replay (one draw: a black line) against the simulation (the
mean over its replications, with the 95% prediction band for one new replication
shaded), over time from the opening: stock left and units held in carts, units paid
per second (humans, bots) and latency p95 per step. The stock and sales charts mark
the sell-out time (the last unit paid, which comes after the stock left first
reaches 0 when held units come back): the replay's as a line, the simulation's mean
as a line and its 95% prediction interval as a span. All three share one time axis,
cropped to where the stock, cart and sales curves change (with the sell-out marks)
when that is much shorter than the window the runs recorded. :mod:`flashsale.predict`
reduced every curve; the charts only find where they change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

from flashsale.figures import (
    OKABE_ITO,
    Chart,
    draw_band,
    finish_grid,
    nan_array,
    new_figure,
)
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.metrics import fmt_metric
from flashsale.predict import fmt_error, fmt_interval_of, verdict_text
from flashsale.runs import write_text_atomic

__all__ = ["draw_predict_charts", "write_predict_report"]

_SIM_COLOR = OKABE_ITO["blue"]
_REPLAY_COLOR = OKABE_ITO["black"]
_SELLOUT_PI_COLOR = OKABE_ITO["orange"]

_SELLOUT = "sellout_time_s"
_SELLOUT_NOTE = (
    "Sell-out: the last unit paid, later than the stock left first reaching 0 when held "
    "units come back (declined payments, expired holds)."
)
_TIMELINE = ("stock_left", "reserved", "sold_human_per_s", "sold_bot_per_s")

CROP_MARGIN = 0.05
"""Share of the span where the curves change added on either side of a cropped axis
(at least one timeline bin)."""

CROP_WORTH = 0.8
"""A crop keeping more than this share of the recorded window is not made: the axis
then shows the whole window."""


@dataclass(frozen=True)
class TimeAxis:
    """The charts' one time axis (s from the opening): shown ``lo`` to ``hi``, the
    curves recorded ``start`` to ``end``, the stock, cart and sales lines and the
    sell-out marks changing only ``first`` to ``last``."""

    lo: float
    hi: float
    start: float
    end: float
    first: float
    last: float

    @property
    def cropped(self) -> bool:
        """Whether the axis leaves part of the recorded window out."""
        return self.lo > self.start or self.hi < self.end

    def note(self) -> str:
        """The axis label's second line, saying what a crop leaves out."""
        return (
            f"axis cropped to {_sec(self.lo)} to {_sec(self.hi)} s: the curves run "
            f"{_sec(self.start)} to {_sec(self.end)} s; stock, carts and sales change only "
            f"from {_sec(self.first)} to {_sec(self.last)} s"
        )


def _sec(t: float) -> str:
    return f"{round(t, 1):g}"


def _timeline_curves(tl: Mapping[str, Any]) -> Iterator[tuple[Sequence[float], Sequence[Any]]]:
    """Every sampled line of the stock and sales charts: (times, values)."""
    for col in _TIMELINE:
        rep, sim = tl[col]["replay"], tl[col]["simulation"]
        yield rep["t_s"], rep["value"]
        for key in ("mean", "pi_low", "pi_high"):
            yield sim["t_s"], sim[key]


def _latency_bins(lat: Mapping[str, Any]) -> Iterator[float]:
    """The start and end of every latency bin either run has (s)."""
    for curve in lat.get("steps", {}).values():
        for run in ("replay", "simulation"):
            width = lat[f"{run}_bin_s"]
            for t in curve[run]["t_s"]:
                yield t
                yield t + width


def change_span(t: Sequence[float], values: Sequence[float | None]) -> tuple[float, float] | None:
    """From the sample before a curve first leaves its first value to the sample after it
    last differs from its final value (s); None when it never changes. Undefined points
    (None) are left out."""
    v, ts = nan_array(values), np.asarray(t, dtype=float)
    ok = np.isfinite(v)
    v, ts = v[ok], ts[ok]
    if v.size < 2:
        return None
    moved = np.flatnonzero(v != v[0])
    if moved.size == 0:
        return None
    unsettled = np.flatnonzero(v != v[-1])
    return float(ts[max(moved[0] - 1, 0)]), float(ts[min(unsettled[-1] + 1, v.size - 1)])


def _sellout(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((f for f in doc["figures"] if f["name"] == _SELLOUT), None)


def time_axis(doc: Mapping[str, Any]) -> TimeAxis | None:
    """The time axis of a prediction's charts: from :data:`CROP_MARGIN` before the first
    change of any stock, cart or sales line (replay, mean, band edges) to as far after
    the last one (at least one bin), widened to the sell-out marks and kept inside the
    recorded window (every timeline sample and latency bin); the whole window when that
    crop would keep more than :data:`CROP_WORTH` of it. None without timeline curves or
    when none of them changes (matplotlib's own limits then)."""
    tl = doc["curves"]["timeline"]
    if not tl:
        return None
    curves = list(_timeline_curves(tl))
    times = [x for t, _ in curves for x in t] + list(_latency_bins(doc["curves"]["latency_p95_s"]))
    start, end = min(times), max(times)
    spans = [s for t, v in curves if (s := change_span(t, v)) is not None]
    sell = _sellout(doc)
    marks = [] if sell is None else [sell[k] for k in ("observed", "mean", "pi_low", "pi_high")]
    at = [x for s in spans for x in s] + [min(max(m, start), end) for m in marks if m is not None]
    if not at:
        return None
    first, last = min(at), max(at)
    margin = max(CROP_MARGIN * (last - first), tl["replay_bin_s"], tl["simulation_bin_s"])
    lo, hi = max(start, first - margin), min(end, last + margin)
    if hi - lo > CROP_WORTH * (end - start):
        lo, hi = start, end
    return TimeAxis(lo=lo, hi=hi, start=start, end=end, first=first, last=last)


def _set_time_axis(axes: Sequence[Axes], axis: TimeAxis | None, label: str) -> None:
    """The shared time axis on every panel, its label saying when it is cropped."""
    if axis is not None:
        for ax in axes:
            ax.set_xlim(axis.lo, axis.hi)
        if axis.cropped:
            label = f"{label}\n{axis.note()}"
    axes[-1].set_xlabel(label)


def _sellout_marks(ax: Axes, doc: Mapping[str, Any]) -> list[Line2D]:
    """The sell-out time (the last unit paid) on a panel: the replay's as a dotted black
    line, the simulation's mean as a dashed blue one and its 95% prediction interval
    as a span, labelled with their values for the legend. Returns legend entries
    without a mark for those missing (no sell-out), saying so."""
    sell = _sellout(doc)
    if sell is None:
        return []
    missing: list[str] = []
    obs, mean, low, high = sell["observed"], sell["mean"], sell["pi_low"], sell["pi_high"]
    n, reps = sell["n"], sell["replications"]
    if low is not None and high is not None:
        ax.axvspan(
            low,
            high,
            color=_SELLOUT_PI_COLOR,
            alpha=0.18,
            lw=0,
            label=f"predicted sell-out, 95% PI: {fmt_interval_of(sell)}",
        )
    if mean is not None:
        some = "mean" if n > 1 else "1 replication"
        some += f", {n} of {reps} replications sold out" if n < reps else ""
        ax.axvline(
            mean,
            color=_SIM_COLOR,
            ls="--",
            lw=1.3,
            label=f"predicted sell-out ({some}): {fmt_metric(_SELLOUT, mean)}",
        )
    else:
        missing.append(f"predicted sell-out: none of {reps} replications sold out")
    if obs is not None:
        ax.axvline(
            obs,
            color=_REPLAY_COLOR,
            ls=":",
            lw=1.6,
            label=f"observed sell-out: {fmt_metric(_SELLOUT, obs)}",
        )
    else:
        missing.append("observed sell-out: none, the replay did not sell out")
    return [Line2D([], [], ls="none", label=text) for text in missing]


def _n(doc: Mapping[str, Any]) -> int:
    return len(doc["simulation"]["replications"])


def _band_note(n: int) -> str:
    return (
        f"simulation: mean of {n} replications, shaded: 95% prediction band for one "
        "new replication; replay: one draw"
        if n > 1
        else "simulation: 1 replication, no prediction band; replay: one draw"
    )


def _bins(part: Mapping[str, Any]) -> str:
    sim, rep = part["simulation_bin_s"], part["replay_bin_s"]
    return f"bins of {sim:g} s" if sim == rep else f"bins of {sim:g} s (sim), {rep:g} s (replay)"


def _pair(
    ax: Axes, curve: Mapping[str, Any], n: int, steps: bool = True, log: bool = False
) -> None:
    """The simulation's mean and band, and the replay's line, on one panel."""
    sim = curve["simulation"]
    draw_band(
        ax,
        sim["t_s"],
        {"mean": sim["mean"], "ci_low": sim["pi_low"], "ci_high": sim["pi_high"]},
        _SIM_COLOR,
        f"simulation, mean of {n}" if n > 1 else "simulation (1 replication)",
        steps=steps,
        log=log,
    )
    rep = curve["replay"]
    ax.plot(
        rep["t_s"],
        nan_array(rep["value"]),
        color=_REPLAY_COLOR,
        lw=1.3,
        label="replay (observed)",
        drawstyle="steps-post" if steps else "default",
    )
    ax.grid(alpha=0.3, which="both" if log else "major")


def _legend(ax: Axes, n: int, extra: Sequence[Any] = ()) -> list[Any]:
    """The panel's entries, the band's after the two curves (the sell-out marks follow)."""
    handles = list(ax.get_legend_handles_labels()[0])
    if n > 1:
        handles.insert(2, Patch(color=_SIM_COLOR, alpha=0.25, label="95% prediction band"))
    return [*handles, *extra]


def _stock(doc: Mapping[str, Any], folder: Path, axis: TimeAxis | None) -> Chart | None:
    tl = doc["curves"]["timeline"]
    if not tl:
        return None
    n = _n(doc)
    fig, axes = new_figure(2, 1, height=7.0, sharex=True)
    extra: list[Line2D] = []
    for ax, (col, what) in zip(
        axes[:, 0],
        (
            ("stock_left", "units left\n(neither sold nor in a cart)"),
            ("reserved", "units held in carts, not yet\npaid (linear to 1, then log)"),
        ),
        strict=True,
    ):
        _pair(ax, tl[col], n, steps=False)
        extra = _sellout_marks(ax, doc)
        ax.set_ylabel(what, fontsize=9)
        if col == "reserved":  # the last few units held decide the sell-out: log shows them
            ax.set_yscale("symlog", linthresh=1.0, linscale=0.5)
            ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1, subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_ylim(bottom=0)
    _set_time_axis(list(axes[:, 0]), axis, "time from the opening (s)")
    return finish_grid(
        fig,
        axes,
        2,
        suptitle="Stock left and units held in carts over time: predicted vs observed\n"
        f"{_band_note(n)}",
        suptitle_size=11,
        folder=folder,
        name="predict_stock_left",
        title="Stock left and units held in carts over time, predicted vs observed",
        caption=f"{_band_note(n)}. States at the end of each interval ({_bins(tl)}). "
        f"{_SELLOUT_NOTE}",
        legend_handles=_legend(axes[0, 0], n, extra),
        legend_ncols=2,
    )


def _sales(doc: Mapping[str, Any], folder: Path, axis: TimeAxis | None) -> Chart | None:
    tl = doc["curves"]["timeline"]
    if not tl:
        return None
    n = _n(doc)
    fig, axes = new_figure(2, 1, height=7.0, sharex=True)
    extra: list[Line2D] = []
    for ax, (col, who) in zip(
        axes[:, 0], (("sold_human_per_s", "humans"), ("sold_bot_per_s", "bots")), strict=True
    ):
        _pair(ax, tl[col], n)
        extra = _sellout_marks(ax, doc)
        ax.set_ylabel(f"units paid per second\nby {who}", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_title(who, fontsize=10)
    _set_time_axis(list(axes[:, 0]), axis, "time from the opening (s)")
    return finish_grid(
        fig,
        axes,
        2,
        suptitle=f"Units paid per second ({_bins(tl)}): predicted vs observed\n{_band_note(n)}",
        suptitle_size=11,
        folder=folder,
        name="predict_sales_per_second",
        title="Sales per second, predicted vs observed",
        caption=f"{_band_note(n)}. Who the stock went to, as it went. {_SELLOUT_NOTE}",
        legend_handles=_legend(axes[0, 0], n, extra),
        legend_ncols=2,
    )


def _latency(doc: Mapping[str, Any], folder: Path, axis: TimeAxis | None) -> Chart | None:
    lat = doc["curves"]["latency_p95_s"]
    steps = list(lat.get("steps", {}))
    if not steps:
        return None
    n = _n(doc)
    fig, axes = new_figure(len(steps), 1, height=1.6 + 1.9 * len(steps), sharex=True)
    for ax, step in zip(axes[:, 0], steps, strict=True):
        _pair(ax, lat["steps"][step], n, log=True)
        ax.set_yscale("log")
        ax.set_ylabel(f"{step}\np95 latency (s)", fontsize=9)
    label = "time the request was sent, from the opening (s)"
    hidden = [] if axis is None or not axis.cropped else _outside(lat, axis)
    if hidden:
        label += f"; {', '.join(hidden)} requests also outside the axis (not shown)"
    _set_time_axis(list(axes[:, 0]), axis, label)
    return finish_grid(
        fig,
        axes,
        len(steps),
        suptitle=f"Latency p95 per step ({_bins(lat)}, log scale): predicted vs observed\n"
        f"{_band_note(n)}",
        suptitle_size=11,
        folder=folder,
        name="predict_latency_p95",
        title="Latency p95 per step over time, predicted vs observed",
        caption=f"{_band_note(n)}. Send-to-response seconds; gaps are bins without "
        "requests of that step; in a bin only some replications reached, the band is "
        "wider than exact (it counts all of them).",
        legend_handles=_legend(axes[0, 0], n),
        legend_ncols=3,
    )


def _outside(lat: Mapping[str, Any], axis: TimeAxis) -> list[str]:
    """The steps with a latency bin (replay or simulation) wholly outside the crop."""
    out = []
    for step, curve in lat["steps"].items():
        for run, key, width in (
            ("replay", "value", lat["replay_bin_s"]),
            ("simulation", "mean", lat["simulation_bin_s"]),
        ):
            t = np.asarray(curve[run]["t_s"], dtype=float)
            held = np.isfinite(nan_array(curve[run][key]))
            if np.any(held & ((t + width <= axis.lo) | (t >= axis.hi))):
                out.append(step)
                break
    return out


def draw_predict_charts(doc: Mapping[str, Any], folder: Path) -> list[Chart]:
    """Draw the prediction view's charts into ``folder``; a chart without data is skipped."""
    axis = time_axis(doc)
    drawn = [_stock(doc, folder, axis), _sales(doc, folder, axis), _latency(doc, folder, axis)]
    return [c for c in drawn if c is not None]


def _runs_table(doc: Mapping[str, Any]) -> str:
    rows = []
    for role, key in (("observed", "replay"), ("predicted", "simulation")):
        r = doc[key]
        rows.append(
            (
                escape(role),
                escape(f"{r['engine']}" + (f", scale {r['scale']}" if r["scale"] else "")),
                escape(r["scenario"]),
                escape(r["seed"]),
                escape(len(r["replications"])),
                f"<code>{escape(r['path'])}</code>",
            )
        )
    return html_table(
        ["", "engine", "scenario", "seed", "replications", "folder"], rows, num_from=9
    )


def _figures_table(figures: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for f in figures:
        cls = {True: "pass", False: "fail", None: "muted"}[f["inside"]]
        rows.append(
            (
                escape(f["label"]),
                escape(fmt_metric(f["name"], f["observed"])),
                escape(fmt_metric(f["name"], f["mean"])),
                escape(fmt_interval_of(f)),
                escape(fmt_error(f)),
                f'<span class="{cls}">{escape(verdict_text(f))}</span>',
            )
        )
    head = ["figure", "observed (replay)", "predicted mean", "95% prediction interval"]
    return html_table([*head, "error (observed - predicted)", "verdict"], rows)


def write_predict_report(doc: Mapping[str, Any], charts: Sequence[Chart], path: Path) -> Path:
    """Write the prediction view's report.html: the two runs, any scenario difference,
    each figure observed vs predicted with its interval and verdict, the method, charts."""
    name = doc["replay"]["scenario"]
    body = [f"<h1>Prediction vs observation: {escape(name)}</h1>", "<h2>Runs</h2>"]
    body.append(_runs_table(doc))
    for text in doc["not_whole"]:
        body.append(f'<p class="warn"><b>Not a whole run</b>: {escape(text)}.</p>')
    if doc["scenario_differences"]:
        items = "".join(
            f"<li><code>{escape(d['setting'])}</code>: replay {escape(d['replay'])}, "
            f"simulation {escape(d['simulation'])}</li>"
            for d in doc["scenario_differences"]
        )
        body.append(
            '<div class="warn"><b>The scenarios differ</b> beyond the service model and the '
            f"seed: the simulation predicts another sale than the one replayed.<ul>{items}"
            "</ul></div>"
        )
    body.append("<h2>Key figures</h2>")
    body.append(_figures_table(doc["figures"]))
    judged = [f for f in doc["figures"] if f["inside"] is not None]
    inside = sum(f["inside"] is True for f in judged)
    body.append(
        f"<p><b>{inside} of {len(judged)}</b> figures fall inside their 95% prediction "
        "interval. Errors of shares are in percentage points (pp); other errors also "
        "relative to the prediction.</p>"
    )
    iv = doc["interval"]
    body.append(
        f'<p class="muted">Interval: {escape(iv["formula"])}. Source: {escape(iv["source"])}. '
        f"Why a prediction interval: {escape(iv['why'])}. Expect about 1 figure in 20 "
        "outside by chance when the model is right.</p>"
    )
    body.append("<h2>Curves over time</h2>")
    body.extend(embedded_chart(c) for c in charts)
    return write_text_atomic(path, html_page(f"flashsale prediction: {name}", body))
