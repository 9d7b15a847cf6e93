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
from pathlib import Path
from typing import Any

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
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
            assert len(ax.lines) == 2, (name, ax.get_ylabel())
        if reps == "one":
            assert _bands(fig) == [0] * len(fig.axes), name
            assert "no prediction band" in fig.get_suptitle(), name
        else:
            assert all(b == 1 for b in _bands(fig)), name
            assert "95% prediction band" in legend, name
    lat = drawn["predict_latency_p95"]
    assert [ax.get_ylabel().split("\n")[0] for ax in lat.axes] == ["view", "cart", "pay"]


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
