"""The whole engine, not just its queue, against Erlang C.

Humans only, Poisson arrivals, every step exponential with the same mean, c
workers, unlimited stock, no patience: each journey sends three requests, so the
checkout sees requests at three times the journey rate. That stream is Poisson
only approximately (each request follows the journey's previous response), which
is why the mean wait gets a 5% band here; tests/test_sim_service.py checks the
queue itself against Erlang C and Erlang A within 3% on exactly Poisson input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flashsale.scenario import Scenario, parse_scenario
from flashsale.sim.engine import simulate

from ._theory import erlang_c, erlang_c_mean_wait

C, MU = 8, 10.0


def _mmc(journeys_per_s: float, humans: int) -> Scenario:
    exp = {"dist": "exponential", "mean": 1 / MU}
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "mmc",
        "sale": {"units": 10**7, "window_s": 10**6},
        "humans": {
            "count": humans,
            "arrivals": {"profile": "poisson", "rate_per_s": journeys_per_s},
            "think_s": {"dist": "exponential", "mean": 5.0},
        },
        "service": {
            "workers": C,
            "queue_limit": 10**6,
            "queue_timeout_s": 10**6,
            "step_s": {"view": exp, "cart": exp, "pay": exp},
        },
    }
    return parse_scenario(data)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.6, 0.8])
def test_engine_checkout_wait_is_erlang_c(rho: float) -> None:
    lam = rho * C * MU  # requests per second
    waits = []
    for rep in range(4):
        q = simulate(_mmc(lam / 3, 40_000), rep).service
        arrived = np.frombuffer(q.arrived)
        left = np.frombuffer(q.left_queue)
        steady = (arrived > 0.1 * arrived.max()) & (arrived < 0.9 * arrived.max())
        waits.append(left[steady] - arrived[steady])
    wait = np.concatenate(waits)
    assert np.mean(wait > 0) == pytest.approx(erlang_c(C, lam / MU), rel=0.03)
    assert np.mean(wait) == pytest.approx(erlang_c_mean_wait(C, lam, MU), rel=0.05)
