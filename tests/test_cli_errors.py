"""Every command turns a bad input into one ``error:`` line and exit 2, never a traceback
(flashsale._cli_utils.guarded and the one output-folder guard, flashsale.runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.runs import RunError, prepare_output_dir

from .conftest import SCENARIOS

cli = CliRunner()
SMOKE = str(SCENARIOS / "smoke.toml")


def _refused(args: list[str], *needles: str) -> str:
    res = cli.invoke(app, args)
    assert res.exit_code == 2, res.output
    # an exception CliRunner caught would be a traceback in a terminal
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    first = res.output.splitlines()[0]
    assert first.startswith("error: "), res.output
    for needle in needles:
        assert needle in res.output, res.output
    return res.output


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    return path


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_out_naming_an_existing_file_is_refused(command: str, a_file: Path) -> None:
    vary = ["--vary", "service.workers=4,8"] if command == "sweep" else []
    _refused([command, SMOKE, *vary, "--out", str(a_file)], str(a_file), "not a folder")
    assert a_file.read_text() == "precious"


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_out_that_cannot_be_created_is_refused(command: str, a_file: Path) -> None:
    vary = ["--vary", "service.workers=4,8"] if command == "sweep" else []
    out = a_file / "run"  # under a file: like /proc/x, no folder can be made there
    _refused([command, SMOKE, *vary, "--out", str(out)], str(out), "cannot create")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_out_in_proc_is_refused() -> None:
    _refused(["simulate", SMOKE, "--out", "/proc/x"], "/proc/x", "cannot create")


def test_the_output_guard_itself(tmp_path: Path, a_file: Path) -> None:
    assert prepare_output_dir(tmp_path / "new" / "run").is_dir()
    assert prepare_output_dir(tmp_path / "new" / "run").is_dir()  # empty: fine again
    with pytest.raises(RunError, match="not a folder"):
        prepare_output_dir(a_file)
    with pytest.raises(RunError, match="not empty"):
        prepare_output_dir(tmp_path)


def test_report_on_a_file_is_refused(a_file: Path) -> None:
    _refused(["report", str(a_file)], str(a_file), "not a run folder")


def test_simulate_a_run_folder_names_its_scenario(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "scenario.toml").write_text(Path(SMOKE).read_text())
    _refused(["simulate", str(run)], "a run folder", str(run / "scenario.toml"))
    _refused(["simulate", str(tmp_path / "run" / "..")], "a folder")


def test_validate_a_folder_is_one_line(tmp_path: Path) -> None:
    _refused(["validate", str(tmp_path)], str(tmp_path))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_serve_db_where_no_file_can_be_made(a_file: Path, tmp_path: Path) -> None:
    _refused(["serve", SMOKE, "--port", "0", "--db", str(a_file / "sale.db")], "--db")
    _refused(["serve", SMOKE, "--port", "0", "--db", str(tmp_path)], "--db", "a folder")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_serve_db_in_proc() -> None:
    _refused(["serve", SMOKE, "--port", "0", "--db", "/proc/nope/sale.db"], "--db /proc/nope")


def test_replay_scale_that_replays_nobody_names_the_smallest_that_does(tmp_path: Path) -> None:
    out = _refused(["replay", SMOKE, "--scale", "1e-12", "--out", str(tmp_path / "r")], "--scale")
    # smoke has 1,000 humans: a scale rounds n x scale, so 0.0005 (0.5) is still nobody
    assert "the smallest scale that replays anyone is 0.00051" in out
    assert not (tmp_path / "r").exists()
    out = _refused(["replay", SMOKE, "--scale", "0.0005", "--out", str(tmp_path / "r")])
    assert "0.00051" in out
