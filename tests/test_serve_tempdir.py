"""The temporary folders of the reference service go when the service does.

``flashsale serve`` without ``--db`` keeps its SQLite file in a temporary folder of its
own, removed however the service stops: Ctrl-C, SIGTERM (under the console script
and without its SIGTERM handler too), or a refusal after the folder was made. A
``--db`` is the user's: never removed. ``run_in_background`` removes its folder
(scenario, ready file, log, database) on a normal exit, an exception and a failed
start. Loopback only; waits are for events, with a safety bound.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.scenario import load_scenario
from flashsale.service.server import run_in_background

from ._processes import FLASHSALE, LINUX, wait_until
from .conftest import SCENARIOS

pytestmark = pytest.mark.skipif(not LINUX, reason="process groups and signals as on Linux")

SMOKE = str(SCENARIOS / "smoke.toml")
START_S = 180.0
"""A safety bound on run_in_background's start (its own default, 30 s, is short for a
loaded machine); not a speed claim."""


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary-files folder of this process and of the processes it starts."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _own_group() -> None:
    # a terminal's foreground job: its own process group, Ctrl-C not ignored
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(ready: Path, *args: str, entry: list[str] | None = None) -> subprocess.Popen[str]:
    """``flashsale serve smoke.toml --port 0 ARGS`` once it answers on loopback."""
    cmd = [*(entry or [str(FLASHSALE)]), "serve", SMOKE, "--port", "0", *args]
    proc = subprocess.Popen(
        [*cmd, "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_own_group,
    )
    try:
        wait_until("the service is ready", lambda: ready.exists() or proc.poll() is not None)
        assert ready.exists(), proc.communicate(timeout=60)
        assert httpx.get(f"{ready.read_text()}/v1/sale", timeout=30).json()["units"] == 200
    except BaseException:
        proc.kill()
        proc.communicate(timeout=60)
        raise
    return proc


def _folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("flashsale-*"))


@pytest.mark.parametrize(
    ("sig", "said"),
    [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "interrupted (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_serve_removes_its_temporary_folder_when_stopped(
    sig: signal.Signals, said: str, tmp: Path, tmp_path: Path
) -> None:
    proc = _serve(tmp_path / "ready")
    (folder,) = _folders(tmp)
    assert (folder / "sale.db").is_file()
    os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C, or `kill -TERM -<group>`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert said in err, err
    assert _folders(tmp) == []


def test_serve_without_the_console_scripts_handler_removes_it_on_sigterm(
    tmp: Path, tmp_path: Path
) -> None:
    """``app()`` without ``main()``: Python's default for SIGTERM would die before the
    folder is removed (uvicorn stops, then raises SIGTERM again)."""
    entry = [sys.executable, "-c", "from flashsale.cli import app; app()"]
    proc = _serve(tmp_path / "ready", entry=entry)
    assert len(_folders(tmp)) == 1
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted (SIGTERM)" in err, err
    assert _folders(tmp) == []


def test_serve_never_removes_the_users_db(tmp: Path, tmp_path: Path) -> None:
    db = tmp_path / "mine" / "sale.db"
    proc = _serve(tmp_path / "ready", "--db", str(db))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert db.is_file() and _folders(tmp) == []


def test_serve_refused_after_making_its_folder_removes_it(tmp: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", SMOKE, "--port", str(port)])
    assert r.exit_code == 2 and "cannot listen" in r.output, r.output
    assert _folders(tmp) == []


def test_run_in_background_removes_its_folder_on_every_way_out(tmp: Path, tmp_path: Path) -> None:
    sc = load_scenario(SMOKE)
    with run_in_background(sc, ready_timeout_s=START_S) as url:
        (folder,) = _folders(tmp)
        assert Path(url.db).parent == folder
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    assert _folders(tmp) == []

    with pytest.raises(KeyboardInterrupt), run_in_background(sc, ready_timeout_s=START_S):
        raise KeyboardInterrupt
    assert _folders(tmp) == []

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with (
        pytest.raises(RuntimeError, match="did not start"),
        run_in_background(sc, db=not_a_folder / "sale.db"),
    ):
        pass
    assert _folders(tmp) == []

    db = tmp_path / "mine.db"
    with run_in_background(sc, db=db, ready_timeout_s=START_S) as url:
        assert url.db == str(db)
    assert db.is_file() and _folders(tmp) == []
