"""What a replay shows while it runs: ``flashsale replay``'s progress, and plain Locust's
web UI (its user count, Start pressed twice). Loopback only, every run bounded by the
sale's short window and ``target.max_requests``; waits are for events (files, answers),
with generous safety bounds only.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashsale.outcome import RESULT, load_outcome
from flashsale.replay.scale import replay_schedule, scale_scenario
from flashsale.scenario import load_scenario
from flashsale.service.server import run_in_background

from ._processes import wait_until
from ._shopserver import free_port
from .conftest import ROOT, SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
SHORT = [
    "--set", "sale.window_s=6",
    "--set", "humans.arrivals.early_window_s=2",
    "--set", "humans.arrivals.decay_s=2",
    "--set", "target.max_requests=5000",
]  # fmt: skip
SCALE = "0.2"
FLASHSALE = str(Path(sys.executable).parent / "flashsale")
RUN_TIMEOUT_S = 300  # a subprocess's safety bound; a replay here takes about 20 s
_LAST_LINE = re.compile(
    r"^replay: (\d+) of (\d+) journeys ended \((\d+) started\), (\d+) requests "
    r"\((\d+) failed\), (\d+) units sold$",
    re.M,
)


def _replay(out: Path) -> list[str]:
    return [FLASHSALE, "replay", str(SMOKE), "--scale", SCALE, *SHORT, "--out", str(out)]


def _counts(out: Path) -> tuple[int, int, int]:
    """Journeys, requests and units purchased, from the run's own tables."""
    o = load_outcome(out / "rep-000")
    jr = o.journeys
    sold = int(jr["units"][jr["result"] == RESULT.index("purchased")].sum())
    return int(jr["journey"].size), int(o.requests["journey"].size), sold


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_replay_prints_its_progress_off_a_terminal(processes: int, tmp_path: Path) -> None:
    """Off a terminal (a CI log) the replay's progress is one line at the end, which
    agrees with the tables and with the service's own books, with Locust workers too
    (their final figures come with their shares); the lines it printed before are all
    still there. Locust's default master port (5557) is taken meanwhile, as by another
    replay's master: the workers' master listens on a free loopback port of its own."""
    out = tmp_path / "run"
    with contextlib.ExitStack() as stack:
        blocker = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken: just as good
            blocker.bind(("127.0.0.1", 5557))
            blocker.listen()
        proc = subprocess.run(
            [*_replay(out), "--processes", str(processes)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = _LAST_LINE.search(proc.stdout)
    assert m, proc.stdout
    ended, scheduled, started, requests, failed, units = map(int, m.groups())
    journeys, rows, sold = _counts(out)
    assert ended == scheduled == started == journeys
    assert requests == rows and failed == 0
    audit = json.loads((out / "manifest.json").read_text())["audit"][0]
    assert units == sold == audit["units_sold"]  # the service's books
    for line in ("the sale opens in", "units sold", "results:", "report:"):
        assert line in proc.stdout
    assert "\x1b[" not in proc.stdout  # no terminal codes in a log


@pytest.mark.slow
def test_replay_shows_a_live_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal a bar moves while the sale runs: journeys ended of those
    scheduled, started, requests per second, failed requests, units sold."""
    out = tmp_path / "run"
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns
    proc = subprocess.Popen(
        _replay(out), stdin=child, stdout=child, stderr=child, close_fds=True, cwd=ROOT
    )
    os.close(child)
    seen = b""
    while True:  # until the replay closes the terminal (it exits); bounded below
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # EIO: every writer has gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(parent)
    assert proc.wait(timeout=RUN_TIMEOUT_S) == 0, seen[-2000:]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    journeys, _, sold = _counts(out)
    bars = re.findall(r"smoke .*? (\d+)/(\d+) ended, (\d+) started, \d+ req/s, "
                      r"(\d+) failed, (\d+) sold", text)  # fmt: skip
    assert bars, text[-2000:]
    assert bars[-1] == (str(journeys), str(journeys), str(journeys), "0", str(sold))
    ended = [int(b[0]) for b in bars]
    assert ended == sorted(ended)  # it only moves forward
    assert "units sold" in text and "report:" in text  # the summary after the bar


def test_run_in_background_waits_generously_for_a_slow_start() -> None:
    """Its bound is a safety net for a hung server, not a deadline: several times the
    second a start takes, so a loaded machine does not fail it (a server that exits
    is noticed at once, tests/test_serve_tempdir.py)."""
    bound = inspect.signature(run_in_background).parameters["ready_timeout_s"].default
    assert bound >= 120


# ------------------------------------------------------------------------- web UI


def _stats(ui: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{ui}/stats/requests", timeout=30).json()
    return doc


def _runs(results: Path) -> list[Path]:
    return sorted(p for p in results.glob("*") if (p / "manifest.json").exists())


def _complete(run: Path) -> bool:
    try:
        return bool(json.loads((run / "manifest.json").read_text())["status"] == "complete")
    except (OSError, ValueError):  # being replaced
        return False


@contextlib.contextmanager
def _web_ui(cwd: Path, *extra: str) -> Iterator[tuple[str, Any, Path]]:
    """Plain Locust with its web UI on 127.0.0.1 (as the README says) against the
    reference service; yields the UI's URL, the service's URL and Locust's log file."""
    sets = [SHORT[i + 1] for i in range(0, len(SHORT), 2)]
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    log = cwd / "locust.log"
    with run_in_background(scale_scenario(load_scenario(SMOKE, sets), float(SCALE))) as url:
        cmd = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "flashsale.py"),
            "--web-host", "127.0.0.1", "--web-port", str(port), "--loglevel", "WARNING",
            "--scenario", str(SMOKE), "--scale", SCALE, *SHORT,
            "--host", str(url), "--admin-token", url.admin_token, *extra,
        ]  # fmt: skip
        with log.open("w") as err:
            locust = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        try:

            def answers() -> bool:
                try:
                    return httpx.get(ui, timeout=5).status_code == 200
                except httpx.HTTPError:
                    return locust.poll() is not None  # it died: fail below, not hang

            wait_until("the web UI answers", answers)
            assert locust.poll() is None, log.read_text()[-2000:]
            yield ui, url, log
        finally:
            locust.terminate()  # SIGTERM: the UI's clean stop
            try:
                locust.wait(timeout=120)
            except subprocess.TimeoutExpired:
                locust.kill()
                locust.wait()
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


def _start(ui: str, url: Any) -> None:
    """What the web UI's Start button posts."""
    form = {"user_count": 1, "spawn_rate": 1, "host": str(url)}
    swarm = httpx.post(f"{ui}/swarm", data=form, timeout=30).json()
    assert swarm["success"], swarm


@pytest.mark.slow
def test_web_ui_start_twice_replays_twice_into_new_folders(tmp_path: Path) -> None:
    """Start runs a replay into a new run folder, Start again runs another into
    another, each complete and agreeing with the service's books; while a replay runs
    the UI's user count is the journeys in flight (one pacer per process would read 1)."""
    sets = [SHORT[i + 1] for i in range(0, len(SHORT), 2)]
    scheduled = len(replay_schedule(load_scenario(SMOKE, sets), float(SCALE), 0)[1])
    results = tmp_path / "results"
    users = []
    with _web_ui(tmp_path) as (ui, url, _):
        for n in (1, 2):
            _start(ui, url)

            def done(n: int = n) -> bool:
                users.append(_stats(ui)["user_count"])
                runs = _runs(results) if results.exists() else []
                return len(runs) == n and _complete(runs[-1])

            wait_until(f"replay {n}'s run folder complete", done)
    runs = _runs(results)
    assert len(runs) == 2
    for run in runs:
        journeys, _, sold = _counts(run)
        audit = json.loads((run / "manifest.json").read_text())["audit"][0]
        assert journeys == scheduled and audit["units_sold"] == sold
        assert (run / "report.html").exists()
    assert max(users) > 1  # journeys in flight, not the one pacer


@pytest.mark.slow
def test_web_ui_start_again_with_out_says_why_it_cannot(tmp_path: Path) -> None:
    """With --out the folder holds the first replay: Start again replays nothing and
    the log says why, in one error line; the first run stays complete."""
    out = tmp_path / "run"
    with _web_ui(tmp_path, "--out", str(out)) as (ui, url, log):
        _start(ui, url)
        wait_until("the first replay complete", lambda: _complete(out))
        _start(ui, url)
        wait_until("the refusal in the log", lambda: "cannot replay again" in log.read_text())
    errors = [line for line in log.read_text().splitlines() if "cannot replay again" in line]
    assert errors == [
        f"error: cannot replay again: --out {out}: holds the last replay; restart Locust "
        "without --out (each Start then writes a new results/<stamp> folder) or with "
        "another --out"
    ]
    assert _complete(out) and _runs(tmp_path) == [out]
