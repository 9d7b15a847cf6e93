"""report.html and `flashsale report`: files produced, self-contained, bad folders refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.metrics import METRICS_SCHEMA, fmt_metric
from flashsale.postrun import finish_run
from flashsale.runs import RunError, RunFolder, open_run
from flashsale.scenario import Scenario

from .test_metrics_data import make_run, scenario, synthetic_outcome


def _scenario() -> Scenario:
    return scenario(
        name="mailable",
        description="a sale <with> markup & ampersands",
        sale={"units": 150, "window_s": 30},
        humans={"count": 300},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
        thresholds={"oversold_units": "== 0"},
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = _scenario()
    path = tmp_path_factory.mktemp("report") / "run"
    make_run(
        path,
        sc,
        [synthetic_outcome(sc, np.random.default_rng(i)) for i in range(2)],
        extra={"audit": [{"units_sold": 150, "oversold_units": 0}] * 2},
    )
    lines: list[str] = []
    assert finish_run(RunFolder.load(path), echo=lines.append) == 0
    assert any(line.startswith("  units sold") for line in lines)
    assert any(line.startswith("report:") for line in lines)
    return path


def test_finish_run_writes_metrics_charts_and_report(run_dir: Path) -> None:
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["schema"] == METRICS_SCHEMA
    assert doc["replications"] == [0, 1]
    assert doc["metrics"]["audit_mismatch_units"]["values"] == [0, 0]
    assert doc["thresholds"][0]["passed"] is True
    assert len(list((run_dir / "charts").glob("*.png"))) == 7


def test_report_is_self_contained(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('src="data:image/png;base64,') == 7
    # Nothing fetched from anywhere: no external sources, scripts or stylesheets.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page and "<link" not in page
    assert "a sale &lt;with&gt; markup &amp; ampersands" in page
    assert "PASS" in page and "oversold_units == 0" in page
    assert "Student t" in page
    assert "units sold: journeys vs the service&#x27;s audit" in page  # a run with an audit


@pytest.mark.slow
def test_report_command_rebuilds_in_place(run_dir: Path) -> None:
    (run_dir / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / "report.html").exists()


def test_bad_run_folders_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert "error:" in res.output and "not a run folder" in res.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    res = runner.invoke(app, ["report", str(bad)])
    assert res.exit_code == 2 and "invalid JSON" in res.output
    empty = tmp_path / "empty"
    with (
        pytest.raises(RuntimeError),
        open_run(_scenario(), "test", out=empty, seed=1, replications=1, argv=["t"]),
    ):
        raise RuntimeError("engine crashed before any replication")
    res = runner.invoke(app, ["report", str(empty)])
    assert res.exit_code == 2
    assert "no finished replication" in res.output
    assert "Traceback" not in res.output


def test_finish_run_refuses_a_broken_table(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "rep-001" / "requests.parquet").unlink()
    with pytest.raises(RunError, match="requests.parquet: missing"):
        finish_run(RunFolder.load(copy), echo=lambda _: None)
    (copy / "rep-000" / "journeys.parquet").write_bytes(b"garbage")
    res = CliRunner().invoke(app, ["report", str(copy)])
    assert res.exit_code == 2
    assert "cannot read a table" in res.output and "Traceback" not in res.output


def test_metric_formatting() -> None:
    assert fmt_metric("human_success_share", 0.1234) == "12.34%"
    assert fmt_metric("sellout_time_s", 301.25) == "301.2 s"
    assert fmt_metric("latency_p95_s.cart", 0.0123) == "0.0123 s"
    assert fmt_metric("units_sold", 50000) == "50,000"
    assert fmt_metric("sellout_time_s", 7) == "7.00 s"
    assert fmt_metric("throughput_peak_orders_per_s", 96.25) == "96.2"
    assert fmt_metric("units_per_person_gini", 0.5) == "0.5000"
    assert fmt_metric("review_precision", None) == "n/a"


def test_readme_documents_every_metric() -> None:
    from flashsale.metrics import METRIC_DOCS

    from .conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics, charts and reports") :]
    missing = [name for name in METRIC_DOCS if f"`{name}`" not in section]
    assert not missing, f"README metrics section lacks: {missing}"


@pytest.mark.slow
def test_an_interrupted_run_is_reported_on_its_finished_replications(tmp_path: Path) -> None:
    sc = _scenario()
    path = tmp_path / "run"
    with (
        pytest.raises(KeyboardInterrupt),
        open_run(sc, "test", out=path, seed=1, replications=3, argv=["t"]) as run,
    ):
        run.save_replication(0, synthetic_outcome(sc, np.random.default_rng(0)))
        raise KeyboardInterrupt
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "status incomplete" in res.output
    page = (path / "report.html").read_text()
    assert "This run is <b>incomplete</b>" in page
