"""The replication runner: workers that stop with the command, and flat memory.

No wall-clock deadlines: a runner that waited for its workers would hang on the
never-ending jobs below, and pytest-timeout would fail the test.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import simpy

from flashsale.outcome import Outcome
from flashsale.runs import Terminated
from flashsale.scenario import Scenario, load_scenario
from flashsale.sim import runner

from ._processes import LINUX, dead, wait_until
from .conftest import SCENARIOS

_PIDS = Path(os.environ.get("FLASHSALE_TEST_PIDS", "/nonexistent"))


def _endless(scenario: Scenario, seed: int, replication: int) -> Outcome:
    """Replication 0 for real; every other one records its worker and never ends.
    (Top level: the pool pickles it by name; forked workers see the test's patch.)"""
    if replication == 0:
        return runner.simulate(scenario, replication, seed).outcome
    (_PIDS / f"{os.getpid()}-{replication}").write_text("")
    while True:
        time.sleep(60)


@pytest.mark.skipif(not LINUX, reason="the workers' pids are read from /proc")
@pytest.mark.parametrize("stop", [KeyboardInterrupt, Terminated])
def test_a_stopped_run_kills_its_running_and_queued_workers(
    stop: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM) after the first replication: the runner raises at once and
    no worker is left, although every other job would run for ever."""
    monkeypatch.setattr(runner, "replication_outcome", _endless)
    monkeypatch.setattr(sys.modules[__name__], "_PIDS", tmp_path)
    sc = load_scenario(SCENARIOS / "smoke.toml")
    landed: list[int] = []

    def on_done(i: int, outcome: Outcome) -> None:
        landed.append(i)
        wait_until("the other worker started its job", lambda: any(tmp_path.iterdir()))
        raise stop

    with pytest.raises(stop):
        runner.run_jobs([(sc, 1, r) for r in range(4)], 2, on_done)
    assert landed == [0]
    pids = {int(p.name.split("-")[0]) for p in tmp_path.iterdir()}
    assert pids and all(dead(pid) for pid in pids), "a worker outlived the run"


def test_workers_ignore_ctrl_c_and_die_of_sigterm() -> None:
    """The pool's initializer: Ctrl-C is the command's to handle (it stops the pool),
    and SIGTERM kills a worker (an inherited handler would let it run on)."""
    code = (
        "import signal, sys\n"
        "from flashsale.sim import runner\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)\n"  # what a parent may install
        "runner._init_worker(None)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN,"
        " signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL leaves the command no way to stop its pool: the kernel does it."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from flashsale.sim import runner\n"
        "def job(*_):\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(3600)\n"
        "with runner.worker_pool(2) as pool:\n"
        "    futures = [pool.submit(job, r) for r in range(2)]\n"
        "    [f.result() for f in futures]\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline()) for _ in range(2)]
    proc.kill()
    proc.wait()
    wait_until("the workers died with their parent", lambda: all(dead(p) for p in pids))


def test_a_replication_frees_its_engine_before_the_next() -> None:
    """The engine runs with the collector off; what it leaves (its SimPy environment,
    the journeys) is freed before the runner hands the outcome back, so a worker
    running replications back to back does not grow with each."""
    sc = load_scenario(SCENARIOS / "smoke.toml")
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # only the runner's own collection may free anything here
    try:
        runner.replication_outcome(sc, 1, 0)
        left = sum(isinstance(o, simpy.Environment) for o in gc.get_objects())
    finally:
        if enabled:
            gc.enable()
    assert left == 0


@pytest.mark.slow
def test_bench_prints_peak_rss_after_one_and_after_n_replications() -> None:
    bench = Path(__file__).resolve().parents[1] / "bench" / "sim_bench.py"
    out = subprocess.run(
        [
            sys.executable,
            str(bench),
            str(SCENARIOS / "smoke.toml"),
            "--repeat",
            "1",
            "--no-naive",
            "--sequence",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "4 replications back to back in one process" in out.stdout
    assert "MiB after 1" in out.stdout and "MiB after 4" in out.stdout
    assert "memory flat over 4 replications" in out.stdout
