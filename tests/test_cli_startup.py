"""The command line starts without the engines: ``flashsale --help``, every command's
``--help``, ``validate`` and ``show`` import neither the charts (matplotlib, scipy),
the tables (pyarrow), the service (uvicorn, Starlette, psycopg, httpx), the
simulator (SimPy) nor Locust and gevent. Each command imports them when it runs.

Checked in a fresh interpreter, case after case, naming the case that first loaded a
module. No wall-clock assertion: bench/cli_startup.py measures the time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SCENARIOS

HEAVY = (
    "matplotlib",
    "scipy",
    "pyarrow",
    "psycopg",
    "locust",
    "gevent",
    "simpy",
    "uvicorn",
    "starlette",
    "httpx",
    "pandas",
)

COMMANDS = (
    "validate",
    "show",
    "report",
    "compare",
    "predict",
    "serve",
    "replay",
    "probe",
    "simulate",
    "sweep",
    "search",
    "calibrate",
)

SMOKE = str(SCENARIOS / "smoke.toml")

_PROBE = """
import json, sys
heavy = json.loads(sys.argv[1])
cases = json.loads(sys.argv[2])
loaded = lambda: sorted(m for m in heavy if m in sys.modules)
from flashsale.cli import app
seen = {"import flashsale.cli": loaded()}
for args in cases:
    try:
        app(args, standalone_mode=False)
    except SystemExit:
        pass
    seen[" ".join(args)] = loaded()
print(json.dumps(seen))
"""


def _modules_after(cases: list[list[str]]) -> dict[str, list[str]]:
    """For each case in turn (one interpreter): the heavy modules loaded so far."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return seen


def test_help_of_every_command_loads_no_engine() -> None:
    seen = _modules_after([["--help"], *([c, "--help"] for c in COMMANDS)])
    assert len(seen) == 2 + len(COMMANDS)
    first_bad = next(((case, mods) for case, mods in seen.items() if mods), None)
    assert first_bad is None, f"{first_bad[0]!r} imported {first_bad[1]}"


@pytest.mark.parametrize("command", ["validate", "show"])
def test_validate_and_show_load_no_engine(command: str) -> None:
    seen = _modules_after([[command, SMOKE], [command, SMOKE, "--set", "humans.count=5"]])
    assert all(not mods for mods in seen.values()), seen


def test_the_checker_sees_a_module_a_command_loads() -> None:
    """The probe itself works: a command that runs its engine shows up."""
    seen = _modules_after([["report", str(SCENARIOS)]])  # not a run folder: exit 2
    assert "matplotlib" in seen[f"report {SCENARIOS}"], seen


def test_serve_names_the_admin_token_variable_of_the_service() -> None:
    """``flashsale serve`` spells the variable out rather than import the server."""
    from flashsale.commands.serve import ADMIN_TOKEN_ENV as named
    from flashsale.service.server import ADMIN_TOKEN_ENV

    assert named == ADMIN_TOKEN_ENV


BENCH = Path(__file__).resolve().parents[1] / "bench" / "cli_startup.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_startup_bench_prints_every_figure_and_ratio() -> None:
    out = _bench("--runs", "1")
    assert out.returncode == 0, out.stderr
    for name in ("--help", "validate smoke.toml", "show smoke.toml"):
        assert re.search(
            rf"flashsale {name}\s+median\s+[\d.]+ s .* = +[\d.]+x import numpy, +[\d.]+x "
            r"python -c pass$",
            out.stdout,
            re.M,
        ), out.stdout
    assert 'python -c "import numpy"' in out.stdout and "python -c pass" in out.stdout
    assert "load average before" in out.stdout and "load average after" in out.stdout


def test_the_startup_bench_measures_a_baseline_tree_side_by_side() -> None:
    root = BENCH.parents[1]
    out = _bench("--runs", "1", "--baseline", str(root))  # this tree as its own baseline
    assert out.returncode == 0, out.stderr
    assert len(re.findall(r"x faster than the baseline$", out.stdout, re.M)) == 3, out.stdout
    assert "flashsale --help (baseline)" in out.stdout


def test_the_startup_bench_refuses_bad_options(tmp_path: Path) -> None:
    out = _bench("--runs", "0")
    assert out.returncode == 2 and "--runs: must be >= 1 (got 0)" in out.stderr
    out = _bench("--baseline", str(tmp_path))
    assert out.returncode == 2 and "no flashsale/cli.py there" in out.stderr
