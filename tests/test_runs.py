"""The results folder: manifest contents and honest status on success, failure, Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flashsale.outcome import Outcome
from flashsale.runs import (
    RunError,
    RunFolder,
    default_run_dir,
    open_run,
    process_gone,
    remove_partials,
    write_text_atomic,
)
from flashsale.scenario import load_scenario, scenario_hash

from ._processes import LINUX, cpu_s, wait_until
from .test_metrics_data import synthetic_outcome
from .test_outcome import _outcome


def _manifest(path: Path) -> dict[str, object]:
    return json.loads((path / "manifest.json").read_text())


def test_complete_run_records_what_ran(smoke_path: Path, tmp_path: Path) -> None:
    sc = load_scenario(smoke_path)
    out = tmp_path / "run"
    with open_run(sc, "sim", out=out, seed=7, replications=2, argv=["flashsale", "x"]) as run:
        assert _manifest(out)["status"] == "running"
        for rep in range(2):
            run.save_replication(rep, _outcome(20, rep))
    m = _manifest(out)
    assert m["status"] == "complete" and m["error"] is None
    assert m["scenario_name"] == "smoke" and m["scenario_hash"] == scenario_hash(sc)
    assert m["engine"] == "sim" and m["seed"] == 7 and m["replications_done"] == [0, 1]
    assert m["command"] == ["flashsale", "x"]
    assert {"python", "numpy", "pydantic"} <= set(m["versions"])  # type: ignore[arg-type]
    assert m["started_at"] and m["finished_at"]
    assert load_scenario(out / "scenario.toml") == sc, "the run's scenario re-runs as is"
    loaded = RunFolder.load(out)
    assert loaded.scenario == sc
    assert loaded.replications() == [0, 1]
    assert isinstance(loaded.load_replication(1), Outcome)


def test_interrupted_run_is_marked_incomplete(smoke_path: Path, tmp_path: Path) -> None:
    sc = load_scenario(smoke_path)
    out = tmp_path / "run"
    with (
        pytest.raises(KeyboardInterrupt),
        open_run(sc, "sim", out=out, seed=1, replications=3) as run,
    ):
        run.save_replication(0, _outcome(20))
        raise KeyboardInterrupt
    m = _manifest(out)
    assert m["status"] == "incomplete"
    assert "interrupted" in str(m["error"])
    assert m["replications_done"] == [0]
    assert not list(out.rglob("*.partial")), "no half-written file is left behind"


def test_failed_run_keeps_the_error(smoke_path: Path, tmp_path: Path) -> None:
    sc = load_scenario(smoke_path)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), open_run(sc, "sim", out=out, seed=1, replications=1):
        raise RuntimeError("checkout model exploded")
    m = _manifest(out)
    assert m["status"] == "failed"
    assert m["error"] == "RuntimeError: checkout model exploded"


def test_non_empty_out_folder_is_refused(smoke_path: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with (
        pytest.raises(RunError, match="exists and is not empty"),
        open_run(load_scenario(smoke_path), "sim", out=tmp_path, seed=1, replications=1),
    ):
        pass
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_default_folder_name_is_timestamp_scenario_engine(smoke_path: Path, tmp_path: Path) -> None:
    path = default_run_dir(load_scenario(smoke_path), "replay", root=tmp_path)
    assert path.parent == tmp_path
    assert path.name.endswith("Z-smoke-replay")


def test_loading_a_non_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a run folder"):
        RunFolder.load(tmp_path)


@pytest.mark.slow
def test_sigterm_marks_a_simulation_incomplete_and_exits_nonzero(tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the folder must not stay ``running``."""
    out = tmp_path / "run"
    flashsale = Path(sys.executable).parent / "flashsale"
    poco = Path(__file__).resolve().parents[1] / "scenarios" / "poco_m3.toml"
    proc = subprocess.Popen(
        [str(flashsale), "simulate", str(poco), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(
        "the run folder's manifest",
        lambda: (out / "manifest.json").exists() or proc.poll() is not None,
    )
    if LINUX:  # inside the replication: one of its ~6 CPU seconds, whatever the load
        after = (cpu_s(proc.pid) or 0.0) + 1.0
        wait_until("a CPU second into the replication", lambda: (cpu_s(proc.pid) or 1e9) > after)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    m = json.loads((out / "manifest.json").read_text())
    assert (m["status"], m["error"]) == ("incomplete", "interrupted (SIGTERM)")
    assert m["finished_at"] is not None
    assert not (out / "rep-000").exists()  # no half-written replication


def test_a_run_whose_report_follows_is_complete_only_once_it_is_written(
    smoke_path: Path, tmp_path: Path
) -> None:
    from flashsale.postrun import finish_run

    sc = load_scenario(smoke_path)
    out = tmp_path / "run"
    with open_run(sc, "sim", out=out, seed=1, replications=1, report_follows=True) as run:
        run.save_replication(0, synthetic_outcome(sc, np.random.default_rng(0)))
    m = _manifest(out)
    assert (m["status"], m["phase"]) == ("running", "report")  # tables whole, no report yet
    assert m["pid"] == os.getpid() and m["host"] == socket.gethostname()
    assert RunFolder.load(out).whole
    finish_run(RunFolder.load(out), echo=lambda _: None)  # (thresholds: not the point)
    m = _manifest(out)
    assert (m["status"], m["phase"], m["error"]) == ("complete", "report", None)
    assert (out / "report.html").exists()


def test_a_failed_write_leaves_no_temporary_file_and_names_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Path, text: str, encoding: str | None = None) -> int:
        with open(self, "w", encoding=encoding) as f:
            f.write(text[:3])  # half of it made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as e:
        write_text_atomic(tmp_path / "report.html", "<!DOCTYPE html>")
    assert e.value.filename == str(tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_remove_partials_removes_only_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    keep = [tmp_path / "charts" / "outcomes.png", tmp_path / "report.html"]
    for p in [
        *keep,
        tmp_path / "charts" / ".outcomes.partial.png",
        tmp_path / ".report.html.partial",
    ]:
        p.write_text("x")
    remove_partials(tmp_path)
    assert sorted(tmp_path.rglob("*.*")) == sorted(keep)


def test_loading_what_is_not_a_run_folder_names_it(tmp_path: Path) -> None:
    a_file = tmp_path / "report.html"
    a_file.write_text("<html>")
    with pytest.raises(RunError, match="not a run folder but a file"):
        RunFolder.load(a_file)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    with pytest.raises(RunError, match="a sweep folder, not a run folder"):
        RunFolder.load(sweep)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "manifest.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="not a run manifest"):
        RunFolder.load(odd)


def test_a_running_manifest_whose_process_is_gone_was_killed() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = {"status": "running", "pid": gone.pid, "host": socket.gethostname()}
    assert process_gone(here) == gone.pid
    assert process_gone({**here, "pid": os.getpid()}) is None  # alive: still running
    assert process_gone({**here, "status": "complete"}) is None
    assert process_gone({**here, "host": "elsewhere"}) is None  # cannot tell from here
