"""Worker pools per step in the simulator, and the latency parts it records.

A hand-computed sale with a view/cart pool and a payment pool (every number worked
by hand, as in tests/test_sim_engine.py), the same sale with one shared pool, and
the payment pool of a shop whose pages never queue against M/M/c (Erlang C).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flashsale.outcome import RESULT, STEP
from flashsale.scenario import Scenario, load_scenario
from flashsale.sim.engine import simulate

from ._theory import erlang_c, erlang_c_mean_wait
from .conftest import SCENARIOS, fixed_schedule, tiny_sale

NAN = np.nan


def _tiny(**over: Any) -> Scenario:
    """The engine tests' tiny sale, behind a 0.5 s payment gateway."""
    return tiny_sale(service__payment__gateway_s=0.5, **over)


ARRIVALS = [-0.5, 0.0, 0.05, 2.45, 10.0]  # A, B, C, D, E
PAY_POOL = {"payments": {"steps": ["pay"], "workers": 1}}


def _by_journey(rq: dict[str, np.ndarray], col: str) -> list[list[float]]:
    return [rq[col][rq["journey"] == j].tolist() for j in range(len(ARRIVALS))]


def test_hand_computed_sale_with_a_payment_pool() -> None:
    """One worker for views and carts, one for payments, a 0.5 s gateway outside them.

    Views: A -0.5 (not open; refreshes at 0.6), B 0.0-0.1, C 0.1-0.2 (waited 0.05),
    A 0.6-0.7, D 2.45-2.55 (sold out), E 10.0-10.1 (sold out). Carts: B 1.1-1.3, C
    1.3-1.5 (waited 0.1), A 1.7-1.9 (the last unit). Payments, on their own worker: B
    2.3-2.6, C 2.6-2.9 (arrived 2.5, waited 0.1), A 2.9-3.2; each answered 0.5 s after
    its worker let go. D's view at 2.45 does not wait behind B's payment.
    """
    out = simulate(_tiny(service__pools=PAY_POOL), schedule=fixed_schedule(ARRIVALS)).outcome
    j, rq = out.journeys, out.requests
    purchased, sold_out = RESULT.index("purchased"), RESULT.index("sold_out")
    assert j["result"].tolist() == [purchased] * 3 + [sold_out] * 2
    np.testing.assert_allclose(j["finished"], [3.7, 3.1, 3.4, 2.55, 10.1])
    assert [[STEP[int(s)] for s in steps] for steps in _by_journey(rq, "step")] == [
        ["view", "view", "cart", "pay"],
        ["view", "cart", "pay"],
        ["view", "cart", "pay"],
        ["view"],
        ["view"],
    ]
    expected: dict[str, list[list[float]]] = {
        "sent": [[-0.5, 0.6, 1.7, 2.9], [0.0, 1.1, 2.3], [0.05, 1.2, 2.5], [2.45], [10.0]],
        "queue_wait": [[0, 0, 0, 0], [0, 0, 0], [0.05, 0.1, 0.1], [0], [0]],
        "service_time": [[0.1, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1], [0.1]],
        "gateway_time": [[NAN, NAN, NAN, 0.5], [NAN, NAN, 0.5], [NAN, NAN, 0.5], [NAN], [NAN]],
        "latency": [[0.1, 0.1, 0.2, 0.8], [0.1, 0.2, 0.8], [0.15, 0.3, 0.9], [0.1], [0.1]],
    }
    for col, rows in expected.items():
        for got, want in zip(_by_journey(rq, col), rows, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-12, err_msg=col)


def test_the_same_sale_in_one_shared_pool_queues_the_view_behind_payments() -> None:
    """Without the payment pool: B pays 2.3-2.6 on the only worker, so D's view at 2.45
    waits 0.15 (2.6-2.7), C's payment (at 2.5) waits for it (2.7-3.0) and A's (2.9)
    for C's (3.0-3.3)."""
    rq = simulate(_tiny(), schedule=fixed_schedule(ARRIVALS)).outcome.requests
    waits = _by_journey(rq, "queue_wait")
    np.testing.assert_allclose(waits[3], [0.15])
    np.testing.assert_allclose([w[-1] for w in waits[:3]], [0.1, 0.0, 0.2])
    np.testing.assert_allclose([t[-1] for t in _by_journey(rq, "latency")[:3]], [0.9, 0.8, 1.0])


def test_latency_is_the_sum_of_its_parts_for_every_served_request() -> None:
    """Any sale: a served request's latency is its wait, its worker time and its gateway
    time; a refused or abandoned one's is its wait; one refused at the edge has none."""
    sc = _tiny(
        humans__count=400,
        humans__arrivals={"profile": "poisson", "rate_per_s": 40.0},
        humans__patience_s={"dist": "exponential", "mean": 0.5},
        humans__retries_on_error=2,
        sale__units=100,
        service__queue_limit=5,
        service__pools={"payments": {"steps": ["pay"], "workers": 2, "queue_timeout_s": 0.4}},
        service__payment={"gateway_s": {"dist": "exponential", "mean": 0.5}, "timeout_s": 1.0},
        defenses__rate_limit={"enabled": True, "per_account_per_s": 0.2, "burst": 1},
    )
    rq = simulate(sc, seed=11).outcome.requests
    served = ~np.isnan(rq["service_time"])
    parts = rq["queue_wait"] + rq["service_time"] + np.nan_to_num(rq["gateway_time"])
    np.testing.assert_allclose(rq["latency"][served], parts[served], atol=1e-9)
    waited = ~served & ~np.isnan(rq["queue_wait"])
    np.testing.assert_allclose(rq["latency"][waited], rq["queue_wait"][waited], atol=1e-9)
    status = rq["status"]
    # every kind of answer happened: served, full (503), gave up (499/503), edge (429)
    assert {200, 201, 429, 499, 503} <= set(status.tolist())
    assert np.isnan(rq["queue_wait"][status == 429]).all()
    pay = rq["step"] == STEP.index("pay")
    assert np.isnan(rq["gateway_time"][~pay]).all()
    assert (rq["gateway_time"][pay & served & (status == 201)] > 0).all()
    assert (rq["gateway_time"][pay & (status == 504) & served] == 1.0).all()  # timed out


@pytest.mark.slow
def test_a_payment_pool_behind_pages_that_never_queue_is_erlang_c() -> None:
    """Views and carts on 500 workers (never a wait), payments on c = 4 workers at 80%.

    With unlimited stock and no failures every journey pays once, after i.i.d. delays
    (its own service and think times): the payments of a Poisson stream of journeys
    are a Poisson stream of the same rate (the displacement theorem), so the payment
    pool is M/M/4 and its queue_wait column must show Erlang C's P(wait > 0) and mean
    wait; the other pool none. Tolerances: over seeds 3-11 one replication's
    estimates had a standard deviation of 1.5% (P(wait > 0)) and 5% (mean wait) of
    the formula, so the average of 4 is within 3% and 8% at more than 3 sigma."""
    c, mu, lam = 4, 10.0, 32.0
    exp = {"dist": "exponential", "mean": 1 / mu}
    sc = _tiny(
        sale__units=10**7,
        sale__window_s=10**6,
        humans__count=60_000,
        humans__arrivals={"profile": "poisson", "rate_per_s": lam},
        humans__think_s={"dist": "exponential", "mean": 2.0},
        service__workers=500,
        service__queue_limit=10**6,
        service__queue_timeout_s=10**6,
        service__step_s={"view": exp, "cart": exp, "pay": exp},
        service__payment={},
        service__pools={"payments": {"steps": ["pay"], "workers": c}},
    )
    waits = []
    for rep in range(4):
        rq = simulate(sc, rep).outcome.requests
        pay = rq["step"] == STEP.index("pay")
        assert not rq["queue_wait"][~pay].any()
        sent = rq["sent"][pay]
        steady = (sent > 0.1 * sent.max()) & (sent < 0.9 * sent.max())
        waits.append(rq["queue_wait"][pay][steady])
    wait = np.concatenate(waits)
    assert np.mean(wait > 0) == pytest.approx(erlang_c(c, lam / mu), rel=0.03)
    assert np.mean(wait) == pytest.approx(erlang_c_mean_wait(c, lam, mu), rel=0.08)


@pytest.mark.slow
def test_poco_m3_page_views_in_a_pool_of_their_own_stop_waiting_behind_payments() -> None:
    """Issue 14: "at poco_m3's opening a page view waits 100 s in the same queue as
    payments". A pool of 8 workers for the sale page alone cuts the views' p95 from
    80.6 s to 4.6 s (measured); the stock's books stay whole. (This split once took
    over ten minutes, every cart walking the releases the page pool held back:
    flashsale.sim.stock.)"""
    shared = load_scenario(SCENARIOS / "poco_m3.toml")
    split = load_scenario(
        SCENARIOS / "poco_m3.toml", ['service.pools.page={steps=["view"], workers=8}']
    )
    p95 = {}
    for name, sc in (("shared", shared), ("split", split)):
        o = simulate(sc).outcome
        rq = o.requests
        views = rq["step"] == STEP.index("view")
        p95[name] = float(np.percentile(rq["latency"][views], 95))
        assert int(o.timeline["stock_left"].min()) >= 0
        assert int(o.journeys["units"].sum()) == sc.sale.units
    assert p95["shared"] >= 60.0 and p95["split"] <= p95["shared"] / 10, p95
