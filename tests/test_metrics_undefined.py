"""A sale that sold nothing, end to end through the pipeline: metrics.json holds null
for every ratio over units sold, thresholds on them fail, and the report, the charts,
compare and the sweep page render "n/a" / "undefined" instead of a made-up number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flashsale.compare import compare_runs, compare_summary
from flashsale.metric_registry import KEY_FIGURES, SWEEP_COLUMNS
from flashsale.outcome import RESULT, STEP, Outcome
from flashsale.postrun import finish_run
from flashsale.runs import RunFolder
from flashsale.scenario import Scenario
from flashsale.stats import paired_diff
from flashsale.sweep_charts import draw_sweep_charts, write_sweep_report

from .test_metrics_data import make_run, scenario, synthetic_outcome


def _scenario() -> Scenario:
    return scenario(
        name="empty",
        sale={"units": 150, "window_s": 30},
        humans={"count": 300},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
        thresholds={"oversold_units": "== 0", "units_per_person_jain": ">= 0.5"},
    )


def _nothing_sold(o: Outcome, units: int) -> Outcome:
    """The same sale with every payment declined: nobody kept a unit, stock untouched."""
    j = dict(o.journeys)
    bought = j["result"] == RESULT.index("purchased")
    j["result"] = np.where(bought, RESULT.index("cart_failed"), j["result"]).astype(np.uint8)
    rq = dict(o.requests)
    pay = rq["step"] == STEP.index("pay")
    rq["status"] = np.where(pay, 402, rq["status"]).astype(rq["status"].dtype)
    tl = dict(o.timeline)
    for col in ("sold_human", "sold_bot"):
        tl[col] = np.zeros_like(tl[col])
    tl["stock_left"] = np.full_like(tl["stock_left"], units)
    return Outcome.from_columns(j, rq, tl, o.channels)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str], int]:
    """A run that sold (replications 0, 1) and the same run with nothing sold."""
    sc = _scenario()
    root = tmp_path_factory.mktemp("undefined")
    sold = [synthetic_outcome(sc, np.random.default_rng(i)) for i in range(2)]
    make_run(root / "sold", sc, sold)
    make_run(root / "empty", sc, [_nothing_sold(o, sc.sale.units) for o in sold])
    lines: list[str] = []
    code = finish_run(RunFolder.load(root / "empty"), echo=lines.append)
    return root / "sold", root / "empty", lines, code


def test_metrics_json_holds_null_and_the_threshold_fails(
    runs: tuple[Path, Path, list[str], int],
) -> None:
    _, empty, lines, code = runs
    assert code == 1
    doc = json.loads((empty / "metrics.json").read_text())
    m = doc["metrics"]
    assert m["units_sold"]["values"] == [0, 0]
    for name in (
        "units_per_person_gini",
        "units_per_person_jain",
        "bot_unit_share",
        "sellout_time_s",
        "time_to_purchase_p50_human_s",
        "time_to_purchase_p50_bot_s",
    ):
        assert m[name] == {
            "values": [None, None],
            "mean": None,
            "ci_low": None,
            "ci_high": None,
            "n": 0,
        }, name
    assert all(v is None for v in doc["series"]["lorenz"]["mean"])
    verdicts = {t["metric"]: t for t in doc["thresholds"]}
    assert verdicts["units_per_person_jain"]["passed"] is False
    assert verdicts["oversold_units"]["passed"] is True
    text = "\n".join(lines)
    assert "FAIL units_per_person_jain >= 0.5: undefined in 2 of 2 replications" in text
    assert "bot share of units    n/a" in text


def test_report_and_charts_render_undefined_as_such(
    runs: tuple[Path, Path, list[str], int],
) -> None:
    _, empty, _, _ = runs
    page = (empty / "report.html").read_text()
    assert "undefined in 2 of 2 replications" in page
    assert "0 of 2" in page  # the every-metric table: defined in 0 of 2 replications
    assert (empty / "charts" / "lorenz.png").stat().st_size > 0


@pytest.mark.slow
def test_compare_shows_undefined_runs_and_pairs(
    runs: tuple[Path, Path, list[str], int], tmp_path: Path
) -> None:
    sold, empty, _, _ = runs
    report = compare_runs([sold, empty], tmp_path / "cmp")
    doc = json.loads((report.parent / "compare.json").read_text())
    gini = doc["paired"]["differences"][0]["metrics"]["units_per_person_gini"]
    assert (gini["values"], gini["mean"], gini["n"]) == ([None, None], None, 0)
    lines = compare_summary(doc)
    [jain] = [line for line in lines if "Jain" in line]
    assert jain.endswith("| n/a [undefined in 2 of 2 replications]")
    assert "undefined in 2 of 2 replications" in report.read_text()


def _block(values: list[float | None]) -> dict[str, object]:
    got = [v for v in values if v is not None]
    mean = sum(got) / len(got) if got else None
    return {"mean": mean, "ci_low": None, "ci_high": None, "n": len(got), "values": values}


def test_compare_summary_counts_undefined_replications_and_pairs() -> None:
    runs = [{"label": f"run {i}", "path": f"/r{i}", "scenario": "s"} for i in range(3)]
    key = {
        name: [_block([0.4, 0.6]), _block([0.5, None]), _block([None, None])]
        for name, _ in KEY_FIGURES
    }
    diffs = [
        {"run": 1, "metrics": {n: paired_diff([0.4, 0.6], [0.5, None]) for n, _ in KEY_FIGURES}},
        {"run": 2, "metrics": {n: paired_diff([0.4, 0.6], [None, None]) for n, _ in KEY_FIGURES}},
    ]
    doc = {"runs": runs, "key_metrics": key, "paired": {"reason": "", "differences": diffs}}
    [jain] = [line for line in compare_summary(doc) if "Jain" in line]
    assert jain.endswith(
        "  0.5000 | 0.5000 [undefined in 1 of 2 replications] "
        "(+0.1000; undefined in 1 of 2 replications) | "
        "n/a [undefined in 2 of 2 replications]"
    )


def test_sweep_page_and_chart_mark_undefined_points(tmp_path: Path) -> None:
    sweep = {
        "scenario_name": "empty",
        "scenario_file": "empty.toml",
        "seed": 3,
        "replications": 2,
        "grid": [{"path": "service.payment.failure_prob", "values": [0.02, 0.5, 1.0]}],
    }
    per_point = ([0.9, 0.8], [0.7, None], [None, None])  # defined, partly, not at all
    rows = [
        {
            "point": i,
            "folder": f"point-{i:03d}",
            "settings": {"service.payment.failure_prob": x},
            "label": f"service.payment.failure_prob={x}",
            "exit_code": 0,
            "breached": [],
            "metrics": {name: _block(list(vals)) for name, _ in SWEEP_COLUMNS},
        }
        for i, (x, vals) in enumerate(zip((0.02, 0.5, 1.0), per_point, strict=True))
    ]
    charts = draw_sweep_charts(sweep, rows, tmp_path / "charts")
    assert charts and charts[0].path.stat().st_size > 0
    page = write_sweep_report(sweep, rows, charts, None, tmp_path / "report.html").read_text()
    assert "undefined in 1 of 2 replications" in page
    assert "undefined in 2 of 2 replications" in page
    assert "n/a" in page
