"""``flashsale calibrate``: the estimators against known answers, end to end against
the simulator with set parameters, and the bad-input paths.

Known answers: a FCFS M/M/c queue simulated with numpy, samples drawn from each
distribution family, a failure law drawn with numpy, and the simulator run with set
step times, workers, gateway and failure law (its requests table is what a
replay's would be, with the latency parts in the Server-Timing columns; blanked,
what a target without Server-Timing gives). Tolerances are stated at each assertion. The reference
service, replayed: tests/test_calibrate_replay.py (slow).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flashsale.calibrate import (
    calibrate_outcomes,
    fit_censored_lognormal,
    fit_failures,
    fit_pool,
    fit_service_times,
    in_flight_at,
    wait_factor,
)
from flashsale.calibration_toml import calibrated_scenario
from flashsale.outcome import Outcome
from flashsale.scenario import Scenario, parse_scenario
from flashsale.sim.runner import replication_outcome

FLASHSALE = str(Path(sys.executable).parent / "flashsale")
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_in_flight_counts_the_intervals_holding_each_time() -> None:
    start = np.array([0.0, 1.0, 2.0])
    end = np.array([3.0, 1.5, 2.0])  # the last is empty: holds nothing
    assert in_flight_at(np.array([0.5, 1.0, 1.5, 2.0, 3.0]), start, end).tolist() == [
        1,
        2,
        1,
        1,
        0,
    ]


def test_wait_factor_is_the_departures_to_wait_for_over_c() -> None:
    # c = 3: finding 0..2 others, a worker is free; finding 3, wait one departure (D/3)
    assert wait_factor(np.array([0, 2, 3, 5]), 3).tolist() == [0, 0, 1 / 3, 1]


def _mmc(c: int, lam: float, mean_s: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrival and departure times of a FCFS M/M/c queue (Kiefer-Wolfowitz recursion)."""
    rng = np.random.default_rng(seed)
    arrive = np.cumsum(rng.exponential(1 / lam, n))
    service = rng.exponential(mean_s, n)
    free = np.zeros(c)
    depart = np.empty(n)
    for i in range(n):
        k = int(np.argmin(free))
        start = max(arrive[i], free[k])
        free[k] = depart[i] = start + service[i]
    return arrive, depart


def test_the_regression_recovers_an_mmc_queue() -> None:
    c, lam, mean_s = 3, 27.0, 0.1  # utilisation 0.9
    arrive, depart = _mmc(c, lam, mean_s, 30_000, seed=1)
    keep = slice(2_000, None)  # past the empty start
    others = in_flight_at(arrive, arrive, depart) - 1
    latency = depart - arrive
    steps = np.full(arrive.size, "view")
    fit, _ = fit_pool(others[keep], latency[keep], steps[keep], ("view",), np.random.default_rng(2))
    assert fit.identified and fit.concurrency.value == c
    # the demand within 5%, from the latencies that found a worker free (the
    # intercept) and from the queue's drain rate c / D (the slope) alike
    assert fit.demands["view"].value == pytest.approx(mean_s, rel=0.05)
    assert fit.mean_demand.value == pytest.approx(mean_s, rel=0.05)


def test_a_queue_that_never_filled_leaves_the_concurrency_unknown() -> None:
    arrive, depart = _mmc(8, 5.0, 0.1, 3_000, seed=3)  # utilisation 0.06
    others = in_flight_at(arrive, arrive, depart) - 1
    fit, _ = fit_pool(
        others, depart - arrive, np.full(arrive.size, "cart"), ("cart",), np.random.default_rng(4)
    )
    assert not fit.identified
    assert math.isinf(fit.concurrency.high)
    assert "fewer than the 30 needed" in fit.concurrency.method
    assert fit.demands["cart"].value == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize(
    ("dist", "params"),
    [
        ("constant", {"value": 0.02}),
        ("exponential", {"mean": 0.02}),
        ("lognormal", {"median": 0.02, "sigma": 0.6}),
    ],
)
def test_the_service_time_family_and_its_parameters(dist: str, params: dict[str, float]) -> None:
    rng = np.random.default_rng(5)
    x = {
        "constant": lambda: np.full(4000, 0.02) * rng.uniform(0.99, 1.01, 4000),
        "exponential": lambda: rng.exponential(0.02, 4000),
        "lognormal": lambda: rng.lognormal(math.log(0.02), 0.6, 4000),
    }[dist]()
    mean, table, shape = fit_service_times(x, rng)
    assert table["dist"] == dist
    assert mean.low <= x.mean() <= mean.high
    for key, value in params.items():  # 4,000 draws: each parameter within 5%
        assert table[key] == pytest.approx(value, rel=0.05), table
    if dist == "lognormal":
        assert shape is not None and shape.low <= 0.6 <= shape.high


def test_gateway_calls_cut_at_the_timeout_enter_the_fit_as_censored() -> None:
    rng = np.random.default_rng(8)
    g = rng.lognormal(math.log(2.0), 0.8, 3000)  # yellow_cart's gateway, 8 s timeout
    kept = g[g <= 8.0]
    mean, table = fit_censored_lognormal(kept, int((g > 8.0).sum()), 8.0, rng)
    true_mean = 2.0 * math.exp(0.8**2 / 2)
    assert mean.low <= true_mean <= mean.high and kept.mean() < mean.low  # the cut tail counts
    assert table["median"] == pytest.approx(2.0, rel=0.05)
    assert table["sigma"] == pytest.approx(0.8, rel=0.05)


def test_the_failure_law_grows_above_its_knee() -> None:
    rng = np.random.default_rng(6)
    load = np.round(rng.uniform(0, 3, 20_000) * 4) / 4  # occupancy: counts per worker
    p = np.minimum(1, 0.05 + 0.3 * np.maximum(0, load - 1.0))
    prob, growth, knee = fit_failures(load, rng.random(load.size) < p, rng)
    assert growth is not None and knee is not None
    assert growth.low <= 0.3 <= growth.high and prob.low <= 0.05 <= prob.high
    assert knee == pytest.approx(1.0, abs=0.15)


def test_few_declines_give_a_flat_probability_with_an_exact_interval() -> None:
    rng = np.random.default_rng(7)
    load = rng.uniform(0, 2, 300)
    declined = np.zeros(300, bool)
    declined[:6] = True  # 6 of 300
    prob, growth, knee = fit_failures(load, declined, rng)
    assert growth is None and knee is None
    assert prob.value == pytest.approx(0.02)
    # Clopper-Pearson for 6 of 300, from the beta quantiles by hand: 0.0074 to 0.0430
    assert (round(prob.low, 4), round(prob.high, 4)) == (0.0074, 0.043)


# ------------------------------------------------------------ end to end, simulated


def _exp(mean: float) -> dict[str, Any]:
    return {"dist": "exponential", "mean": mean}


KNOWN: dict[str, Any] = {
    "workers": 4,
    "queue_limit": 100_000,
    "queue_timeout_s": 1000.0,
    "step_s": {"view": _exp(0.02), "cart": _exp(0.04), "pay": _exp(0.06)},
    "payment": {"failure_prob": 0.05, "failure_growth": 0.3, "load_knee": 1.0, "gateway_s": 0.5},
}


def _known_sale() -> Scenario:
    """Poisson buyers loading 4 workers to about 0.9 (3 requests of 0.04 s mean per
    journey, 28 journeys per second), so the queue fills and empties."""
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "known",
            "seed": 3,
            "sale": {"units": 10**6, "window_s": 10**5},
            "humans": {
                "count": 4000,
                "arrivals": {"profile": "poisson", "rate_per_s": 28.0},
                "think_s": _exp(1.0),
                "retries_on_error": 0,
            },
            "service": KNOWN,
        }
    )


@pytest.fixture(scope="module")
def simulated() -> Outcome:
    return replication_outcome(_known_sale(), 3, 0)


def _without_server_timing(o: Outcome) -> Outcome:
    rq = dict(o.requests)
    for k in ("queue_wait", "service_time", "gateway_time"):
        rq[k] = np.full(rq["sent"].size, np.nan)
    return Outcome.from_columns(o.journeys, rq, o.timeline, o.channels)


def test_server_timing_recovers_the_set_service(simulated: Outcome) -> None:
    cal = calibrate_outcomes([simulated], _known_sale().to_toml_dict()["service"])
    assert cal.source == "server_timing"
    for step, mean in (("view", 0.02), ("cart", 0.04), ("pay", 0.06)):
        f = cal.steps[step]
        assert f.identified and f.concurrency is not None and f.concurrency.value == 4
        assert f.demand.value == pytest.approx(mean, rel=0.05), step  # ~4,000 draws each
        assert f.r2 > 0.9, step
    p = cal.payment
    assert p.gateway is not None and p.gateway.value == pytest.approx(0.5, rel=0.01)
    assert p.gateway_dist == {"dist": "constant", "value": 0.5}
    assert p.failure_growth is not None and p.load_knee is not None
    assert p.failure_prob.low <= 0.05 <= p.failure_prob.high
    assert p.failure_growth.value == pytest.approx(0.3, rel=0.1)
    assert p.load_knee == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("server_timing", [True, False])
def test_workers_not_identified_are_the_scenarios_with_the_reason(server_timing: bool) -> None:
    """64 workers that never all get busy: both methods keep the scenario's 64 and say
    why (the regression used to print its own guess, outside its own interval)."""
    sc = _known_sale().to_toml_dict()
    sc["service"]["workers"] = 64
    sc["humans"]["count"] = 800
    outcome = replication_outcome(parse_scenario(sc, "idle"), 3, 0)
    if not server_timing:
        outcome = _without_server_timing(outcome)
    cal = calibrate_outcomes([outcome], sc["service"], server_timing=server_timing)
    for f in cal.steps.values():
        assert not f.identified and f.concurrency is not None
        assert f.concurrency.value == 64
        assert "not identified" in f.concurrency.method


def test_response_times_alone_recover_the_set_service(simulated: Outcome) -> None:
    """The regression path: workers exact, demands within 20%, gateway within 3%.

    Measured at this seed: view +15%, cart +10%, pay -11% (its demand is its latency
    less the fitted gateway, 8 times larger), against 3% with Server-Timing: a mean
    latency per load level mixes the steps' demands, which Server-Timing keeps apart."""
    cal = calibrate_outcomes(
        [_without_server_timing(simulated)], _known_sale().to_toml_dict()["service"]
    )
    assert cal.source == "response_times"
    for step, mean in (("view", 0.02), ("cart", 0.04), ("pay", 0.06)):
        f = cal.steps[step]
        assert f.identified and f.concurrency is not None and f.concurrency.value == 4, step
        assert f.demand.value == pytest.approx(mean, rel=0.2), step
    p = cal.payment
    assert p.gateway is not None and p.gateway.value == pytest.approx(0.5, rel=0.03)
    assert p.failure_growth is not None
    assert p.failure_growth.value == pytest.approx(0.3, rel=0.15)


def _sale_with_a_payment_pool(pools: bool) -> Scenario:
    """Payments of 0.1 s on 1 worker of their own (or in the shared pool of 4) behind a
    0.5 s gateway; pages and carts on 4 workers that seldom queue."""
    service: dict[str, Any] = {
        "workers": 4,
        "queue_limit": 100_000,
        "queue_timeout_s": 1000.0,
        "step_s": {"view": _exp(0.02), "cart": _exp(0.04), "pay": _exp(0.1)},
        "payment": {"failure_prob": 0.05, "gateway_s": 0.5},
    }
    if pools:
        service["pools"] = {
            "payments": {"steps": ["pay"], "workers": 1, "queue_limit": 100_000,
                         "queue_timeout_s": 1000.0},
        }  # fmt: skip
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "pools",
            "seed": 3,
            "sale": {"units": 10**6, "window_s": 10**5},
            "humans": {
                "count": 4000,
                "arrivals": {"profile": "poisson", "rate_per_s": 8.0},
                "think_s": _exp(1.0),
                "retries_on_error": 0,
            },
            "service": service,
        }
    )


@pytest.mark.parametrize("pools", [True, False])
def test_response_times_tell_a_payment_pool_from_a_shared_one(pools: bool) -> None:
    """Calibrated against a scenario that declares one shared pool: the payments'
    own pool of 1 worker is found (its workers exactly), and a shared pool stays one."""
    o = _without_server_timing(replication_outcome(_sale_with_a_payment_pool(pools), 3, 0))
    declared = _sale_with_a_payment_pool(False).to_toml_dict()["service"]
    cal = calibrate_outcomes([o], declared)
    if pools:
        assert cal.pools == {"default": ("view", "cart"), "pay": ("pay",)}
        pay = cal.steps["pay"]
        assert pay.identified and pay.concurrency is not None and pay.concurrency.value == 1
        assert pay.demand.value == pytest.approx(0.1, rel=0.1)
        text = calibrated_scenario(_sale_with_a_payment_pool(False).to_toml(), cal)
        back = parse_scenario(tomllib.loads(text), "calibrated")
        assert back.service.pools["pay"].steps == ["pay"] and back.service.pools["pay"].workers == 1
        # what no table measures stays inherited, as declared: no difference for compare
        assert "queue_limit" not in tomllib.loads(text)["service"]["pools"]["pay"]
        assert back.service.pool_of("pay").queue_limit == back.service.queue_limit == 100_000
    else:
        assert cal.pools == {"default": ("view", "cart", "pay")}
    assert cal.payment.gateway is not None
    assert cal.payment.gateway.value == pytest.approx(0.5, rel=0.06)


def test_the_calibrated_scenario_validates_and_comments_every_fit(simulated: Outcome) -> None:
    sc = _known_sale()
    cal = calibrate_outcomes([simulated], sc.to_toml_dict()["service"])
    text = calibrated_scenario(sc.to_toml(), cal, header="from a test")
    back = parse_scenario(tomllib.loads(text), "calibrated")
    assert back.service.workers == 4
    assert back.humans == sc.humans and back.sale == sc.sale  # only [service] changes
    assert back.service.payment.gateway_s.mean() == pytest.approx(0.5, rel=0.01)
    for line in ("workers = 4 #", "view = {", "failure_growth ="):
        row = next(x for x in text.splitlines() if x.startswith(line))
        assert "95% CI" in row, row
    # twice the workers declared in the target scenario: twice the fitted workers
    doubled = calibrated_scenario(sc.to_toml(), cal, capacity_ratio=2.0)
    assert parse_scenario(tomllib.loads(doubled), "doubled").service.workers == 8


# ------------------------------------------------------------------ bad input


def _flashsale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASHSALE, *args], capture_output=True, text=True, timeout=300, check=False
    )


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    assert "not a run folder" in _one_error_line(_flashsale("calibrate", str(tmp_path)))


def test_a_simulation_is_refused_a_replay_is_needed(tmp_path: Path) -> None:
    run = tmp_path / "sim"
    sim = _flashsale(
        "simulate", str(SCENARIOS / "smoke.toml"), "--out", str(run), "--set", "humans.count=50"
    )
    assert sim.returncode in (0, 1), sim.stderr
    line = _one_error_line(_flashsale("calibrate", str(run)))
    assert "a sim run, not a replay" in line
    assert not (run / "calibrated.toml").exists()


def test_too_few_requests_to_fit_is_one_error_line(tmp_path: Path) -> None:
    """A replay of a handful of buyers: the folder is a simulation's, relabelled a
    replay (the tables are the same contract), so the test runs in seconds."""
    run = tmp_path / "tiny"
    sim = _flashsale(
        "simulate", str(SCENARIOS / "smoke.toml"), "--out", str(run),
        "--set", "humans.count=10", "--set", "bots.operators=0",
    )  # fmt: skip
    assert sim.returncode in (0, 1), sim.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "engine": "replay"}))
    line = _one_error_line(_flashsale("calibrate", str(run)))
    assert "at least 30 are needed" in line and "--scale" in line
