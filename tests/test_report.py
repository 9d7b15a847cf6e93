"""report.html and `flashsale report`: files produced, self-contained, bad folders refused."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from flashsale import postrun
from flashsale.cli import app
from flashsale.metrics import METRICS_SCHEMA, fmt_metric
from flashsale.postrun import finish_run
from flashsale.runs import RunError, RunFolder, Terminated, open_run
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


def _interrupted_run(path: Path, done: int, asked: int) -> Path:
    """A run stopped (SIGTERM) after ``done`` of ``asked`` replications."""
    sc = _scenario()
    with (
        pytest.raises(KeyboardInterrupt),
        open_run(sc, "test", out=path, seed=1, replications=asked, argv=["t"]) as run,
    ):
        for r in range(done):
            run.save_replication(r, synthetic_outcome(sc, np.random.default_rng(r)))
        raise Terminated
    return path


@pytest.mark.slow
def test_a_run_stopped_after_2_of_4_replications_is_reported_only_when_asked(
    tmp_path: Path,
) -> None:
    path = _interrupted_run(tmp_path / "run", 2, 4)
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and "2 of 4 replications" in res.output
    assert "--partial" in res.output and "SIGTERM" in res.output
    assert not (path / "report.html").exists() and not (path / "metrics.json").exists()

    res = CliRunner().invoke(app, ["report", "--partial", str(path)])
    assert res.exit_code == 0, res.output
    assert "PARTIAL report" in res.output
    page = (path / "report.html").read_text()
    assert "<title>flashsale report (PARTIAL): mailable</title>" in page
    assert "Partial report" in page and "replications [2, 3] are missing" in page
    doc = json.loads((path / "metrics.json").read_text())
    assert doc["partial"] is True and doc["replications"] == [0, 1]
    assert doc["run"]["replications_missing"] == [2, 3]
    assert doc["run"]["status"] == "incomplete"
    m = RunFolder.load(path).manifest
    assert (m["status"], m["error"]) == ("incomplete", "interrupted (SIGTERM)")  # unchanged


def test_a_killed_run_says_its_process_is_gone(tmp_path: Path) -> None:
    """SIGKILL leaves the manifest ``running``; its pid tells a reader it was killed."""
    path = tmp_path / "run"
    sc = _scenario()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with open_run(sc, "test", out=path, seed=1, replications=3, argv=["t"]) as run:
        run.save_replication(0, synthetic_outcome(sc, np.random.default_rng(0)))
    # what SIGKILL leaves: the manifest as it was while running, its process gone
    run.update(status="running", phase="run", finished_at=None, pid=gone.pid)
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 1
    assert f"process (pid {gone.pid}) is gone: killed" in res.output


def _full_disk_on(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving chart ``name`` writes half its PNG, then the disk is full."""
    real = Figure.savefig

    def savefig(self: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        if f".{name}.partial" in str(fname):
            Path(fname).write_bytes(b"\x89PNG half a chart")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_disk_full_while_drawing_charts_fails_the_run_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = _scenario()
    path = tmp_path / "run"
    make_run(path, sc, [synthetic_outcome(sc, np.random.default_rng(0))])
    _full_disk_on("outcomes", monkeypatch)
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)  # no traceback
    lines = res.output.splitlines()
    assert lines[0] == f"error: {path}: No space left on device"
    assert f"`flashsale report {path}` writes it again" in res.output
    m = RunFolder.load(path).manifest
    assert (m["status"], m["phase"]) == ("failed", "report")
    assert "No space left on device" in m["error"]
    assert not (path / "report.html").exists()
    assert not list(path.rglob("*.partial*")), "a half-written chart was left behind"

    monkeypatch.undo()  # room again: the same command completes the run
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 0, res.output
    m = RunFolder.load(path).manifest
    assert (m["status"], m["error"]) == ("complete", None) and m["reported_at"]
    assert (path / "report.html").exists()


@pytest.mark.slow
def test_ctrl_c_while_simulate_writes_the_report_leaves_the_run_incomplete(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: Any) -> None:
        (tmp_path / "run" / "charts").mkdir()
        (tmp_path / "run" / "charts" / ".stock_left.partial.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(postrun, "draw_run_charts", interrupted)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["simulate", str(smoke_path), "--out", str(out)])
    assert res.exit_code == 130
    assert "interrupted (Ctrl-C)" in res.output
    assert f"`flashsale report {out}` writes it again from the tables" in res.output
    m = RunFolder.load(out).manifest
    assert (m["status"], m["phase"], m["error"]) == (
        "incomplete",
        "report",
        "report: interrupted (Ctrl-C)",
    )
    assert not (out / "report.html").exists()
    assert not list(out.rglob("*.partial*"))
    monkeypatch.undo()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert RunFolder.load(out).status == "complete"
