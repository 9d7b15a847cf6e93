"""``--report none|summary|full`` on simulate and sweep, and ``flashsale report`` drawing
the full report of a run or sweep written with less, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flashsale.cli import app

from .conftest import SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
NEVER = 'thresholds.units_sold=">= 1000000"'  # smoke has 200 units: always breached
cli = CliRunner()


def _flashsale(*args: str) -> Any:
    return cli.invoke(app, [str(a) for a in args])


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _full(run: Path) -> bool:
    return (run / "report.html").exists() and any((run / "charts").glob("*.png"))


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_a_bad_report_level_is_one_error_line_and_exit_2(command: str, tmp_path: Path) -> None:
    extra = ["--vary", "service.workers=4,8"] if command == "sweep" else []
    res = _flashsale(command, SMOKE, *extra, "--report", "charts", "--out", tmp_path / "o")
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: --report: must be none, summary or full, got 'charts'"]
    assert not (tmp_path / "o").exists()  # nothing ran


@pytest.mark.slow
def test_simulate_summary_writes_the_figures_and_report_draws_the_rest(tmp_path: Path) -> None:
    """summary: metrics.json, the printed figures and verdicts (a breached threshold
    still exits 1), no chart, no page; `flashsale report` draws them later from the
    same tables, with the same figures."""
    run = tmp_path / "run"
    res = _flashsale(
        "simulate", SMOKE, "--replications", "2", "--set", NEVER, "--report", "summary",
        "--out", run,
    )  # fmt: skip
    assert res.exit_code == 1, res.output  # the threshold is judged
    assert "units sold" in res.output and "FAIL" in res.output
    assert f"`flashsale report {run}` writes the full report" in res.output
    assert (run / "metrics.json").exists() and not _full(run)
    manifest = _json(run / "manifest.json")
    assert (manifest["status"], manifest["report"]) == ("complete", "summary")
    summary = _json(run / "metrics.json")["metrics"]

    res = _flashsale("report", run)
    assert res.exit_code == 1, res.output
    assert _full(run)
    assert _json(run / "metrics.json")["metrics"] == summary
    assert _json(run / "manifest.json")["report"] == "full"


@pytest.mark.slow
def test_simulate_none_writes_only_the_tables(tmp_path: Path) -> None:
    """none: the tables only; no threshold is judged (exit 0) until `flashsale report`."""
    run = tmp_path / "run"
    res = _flashsale("simulate", SMOKE, "--set", NEVER, "--report", "none", "--out", run)
    assert res.exit_code == 0, res.output
    assert "not written (--report none)" in res.output and "units sold" not in res.output
    assert (run / "rep-000").is_dir() and not (run / "metrics.json").exists()
    assert _json(run / "manifest.json")["status"] == "complete"
    res = _flashsale("report", run)
    assert res.exit_code == 1 and "FAIL" in res.output
    assert _full(run)


def _sweep(out: Path, *extra: str) -> Any:
    return _flashsale(
        "sweep", SMOKE, "--vary", "service.workers=4,8", "--replications", "1",
        "--workers", "1", *extra, "--out", out,
    )  # fmt: skip


@pytest.mark.slow
def test_sweep_default_is_a_summary_per_point_and_report_draws_every_page(
    tmp_path: Path,
) -> None:
    """By default a sweep writes each point's metrics.json, not its charts and page, and
    no comparison; its own table, chart and page are there, linking each point's
    metrics. `flashsale report SWEEP_DIR` then draws every point's page and the
    comparison, with the same table."""
    out = tmp_path / "s"
    res = _sweep(out)
    assert res.exit_code == 0, res.output
    points = [out / "point-000", out / "point-001"]
    assert all((p / "metrics.json").exists() and not _full(p) for p in points)
    assert not (out / "compare").exists()
    page = (out / "report.html").read_text()
    assert 'href="point-001/metrics.json"' in page and "--report summary" in page
    assert any((out / "charts").glob("*.png"))
    table = [line for line in res.output.splitlines() if line.startswith("point-")]
    assert len(table) == 2

    res = _flashsale("report", out)
    assert res.exit_code == 0, res.output
    assert "not a run folder" not in res.output
    assert all(_full(p) for p in points)
    assert (out / "compare" / "report.html").exists()
    assert 'href="point-001/report.html"' in (out / "report.html").read_text()
    assert [line for line in res.output.splitlines() if line.startswith("point-")] == table
    assert _json(out / "sweep.json")["status"] == "complete"


@pytest.mark.slow
def test_sweep_none_writes_tables_and_report_writes_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = _sweep(out, "--report", "none")
    assert res.exit_code == 0, res.output
    # no metrics, so no table (not even its header): one line says how to get them
    assert "settings" not in res.output and "point-000" not in res.output, res.output
    said = "metrics: not computed (--report none), so no table and no report; "
    assert f"{said}`flashsale report {out}` computes them" in res.output, res.output
    assert not (out / "report.html").exists() and not (out / "point-000" / "metrics.json").exists()
    assert _json(out / "sweep.json")["status"] == "complete"
    res = _flashsale("report", out)
    assert res.exit_code == 0, res.output
    assert (out / "report.html").exists() and _full(out / "point-000")


@pytest.mark.slow
def test_sweep_full_draws_every_point_and_the_comparison(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = _sweep(out, "--report", "full")
    assert res.exit_code == 0, res.output
    assert _full(out / "point-000") and _full(out / "point-001")
    assert (out / "compare" / "report.html").exists()
