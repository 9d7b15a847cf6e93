"""The calibration report: how well the fitted service model explains the replay.

One HTML page (charts inline) and its PNGs in one folder: per step, the observed
latency against the load a request met (requests of its pool in flight) beside
the fitted model's; the payment declines against load beside the fitted law; a
table of every fitted value with its 95% interval, and the goodness of fit (R²
and mean absolute percentage error of the mean latency per load level). The
lines :func:`calibration_summary` prints say the same on the console.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from flashsale.calibrate import STEPS, Calibration, Estimate, StepFit, wait_factor
from flashsale.figures import OKABE_ITO, Chart, new_figure, save_chart
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.runs import write_text_atomic

__all__ = ["calibration_summary", "write_calibration_report"]

_SOURCES = {
    "server_timing": "Server-Timing (the target reported queue wait, service and gateway time)",
    "response_times": "response times and load (Kraft et al. 2009 regression; no Server-Timing)",
}


def _ms(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    if not (math.isfinite(e.low) and math.isfinite(e.high)):
        return f"{e.value * 1000:.3g} ms"
    return f"{e.value * 1000:.3g} ms ({e.low * 1000:.3g} to {e.high * 1000:.3g})"


def _num(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    if not (math.isfinite(e.low) and math.isfinite(e.high)):
        return f">= {e.low:.3g}" if math.isfinite(e.low) else f"{e.value:.3g}"
    return f"{e.value:.3g} ({e.low:.3g} to {e.high:.3g})"


def _dist(d: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if k != "dist") + f" ({d['dist']})"


def calibration_summary(cal: Calibration) -> list[str]:
    """Console lines: one per step (demand, concurrency, R², MAPE), then the payment."""
    lines = [f"calibrated from {_SOURCES[cal.source]}"]
    if cal.source == "server_timing":
        lines.append(
            f"  {cal.unreported:.0%} of the latency was not reported by the target "
            "(network, client and server lag): the model leaves it out"
        )
    for s in STEPS:
        f = cal.steps[s]
        conc = _num(f.concurrency) if f.identified else "not identified (the scenario's kept)"
        lines.append(
            f"  {s:<5} {f.n:>7,} requests  demand {_ms(f.demand)}  workers {conc}  "
            f"fit R² {f.r2:.2f}, MAPE {f.mape:.1%}"
        )
    p = cal.payment
    law = f"failure_prob {_num(p.failure_prob)}"
    if p.failure_growth is not None:
        law += f", growth {_num(p.failure_growth)} above load {p.load_knee:.3g}"
    lines.append(f"  gateway {_ms(p.gateway)}; {law} ({p.declined} of {p.payments:,} declined)")
    return lines


def _latency_chart(cal: Calibration, folder: Path) -> Chart:
    fig, axes = new_figure(1, len(STEPS), height=3.8)
    for ax, s in zip(axes[0], STEPS, strict=True):
        f: StepFit = cal.steps[s]
        ax.scatter(f.load, f.latency * 1000, s=4, alpha=0.25, color=OKABE_ITO["sky_blue"],
                   label="a request", rasterized=True)  # fmt: skip
        levels = np.unique(f.load)
        if levels.size > 40:  # equal-count bins, as the goodness of fit uses
            edges = np.unique(np.quantile(f.load, np.linspace(0, 1, 31)))
        else:
            edges = np.append(levels, levels[-1] + 1)
        which = np.clip(np.searchsorted(edges, f.load, "right") - 1, 0, max(0, edges.size - 2))
        k = np.bincount(which).astype(float)
        keep = k > 0
        ax.plot(np.bincount(which, f.load)[keep] / k[keep],
                np.bincount(which, f.latency)[keep] / k[keep] * 1000, "o",
                color=OKABE_ITO["blue"], ms=4, label="observed mean")  # fmt: skip
        x = np.linspace(0, max(1.0, float(f.load.max())), 200)
        a, d, c = f.model
        ax.plot(x, (a + d * wait_factor(x, c)) * 1000, color=OKABE_ITO["vermillion"],
                lw=1.8, label="fitted model")  # fmt: skip
        top = float(np.quantile(f.latency, 0.99)) * 1000
        ax.set_ylim(0, max(top, float(np.max(f.predicted)) * 1000) * 1.15)
        ax.set_title(f"{s}: R² {f.r2:.2f}, MAPE {f.mape:.0%}", fontsize=10)
        ax.set_xlabel("requests of its pool in flight at send", fontsize=8)
        ax.set_ylabel("latency, ms", fontsize=8)
        ax.tick_params(labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle("Latency against load: observed and fitted")
    return save_chart(
        fig,
        folder,
        "latency_vs_load",
        "Latency against load, per step",
        "Each dot is a request (the top 1% cut off), blue points the mean per load level, "
        "the red line the fitted model a + D·max(0, n - c + 1)/c (a: the step's latency with "
        "a worker free; D: the pool's mean demand; c: its workers). R² and MAPE "
        "compare the means per load level with the model.",
    )


def _failure_chart(cal: Calibration, folder: Path) -> Chart | None:
    p = cal.payment
    if p.payments == 0:
        return None
    fig, axes = new_figure(1, 1, height=3.6)
    ax = axes[0][0]
    edges = np.unique(np.quantile(p.load, np.linspace(0, 1, 11)))
    which = np.clip(np.searchsorted(edges, p.load, "right") - 1, 0, max(0, edges.size - 2))
    k = np.bincount(which).astype(float)
    keep = k > 0
    ax.plot(np.bincount(which, p.load)[keep] / k[keep],
            np.bincount(which, p.declines)[keep] / k[keep], "o", color=OKABE_ITO["blue"],
            label="observed share declined (10 equal-count bins)")  # fmt: skip
    x = np.linspace(0, max(1.0, float(p.load.max())), 200)
    growth = p.failure_growth.value if p.failure_growth is not None else 0.0
    knee = p.load_knee if p.load_knee is not None else 0.0
    law = np.minimum(1, p.failure_prob.value + growth * np.maximum(0, x - knee))
    ax.plot(x, law, color=OKABE_ITO["vermillion"], lw=1.8, label="fitted law")
    ax.axhspan(p.failure_prob.low, p.failure_prob.high, color=OKABE_ITO["vermillion"], alpha=0.12,
               label="failure_prob 95% CI")  # fmt: skip
    ax.set_xlabel("pay pool occupancy the payment met (requests per worker)", fontsize=8)
    ax.set_ylabel("share of payments declined", fontsize=8)
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    ax.set_title(f"{p.declined} of {p.payments:,} payments declined", fontsize=10)
    return save_chart(
        fig,
        folder,
        "failures_vs_load",
        "Payment declines against load",
        "Share of the payments the gateway answered that it declined, by the pay pool's "
        "occupancy, and the fitted law min(1, failure_prob + failure_growth·max(0, L - knee)).",
    )


def _unreported(cal: Calibration) -> str:
    if cal.source != "server_timing":
        return ""
    return (
        f" The target did not account for {cal.unreported:.0%} of the latency (the network, "
        "the client's and the server's own lag): the fitted model leaves it out."
    )


def write_calibration_report(cal: Calibration, folder: Path, title: str, scenario: Path) -> Path:
    """Write ``folder/calibration.html`` and its PNGs; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = [c for c in (_latency_chart(cal, folder), _failure_chart(cal, folder)) if c]
    rows = []
    for s in STEPS:
        f = cal.steps[s]
        conc = _num(f.concurrency) if f.identified else "not identified"
        rows.append([escape(s), f"{f.n:,}", escape(_ms(f.demand)), escape(_dist(f.dist)),
                     escape(conc), f"{f.r2:.3f}", f"{f.mape:.1%}"])  # fmt: skip
    p = cal.payment
    pay_rows = [
        ["gateway time (mean)", escape(_ms(p.gateway)), escape(_dist(p.gateway_dist))],
        ["failure_prob", escape(_num(p.failure_prob)), escape(p.failure_prob.method)],
    ]
    if p.failure_growth is not None:
        pay_rows.append(
            ["failure_growth", escape(_num(p.failure_growth)), f"knee at load {p.load_knee:.3g}"]
        )
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>Fitted from {escape(_SOURCES[cal.source])}. Calibrated scenario: "
        f"<code>{escape(scenario)}</code>; each fitted value there carries its 95% interval "
        f"and method as a comment.{_unreported(cal)} Intervals: percentile bootstrap over "
        "requests (200 resamples), Clopper-Pearson for a flat failure probability.</p>",
        "<h2>Per step</h2>",
        html_table(
            [
                "step",
                "requests",
                "mean demand (95% CI)",
                "distribution",
                "workers (95% CI)",
                "R²",
                "MAPE",
            ],
            rows,
        ),
        '<p class="muted">R² and MAPE: the mean latency per load level (up to 30 levels of '
        "equal counts) against the model's. A single request's latency scatters by its own "
        "service time, which no model of the mean explains.</p>",
        "<h2>Payment</h2>",
        html_table(["parameter", "fitted (95% CI)", "how"], pay_rows),
        *(embedded_chart(c) for c in charts),
    ]
    return write_text_atomic(folder / "calibration.html", html_page(title, body))
