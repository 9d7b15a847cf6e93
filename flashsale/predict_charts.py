"""The prediction view's charts and page, drawn from a predict.json document.

Each chart holds the replay (one draw: a black line) against the simulation (the
mean over its replications, with the 95% prediction band for one new replication
shaded), over time from the opening: stock left, units paid per second (humans,
bots) and latency p95 per step. They compute nothing: :mod:`flashsale.predict`
reduced every curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import Patch

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


def _legend(ax: Axes, n: int) -> list[Any]:
    handles, _ = ax.get_legend_handles_labels()
    if n > 1:
        handles.append(Patch(color=_SIM_COLOR, alpha=0.25, label="95% prediction band"))
    return list(handles)


def _stock(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    tl = doc["curves"]["timeline"]
    if not tl:
        return None
    n = _n(doc)
    fig, axes = new_figure(height=4.8)
    ax = axes[0][0]
    _pair(ax, tl["stock_left"], n, steps=False)
    ax.set_xlabel("time from the opening (s)")
    ax.set_ylabel("units left (neither sold nor in a cart)")
    ax.set_ylim(bottom=0)
    return finish_grid(
        fig,
        axes,
        1,
        suptitle=f"Stock left over time: predicted vs observed\n{_band_note(n)}",
        suptitle_size=11,
        folder=folder,
        name="predict_stock_left",
        title="Stock left over time, predicted vs observed",
        caption=f"{_band_note(n)}. States at the end of each interval ({_bins(tl)}).",
        legend_handles=_legend(ax, n),
        legend_ncols=3,
    )


def _sales(doc: Mapping[str, Any], folder: Path) -> Chart | None:
    tl = doc["curves"]["timeline"]
    if not tl:
        return None
    n = _n(doc)
    fig, axes = new_figure(2, 1, height=6.4, sharex=True)
    for ax, (col, who) in zip(
        axes[:, 0], (("sold_human_per_s", "humans"), ("sold_bot_per_s", "bots")), strict=True
    ):
        _pair(ax, tl[col], n)
        ax.set_ylabel(f"units paid per second\nby {who}", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_title(who, fontsize=10)
    axes[-1, 0].set_xlabel("time from the opening (s)")
    return finish_grid(
        fig,
        axes,
        2,
        suptitle=f"Units paid per second ({_bins(tl)}): predicted vs observed\n{_band_note(n)}",
        suptitle_size=11,
        folder=folder,
        name="predict_sales_per_second",
        title="Sales per second, predicted vs observed",
        caption=f"{_band_note(n)}. Who the stock went to, as it went.",
        legend_handles=_legend(axes[0, 0], n),
        legend_ncols=3,
    )


def _latency(doc: Mapping[str, Any], folder: Path) -> Chart | None:
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
    axes[-1, 0].set_xlabel("time the request was sent, from the opening (s)")
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


def draw_predict_charts(doc: Mapping[str, Any], folder: Path) -> list[Chart]:
    """Draw the prediction view's charts into ``folder``; a chart without data is skipped."""
    drawn = [_stock(doc, folder), _sales(doc, folder), _latency(doc, folder)]
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
