"""``flashsale calibrate`` recovers what the reference service was set to (issue 14,
item 6): a replay of a small sale against the bundled service with set workers,
payment gateway and failure probability, then calibrate, then simulate the
calibrated scenario.

What is recovered, with the tolerance and why:

- workers of each pool: exactly when identified (Server-Timing: the requests on a
  worker when one that had waited got one); the reference service's time on a
  worker (under a millisecond) is shorter than the latency it does not report (the
  loopback HTTP stack, the loaded event loop), so they are usually not identified:
  then the scenario's are kept and the comment says why. Measured on a 2-core
  machine at load average 12: the busy count gave 2 for settings of 1, 2, 4 and 8,
  which is why the estimator refuses rather than guesses;
- the gateway time: at least the set value less 2% (an ``asyncio.sleep`` never ends
  early), and its median at most 50% above it (on a loaded machine the service's
  event loop wakes late: measured +12% on a 2-core machine at load average 12);
- the payment failure probability: the set value inside the fitted 95% interval.

The reference service has no step time to set (its time on a worker is its own
work, under a millisecond on SQLite), so the demands are not compared with a set
value here; tests/test_calibrate.py recovers set demands from the simulator.
"""

from __future__ import annotations

import math
import subprocess
import tomllib
from pathlib import Path

import pytest

from flashsale.calibrate import calibrate_outcomes
from flashsale.runs import RunFolder
from flashsale.scenario import parse_scenario

from ._processes import FLASHSALE

pytestmark = pytest.mark.slow

SMOKE = Path(__file__).resolve().parents[1] / "scenarios" / "smoke.toml"
GATEWAY_S, FAILURE_PROB = 0.3, 0.1

CASES: dict[str, tuple[list[str], dict[str, int]]] = {
    "one pool": (["--set", "service.workers=2"], {"default": 2}),
    "payments in a pool of their own": (
        [
            "--set", "service.workers=4",
            "--set", 'service.pools.payments={steps=["pay"], workers=1}',
        ],
        {"default": 4, "payments": 1},
    ),
}  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLASHSALE), *args], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.parametrize("case", list(CASES))
def test_calibrate_recovers_the_reference_services_settings(case: str, tmp_path: Path) -> None:
    sets, workers = CASES[case]
    replay = tmp_path / "replay"
    proc = _run(
        "replay", str(SMOKE), "--set", "sale.window_s=20",
        "--set", f"service.payment.gateway_s={GATEWAY_S}",
        "--set", f"service.payment.failure_prob={FAILURE_PROB}",
        *sets, "--out", str(replay),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _run("calibrate", str(replay))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "calibrated from Server-Timing" in proc.stdout, proc.stdout
    assert (replay / "calibration" / "calibration.html").is_file()
    assert (replay / "calibration" / "latency_vs_load.png").is_file()

    run = RunFolder.load(replay)
    cal = calibrate_outcomes([run.load_replication(0)], run.scenario.to_toml_dict()["service"])
    for pool, steps in cal.pools.items():
        for step in steps:
            f = cal.steps[step]
            assert f.concurrency is not None, (case, step)
            assert f.concurrency.value == workers[pool], (case, step, f.concurrency)
            if not f.identified:
                assert "cannot be lined up" in f.concurrency.method or "at most" in (
                    f.concurrency.method
                ), f.concurrency
    p = cal.payment
    assert p.gateway is not None and p.gateway.value >= GATEWAY_S * 0.98, p.gateway
    dist = p.gateway_dist
    median = dist["median"] if dist["dist"] == "lognormal" else p.gateway.value
    assert median <= GATEWAY_S * 1.5, dist
    assert p.failure_prob.low <= FAILURE_PROB <= p.failure_prob.high, p.failure_prob

    text = (replay / "calibrated.toml").read_text()
    sc = parse_scenario(tomllib.loads(text), "calibrated.toml")
    assert sc.service.workers == workers["default"]
    if "payments" in workers:
        assert sc.service.pools["payments"].workers == workers["payments"]
        assert sc.service.pools["payments"].steps == ["pay"]
    assert math.isclose(sc.service.payment.failure_prob, p.failure_prob.value, rel_tol=1e-3)
    proc = _run(
        "simulate", str(replay / "calibrated.toml"), "--replications", "2",
        "--out", str(tmp_path / "sim"),
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a threshold, not a failure
