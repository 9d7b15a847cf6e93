"""Figure plumbing shared by every chart module: palette, canvas, axes, saving.

:mod:`flashsale.charts` (one run, a comparison) and :mod:`flashsale.sweep_charts`
(a sweep) draw different pictures on the same ground: the Okabe-Ito palette,
which stays distinguishable under the common colour-vision deficiencies; figures
built with the object API on the Agg canvas (no pyplot global state, no display
needed); value axes labelled with the metric's unit; PNGs written atomically.
"""

from __future__ import annotations

import textwrap
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation
from matplotlib.ticker import PercentFormatter
from matplotlib.transforms import Bbox

from flashsale.metric_registry import UNIT_LABELS, unit_of

__all__ = [
    "BOT_COLOR",
    "HUMAN_COLOR",
    "OKABE_ITO",
    "RUN_COLORS",
    "Chart",
    "boxes_overlap",
    "draw_band",
    "draw_whiskers",
    "finish_grid",
    "has_interval",
    "is_dark",
    "keep_tick_labels_apart",
    "label_bars",
    "label_unit_axis",
    "mean_and_whiskers",
    "nan_array",
    "new_figure",
    "save_chart",
    "tick_label_boxes",
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


def has_interval(block: Mapping[str, Any]) -> bool:
    """Whether a metric block has a confidence interval to draw (not with one
    replication, nor where fewer than two replications had a value)."""
    return block.get("ci_low") is not None and block.get("ci_high") is not None


def draw_whiskers(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    blocks: Sequence[Mapping[str, Any]],
    *,
    horizontal: bool = False,
    **kw: Any,
) -> bool:
    """95% CI whiskers at ``x`` for the blocks that have an interval, and nothing for
    those that have none: a zero-length whisker with its cap would read as an interval
    of width zero, i.e. certainty, where there is only one replication. True when any
    whisker was drawn."""
    mean, err = mean_and_whiskers(blocks)
    keep = np.array([has_interval(b) for b in blocks], dtype=bool) & np.isfinite(mean)
    if not keep.any():
        return False
    xs = np.asarray(x, dtype=float)[keep]
    style: dict[str, Any] = {"fmt": "none", "ecolor": "#000000", "elinewidth": 0.8, "capsize": 3}
    style.update(kw)
    if horizontal:
        ax.errorbar(mean[keep], xs, xerr=err[:, keep], **style)
    else:
        ax.errorbar(xs, mean[keep], yerr=err[:, keep], **style)
    return True


def draw_band(
    ax: Axes,
    x: Sequence[float],
    b: Mapping[str, Any],
    color: str,
    label: str,
    steps: bool = True,
    shade: bool = True,
    log: bool = False,
    alpha: float = 0.25,
) -> None:
    """Draw a curve block (``mean``, ``ci_low``, ``ci_high`` per point, None where
    undefined) on ``ax``: the mean as a line (as steps when the values are per time bin)
    and, with ``shade``, its interval as a band; on a ``log`` axis the band stops a
    decade below the mean."""
    xs = np.asarray(x, dtype=float)
    ax.plot(
        xs,
        nan_array(b["mean"]),
        color=color,
        label=label,
        lw=1.6,
        drawstyle="steps-post" if steps else "default",
    )
    lo, hi = nan_array(b["ci_low"]), nan_array(b["ci_high"])
    if not shade:
        return
    if log:
        # A t interval can dip below zero; on a log axis that would swamp the chart.
        lo = np.maximum(lo, nan_array(b["mean"]) / 10)
    if np.isfinite(lo).any():
        ax.fill_between(xs, lo, hi, color=color, alpha=alpha, lw=0, step="post" if steps else None)


def new_figure(rows: int = 1, cols: int = 1, height: float = 4.6, **kw: Any) -> tuple[Figure, Any]:
    """A 9-inch-wide figure on its own Agg canvas, so drawing needs neither pyplot's
    global state nor a display; the axes always come as a rows x cols array."""
    fig = Figure(figsize=(9, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def save_chart(fig: Figure, folder: Path, name: str, title: str, caption: str) -> Chart:
    """Write ``folder/name.png`` under a temporary name, then rename: a report never
    embeds half a PNG. Tick labels and value labels asked to stay readable
    (:func:`keep_tick_labels_apart`, :func:`label_bars`) are placed first, on the
    figure's final layout."""
    _settle(fig)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tmp = folder / f".{name}.partial.png"
    fig.savefig(tmp, dpi=_DPI)
    tmp.replace(path)
    return Chart(name, title, caption, path)


def label_unit_axis(ax: Axes, name: str) -> None:
    """Label a panel's value axis with the metric's unit, shares as percentages, so
    panels of different metrics side by side cannot be misread."""
    unit = unit_of(name)
    if unit == "share":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("share", fontsize=8)
    else:
        ax.set_ylabel(UNIT_LABELS[unit], fontsize=8)


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


# ---------------------------------------------------------------- readability
#
# Whether a label fits can only be told on the figure's final layout (constrained
# layout moves and shrinks the axes once titles, legends and tick labels are
# known), so the charts ask for it while drawing and :func:`save_chart` settles it
# with the renderer just before writing the PNG.

_PAD_PX = 2.0
"""Pixels kept free between a value label and the edge of its bar."""


@dataclass
class _ValueLabel:
    ax: Axes
    bar: Rectangle
    text: Annotation
    top: float  # data y the label sits on when outside: the bar's top or its whisker's
    low: float | None  # data y of the whisker's lower end; None without a whisker
    place: str = "centre"  # "centre" or "left" of the bar (clear of its whisker), "above"


@dataclass
class _Pending:
    tick_axes: list[Axes] = field(default_factory=list)
    values: list[_ValueLabel] = field(default_factory=list)


_PENDING: weakref.WeakKeyDictionary[Figure, _Pending] = weakref.WeakKeyDictionary()


def _pending(fig: Figure) -> _Pending:
    return _PENDING.setdefault(fig, _Pending())


def _draw(fig: Figure) -> RendererBase:
    """Lay the figure out as it will be saved (a draw that paints no pixels); the
    renderer measures where everything went."""
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()  # type: ignore[attr-defined,no-any-return]


def is_dark(color: Any) -> bool:
    """Whether a colour reads on a white page (relative luminance below 0.5)."""
    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5


def boxes_overlap(boxes: Sequence[Bbox]) -> bool:
    """Whether any two of the (display-space) boxes overlap."""
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def tick_label_boxes(ax: Axes, renderer: RendererBase, axis: str = "x") -> list[Bbox]:
    """Display-space boxes of an axes' visible, non-empty major tick labels."""
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [
        t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text().strip()
    ]


def keep_tick_labels_apart(ax: Axes) -> None:
    """Ask that the x tick labels of ``ax`` never run into each other: when they
    would (long labels, many runs, crowded values), they are turned upright, and
    if even then they touch, only every second (third, ...) one is kept."""
    _pending(ax.figure).tick_axes.append(ax)  # type: ignore[arg-type]


def label_bars(
    ax: Axes,
    bars: Sequence[Rectangle],
    texts: Sequence[str],
    tops: Sequence[float],
    lows: Sequence[float | None] | None = None,
    fontsize: float = 7,
) -> None:
    """Ask for a value label per bar: in white at the foot of the bar when the bar
    can hold it (upright when the bars are too narrow for it lying down; beside the
    bar's whisker, whose lower end is ``lows``, rather than under it), otherwise in
    black just above the bar or its whisker (``tops``), with headroom made for it;
    never white text spilling over the edge of its bar onto the white page."""
    pending = _pending(ax.figure)  # type: ignore[arg-type]
    lows = lows if lows is not None else [None] * len(bars)
    for bar, text, top, low in zip(bars, texts, tops, lows, strict=True):
        x = bar.get_x() + bar.get_width() / 2
        ann = ax.annotate(
            text,
            (x, 0.0),
            xytext=(0, _PAD_PX),
            textcoords="offset pixels",
            ha="center",
            va="bottom",
            fontsize=fontsize,
            color="white",
            annotation_clip=False,
        )
        ann.set_in_layout(False)  # the headroom made for it keeps it inside the axes
        top = float(top) if np.isfinite(top) else 0.0
        low = None if low is None or not np.isfinite(low) else float(low)
        pending.values.append(_ValueLabel(ax, bar, ann, max(top, 0.0), low))


def _spread_ticks(fig: Figure, axes: Sequence[Axes], renderer: RendererBase) -> RendererBase:
    """Spread the crowded axes' tick labels; the renderer of the figure as it is now."""
    crowded = [ax for ax in axes if boxes_overlap(tick_label_boxes(ax, renderer))]
    if not crowded:
        return renderer
    for ax in crowded:
        ax.tick_params(axis="x", labelrotation=90)
    renderer = _draw(fig)
    for ax in crowded:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        step = 2
        while boxes_overlap(tick_label_boxes(ax, renderer)) and step < len(labels):
            ax.set_xticks(
                ax.get_xticks(), [lab if i % step == 0 else "" for i, lab in enumerate(labels)]
            )
            renderer = _draw(fig)
            step += 1
    return renderer


def _inside_place(lab: _ValueLabel, renderer: RendererBase) -> str:
    """Where in its bar a label fits: "centre" (clear of the whisker, if any),
    "left" (beside the whisker, which runs up the middle), or "above" (it does not)."""
    t, b = lab.text.get_window_extent(renderer), lab.bar.get_window_extent(renderer)
    if t.height + 2 * _PAD_PX > b.height:
        return "above"
    if lab.low is not None:
        x = lab.bar.get_x() + lab.bar.get_width() / 2
        low_px = lab.ax.transData.transform((x, lab.low))[1]
        clear = low_px >= b.y0 + t.height + 2 * _PAD_PX
    else:
        clear = True
    if clear and t.width + 2 * _PAD_PX <= b.width:
        return "centre"
    if t.width + 2 * _PAD_PX <= b.width / 2 - 1:
        return "left"
    return "above"


def _place_values(fig: Figure, labels: Sequence[_ValueLabel], renderer: RendererBase) -> None:
    by_ax: dict[Axes, list[_ValueLabel]] = {}
    for lab in labels:
        by_ax.setdefault(lab.ax, []).append(lab)
    # Lying down only if every label of the panel fits its bar's width: one
    # orientation per panel, read at a glance.
    rotated = False
    for group in by_ax.values():
        too_wide = any(
            lab.text.get_window_extent(renderer).width + 2 * _PAD_PX
            > lab.bar.get_window_extent(renderer).width
            for lab in group
        )
        if too_wide:
            rotated = True
            for lab in group:
                lab.text.set_rotation(90)
    for i in range(5):  # moving labels out makes headroom, which shrinks the bars
        if i > 0 or rotated:
            renderer = _draw(fig)
        changed = False
        for ax, group in by_ax.items():
            bottom, top = ax.get_ylim()
            height_px = ax.get_window_extent(renderer).height
            need = top
            for lab in group:
                # Bars only shrink from one pass to the next: centre -> left -> above.
                order = ("centre", "left", "above")
                place = _inside_place(lab, renderer) if lab.place != "above" else "above"
                if order.index(place) > order.index(lab.place):
                    lab.place = place
                    x = lab.bar.get_x() + lab.bar.get_width() / (4 if place == "left" else 2)
                    lab.text.xy = (x, lab.top if place == "above" else 0.0)
                    if place == "above":
                        lab.text.set_color("#000000")
                    changed = True
                if lab.place == "above":
                    k = (lab.text.get_window_extent(renderer).height + 2 * _PAD_PX) / height_px
                    if k < 0.9:
                        need = max(need, (lab.top - k * bottom) / (1 - k))
            if need > top * (1 + 1e-9) + 1e-12:
                ax.set_ylim(bottom, need)
                changed = True
        if not changed:
            return


def _settle(fig: Figure) -> None:
    pending = _PENDING.pop(fig, None)
    if pending is None:
        return
    renderer = _draw(fig)
    if pending.tick_axes:
        axes = [ax for ax in pending.tick_axes if ax.get_visible()]
        renderer = _spread_ticks(fig, axes, renderer)
    if pending.values:
        _place_values(fig, pending.values, renderer)
