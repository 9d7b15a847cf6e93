"""Issue 14's gate, end to end as a planner runs it: replay a sale with a payment
gateway against the reference service, calibrate on the replay, simulate the
calibrated scenario, and predict the replay (``replay -> calibrate -> simulate ->
predict``).

``scenarios/gateway_shop.toml`` at 20%: pools per step, a 1 s lognormal gateway, 2%
of payments declined, and ``emulate_step_s`` (the service has known demands).
Measured on a 2-core machine, four seeds (README, "Scale-up with known service
demands"): sell-out errors -3.6 to +6.3% at the same scale, human success within
0.12 points. The gate asked: the sell-out time within 10% and the human success
share within 5 points; the observation inside the 95% prediction interval for one
replication as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._processes import run_flashsale

pytestmark = pytest.mark.slow

GATEWAY_SHOP = Path(__file__).resolve().parents[1] / "scenarios" / "gateway_shop.toml"


def _run(*args: str) -> None:
    done = run_flashsale(*args, timeout_s=1200)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a threshold or figure


def test_calibrated_simulation_predicts_a_gateway_sale(tmp_path: Path) -> None:
    replay, sim, out = tmp_path / "replay", tmp_path / "sim", tmp_path / "predict"
    _run("replay", str(GATEWAY_SHOP), "--scale", "0.2", "--set", "seed=14", "--out", str(replay))
    _run("calibrate", str(replay))
    calibrated = replay / "calibrated.toml"
    assert "emulate_step_s = true" in calibrated.read_text()
    _run("simulate", str(calibrated), "--replications", "30", "--report", "none", "--out", str(sim))
    _run("predict", str(replay), str(sim), "--out", str(out))
    figures = {f["name"]: f for f in json.loads((out / "predict.json").read_text())["figures"]}
    sellout, success = figures["sellout_time_s"], figures["human_success_share"]
    assert abs(sellout["relative_error"]) <= 0.10, sellout
    assert abs(success["error"]) <= 0.05, success
    assert sellout["inside"] and success["inside"], (sellout, success)
    assert figures["units_sold"]["observed"] == figures["units_sold"]["mean"] == 200
