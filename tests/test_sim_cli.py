"""``flashsale simulate`` end to end: run folder, summary, exit codes, worker-independence."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.sim import engine

from ._processes import LINUX, children, dead, start, wait_until

runner = CliRunner()


@pytest.mark.slow
def test_tables_are_byte_identical_whatever_the_workers(smoke_path: Path, tmp_path: Path) -> None:
    for workers in (1, 2):
        res = runner.invoke(
            app,
            [
                "simulate",
                str(smoke_path),
                "--replications",
                "2",
                "--workers",
                str(workers),
                "--seed",
                "11",
                "--out",
                str(tmp_path / f"w{workers}"),
            ],
        )
        assert res.exit_code == 0, res.output
    assert "units sold" in res.output and "oversold units" in res.output
    for rep in ("rep-000", "rep-001"):
        for table in ("journeys", "requests", "timeline"):
            a = (tmp_path / "w1" / rep / f"{table}.parquet").read_bytes()
            b = (tmp_path / "w2" / rep / f"{table}.parquet").read_bytes()
            assert a == b, f"{rep}/{table} differs between 1 and 2 workers"
    manifest = json.loads((tmp_path / "w2" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["engine"] == "sim" and manifest["seed"] == 11
    assert "seed = 11" in (tmp_path / "w2" / "scenario.toml").read_text()
    assert manifest["replications_done"] == [0, 1]


def test_unmodelled_defense_exits_2_naming_the_field(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MODELLED_DEFENSES", ("account_limit", "rate_limit"))
    res = runner.invoke(
        app,
        [
            "simulate",
            str(smoke_path),
            "--set",
            "defenses.lottery.enabled=true",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2
    assert "defenses.lottery.enabled" in res.output
    assert not (tmp_path / "run").exists()  # refused before any folder was made


def test_non_empty_out_exits_2(smoke_path: Path, tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    res = runner.invoke(app, ["simulate", str(smoke_path), "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "not empty" in res.output


def test_bad_replications_exits_2(smoke_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(smoke_path), "--replications", "0"])
    assert res.exit_code == 2


# ---------------------------------------------------------------- stopping a run
# poco_m3: a replication takes seconds, so a signal lands while workers are busy.

POCO = str(Path(__file__).resolve().parents[1] / "scenarios" / "poco_m3.toml")


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="workers are watched through /proc")
def test_ctrl_c_with_more_replications_than_workers_stops_them_and_says_so(
    tmp_path: Path,
) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) after the
    first replication: the command does not wait for the running or queued
    replications, kills its workers, marks the folder and says what it holds."""
    out = tmp_path / "run"
    proc = start("simulate", POCO, "--replications", "4", "--workers", "2", "--out", str(out))
    wait_until("a first replication", lambda: (out / "rep-000" / "timeline.parquet").exists())
    workers = children(proc.pid)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err  # the workers ignore Ctrl-C: theirs is the parent's
    lines = err.strip().splitlines()
    assert lines[-2] == "interrupted (Ctrl-C)"
    assert lines[-1].strip().startswith(f"{out}: ") and "of 4 replications written" in err
    assert f"`flashsale report --partial {out}`" in err
    wait_until("the workers are gone", lambda: all(dead(p) for p in workers))
    m = json.loads((out / "manifest.json").read_text())
    assert (m["status"], m["error"]) == ("incomplete", "interrupted (Ctrl-C)")
    assert len(m["replications_done"]) < 4


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_leaves_no_worker_behind(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start("simulate", POCO, "--replications", "4", "--workers", "2", "--out", str(out))
    wait_until("two workers", lambda: len(children(proc.pid)) == 2)
    workers = children(proc.pid)
    proc.kill()
    proc.communicate()
    wait_until("the workers died with the command", lambda: all(dead(p) for p in workers))
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code in (1, 2), res.output  # nothing written yet, or not whole
    assert f"(pid {proc.pid}) is gone: killed" in res.output


def test_a_stopped_run_is_one_line_and_a_note(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The books not balancing: exit 1, an ``error:`` line, then what the folder holds."""
    from flashsale.sim import runner as sim_runner
    from flashsale.sim.stock import OversellError

    def oversold(*_: object) -> None:
        raise OversellError("sold 201 of 200 units")

    monkeypatch.setattr(sim_runner, "replication_outcome", oversold)
    out = tmp_path / "run"
    res = runner.invoke(app, ["simulate", str(smoke_path), "--out", str(out)])
    assert res.exit_code == 1
    assert isinstance(res.exception, SystemExit)
    assert "error: the run failed: sold 201 of 200 units" in res.output
    assert f"{out}: 0 of 1 replications written, status failed" in res.output
