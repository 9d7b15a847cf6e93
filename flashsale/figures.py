"""Figure plumbing shared by every chart module: palette, canvas, axes, saving.

:mod:`flashsale.charts` (one run, a comparison) and :mod:`flashsale.sweep_charts`
(a sweep) draw different pictures on the same ground: the Okabe-Ito palette,
which stays distinguishable under the common colour-vision deficiencies; figures
built with the object API on the Agg canvas (no pyplot global state, no display
needed); value axes labelled with the metric's unit; PNGs written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from flashsale.metrics import metric_unit

__all__ = [
    "BOT_COLOR",
    "HUMAN_COLOR",
    "OKABE_ITO",
    "RUN_COLORS",
    "Chart",
    "finish_grid",
    "label_unit_axis",
    "mean_and_whiskers",
    "nan_array",
    "new_figure",
    "save_chart",
    "wrap_label",
]

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""Okabe & Ito (2008), a palette safe for colour-blind readers."""

HUMAN_COLOR = OKABE_ITO["blue"]
BOT_COLOR = OKABE_ITO["vermillion"]
RUN_COLORS = tuple(
    OKABE_ITO[c]
    for c in ("blue", "vermillion", "bluish_green", "orange", "reddish_purple", "sky_blue", "black")
)
"""One colour per run in a comparison (yellow left out: too faint for lines on white)."""

_DPI = 110

_UNIT_LABELS = {"s": "seconds", "units": "units", "orders/s": "orders per second", "index": "index"}


@dataclass(frozen=True)
class Chart:
    """A drawn chart: file, title and a one-line caption saying how to read it."""

    name: str
    title: str
    caption: str
    path: Path


def nan_array(values: Sequence[float | None]) -> np.ndarray:
    """Floats with None as NaN: metrics.json writes a missing value (e.g. no
    replication sold out) as null, and matplotlib leaves a gap at NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def mean_and_whiskers(blocks: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Means of metric blocks (``mean``, ``ci_low``, ``ci_high``) and their CIs as
    matplotlib's 2 x n ``yerr``: distances below and above each mean, never negative,
    zero where there is no interval (one replication)."""
    mean = nan_array([b["mean"] for b in blocks])
    lo, hi = nan_array([b["ci_low"] for b in blocks]), nan_array([b["ci_high"] for b in blocks])
    return mean, np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(0))


def new_figure(rows: int = 1, cols: int = 1, height: float = 4.6, **kw: Any) -> tuple[Figure, Any]:
    """A 9-inch-wide figure on its own Agg canvas, so drawing needs neither pyplot's
    global state nor a display; the axes always come as a rows x cols array."""
    fig = Figure(figsize=(9, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def save_chart(fig: Figure, folder: Path, name: str, title: str, caption: str) -> Chart:
    """Write ``folder/name.png`` under a temporary name, then rename: a report never
    embeds half a PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tmp = folder / f".{name}.partial.png"
    fig.savefig(tmp, dpi=_DPI)
    tmp.replace(path)
    return Chart(name, title, caption, path)


def label_unit_axis(ax: Axes, name: str) -> None:
    """Label a panel's value axis with the metric's unit, shares as percentages, so
    panels of different metrics side by side cannot be misread."""
    unit = metric_unit(name)
    if unit == "share":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("share", fontsize=8)
    else:
        ax.set_ylabel(_UNIT_LABELS[unit], fontsize=8)


def wrap_label(label: str, width: int = 48) -> str:
    """A long run label broken into lines, so a legend does not outgrow the figure."""
    return "\n".join(textwrap.wrap(label, width)) or label


def finish_grid(
    fig: Figure,
    axes: Any,
    used: int,
    *,
    suptitle: str,
    folder: Path,
    name: str,
    title: str,
    caption: str,
    legend_handles: Sequence[Artist] | None = None,
    legend_ncols: int = 1,
    suptitle_size: float | None = None,
) -> Chart:
    """Finish a grid of one panel per metric and save it: the panels after the first
    ``used`` are hidden, the legend (when given) goes once below the grid rather than
    in every panel, and the title goes over the whole figure."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    if legend_handles is not None:
        fig.legend(
            handles=legend_handles, loc="outside lower center", fontsize=8, ncols=legend_ncols
        )
    if suptitle_size is None:  # matplotlib's own default size for a figure title
        fig.suptitle(suptitle)
    else:
        fig.suptitle(suptitle, fontsize=suptitle_size)
    return save_chart(fig, folder, name, title, caption)
