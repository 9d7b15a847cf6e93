"""flashsale predict: a replay held against the simulation's prediction interval.

The interval is checked against a case worked by hand; the command against a real
replay of a small sale on the bundled service and real simulations of its scenario
(the table's observed values are the replay's metrics.json, its predicted means the
simulation's); bad input is one error line and exit 2; the charts are drawn with one
replication (no band) and with several (a band on every panel, legends off the data).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from typer.testing import CliRunner

import flashsale.figures as figures_mod
from flashsale.cli import app
from flashsale.compare import run_metrics
from flashsale.metric_registry import KEY_FIGURES, bounds_of, lookup
from flashsale.metrics import fmt_metric
from flashsale.predict import judge, prediction
from flashsale.predict_charts import draw_predict_charts
from flashsale.runs import RunFolder, open_run
from flashsale.scenario import load_scenario
from flashsale.stats import band, prediction_band, prediction_interval

from ._processes import FLASHSALE
from .conftest import SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
T_975_4 = 2.7764451  # Student t, 0.975 quantile, 4 degrees of freedom (printed tables)


class _Ran:
    """What a command left: exit code, stdout and stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _flashsale(*args: str) -> _Ran:
    """``flashsale ARGS...`` in this process (no interpreter start-up per call)."""
    res = CliRunner().invoke(app, list(args))
    return _Ran(res.exit_code, res.stdout, res.stderr)


# ---------------------------------------------------------------- the interval


def test_prediction_interval_of_five_values_worked_by_hand() -> None:
    # 1..5: mean 3, s^2 = 10/4 = 2.5; half width t * s * sqrt(1 + 1/5) = t * sqrt(3).
    mean, low, high, n = prediction_interval([1.0, None, 2.0, 3.0, 4.0, 5.0])
    assert (mean, n) == (3.0, 5)
    assert low == pytest.approx(3 - T_975_4 * math.sqrt(3), abs=1e-6)  # -1.80894
    assert high == pytest.approx(3 + T_975_4 * math.sqrt(3), abs=1e-6)  # 7.80894
    # Clipped to what the metric can take; none from one value; nothing from none.
    assert prediction_interval([1, 2, 3, 4, 5], bounds=(0.0, None))[1] == 0.0
    assert prediction_interval([4.0, None]) == (4.0, None, None, 1)
    assert prediction_interval([None, None]) == (None, None, None, 0)


def test_prediction_interval_is_wider_than_the_means_interval_by_sqrt_n_plus_1() -> None:
    curve = band([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    pb = prediction_band(curve, 5)
    assert pb["mean"] == [3.0, 30.0]
    assert pb["pi_high"][0] == pytest.approx(3 + T_975_4 * math.sqrt(3), abs=1e-6)
    assert pb["pi_low"][1] == pytest.approx(30 - 10 * T_975_4 * math.sqrt(3), abs=1e-5)
    assert prediction_band(band([[1.0, 2.0]]), 1)["pi_low"] == [None, None]


def test_judge_says_inside_outside_and_why() -> None:
    tenth = [0.1] * 30  # their mean is not 0.1 as a float, but a replay of 0.1 is inside
    assert judge("human_success_share", 0.1, tenth)["inside"] is True
    f = judge("human_success_share", 0.12, tenth)
    assert f["inside"] is False and f["error"] == pytest.approx(0.02)
    assert f["relative_error"] is None  # a share's error is read in points
    f = judge("sellout_time_s", 6.0, [4.0, 5.0, 6.0])
    assert f["inside"] is True and f["relative_error"] == pytest.approx(0.2)
    # Undefined (did not sell out) in the replay: inside if some replication did not either.
    assert judge("sellout_time_s", None, [4.0, None, 6.0])["inside"] is True
    assert judge("sellout_time_s", None, [4.0, 5.0, 6.0])["inside"] is False
    assert judge("sellout_time_s", 6.0, [None, None])["inside"] is False
    # Not observed (a replay without an audit) is not judged; nor is one replication.
    f = judge("oversold_units", None, [0, 0, 0])
    assert f["inside"] is None and "no audit" in f["why"]
    f = judge("units_sold", 100, [100])
    assert f["inside"] is None and f["error"] == 0


# ---------------------------------------------------------------- simulations


def _simulate(scenario: Path, out: Path, replications: int, *sets: str) -> Path:
    args = [x for s in sets for x in ("--set", s)]
    proc = _flashsale(
        "simulate", str(scenario), "--replications", str(replications), "--out", str(out), *args
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a threshold, not a failure
    return out


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Smoke at a small size, simulated with one replication and with six."""
    root = tmp_path_factory.mktemp("sims")
    small = ("humans.count=200", "sale.units=40", "sale.window_s=20")
    return {
        "one": _simulate(SMOKE, root / "one", 1, *small),
        "six": _simulate(SMOKE, root / "six", 6, *small),
    }


def _empty_run(folder: Path, engine: str) -> Path:
    """A run folder as ``engine`` opens one (its manifest and scenario, no table yet)."""
    with open_run(load_scenario(SMOKE), engine, out=folder, seed=7, replications=1):
        pass
    return folder


def test_bad_folders_are_one_error_line_and_exit_2(tmp_path: Path) -> None:
    sim = str(_empty_run(tmp_path / "sim", "sim"))
    replay = str(_empty_run(tmp_path / "replay", "replay"))
    file = tmp_path / "a-file"
    file.write_text("x")
    cases = {
        (sim, sim): "REPLAY_DIR must be a replay run folder, this is a simulation",
        (replay, replay): "SIM_DIR must be a simulation run folder, this is a replay",
        (str(tmp_path / "nowhere"), sim): "not a run folder (no manifest.json)",
        (replay, str(file)): "not a run folder but a file",
    }
    for (a, b), said in cases.items():
        proc = _flashsale("predict", a, b, "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
    assert not (tmp_path / "out").exists()
    # An output folder that cannot be used is refused before anything is read.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    proc = _flashsale("predict", replay, sim, "--out", str(tmp_path / "full"))
    assert proc.returncode == 2 and "output folder exists and is not empty" in proc.stderr


# ---------------------------------------------------------------- charts


def _keep_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    real = figures_mod.save_chart
    drawn: dict[str, Figure] = {}

    def keep(fig: Figure, folder: Path, name: str, title: str, caption: str) -> Any:
        drawn[name] = fig
        return real(fig, folder, name, title, caption)

    monkeypatch.setattr(figures_mod, "save_chart", keep)
    return drawn


def _charts(
    observed: Path, predicted: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Figure]:
    """The prediction charts of two runs' real curves (a simulation standing in for the
    observation: the charts draw whatever the document holds)."""
    obs, pred = RunFolder.load(observed), RunFolder.load(predicted)
    doc = prediction(obs, pred, run_metrics(obs), run_metrics(pred))
    drawn = _keep_figures(monkeypatch)
    charts = draw_predict_charts(doc, folder)
    assert [c.name for c in charts] == list(drawn)
    assert all(c.path.stat().st_size > 10_000 for c in charts)
    return drawn


def _bands(fig: Figure) -> list[int]:
    return [sum(isinstance(c, PolyCollection) for c in ax.collections) for ax in fig.axes]


def _legend_off_the_data(fig: Figure) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    assert len(fig.legends) == 1
    box = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))


@pytest.mark.slow
@pytest.mark.parametrize("reps", ["one", "six"])
def test_charts_draw_the_replay_against_the_band(
    reps: str, sims: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = _charts(sims["one"], sims[reps], tmp_path, monkeypatch)
    assert set(drawn) == {"predict_stock_left", "predict_sales_per_second", "predict_latency_p95"}
    for name, fig in drawn.items():
        _legend_off_the_data(fig)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "replay (observed)" in legend, name
        for ax in fig.axes:  # the replay's line and the simulation's on every panel
            curves = [line for line in ax.lines if not _vertical(line)]
            assert len(curves) == 2, (name, ax.get_ylabel())
        if reps == "one":
            assert _bands(fig) == [0] * len(fig.axes), name
            assert "no prediction band" in fig.get_suptitle(), name
        else:
            assert all(b == 1 for b in _bands(fig)), name
            assert "95% prediction band" in legend, name
    lat = drawn["predict_latency_p95"]
    assert [ax.get_ylabel().split("\n")[0] for ax in lat.axes] == ["view", "cart", "pay"]


# ---------------------------------------------------------------- the time axis and sell-out


WINDOW = np.arange(-60.0, 361.0)  # 1 s bins from 60 s before the opening to 360 s after
UNITS = 100


def _vertical(line: Line2D) -> bool:
    x = np.asarray(line.get_xdata(), dtype=float)
    return x.size == 2 and x[0] == x[1]


def _paid_per_s(last_t: float, tail: float) -> np.ndarray:
    """Units paid per second in the bin starting at each t: 5 a second from 0 to 19 s
    (95 units), then the held units' ``tail`` in the bin at ``last_t``."""
    v = np.where((WINDOW >= 0) & (WINDOW < 19), 5.0, 0.0)
    at = WINDOW.searchsorted([19, last_t])
    v[at[0]] = 5.0 - tail
    v[at[1]] = tail
    return v


def _hand_made(
    rep_rate: np.ndarray,
    sim_rate: np.ndarray,
    sellout: Mapping[str, Any],
    reps: int = 30,
) -> dict[str, Any]:
    """A predict.json document whose curves change only where the sales do: stock left
    and units held in carts follow the units paid; the band is the mean +- 10%; every
    step's latency is recorded all through the window in 8 s bins."""

    def line(rate: np.ndarray) -> dict[str, Any]:
        paid = np.cumsum(rate)
        held = np.where((WINDOW >= -1) & (paid < UNITS), np.minimum(5.0, UNITS - paid), 0.0)
        return {
            "stock_left": {"t": WINDOW + 1, "v": UNITS - paid - held},
            "reserved": {"t": WINDOW + 1, "v": held},
            "sold_human_per_s": {"t": WINDOW, "v": rate},
            "sold_bot_per_s": {"t": WINDOW, "v": np.zeros_like(rate)},
        }

    rep, sim = line(rep_rate), line(sim_rate)
    timeline: dict[str, Any] = {"replay_bin_s": 1.0, "simulation_bin_s": 1.0}
    for col in rep:
        mean = sim[col]["v"]
        timeline[col] = {
            "replay": {"t_s": rep[col]["t"].tolist(), "value": rep[col]["v"].tolist()},
            "simulation": {
                "t_s": sim[col]["t"].tolist(),
                "mean": mean.tolist(),
                "pi_low": (0.9 * mean).tolist(),
                "pi_high": (1.1 * mean).tolist(),
            },
        }
    lat_t = np.arange(-60.0, 360.0, 8.0).tolist()
    flat = {"t_s": lat_t, "value": [0.01] * len(lat_t)}
    band = {"mean": [0.001] * len(lat_t), "pi_low": [0.0009] * len(lat_t)}
    steps = {
        s: {"replay": flat, "simulation": {"t_s": lat_t, **band, "pi_high": [0.0011] * len(lat_t)}}
        for s in ("view", "cart", "pay")
    }
    return {
        "simulation": {"replications": list(range(reps))},
        "figures": [{"name": "sellout_time_s", "replications": reps, **sellout}],
        "curves": {
            "timeline": timeline,
            "latency_p95_s": {"replay_bin_s": 8.0, "simulation_bin_s": 8.0, "steps": steps},
        },
    }


SOLD_OUT = {"observed": 30.0, "mean": 28.0, "pi_low": 24.0, "pi_high": 32.0, "n": 30}


def _drawn(
    doc: Mapping[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Figure]:
    drawn = _keep_figures(monkeypatch)
    draw_predict_charts(doc, tmp_path)
    assert set(drawn) == {"predict_stock_left", "predict_sales_per_second", "predict_latency_p95"}
    return drawn


def _xlim(drawn: Mapping[str, Figure]) -> tuple[float, float]:
    """The one time axis of all the charts' panels."""
    lims = {ax.get_xlim() for fig in drawn.values() for ax in fig.axes}
    assert len(lims) == 1, lims
    lo, hi = lims.pop()
    return lo, hi


def test_the_time_axis_is_cropped_to_the_sale_and_its_sell_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replay: its last (held) unit paid in the bin at 29 s; the mean's in the bin at 31 s.
    doc = _hand_made(_paid_per_s(29, 1.0), _paid_per_s(31, 1.0), SOLD_OUT)
    drawn = _drawn(doc, tmp_path, monkeypatch)
    # Sales start in the bin at 0 s (the axis starts a sample, 1 s, before: -1 s); the
    # mean's last sale ends at 32 s, as does the sell-out's interval: span 33 s, margin
    # 5% of it on either side.
    margin = 0.05 * 33
    assert _xlim(drawn) == pytest.approx((-1 - margin, 32 + margin))
    lo, hi = _xlim(drawn)
    for col in ("stock_left", "reserved", "sold_human_per_s"):  # nothing that changes is cut
        curve = doc["curves"]["timeline"][col]
        rep, sim = curve["replay"], curve["simulation"]
        for t, v in ((rep["t_s"], rep["value"]), (sim["t_s"], sim["mean"])):
            moves = np.flatnonzero(np.diff(v))  # a change between t[i] and t[i + 1]
            t = np.asarray(t)
            assert lo < t[moves].min() and t[moves + 1].max() < hi, col
    for fig in drawn.values():
        label = fig.axes[-1].get_xlabel()
        assert "axis cropped to -2.7 to 33.6 s: the curves run -60 to 364 s" in label, label
        assert "change only from -1 to 32 s" in label
    assert "view, cart, pay requests also outside the axis" in (
        drawn["predict_latency_p95"].axes[-1].get_xlabel()
    )


def test_a_sale_over_the_whole_window_is_not_cropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = _paid_per_s(19, 0.0)
    rate[WINDOW.searchsorted([-50, 340])] = 1.0  # one sale early, one late
    drawn = _drawn(
        _hand_made(rate, rate, {**SOLD_OUT, "observed": 341.0, "mean": 341.0, "pi_high": 350.0}),
        tmp_path,
        monkeypatch,
    )
    assert _xlim(drawn) == (-60, 364)  # the whole window: to the last latency bin's end
    for fig in drawn.values():
        assert "cropped" not in fig.axes[-1].get_xlabel()


def _marks(ax: Axes) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """A panel's vertical lines by line style, and its shaded spans as (from, to)."""
    lines = {
        str(line.get_linestyle()): float(np.asarray(line.get_xdata())[0])
        for line in ax.lines
        if _vertical(line)
    }
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if isinstance(p, Rectangle)]
    return lines, spans


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_the_sell_out_is_marked_where_it_was_observed_and_predicted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = _drawn(
        _hand_made(_paid_per_s(29, 1.0), _paid_per_s(31, 1.0), SOLD_OUT), tmp_path, monkeypatch
    )
    for name in ("predict_stock_left", "predict_sales_per_second"):
        fig = drawn[name]
        for ax in fig.axes:  # observed dotted at 30 s, mean dashed at 28 s, PI 24-32 s
            assert _marks(ax) == ({":": 30.0, "--": 28.0}, [(24.0, 32.0)]), (name, ax)
        texts = _legend_texts(fig)
        assert "observed sell-out: 30.0 s" in texts
        assert "predicted sell-out (mean): 28.0 s" in texts
        assert "predicted sell-out, 95% PI: 24.0 s to 32.0 s" in texts
    for ax in drawn["predict_latency_p95"].axes:
        assert _marks(ax) == ({}, [])


def test_no_sell_out_is_said_not_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay kept 1 unit; 20 of 30 replications sold out (their mean and interval).
    unsold = _paid_per_s(29, 0.0)
    some = {"observed": None, "mean": 28.0, "pi_low": 24.0, "pi_high": 32.0, "n": 20}
    drawn = _drawn(_hand_made(unsold, _paid_per_s(31, 1.0), some), tmp_path, monkeypatch)
    fig = drawn["predict_stock_left"]
    assert _marks(fig.axes[0]) == ({"--": 28.0}, [(24.0, 32.0)])
    texts = _legend_texts(fig)
    assert "observed sell-out: none, the replay did not sell out" in texts
    assert "predicted sell-out (mean, 20 of 30 replications sold out): 28.0 s" in texts
    # None sold out, in either: no mark; the axis still ends after the last sale (20 s).
    none = {"observed": None, "mean": None, "pi_low": None, "pi_high": None, "n": 0}
    drawn = _drawn(_hand_made(unsold, unsold, none), tmp_path / "none", monkeypatch)
    fig = drawn["predict_stock_left"]
    assert _marks(fig.axes[0]) == ({}, [])
    assert "predicted sell-out: none of 30 replications sold out" in _legend_texts(fig)
    assert _xlim(drawn) == pytest.approx((-1 - 0.05 * 21, 20 + 0.05 * 21))


# ---------------------------------------------------------------- a real replay


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke replayed at half scale against the bundled service (about a minute)."""
    out = tmp_path_factory.mktemp("replay") / "run"
    proc = subprocess.run(
        [str(FLASHSALE), "replay", str(SMOKE), "--scale", "0.5", "--set", "sale.window_s=20",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _metrics(run: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run / "metrics.json").read_text())
    return doc["metrics"]


@pytest.mark.slow
def test_predict_holds_the_replays_figures_against_the_simulations(
    replayed: Path, tmp_path: Path
) -> None:
    sim = _simulate(replayed / "scenario.toml", tmp_path / "sim", 8)
    out = tmp_path / "predict"
    proc = _flashsale("predict", str(replayed), str(sim), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr  # the replay's own scenario: nothing differs
    observed, predicted = _metrics(replayed), _metrics(sim)
    doc = json.loads((out / "predict.json").read_text())
    names = [f["name"] for f in doc["figures"]]
    assert names[: len(KEY_FIGURES)] == [n for n, _ in KEY_FIGURES]
    assert {"latency_p95_s.view", "latency_p95_s.cart", "latency_p95_s.pay"} <= set(names)
    rows = {line.split("  ")[1]: line for line in proc.stdout.splitlines()[3:-2]}
    for f in doc["figures"]:
        obs, pred = lookup(observed, f["name"]), lookup(predicted, f["name"])
        assert obs is not None and pred is not None, f["name"]
        assert f["observed"] == obs["mean"] and f["mean"] == pytest.approx(pred["mean"])
        mean, low, high, _n = prediction_interval(pred["values"], bounds=bounds_of(f["name"]))
        assert (f["pi_low"], f["pi_high"]) == pytest.approx((low, high)), f["name"]
        row = rows[f["label"]]  # the table shows the same figures
        assert fmt_metric(f["name"], obs["mean"]) in row and fmt_metric(f["name"], mean) in row
        if f["inside"] is not None and obs["mean"] is not None:
            assert f["inside"] == (f["pi_low"] - 1e-9 <= obs["mean"] <= f["pi_high"] + 1e-9)
    judged = [f for f in doc["figures"] if f["inside"] is not None]
    assert f"of {len(judged)} figures inside" in proc.stdout
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Hahn &amp; Meeker" in page


@pytest.mark.slow
def test_predict_warns_about_another_sale_and_strict_fails_on_it(
    replayed: Path, tmp_path: Path
) -> None:
    sim = _simulate(replayed / "scenario.toml", tmp_path / "sim", 3,
                    "sale.units=50", "service.workers=2", "seed=11")  # fmt: skip
    proc = _flashsale("predict", str(replayed), str(sim), "--out", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    # The service model and the seed may differ (a calibration changes them): no warning.
    assert warnings == ["warning: the scenarios differ in sale.units: replay 100, simulation 50"]
    proc = _flashsale("predict", str(replayed), str(sim), "--out", str(tmp_path / "q"), "--strict")
    assert proc.returncode == 1 and "outside: units_sold" in proc.stdout
    proc = _flashsale("predict", str(replayed), str(replayed))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {replayed}: SIM_DIR must be a simulation run folder, this is a replay"
    )
