"""Benchmark: how long the command line takes to start, beside Python's own start-up.

    .venv/bin/python bench/cli_startup.py [--runs N] [--baseline SRC]

Runs, N times each (default 21) and interleaved so that a busy moment of the machine
hits every command alike: ``flashsale --help``, ``flashsale validate
scenarios/smoke.toml``, ``flashsale show scenarios/smoke.toml``, and as references
``python -c "import numpy"`` and ``python -c pass``, each in a new process. Prints
each one's median wall time (with min and max) and its ratios to the two references.

``--baseline SRC`` (a source tree of flashsale, e.g. an earlier commit unpacked with
``git archive <commit> | tar -x -C /tmp/before``) runs the same commands with that
tree first on PYTHONPATH, in the same rounds, and prints the speed-up beside each.
Not a test: timings depend on the machine and on its load, printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke.toml"
FLASHSALE = Path(sys.executable).parent / "flashsale"  # the console script users run

COMMANDS = {
    "flashsale --help": [str(FLASHSALE), "--help"],
    "flashsale validate smoke.toml": [str(FLASHSALE), "validate", str(SMOKE)],
    "flashsale show smoke.toml": [str(FLASHSALE), "show", str(SMOKE)],
}
REFERENCES = {
    'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
    "python -c pass": [sys.executable, "-c", "pass"],
}


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of ``cmd``; a failed command stops the benchmark."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stderr.decode()[-2000:]}")
    return wall


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a flashsale source tree to measure side by side (first on PYTHONPATH)",
    )
    args = ap.parse_args()
    if args.runs < 1:
        ap.error(f"--runs: must be >= 1 (got {args.runs})")
    if args.baseline is not None and not (args.baseline / "flashsale" / "cli.py").is_file():
        ap.error(f"--baseline {args.baseline}: no flashsale/cli.py there")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        name: (cmd, env) for name, cmd in {**COMMANDS, **REFERENCES}.items()
    }
    if args.baseline is not None:
        before = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        cases.update({f"{name} (baseline)": (cmd, before) for name, cmd in COMMANDS.items()})
    print(f"{args.runs} runs of each, interleaved, each in a new process; wall time")
    print(f"  load average before: {_load()}")
    walls: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (cmd, case_env) in cases.items():
            walls[name].append(_wall(cmd, case_env))
    print(f"  load average after: {_load()}")
    med = {name: statistics.median(w) for name, w in walls.items()}
    numpy, bare = med['python -c "import numpy"'], med["python -c pass"]
    width = max(map(len, cases))
    for name, w in walls.items():
        line = (
            f"  {name:<{width}}  median {med[name]:6.3f} s  (min {min(w):6.3f}, "
            f"max {max(w):6.3f})  = {med[name] / numpy:5.1f}x import numpy, "
            f"{med[name] / bare:5.1f}x python -c pass"
        )
        if f"{name} (baseline)" in med:
            line += f"; {med[f'{name} (baseline)'] / med[name]:.1f}x faster than the baseline"
        print(line)


if __name__ == "__main__":
    main()
