"""The simulation benchmark runs end to end and prints what the closing notes quote.

Timings are not asserted (shared, noisy machines): only that both models ran the
same sale to completion and that every figure and target line is there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "sim_bench.py"
BOUND_S = 280
"""A safety bound on one bench run (about 15 s at load 6 on 2 CPUs), under pytest's 300 s."""


def _bench(scenario: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), str(scenario), *args],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


def test_sim_bench_runs_both_models_and_judges_the_slowest_engine_run(smoke_path: Path) -> None:
    out = _bench(smoke_path, "--repeat", "2")
    assert out.returncode == 0, out.stderr
    engine_lines = [line for line in out.stdout.splitlines() if line.lstrip().startswith("engine:")]
    assert len(engine_lines) == 2
    sold = re.findall(r"units sold\s+([\d,]+)", out.stdout)
    assert sold == ["200", "200", "200"]  # two engine runs and the naive model: all sold out
    assert "engine over 2 runs" in out.stdout
    assert re.search(r"ratio: naive/engine wall [\d.]+x", out.stdout)
    assert "load average before" in out.stdout and "load average after" in out.stdout
    assert re.search(r"targets: engine wall <= 10 s: (yes|NO); peak RSS", out.stdout)


def test_sim_bench_refuses_a_repeat_below_one(smoke_path: Path) -> None:
    out = _bench(smoke_path, "--repeat", "0", "--no-naive")
    assert out.returncode == 2
    assert "--repeat: must be >= 1 (got 0)" in out.stderr
