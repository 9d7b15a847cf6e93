"""``flashsale simulate`` end to end: run folder, summary, exit codes, worker-independence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.sim import engine

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
