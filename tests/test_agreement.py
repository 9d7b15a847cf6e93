"""Agreement between the engines: a replay on loopback lies inside the simulation's
prediction interval for the replay's own scenario.

Each case replays a small sale against the reference service, then simulates the
run folder's ``scenario.toml`` (the scaled sale that was replayed) for 30
replications with the step times the replay measured (the mean latency of each
step's answered requests: on loopback a request's latency is its service time,
since nothing queues; with a payment gateway, the service time the service reported
in Server-Timing, since the latency also holds the gateway's wait).

The replay's yellow-cart rate, human success share and bot share of units must
each lie inside the simulation's prediction interval for one new replication,
mean +- t(q, n-1) * s * sqrt(1 + 1/n). The tolerance, justified:

- q makes the whole file a 95% test: 6 cases x 3 figures = 18 comparisons, so
  each is at 1 - 0.05/18 (Bonferroni). At 95% each, a correct pair of engines
  would fail one of the 18 in more than every other CI run.
- The interval is widened by one buyer's worth (1 / the humans, or the units):
  a replay is one draw of a discrete count, and the simulation's spread is 0
  where an outcome is nearly certain (a sell-out with every payment accepted) or
  rare (one yellow cart in 80), where the normal interval is too narrow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from flashsale.outcome import STEP, load_outcome
from flashsale.scenario import load_scenario

pytestmark = pytest.mark.slow

FLASHSALE = str(Path(sys.executable).parent / "flashsale")
SMOKE = Path(__file__).resolve().parents[1] / "scenarios" / "smoke.toml"
KEYS = ("yellow_cart_rate", "human_success_share", "bot_unit_share")

CASES: dict[str, list[str]] = {
    "smoke": [],
    "declined payments": [
        "--set", "humans.count=600", "--set", "sale.units=2000",
        "--set", "bots.operators=0", "--set", "service.payment.failure_prob=0.3",
        "--set", "humans.retries_on_error=3",
    ],
    "account limit below the bots' order": [
        "--set", "defenses.account_limit.enabled=true",
        "--set", "defenses.account_limit.max_units=1",
    ],
    "patience shorter than the queue wait": [
        "--set", "service.workers=1",
        "--set", 'humans.patience_s={dist="exponential", mean=0.005}',
    ],
    # every buyer is admitted within the short window (so none is cut off waiting),
    # and no payment is declined: what is compared is the admission's effect (declines
    # have their own case; a replay is one draw of the rare decline-then-sold-out)
    "waiting room": [
        "--set", "defenses.waiting_room.enabled=true",
        "--set", "defenses.waiting_room.new_users_per_min=3000",
        "--set", "service.payment.failure_prob=0",
    ],
    # the shop of issue 14: payments on workers of their own, waiting on a gateway
    # outside them; views and carts keep the [service] pool
    "payments in their own pool behind a gateway": [
        "--set", 'service.pools.payments.steps=["pay"]',
        "--set", "service.pools.payments.workers=2",
        "--set", "service.payment.gateway_s=1.0",
    ],
}  # fmt: skip
SERVER_TIMED = {"payments in their own pool behind a gateway"}
"""Cases whose step times come from the service time the service reported."""
COMMON = ["--scale", "0.5", "--set", "sale.window_s=20"]


def _metric_values(run: Path, key: str) -> list[float]:
    block = json.loads((run / "metrics.json").read_text())["metrics"][key]
    return [float(v) for v in block["values"] if v is not None]


def _step_means(run: Path, column: str = "latency") -> dict[str, float]:
    rq = load_outcome(run / "rep-000").requests
    ok = (rq["status"] >= 200) & (rq["status"] < 300)
    out = {}
    for name in ("view", "cart", "pay"):
        sel = ok & (rq["step"] == STEP.index(name))
        out[name] = float(rq[column][sel].mean()) if sel.any() else 0.001
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_the_replay_lies_inside_the_simulations_prediction_interval(
    case: str, tmp_path: Path
) -> None:
    replay, sim = tmp_path / "replay", tmp_path / "sim"
    proc = subprocess.run(
        [FLASHSALE, "replay", str(SMOKE), *COMMON, *CASES[case], "--out", str(replay)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = _step_means(replay, "service_time" if case in SERVER_TIMED else "latency")
    sets = [
        x
        for name, mean in steps.items()
        for x in ("--set", f'service.step_s.{name}={{dist="exponential", mean={mean:.6f}}}')
    ]
    proc = subprocess.run(
        [FLASHSALE, "simulate", str(replay / "scenario.toml"), "--replications", "30",
         "--out", str(sim), *sets],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a threshold, not a failure
    sc = load_scenario(replay / "scenario.toml")
    grain = {
        "yellow_cart_rate": 1 / max(1, min(sc.sale.units, sc.humans.count)),
        "human_success_share": 1 / max(1, sc.humans.count),
        "bot_unit_share": 1 / max(1, sc.sale.units),
    }
    report = []
    for key in KEYS:
        observed = _metric_values(replay, key)
        predicted = np.array(_metric_values(sim, key))
        if not observed:  # undefined in the replay (no bot bought): so in the simulation
            assert predicted.size == 0 or case == "declined payments", key
            continue
        n = predicted.size
        q = 1 - 0.05 / (2 * len(CASES) * len(KEYS))
        half = stats.t.ppf(q, n - 1) * predicted.std(ddof=1) * math.sqrt(1 + 1 / n)
        low, high = predicted.mean() - half - grain[key], predicted.mean() + half + grain[key]
        report.append(f"{key}: replay {observed[0]:.4f}, simulation [{low:.4f}, {high:.4f}]")
        assert low <= observed[0] <= high, f"{case}: " + "; ".join(report)
