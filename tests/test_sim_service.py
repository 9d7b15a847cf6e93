"""The checkout queue model against queueing theory (M/M/c, M/M/c+M) and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashsale.sim.service import FULL, RENEGED, SERVED, CheckoutService

from ._theory import erlang_a, erlang_c, erlang_c_mean_wait


def _feed(c: int, lam: float, mu: float, n: int, seed: int, theta: float = 0.0) -> CheckoutService:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / lam, n)).tolist()
    service = rng.exponential(1 / mu, n).tolist()
    patience = rng.exponential(1 / theta, n).tolist() if theta else [math.inf] * n
    q = CheckoutService(c, queue_limit=10**9)
    for t, s, p in zip(arrivals, service, patience, strict=True):
        q.arrive(t, s, p)
    return q


def _steady(q: CheckoutService, warmup: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    arrived = np.frombuffer(q.arrived)
    keep = slice(int(arrived.size * warmup), None)
    wait = np.frombuffer(q.left_queue)[keep] - arrived[keep]
    return wait, np.frombuffer(q.code, dtype=np.uint8)[keep]


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.6, 0.8])
def test_mmc_wait_matches_erlang_c(rho: float) -> None:
    c, mu = 8, 10.0
    lam = rho * c * mu
    waits = [_steady(_feed(c, lam, mu, 250_000, seed))[0] for seed in range(6)]
    wait = np.concatenate(waits)
    assert np.mean(wait > 0) == pytest.approx(erlang_c(c, lam / mu), rel=0.03)
    assert np.mean(wait) == pytest.approx(erlang_c_mean_wait(c, lam, mu), rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize(("rho", "mean_patience"), [(0.9, 0.5), (1.2, 1.0)])
def test_mmc_abandonment_matches_erlang_a(rho: float, mean_patience: float) -> None:
    c, mu = 8, 10.0
    lam = rho * c * mu
    codes = np.concatenate(
        [_steady(_feed(c, lam, mu, 200_000, s, 1 / mean_patience))[1] for s in range(3)]
    )
    theory = erlang_a(c, lam, mu, 1 / mean_patience)
    assert np.mean(codes == RENEGED) == pytest.approx(theory["p_abandon"], rel=0.03)


def test_fifo_by_hand() -> None:
    q = CheckoutService(2, queue_limit=1)
    assert q.arrive(0.0, 1.0, math.inf) == (SERVED, 0.0, 1.0)
    assert q.arrive(0.0, 2.0, math.inf) == (SERVED, 0.0, 2.0)
    assert q.arrive(0.5, 1.0, math.inf) == (SERVED, 1.0, 2.0)  # waits for the first worker
    assert q.arrive(0.6, 1.0, math.inf) == (FULL, 0.6, 0.6)  # one already waiting: full
    assert q.queue_length(0.7) == 1
    assert q.occupancy(0.7) == pytest.approx(1.5)
    assert q.arrive(1.5, 1.0, 0.2) == (RENEGED, 1.7, 1.7)  # worker free at 2.0: gives up
    assert q.arrive(1.6, 1.0, math.inf)[0] == FULL  # the quitter holds its place until 1.7
    assert q.arrive(1.75, 1.0, math.inf) == (SERVED, 2.0, 3.0)  # ... but took no worker
    assert q.occupancy(10.0) == 0.0


@pytest.mark.parametrize(("workers", "limit"), [(0, 1), (1, -1)])
def test_bad_configuration_is_named(workers: int, limit: int) -> None:
    with pytest.raises(ValueError, match="workers|queue_limit"):
        CheckoutService(workers, limit)


def test_theory_refuses_unstable_load() -> None:
    with pytest.raises(ValueError, match="offered load"):
        erlang_c(2, 2.5)
