"""Charts that stay readable: what a reader would notice, measured on the drawn figure.

Each test draws the chart the way ``flashsale`` does (the PNG is written), keeps the
figure, lays it out again with matplotlib's renderer and measures the artists:
tick labels that run into each other, value labels spilling off their bar, a
geometric grid on a linear axis, whiskers where there is no interval, a legend
over the data, a queue a replay cannot see. Pixels are never compared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

import flashsale.charts as charts_mod
import flashsale.figures as figures_mod
from flashsale.charts import draw_compare_charts, draw_run_charts
from flashsale.compare import paired_differences
from flashsale.figures import (
    RUN_COLORS,
    boxes_overlap,
    is_dark,
    label_bars,
    new_figure,
    save_chart,
    tick_label_boxes,
)
from flashsale.metric_registry import KEY_FIGURES, SWEEP_COLUMNS
from flashsale.metrics import compute_metrics, fmt_metric
from flashsale.sweep_charts import draw_sweep_charts

from .test_metrics_data import scenario, synthetic_outcome

Figures = dict[str, Figure]


def _keep_figures(monkeypatch: pytest.MonkeyPatch) -> Figures:
    real = figures_mod.save_chart
    drawn: Figures = {}

    def keep(fig: Figure, folder: Path, name: str, title: str, caption: str) -> Any:
        chart = real(fig, folder, name, title, caption)
        drawn[name] = fig
        return chart

    monkeypatch.setattr(figures_mod, "save_chart", keep)
    monkeypatch.setattr(charts_mod, "save_chart", keep)
    return drawn


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Figures:
    """Every figure saved while the test runs, by chart name (after it was written)."""
    return _keep_figures(monkeypatch)


def _renderer(fig: Figure) -> RendererBase:
    fig.canvas.draw()
    return fig.canvas.get_renderer()  # type: ignore[attr-defined,no-any-return]


def _panels(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if ax.get_visible()]


def _texts(fig: Figure) -> str:
    """Every title, suptitle and legend text of a figure, joined."""
    parts = [fig.get_suptitle()]
    for ax in fig.axes:
        parts.append(ax.get_title())
        if ax.get_legend() is not None:
            parts += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        parts += [t.get_text() for t in leg.get_texts()]
    return "\n".join(parts)


def _whisker_artists(fig: Figure) -> Iterator[Any]:
    """Errorbar containers, and any cap marker a whisker would leave behind."""
    for ax in fig.axes:
        yield from (c for c in ax.containers if isinstance(c, ErrorbarContainer))
        yield from (ln for ln in ax.lines if ln.get_marker() in ("_", "|"))


def _doc(seed: int, reps: int, **overrides: Any) -> dict[str, Any]:
    sc = scenario(
        sale={"units": 200, "window_s": 30},
        humans={"count": 400},
        bots={"operators": 3, "accounts_per_operator": 10, "units_per_order": 2},
        **overrides,
    )
    outs = [synthetic_outcome(sc, np.random.default_rng(1000 * seed + r)) for r in range(reps)]
    return compute_metrics(sc, outs)


@pytest.fixture(scope="module")
def six_docs() -> list[dict[str, Any]]:
    """Six runs of two replications each: the comparison the issue was filed on."""
    return [_doc(i, 2) for i in range(6)]


@pytest.fixture(scope="module")
def six_runs(six_docs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """The comparison charts of the six runs, drawn once."""
    # Paired differences need one seed and the same replications: pretend the six runs
    # shared them (the charts only draw what the pairs hold).
    pairs, _why = paired_differences(six_docs, [7] * 6)
    assert len(pairs) == 5
    labels = [f"service.workers={w}" for w in (2, 4, 6, 8, 12, 16)]
    with pytest.MonkeyPatch.context() as mp:
        drawn = _keep_figures(mp)
        draw_compare_charts(six_docs, labels, KEY_FIGURES, pairs, tmp_path_factory.mktemp("six"))
    return drawn


# ---------------------------------------------------------------- tick labels


def test_six_runs_paired_difference_labels_do_not_overlap(six_runs: Figures) -> None:
    figures = six_runs
    for name in ("compare_paired", "compare_metrics"):
        fig = figures[name]
        renderer = _renderer(fig)
        for ax in _panels(fig):
            labels = [t.get_text() for t in ax.get_xticklabels()]
            assert all(labels), f"{name} / {ax.get_title()}: a run lost its label {labels}"
            boxes = tick_label_boxes(ax, renderer)
            assert len(boxes) == len(labels)
            assert not boxes_overlap(boxes), f"{name} / {ax.get_title()}: {labels}"
        # no panel's labels run into its neighbour's either
        every = [b for ax in _panels(fig) for b in tick_label_boxes(ax, renderer)]
        assert not boxes_overlap(every), name
    paired = figures["compare_paired"]
    first = next(ax for ax in _panels(paired))
    assert [t.get_text().split("\n")[0] for t in first.get_xticklabels()] == [
        f"run {i}" for i in range(2, 7)
    ]


def test_crowded_tick_labels_are_turned_upright_then_thinned(tmp_path: Path) -> None:
    fig, axes = new_figure(1, 3)
    for ax, n in zip(axes.flat, (4, 12, 60), strict=True):
        x = np.arange(n)
        ax.bar(x, np.ones(n))
        ax.set_xticks(x, [f"a long label {i}" for i in x])
        figures_mod.keep_tick_labels_apart(ax)
    save_chart(fig, tmp_path, "crowded", "t", "c")
    renderer = _renderer(fig)
    for ax in axes.flat:
        assert not boxes_overlap(tick_label_boxes(ax, renderer)), len(ax.get_xticks())
    sixty = axes.flat[2]
    shown = [t.get_text() for t in sixty.get_xticklabels() if t.get_text()]
    assert shown[0] == "a long label 0" and 5 < len(shown) < 60  # thinned, not emptied


# ---------------------------------------------------------------- value labels


def _bar_of(ax: Axes, text: Text) -> Rectangle:
    x = text.xy[0] if isinstance(text, Annotation) else text.get_position()[0]
    return next(p for p in ax.patches if p.get_x() <= x <= p.get_x() + p.get_width())  # type: ignore[attr-defined,no-any-return]


def _assert_value_labels_readable(fig: Figure) -> int:
    """Every value label lies inside its bar in white, or outside it in a dark
    colour, inside the axes, and clear of every whisker. Returns how many."""
    renderer = _renderer(fig)
    seen = 0
    for ax in _panels(fig):
        whiskers = [
            seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()
        ]
        frame = ax.get_window_extent(renderer)
        for text in ax.texts:
            seen += 1
            box = text.get_window_extent(renderer)
            bar = _bar_of(ax, text).get_window_extent(renderer)
            where = f"{ax.get_title()}: {text.get_text()!r}"
            if is_dark(text.get_color()):
                assert not box.overlaps(bar), f"{where} dark text on its bar"
            else:
                assert bar.contains(box.x0, box.y0) and bar.contains(box.x1, box.y1), (
                    f"{where} light text spills off its bar"
                )
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), (
                f"{where} outside the axes"
            )
            for seg in whiskers:
                (x0, y0), (x1, y1) = ax.transData.transform(seg)
                line = Bbox.from_extents(
                    min(x0, x1) - 0.5, min(y0, y1), max(x0, x1) + 0.5, max(y0, y1)
                )
                assert not box.overlaps(line), f"{where} crossed by a whisker"
    return seen


def test_value_labels_stay_on_narrow_bars_or_go_above_in_black(tmp_path: Path) -> None:
    """The reported case: 49.67% on six narrow bars read "9.67%"."""
    fig, axes = new_figure(1, 3)
    for ax in axes.flat:
        values = np.array([0.4967, 0.4812, 0.02, 0.4967, 0.0, 0.3])
        x = np.arange(len(values))
        bars = ax.bar(x, values, color=RUN_COLORS[:6])
        lo, hi = values - 0.25, values + 0.05  # a long whisker reaches the foot
        ax.errorbar(x, values, yerr=[values - lo, hi - values], fmt="none", capsize=3)
        ax.set_ylim(bottom=0)
        label_bars(ax, list(bars), [f"{100 * v:.2f}%" for v in values], list(hi), list(lo))
    save_chart(fig, tmp_path, "narrow", "t", "c")
    assert _assert_value_labels_readable(fig) == 18
    ax = axes.flat[0]
    label = next(t for t in ax.texts if t.get_text() == "49.67%")
    assert not is_dark(label.get_color()) and label.get_rotation() == 90  # upright, inside
    tiny = next(t for t in ax.texts if t.get_text() == "2.00%")
    assert is_dark(tiny.get_color())  # a short bar cannot hold it: above, in black


def test_compare_value_labels_are_readable(
    six_docs: list[dict[str, Any]], six_runs: Figures
) -> None:
    fig = six_runs["compare_metrics"]
    assert _assert_value_labels_readable(fig) == 6 * len(KEY_FIGURES)
    # every label says its bar's value, none clipped to a fragment
    ax = next(a for a in _panels(fig) if a.get_title() == "bot share of units")
    assert [t.get_text() for t in ax.texts] == [
        fmt_metric("bot_unit_share", d["metrics"]["bot_unit_share"]["mean"]) for d in six_docs
    ]


# ---------------------------------------------------------------- sweep axes


def _block(mean: float, reps: int, spread: float = 0.1) -> dict[str, Any]:
    if reps == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1, "values": [mean]}
    return {
        "mean": mean,
        "ci_low": mean * (1 - spread),
        "ci_high": mean * (1 + spread),
        "n": reps,
        "values": [mean] * reps,
    }


def _sweep(
    values: Sequence[Any], reps: int = 2, path: str = "service.workers"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sweep = {
        "scenario_name": "smoke",
        "seed": 7,
        "replications": reps,
        "grid": [{"path": path, "values": list(values)}],
    }
    rows = [
        {
            "settings": {path: v},
            "metrics": {name: _block(0.2 + 0.01 * i, reps) for name, _ in SWEEP_COLUMNS},
        }
        for i, v in enumerate(values)
    ]
    return sweep, rows


def _draw_sweep(figures: Figures, tmp_path: Path, *args: Any, **kw: Any) -> Figure:
    sweep, rows = _sweep(*args, **kw)
    draw_sweep_charts(sweep, rows, tmp_path)
    return figures["sweep_metrics"]


@pytest.mark.parametrize("grid", [[64, 128, 256], [16, 32, 64, 128, 256], [256, 128, 64, 32]])
def test_a_doubling_grid_gets_a_log2_axis_with_labels_apart(
    grid: list[int], tmp_path: Path, figures: Figures
) -> None:
    fig = _draw_sweep(figures, tmp_path, grid)
    renderer = _renderer(fig)
    for ax in _panels(fig):
        assert ax.get_xscale() == "log"
        assert ax.xaxis.get_transform().base == 2  # type: ignore[attr-defined]
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in grid]
        assert not ax.xaxis.get_minorticklabels() or not any(
            t.get_text() for t in ax.xaxis.get_minorticklabels()
        )
        assert not boxes_overlap(tick_label_boxes(ax, renderer))
        # evenly spaced, as the grid was meant
        xs = sorted(ax.transData.transform([(v, 0) for v in grid])[:, 0])
        assert np.allclose(np.diff(xs), np.diff(xs)[0], rtol=1e-6)


@pytest.mark.parametrize("grid", [[32, 40, 48], [2, 8], [1, 2, 3, 100]])
def test_a_grid_that_is_not_geometric_keeps_a_linear_axis(
    grid: list[int], tmp_path: Path, figures: Figures
) -> None:
    fig = _draw_sweep(figures, tmp_path, grid)
    renderer = _renderer(fig)
    for ax in _panels(fig):
        assert ax.get_xscale() == "linear"
        assert not boxes_overlap(tick_label_boxes(ax, renderer)), grid


def test_table_valued_sweep_labels_do_not_overlap(tmp_path: Path, figures: Figures) -> None:
    tables = [{"dist": "exponential", "mean": m} for m in (1, 2, 4)]
    fig = _draw_sweep(figures, tmp_path, tables, path="humans.think_s")
    renderer = _renderer(fig)
    every = []
    for ax in _panels(fig):
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [f"dist=exponential\nmean={m}" for m in (1, 2, 4)]
        boxes = tick_label_boxes(ax, renderer)
        assert not boxes_overlap(boxes)
        every += boxes
    assert not boxes_overlap(every)  # nor into the next panel's


# ---------------------------------------------------------------- replay queue


def test_replay_load_chart_draws_no_queue_and_says_why(tmp_path: Path, figures: Figures) -> None:
    doc = _doc(0, 1)
    draw_run_charts(doc, tmp_path / "sim")
    sim = figures["load"]
    assert any("queue" in ax.get_ylabel() for ax in sim.axes)
    doc["run"] = {"engine": "replay"}
    draw_run_charts(doc, tmp_path / "replay")
    replay = figures["load"]
    assert replay is not sim
    assert not any("queue" in ax.get_ylabel() for ax in replay.axes)
    assert not any(
        "waiting for a worker" in ln.get_label() for ax in replay.axes for ln in ax.lines
    )
    assert "cannot see its queue" in replay.get_suptitle()


def test_load_axes_never_repeat_a_tick_label(tmp_path: Path, figures: Figures) -> None:
    """The replay's "0 0 0 0" (a flat zero) and "0 0 0 1 1 1" (fractions rounded)."""
    doc = _doc(0, 1)
    tc = doc["series"]["timeline"]["main"]
    n = len(tc["t_s"])
    tc["queue"]["mean"] = [0.0] * n  # a queue that never formed
    tc["in_flight"]["mean"] = [1.0 if i % 7 == 0 else 0.0 for i in range(n)]  # bin means <= 1
    draw_run_charts(doc, tmp_path)
    fig = figures["load"]
    _renderer(fig)
    for ax in fig.axes:
        shown = [t.get_text() for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]
        assert len(shown) == len(set(shown)) > 1, (ax.get_ylabel(), shown)


# ---------------------------------------------------------------- one replication


def test_one_replication_draws_no_whisker_and_says_so(tmp_path: Path, figures: Figures) -> None:
    doc = _doc(0, 1)
    draw_run_charts(doc, tmp_path / "run")
    docs = [doc, _doc(1, 1)]
    draw_compare_charts(docs, ["seed=1", "seed=2"], KEY_FIGURES, [], tmp_path / "cmp")
    draw_sweep_charts(*_sweep([64, 128, 256], reps=1), tmp_path / "sweep")
    for name in ("success_by_arrival", "outcomes", "compare_metrics", "sweep_metrics"):
        fig = figures[name]
        assert not list(_whisker_artists(fig)), name
        assert "1 replication" in _texts(fig) and "no interval" in _texts(fig), name
    for name in ("stock_left", "sales_per_second", "latency", "load"):
        assert "1 replication: no interval" in _texts(figures[name]), name


def test_a_run_of_one_replication_among_others_gets_no_whisker(
    six_docs: list[dict[str, Any]], tmp_path: Path, figures: Figures
) -> None:
    docs = [six_docs[0], _doc(9, 1)]
    draw_compare_charts(docs, ["a", "b"], KEY_FIGURES, [], tmp_path)
    fig = figures["compare_metrics"]
    for ax in _panels(fig):
        bars = [p for p in ax.patches if isinstance(p, Rectangle)]
        xs = [
            float(np.mean(seg[:, 0]))
            for c in ax.collections
            if isinstance(c, LineCollection)
            for seg in c.get_segments()
        ]
        # run 1 (two replications) may have its whisker; run 2 (one) has none
        assert all(abs(x - (bars[0].get_x() + bars[0].get_width() / 2)) < 1e-9 for x in xs)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "no interval" not in legend[0] and "1 replication: no interval" in legend[1]


# ---------------------------------------------------------------- legends


def _legend_clear_of_axes(fig: Figure) -> None:
    renderer = _renderer(fig)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in _panels(fig):
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_six_curves_keep_their_legend_off_the_data(six_runs: Figures) -> None:
    figures = six_runs
    for name in (
        "compare_success_by_arrival",
        "compare_stock_left",
        "compare_human_sales",
        "compare_bot_sales",
        "compare_lorenz",
    ):
        fig = figures[name]
        _legend_clear_of_axes(fig)
        assert len(fig.legends[0].get_texts()) >= 6, name  # every run is still named


def test_run_success_chart_keeps_its_legend_off_the_bars(tmp_path: Path, figures: Figures) -> None:
    draw_run_charts(_doc(0, 3), tmp_path)
    _legend_clear_of_axes(figures["success_by_arrival"])
