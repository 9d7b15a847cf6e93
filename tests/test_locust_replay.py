"""The Locust engine end to end, on loopback only, every run bounded in time and requests.

Locust runs as a subprocess (gevent's monkey-patching stays out of pytest), with
``--run-time`` and a subprocess timeout; the sale is smoke, shortened with --set.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from flashsale.outcome import RESULT, load_outcome
from flashsale.replay.journey import Buyer, JourneyLog
from flashsale.replay.recorder import MergeError, Recorder, decode_part, encode_part, merge_parts
from flashsale.replay.scale import replay_schedule, scale_scenario
from flashsale.replay.session import (
    Plan,
    assemble,
    conclude,
    opening_epoch,
    record_results,
    replay_counts,
)
from flashsale.replay.target import apply_target_config
from flashsale.runs import RunFolder, open_run
from flashsale.scenario import load_scenario
from flashsale.service.server import new_admin_token, run_in_background

from ._shopserver import free_port
from .conftest import ROOT, SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
SHORT = [
    "--set", "sale.window_s=6",
    "--set", "humans.arrivals.early_window_s=2",
    "--set", "humans.arrivals.decay_s=2",
    "--set", "target.max_requests=5000",
]  # fmt: skip
LONG = [
    "--set", "sale.window_s=30",
    "--set", "humans.arrivals.early_window_s=2",
    "--set", "humans.arrivals.decay_s=10",
    "--set", "target.max_requests=5000",
]  # fmt: skip
"""A sale still under way when a test stops it a few seconds after the opening:
people keep arriving for 30 s (the opening comes 7 s after Locust starts)."""
SCALE = 0.2
FLASHSALE = str(Path(sys.executable).parent / "flashsale")
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "flashsale.py")]
pytestmark = pytest.mark.slow


def _short_scenario(sets: list[str] = SHORT) -> Any:
    return load_scenario(SMOKE, [sets[i + 1] for i in range(0, len(sets), 2)])


def _check_run(out: Path, processes: int) -> dict[str, Any]:
    """The invariants of a finished replay run folder; returns its manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["scale"] == SCALE
    outcome = load_outcome(out / "rep-000")
    jr = outcome.journeys
    _, sched = replay_schedule(_short_scenario(), SCALE, 0)
    # every scheduled journey recorded exactly once, with its scheduled arrival
    assert jr["journey"].tolist() == list(range(len(sched)))
    assert np.array_equal(jr["arrived"], sched.t)
    assert int(jr["requests"].sum()) == outcome.requests["journey"].size
    assert manifest["replay"]["processes"] == processes
    audit = manifest["audit"][0]
    sold = int(jr["units"][jr["result"] == RESULT.index("purchased")].sum())
    assert audit["units_sold"] == sold and audit["oversold_units"] == 0
    assert sold <= scale_scenario(_short_scenario(), SCALE).sale.units
    return manifest


def test_flashsale_replay_smoke_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [FLASHSALE, "replay", str(SMOKE), "--scale", str(SCALE)]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *SHORT], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_run(out, processes=1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "audit_mismatch_units" in json.dumps(metrics)
    assert (out / "report.html").exists()
    assert "units sold" in proc.stdout


def _plain_locust(
    out: Path, url: Any, extra: list[str], sets: list[str] = SHORT, run_time: str = "90s"
) -> list[str]:
    return [
        *LOCUST, "--headless", "--only-summary", "--loglevel", "WARNING",
        "--scenario", str(SMOKE), "--scale", str(SCALE), *sets,
        "--host", str(url), "--admin-token", url.admin_token,
        "--out", str(out), "--run-time", run_time, *extra,
    ]  # fmt: skip


def test_plain_locust_with_two_processes_merges_without_loss(tmp_path: Path) -> None:
    scaled = scale_scenario(_short_scenario(), SCALE)
    with run_in_background(scaled) as url:
        proc = subprocess.run(
            _plain_locust(tmp_path / "run", url, ["--processes", "2"]),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_run(tmp_path / "run", processes=2)


def test_master_and_worker_merge_without_loss(tmp_path: Path) -> None:
    scaled = scale_scenario(_short_scenario(), SCALE)
    port = str(free_port())
    with run_in_background(scaled) as url:
        master = subprocess.Popen(
            _plain_locust(
                tmp_path / "run",
                url,
                [
                    "--master",
                    "--master-bind-host",
                    "127.0.0.1",
                    "--master-bind-port",
                    port,
                    "--expect-workers",
                    "1",
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker = subprocess.Popen(
            [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _, err = master.communicate(timeout=180)
        finally:  # nothing outlives the test, even a failed one
            if master.poll() is None:
                master.kill()
                master.communicate()
            try:
                worker.wait(timeout=30)  # a worker quits when its master does
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
                raise
    assert master.returncode == 0, err[-2000:]
    _check_run(tmp_path / "run", processes=1)


def _killed_before_its_report(module: str, main: str) -> str:
    """Python code that runs ``main`` (the rest of the command line is its arguments)
    with ``module.conclude``, the call that writes a replay's report, replaced by a
    SIGKILL of the process: a kill between the tables and the report, made certain."""
    return (
        "import os, signal, sys\n"
        f"import {main.rsplit('.', 1)[0]} as entry\n"  # Locust: gevent's patching first
        f"import {module} as m\n"
        "m.conclude = lambda *_: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"sys.argv[0] = {main!r}\n"
        f"entry.{main.rsplit('.', 1)[1]}()\n"
    )


def _check_killed_before_its_report(out: Path) -> None:
    """A run killed before its report: not complete, tables and audit in, no report;
    `flashsale report` then writes the report and completes it."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["phase"]) == ("running", "report")
    assert manifest["audit"] and (out / "rep-000" / "timeline.parquet").exists()
    assert not (out / "report.html").exists()
    done = subprocess.run(
        [FLASHSALE, "report", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _check_run(out, processes=1)
    assert (out / "report.html").exists()


def test_flashsale_replay_is_complete_only_once_its_report_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = _killed_before_its_report("flashsale.commands.replay", "flashsale.cli.main")
    cmd = ["replay", str(SMOKE), "--scale", str(SCALE), "--out", str(out), *SHORT]
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    _check_killed_before_its_report(out)


def test_plain_locust_run_is_complete_only_once_its_report_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = _killed_before_its_report("flashsale.replay.session", "locust.main.main")
    scaled = scale_scenario(_short_scenario(), SCALE)
    with run_in_background(scaled) as url:
        args = _plain_locust(out, url, [])
        assert args[:3] == [sys.executable, "-m", "locust"]
        proc = subprocess.run(
            [sys.executable, "-c", code, *args[3:]], capture_output=True, text=True, timeout=180
        )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    _check_killed_before_its_report(out)


def test_a_replay_whose_locust_fails_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = (
        "import sys\n"
        "import flashsale.commands.replay as r\n"
        "r._run_locust = lambda cmd, *_: 3  # Locust died without a result\n"
        "from flashsale.cli import main\n"
        "sys.argv[0] = 'flashsale'\n"
        "main()\n"
    )
    cmd = ["replay", str(SMOKE), "--scale", str(SCALE), "--out", str(out), *SHORT]
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    first, *notes = proc.stderr.splitlines()
    assert first == (
        f"error: {out}: the replay failed: Locust exited with code 3 before the replay finished"
    )
    assert "Traceback" not in proc.stderr and notes and "status failed" in notes[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "Locust exited with code 3" in manifest["error"]


def test_a_target_nobody_listens_on_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    out, port = tmp_path / "run", free_port()  # free: nothing listens there
    cmd = [FLASHSALE, "replay", str(SMOKE), "--target", f"http://127.0.0.1:{port}"]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *SHORT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(
        f"error: {out}: the replay failed: http://127.0.0.1:{port}: cannot reach the target:"
    )
    assert "Traceback" not in proc.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_remote_target_is_refused_with_exit_2(tmp_path: Path) -> None:
    cmd = [FLASHSALE, "replay", str(SMOKE)]
    proc = subprocess.run(
        [*cmd, "--target", "http://staging.shop.invalid:8000", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not loopback and the configuration does not name it" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()
    plain = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "--scenario",
            str(SMOKE),
            "--host",
            "http://staging.shop.invalid:8000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 2 and "not loopback" in plain.stderr


_WORKER_GETS_PLANS = """
import json, sys
from types import SimpleNamespace
import gevent
from gevent.event import AsyncResult
from locust.runners import WorkerRunner
import flashsale.replay.locust_app as app

class Worker(WorkerRunner):  # what _on_init and _on_plan use of a worker, nothing more
    def __init__(self):
        self.sent, self.quits, self.handlers = [], 0, {}
    def register_message(self, kind, handler, concurrent=False):
        self.handlers[kind] = handler
    def send_message(self, kind, data=None, client_id=None):
        self.sent.append(kind)
    def quit(self):
        self.quits += 1

hook = SimpleNamespace(add_listener=lambda f: None)
out = []
for allow_remote, plan in json.loads(sys.argv[1]):
    app._proc.plan = AsyncResult()
    env = SimpleNamespace(
        runner=Worker(),
        events=SimpleNamespace(request=hook, quitting=hook, report_to_master=hook),
        process_exit_code=None,
        parsed_options=SimpleNamespace(allow_remote=allow_remote),
    )
    app._on_init(env)
    env.parsed_options.allow_remote = True  # what the master's spawn message would do
    env.runner.handlers["flashsale:plan"](environment=env, msg=SimpleNamespace(data=plan))
    gevent.sleep(0.1)
    out.append({
        "url": app._proc.plan.get().base_url if app._proc.plan.ready() else None,
        "sent": env.runner.sent, "quits": env.runner.quits, "code": env.process_exit_code,
    })
print(json.dumps(out))
"""


def test_a_worker_refuses_a_remote_target_it_was_not_allowed(tmp_path: Path) -> None:
    """The worker's side of a plan, without a master: a remote target the worker was
    not started with --allow-remote for is one error line, a refusal sent to the master
    and the worker's exit (2), and no plan for its pacer: not one request. A loopback
    target is taken. (No traffic at all: the handler is called directly.)"""
    cfg = tmp_path / "staging.toml"
    cfg.write_text('[target]\nbase_url = "https://staging.shop.invalid"\n')
    staging = apply_target_config(_short_scenario(), cfg)
    plan = Plan(staging.to_toml_dict(), SCALE, 0, time.time() + 3600, 1, 2, "k", "")
    remote = {**plan.to_json(), "base_url": "https://staging.shop.invalid"}
    loopback = {**plan.to_json(), "base_url": "http://127.0.0.1:9/"}
    cases = [[False, remote], [False, loopback]]
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER_GETS_PLANS, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    refused, taken = json.loads(proc.stdout)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "staging.shop.invalid is not loopback" in errors[0], proc.stderr
    assert "pass --allow-remote" in errors[0]
    assert refused == {"url": None, "sent": ["flashsale:refused"], "quits": 1, "code": 2}
    assert taken == {"url": "http://127.0.0.1:9", "sent": [], "quits": 0, "code": None}


def test_a_worker_without_allow_remote_stops_a_remote_replay(tmp_path: Path) -> None:
    """Master and worker, end to end, with no traffic at all: the master may use the
    configured remote target (named by --target-config, --allow-remote), a worker
    started without --allow-remote refuses its plan. The target's host is .invalid
    (RFC 2606: never resolves) and the master is given the opening instant, so it
    never calls the target itself (no reset, no status)."""
    cfg = tmp_path / "staging.toml"
    cfg.write_text('[target]\nbase_url = "https://staging.shop.invalid"\n')
    out, port = tmp_path / "run", str(free_port())
    master_cmd = [
        *LOCUST, "--headless", "--only-summary", "--loglevel", "WARNING",
        "--scenario", str(SMOKE), "--scale", str(SCALE), *SHORT,
        "--target-config", str(cfg), "--allow-remote",
        "--flashsale-opens-at", repr(time.time() + 30), "--out", str(out),
        "--run-time", "90s", "--master", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", port, "--expect-workers", "1",
    ]  # fmt: skip
    master = subprocess.Popen(
        master_cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = subprocess.Popen(
        [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, worker_err = worker.communicate(timeout=60)
        _, master_err = master.communicate(timeout=60)
    finally:  # nothing outlives the test, even a failed one
        for proc in (worker, master):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    errors = [line for line in worker_err.splitlines() if line.startswith("error:")]
    assert worker.returncode == 2 and len(errors) == 1, worker_err[-3000:]
    assert "staging.shop.invalid is not loopback; pass --allow-remote" in errors[0]
    assert master.returncode == 2, master_err[-3000:]
    assert "refused the target" in master_err and "Traceback" not in master_err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "refused the target" in manifest["error"]
    assert not (out / "rep-000").exists()


def test_a_deliberately_wrong_count_is_caught(tmp_path: Path) -> None:
    # the service sold nothing; the client-side table claims one purchase of 2 units
    scaled = scale_scenario(_short_scenario(), SCALE)
    rec = Recorder(0.0)
    rec.journey(
        Buyer(journey=0, kind=1, account=0, person=0, channel=0, arrived=0.0),
        JourneyLog(started=0.0, carted=0.1, finished=0.2, result="purchased", units=2),
    )
    outcome = assemble(scaled, [decode_part(p) for p in encode_part(rec)], 1)
    with (
        run_in_background(scaled) as url,
        open_run(scaled, "replay", out=tmp_path / "run", seed=0, replications=1) as run,
    ):
        opening_epoch(str(url), scaled, url.admin_token, 0, "test")
        problems = record_results(run, outcome, {"journeys": 1}, SCALE, str(url), url.admin_token)
    assert problems and "bought 2 units" in problems[0] and "says 0 sold" in problems[0]
    assert conclude(RunFolder.load(tmp_path / "run"), problems) == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["audit"][0]["units_sold"] == 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    """Send ``sig`` and return the process's stderr once it has exited; a process that
    ignores it is killed (nothing outlives the test) and the test fails."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=180)[1]  # a safety bound: a report follows the stop
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{proc.args[:4]}: still running 180 s after signal {sig}; killed")


def test_ctrl_c_stops_locust_and_marks_the_run_incomplete(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [FLASHSALE, "replay", str(SMOKE), "--scale", str(SCALE)]
    # smoke's own 60 s window (arrivals until its end), not SHORT's 6 s: on a fast
    # machine a 6 s replay could finish before the interrupt below arrives.
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "--set", "target.max_requests=5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As in a terminal: a test run started in the background (`cmd &`) inherits
        # SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 180  # a safety bound on the wait, not an assertion
    while time.time() < deadline and not (out / "manifest.json").exists():
        time.sleep(0.2)
    time.sleep(4)  # the service is up and Locust is starting
    _stop(proc, signal.SIGINT)
    assert proc.returncode != 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert not (out / "rep-000").exists()


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_replay_takes_its_service_and_locust_with_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [FLASHSALE, "replay", str(SMOKE), "--scale", str(SCALE), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180  # a safety bound on the wait, not an assertion
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline:  # the service, then Locust
        time.sleep(0.2)
        children = _children(proc.pid)
    assert len(children) == 2, "the replay should be running its service and Locust"
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=10)
    deadline = time.monotonic() + 120  # a safety bound on the wait, not an assertion
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)]


def test_web_ui_start_runs_the_replay_to_a_complete_folder(tmp_path: Path) -> None:
    """Plain Locust with its web UI: what the Start button posts starts the shape,
    and the run folder is complete once every journey has ended."""
    scaled = scale_scenario(_short_scenario(), SCALE)
    out, port = tmp_path / "run", free_port()
    ui = f"http://127.0.0.1:{port}"
    with run_in_background(scaled) as url:
        cmd = [
            *LOCUST, "--web-host", "127.0.0.1", "--web-port", str(port),
            "--loglevel", "WARNING", "--scenario", str(SMOKE), "--scale", str(SCALE),
            *SHORT, "--host", str(url), "--admin-token", url.admin_token, "--out", str(out),
        ]  # fmt: skip
        locust = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        err: str | None = None
        try:
            with httpx.Client(base_url=ui, timeout=5, trust_env=False) as web:
                deadline = time.monotonic() + 180  # a safety bound, not an assertion
                while True:
                    try:
                        assert web.get("/").status_code == 200
                        break
                    except httpx.TransportError:
                        if locust.poll() is not None or time.monotonic() > deadline:
                            err = _stop(locust, signal.SIGTERM)
                            pytest.fail(f"no web UI (exit {locust.returncode}):\n{err[-3000:]}")
                        time.sleep(0.2)
                started = web.post("/swarm", data={"user_count": 1, "spawn_rate": 1})
                assert started.json()["success"], started.text
                # report.html is the last file a finished replay writes (then the summary)
                deadline = time.monotonic() + 240  # a safety bound, not an assertion
                while time.monotonic() < deadline and not (out / "report.html").exists():
                    time.sleep(0.5)
                time.sleep(0.5)
        finally:
            if err is None:  # the UI keeps serving until stopped; SIGTERM is its clean stop
                err = _stop(locust, signal.SIGTERM)
    assert "Traceback" not in err, err[-4000:]
    _check_run(out, processes=1)


def test_generated_admin_tokens_pass_as_a_command_line_option_value() -> None:
    """Locust's parser is argparse: ``--admin-token -x...`` reads as a missing value.
    token_urlsafe starts with '-' one time in 64 (a CI run failed that way)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--admin-token")
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--admin-token", "-Xy3"])
    for token in (new_admin_token() for _ in range(500)):
        assert len(token) >= 32
        assert parser.parse_args(["--admin-token", token]).admin_token == token


# ------------------------------------------------------------------- stopped early


def _check_stopped_run(out: Path, sets: list[str], processes: int, reason: str) -> dict[str, Any]:
    """The invariants of a replay stopped before every journey ended: what was recorded
    is in the tables, the never-started journeys are counted in the manifest and not
    in the tables, the run is incomplete with ``reason``, its report is partial;
    `flashsale report --partial` reports on it again, `flashsale report` refuses it.
    Returns the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete", manifest
    assert manifest["error"].startswith(f"{reason}: "), manifest["error"]
    outcome = load_outcome(out / "rep-000")
    jr, rq = outcome.journeys, outcome.requests
    _, sched = replay_schedule(_short_scenario(sets), SCALE, 0)
    ids = jr["journey"]
    assert np.all(np.diff(ids) > 0) and ids.size and ids.max() < len(sched)
    assert np.array_equal(jr["arrived"], sched.t[ids])
    assert np.isfinite(jr["started"]).all() and np.isfinite(jr["finished"]).all()
    counts = manifest["replay"]
    assert counts["processes"] == processes and counts["scheduled"] == len(sched)
    assert counts["journeys"] == ids.size and counts["requests"] == rq["journey"].size
    assert counts["journeys"] + counts["unstarted"] + counts["lost"] == len(sched)
    assert np.isin(rq["journey"], ids).all()
    # a journey ended at a request it was about to send counted it: never sent, no row
    assert 0 <= int(jr["requests"].sum()) - rq["journey"].size <= counts["cut_short"]
    if not counts["parts_missing"]:  # requests in flight were answered: the audit agrees
        sold = int(jr["units"][jr["result"] == RESULT.index("purchased")].sum())
        assert manifest["audit"][0]["units_sold"] == sold
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["partial"] is True and metrics["run"]["status"] == "incomplete"
    assert (out / "report.html").exists()
    again = subprocess.run(
        [FLASHSALE, "report", "--partial", str(out)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "PARTIAL report" in again.stdout and reason in again.stdout
    whole = subprocess.run(
        [FLASHSALE, "report", str(out)], capture_output=True, text=True, timeout=120
    )
    assert whole.returncode == 1, whole.stderr[-2000:]
    assert "not a whole run" in whole.stderr and "--partial" in whole.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    return manifest


def test_plain_locust_stopped_by_run_time_keeps_what_it_recorded(tmp_path: Path) -> None:
    """--run-time stops the replay a few seconds after the opening, while people are
    still arriving: the journeys that ran are written, the run is incomplete with
    the reason, reported on as partial, and Locust exits 1."""
    out = tmp_path / "run"
    scaled = scale_scenario(_short_scenario(LONG), SCALE)
    with run_in_background(scaled) as url:
        proc = subprocess.run(
            _plain_locust(out, url, [], sets=LONG, run_time="9s"),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 1, proc.stderr[-3000:]
    reason = "stopped by --run-time 9s before every journey ended"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: replay {reason}: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "PARTIAL report" in proc.stdout and f"report:  {out / 'report.html'}" in proc.stdout
    counts = _check_stopped_run(out, LONG, processes=1, reason=reason)["replay"]
    # the sale was under way: some journeys ran, the later ones never started
    assert counts["journeys"] > 0 and counts["unstarted"] > 0
    assert counts["lost"] == 0 and counts["parts_missing"] == []


def test_two_processes_stopped_by_run_time_each_send_what_they_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scaled = scale_scenario(_short_scenario(LONG), SCALE)
    with run_in_background(scaled) as url:
        proc = subprocess.run(
            _plain_locust(out, url, ["--processes", "2"], sets=LONG, run_time="9s"),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 1, proc.stderr[-3000:]
    reason = "stopped by --run-time 9s before every journey ended"
    counts = _check_stopped_run(out, LONG, processes=2, reason=reason)["replay"]
    assert counts["parts_missing"] == [] and counts["lost"] == 0  # both workers' shares
    ids = load_outcome(out / "rep-000").journeys["journey"]
    assert set((ids % 2).tolist()) == {0, 1}
    assert counts["unstarted"] > 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_plain_locust_interrupted_keeps_what_it_recorded(tmp_path: Path, sig: int) -> None:
    """Ctrl-C or SIGTERM (a cancelled CI job) once the sale has opened: the same as
    --run-time, the reason naming the signal."""
    out = tmp_path / "run"
    scaled = scale_scenario(_short_scenario(LONG), SCALE)
    with run_in_background(scaled) as url:
        proc = subprocess.Popen(
            _plain_locust(out, url, [], sets=LONG),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        try:
            # the run folder appears once the target is reset to open in 7 s; wait
            # for the opening, then for a first cart (the replay is under way)
            deadline = time.monotonic() + 180  # a safety bound on both waits
            while not (out / "manifest.json").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            while time.monotonic() < deadline:
                status = httpx.get(f"{url}/v1/sale", timeout=5, trust_env=False).json()
                if status["opens_in_s"] <= 0 and status["stock_left"] < status["units"]:
                    break
                time.sleep(0.2)
            else:
                pytest.fail("the replay never sold anything")
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        err = _stop(proc, sig)
    assert proc.returncode == 1, err[-3000:]
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    reason = f"interrupted ({name}) before every journey ended"
    assert "Traceback" not in err, err[-3000:]
    counts = _check_stopped_run(out, LONG, processes=1, reason=reason)["replay"]
    assert counts["journeys"] > 0 and counts["unstarted"] > 0


_GRACE_0 = (
    "import sys\n"
    "import locust.main as entry\n"  # Locust: gevent's patching first
    "import flashsale.replay.locust_app as app\n"
    "app._GRACE_S = 0.0  # the deadline: the sale window and two request timeouts\n"
    "sys.argv[0] = 'locust'\n"
    "entry.main()\n"
)


def test_a_worker_that_misses_the_deadline_leaves_its_part_missing(tmp_path: Path) -> None:
    """Master and two workers; one worker hangs (SIGSTOP) once the plans are out. At
    the deadline the master writes the share it has, names the missing part, marks
    the run incomplete and exits 1. (The deadline's grace is set to 0 so the test
    does not wait 30 s more; the hung worker is killed afterwards.)"""
    sets = [*SHORT, "--set", "target.request_timeout_s=3"]
    scaled = scale_scenario(_short_scenario(sets), SCALE)
    out, port = tmp_path / "run", str(free_port())
    procs: list[subprocess.Popen[str]] = []
    with run_in_background(scaled) as url:
        args = _plain_locust(
            out,
            url,
            [
                "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                "--expect-workers", "2",
            ],
            sets=sets,
        )  # fmt: skip
        assert args[:3] == [sys.executable, "-m", "locust"]
        try:
            master = subprocess.Popen(
                [sys.executable, "-c", _GRACE_0, *args[3:]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(master)
            for _ in range(2):
                procs.append(
                    subprocess.Popen(
                        [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        text=True,
                    )
                )
            deadline = time.monotonic() + 180  # the folder appears as the plans go out
            while not (out / "manifest.json").exists() and time.monotonic() < deadline:
                assert master.poll() is None, master.communicate()[1][-3000:]
                time.sleep(0.1)
            procs[2].send_signal(signal.SIGSTOP)  # hung: no heartbeat, no results
            _, err = master.communicate(timeout=180)
        finally:  # nothing outlives the test, even a failed one
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    assert master.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    reason = "stopped at the replay's deadline before every part sent its results"
    manifest = _check_stopped_run(out, sets, processes=2, reason=reason)
    counts = manifest["replay"]
    [part] = counts["parts_missing"]
    assert f"parts [{part}] sent no results" in manifest["error"]
    _, sched = replay_schedule(_short_scenario(sets), SCALE, 0)
    assert counts["lost"] == len(range(part, len(sched), 2))
    ids = load_outcome(out / "rep-000").journeys["journey"]
    assert ids.size and not (ids % 2 == part).any()  # the other part's journeys only


def test_a_partial_merge_accepts_gaps_and_still_refuses_duplicates() -> None:
    def share(ids: list[int]) -> list[tuple[str, dict[str, np.ndarray]]]:
        rec = Recorder(0.0)
        for j in ids:
            rec.journey(
                Buyer(journey=j, kind=0, account=j, person=j, channel=0, arrived=0.0),
                JourneyLog(started=0.0, finished=1.0, result="timed_out"),
            )
        return [decode_part(p) for p in encode_part(rec)]

    jr, _ = merge_parts([*share([0, 4]), *share([3])], 6, partial=True)
    assert jr["journey"].tolist() == [0, 3, 4]
    with pytest.raises(MergeError, match="2 journeys recorded, 6 scheduled"):
        merge_parts(share([0, 4]), 6)  # a whole run still refuses a gap
    with pytest.raises(MergeError, match=r"recorded twice: \[4\]"):
        merge_parts([*share([0, 4]), *share([4])], 6, partial=True)
    with pytest.raises(MergeError, match=r"journeys \[7\] recorded, 6 scheduled"):
        merge_parts(share([0, 7]), 6, partial=True)
    # part 0 of 2 (ids 0, 2, 4) reported 0 and 4; part 1 (ids 1, 3, 5) sent nothing
    scaled = scale_scenario(_short_scenario(), SCALE)
    outcome = assemble(scaled, share([0, 4]), 6, partial=True)
    counts = replay_counts(outcome, 2, False, scheduled=6, parts_missing=[1], cut_short=1)
    assert (counts["journeys"], counts["unstarted"], counts["lost"]) == (2, 1, 3)
    assert counts["parts_missing"] == [1] and counts["cut_short"] == 1
    assert "scheduled" not in replay_counts(outcome, 2, False)  # a whole run: as before
