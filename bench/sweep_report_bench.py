"""Benchmark: what a sweep's reports cost, at each ``--report`` level.

    .venv/bin/python bench/sweep_report_bench.py [--rounds N] [--workers W]

Runs ``flashsale sweep scenarios/smoke.toml --vary service.workers=2,4,8,16`` (4
points x 3 replications, the issue's example) once per level and round, interleaved
(full, summary, none, full, ...) so that a busy moment of the machine hits every
level alike, each into a new temporary folder. Prints each level's median wall time
and CPU time (user + system of the command and its worker processes) with min and
max, and the share of the full sweep's time each level saves. ``none`` is the
simulation alone (tables only), so ``full - none`` is what the reports cost.
Not a test: timings depend on the machine and on its load, printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke.toml"
FLASHSALE = Path(sys.executable).parent / "flashsale"  # the console script users run
LEVELS = ("full", "summary", "none")


def _run(level: str, workers: int | None, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one sweep at ``level``; a failed sweep stops the benchmark."""
    cmd = [str(FLASHSALE), "sweep", str(SMOKE), "--vary", "service.workers=2,4,8,16"]
    cmd += ["--report", level, "--out", str(out)]
    cmd += ["--workers", str(workers)] if workers else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=1800, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.1f} s  ({min(xs):.1f} to {max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="sweeps of each level (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="the sweep's --workers")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds: must be >= 1 (got {args.rounds})")
    print(f"{args.rounds} sweeps of each level, interleaved: 4 smoke points x 3 replications")
    print(f"  load average before: {_load()}")
    wall: dict[str, list[float]] = {level: [] for level in LEVELS}
    cpu: dict[str, list[float]] = {level: [] for level in LEVELS}
    with tempfile.TemporaryDirectory(prefix="flashsale-sweep-bench-") as tmp:
        for r in range(args.rounds):
            for level in LEVELS:
                w, c = _run(level, args.workers, Path(tmp) / f"{level}-{r}")
                wall[level].append(w)
                cpu[level].append(c)
    print(f"  load average after:  {_load()}")
    full = statistics.median(wall["full"])
    print(f"{'--report':<10}{'wall (median, min to max)':<30}{'CPU (median, min to max)':<30}")
    for level in LEVELS:
        saved = 1 - statistics.median(wall[level]) / full
        print(
            f"{level:<10}{_spread(wall[level]):<30}{_spread(cpu[level]):<30}"
            f"{'' if level == 'full' else f'{saved:.0%} less wall time than full'}"
        )


if __name__ == "__main__":
    main()
