"""Every metric on small tables whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashsale.metric_registry import METRICS, find, meanings, parse_threshold_key
from flashsale.metrics import (
    METRICS_SCHEMA,
    compute_metrics,
    fmt_undefined,
    gini,
    grouped_quantiles,
    jain,
    lorenz,
    replication_metrics,
)
from flashsale.outcome import STEP
from flashsale.report import _flat_scalars

from .test_metrics_data import make_outcome, scenario

NAN = math.nan


def test_gini_of_zero_zero_one_one_is_a_half() -> None:
    assert gini(np.array([0, 0, 1, 1])) == pytest.approx(0.5)


def test_gini_extremes() -> None:
    assert gini(np.array([3, 3, 3])) == 0.0
    # One of n persons holds everything: (n - 1) / n.
    assert gini(np.array([0, 0, 0, 0, 7])) == pytest.approx(4 / 5)


def test_gini_matches_mean_absolute_difference_formula() -> None:
    x = np.random.default_rng(5).integers(0, 9, 40).astype(float)
    # G = sum_i sum_j |x_i - x_j| / (2 n^2 mean)
    direct = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(direct)


def test_jain_index() -> None:
    assert jain(np.array([0, 0, 1, 1])) == pytest.approx(4 / (4 * 2))
    assert jain(np.array([2, 2, 2])) == pytest.approx(1.0)
    assert jain(np.array([0, 0, 0, 4])) == pytest.approx(1 / 4)


def test_fairness_of_nothing_is_undefined_not_perfect() -> None:
    # 0/0: nobody got anything. Not "perfectly fair" (Gini 0, Jain 1): undefined.
    assert gini(np.zeros(4)) is None
    assert jain(np.zeros(3)) is None
    assert gini(np.zeros(0)) is None
    assert jain(np.zeros(0)) is None
    assert np.isnan(lorenz(np.zeros(3), np.linspace(0, 1, 5))).all()


def test_lorenz_ends_and_shape() -> None:
    grid = np.linspace(0, 1, 5)
    assert lorenz(np.array([0, 0, 1, 1]), grid) == pytest.approx([0, 0, 0, 0.5, 1.0])
    # One of 1,000 persons holds half the units: the default grid samples the last
    # 0.2% of persons, where the curve jumps from 0.499 to 1 (an even 1% grid cannot).
    from flashsale.metrics import LORENZ_GRID

    x = np.r_[np.zeros(499), np.ones(500), 500]
    near_top = LORENZ_GRID >= 0.998
    assert lorenz(x)[near_top][0] == pytest.approx(0.499, abs=0.002)


def _fleet() -> list[dict[str, object]]:
    """4 humans (2 buy), one operator (person 10) with 5 accounts (2 buy)."""
    rows: list[dict[str, object]] = [
        {"person": 0, "result": "purchased", "units": 1, "carted": 1.0},
        {"person": 1, "result": "purchased", "units": 1, "carted": 1.0},
        {"person": 2, "result": "sold_out"},
        {"person": 3, "result": "cart_failed", "carted": 2.0},
    ]
    for k in range(5):
        bought = k < 2
        rows.append(
            {
                "kind": "bot",
                "person": 10,
                "result": "purchased" if bought else "sold_out",
                "units": 1 if bought else 0,
                "carted": 0.5 if bought else NAN,
            }
        )
    return rows


def test_operator_with_many_accounts_is_one_person() -> None:
    m = replication_metrics(scenario(), make_outcome(_fleet()))
    # Persons: humans [1, 1, 0, 0], operator [2]. Sorted [0,0,1,1,2]: sum 4, n 5.
    # Gini = sum (2i - n - 1) x_i / (n sum) = (0 + 0 + 0 + 2 + 8) / 20 = 0.5
    assert m["units_per_person_gini"] == pytest.approx(0.5)
    # Jain = 16 / (5 * (1 + 1 + 4)) = 16/30; per account it would be 16 / (9 * 4).
    assert m["units_per_person_jain"] == pytest.approx(16 / 30)
    assert m["human_success_share"] == pytest.approx(2 / 4)
    assert m["bot_unit_share"] == pytest.approx(2 / 4)
    assert m["units_sold"] == 4


def test_yellow_cart_and_outcome_rates() -> None:
    m = replication_metrics(scenario(), make_outcome(_fleet()))
    # Carted: humans 0, 1, 3 and bots 0, 1 = 5; carted and never paid: human 3.
    assert m["yellow_cart_rate"] == pytest.approx(1 / 5)
    assert m["outcome_rates.human.purchased"] == pytest.approx(0.5)
    assert m["outcome_rates.human.sold_out"] == pytest.approx(0.25)
    assert m["outcome_rates.human.cart_failed"] == pytest.approx(0.25)
    assert m["outcome_rates.bot.purchased"] == pytest.approx(2 / 5)
    assert m["outcome_rates.bot.sold_out"] == pytest.approx(3 / 5)
    for kind in ("human", "bot"):
        total = sum(v for k, v in m.items() if k.startswith(f"outcome_rates.{kind}."))
        assert total == pytest.approx(1.0)


def test_no_carts_means_no_yellow_cart_rate_and_no_kind_means_no_rates() -> None:
    m = replication_metrics(scenario(), make_outcome([{"result": "sold_out"}]))
    assert m["yellow_cart_rate"] is None
    assert m["outcome_rates.bot.purchased"] is None
    assert m["bot_unit_share"] is None  # nothing sold: the share is undefined


def _empty_sale() -> list[dict[str, object]]:
    """Everyone tried and nobody kept a unit: payments all failed (the yellow cart)."""
    rows: list[dict[str, object]] = [
        {"person": p, "result": "cart_failed", "carted": 1.0} for p in range(3)
    ]
    rows += [
        {"kind": "bot", "person": 10, "result": "cart_failed", "carted": 0.5} for _ in range(2)
    ]
    return rows


def _failed_payments() -> list[dict[str, object]]:
    return [
        {"journey": j, "step": "pay", "sent": 1.0 + j, "latency": 0.1, "status": 402}
        for j in range(5)
    ]


def test_a_sale_that_sold_nothing_has_no_ratio_over_units_sold() -> None:
    tl = [{"t": 0.0, "stock_left": 4, "reserved": 2}, {"t": 1.0, "stock_left": 4}]
    m = replication_metrics(scenario(), make_outcome(_empty_sale(), _failed_payments(), tl))
    assert m["units_sold"] == 0
    # Every ratio whose denominator is the units kept or the buyers who paid: null.
    for name in (
        "units_per_person_gini",
        "units_per_person_jain",
        "bot_unit_share",
        "sellout_time_s",
        "time_to_purchase_p50_human_s",
        "time_to_purchase_p95_human_s",
        "time_to_purchase_p50_bot_s",
        "time_to_purchase_p95_bot_s",
    ):
        assert m[name] is None, name
    # Ratios over who tried, carted or sent requests are defined, and here 0 or 1.
    assert m["human_success_share"] == 0.0
    assert m["yellow_cart_rate"] == 1.0
    assert m["outcome_rates.human.cart_failed"] == 1.0
    assert m["error_rate"] == 0.0
    assert m["throughput_peak_orders_per_s"] == 0  # a count: no payment in any second


def test_undefined_replications_are_left_out_of_the_mean_and_counted() -> None:
    sold = make_outcome(_fleet())
    empty = make_outcome(_empty_sale())
    doc = compute_metrics(scenario(), [empty, sold, empty])
    jain_block = doc["metrics"]["units_per_person_jain"]
    assert jain_block["values"] == [None, pytest.approx(16 / 30), None]
    assert jain_block["mean"] == pytest.approx(16 / 30)
    assert jain_block["n"] == 1
    assert jain_block["ci_low"] is None  # one defined value: no interval
    assert fmt_undefined(jain_block) == "undefined in 2 of 3 replications"
    assert fmt_undefined(doc["metrics"]["units_sold"]) is None
    # The Lorenz band is the sold replication's curve; nothing drawn for the empty ones.
    lz = doc["series"]["lorenz"]
    assert lz["mean"][-1] == pytest.approx(1.0)
    only_empty = compute_metrics(scenario(), [empty, empty])
    assert all(v is None for v in only_empty["series"]["lorenz"]["mean"])
    block = only_empty["metrics"]["units_per_person_gini"]
    assert (block["mean"], block["n"], block["values"]) == (None, 0, [None, None])
    assert fmt_undefined(block) == "undefined in 2 of 2 replications"


def test_sellout_time_from_the_timeline() -> None:
    tl = [
        {"t": -1.0, "stock_left": 4},
        {"t": 0.0, "stock_left": 3, "sold_human": 1},
        {"t": 1.0, "stock_left": 1, "sold_bot": 2},
        {"t": 2.0, "stock_left": 0, "sold_human": 1},
        {"t": 3.0, "stock_left": 0},
    ]
    m = replication_metrics(scenario(), make_outcome(_fleet(), timeline=tl))
    assert m["sellout_time_s"] == pytest.approx(3.0)  # end of the interval starting at 2
    m = replication_metrics(scenario(), make_outcome(_fleet(), timeline=tl[:3]))
    assert m["sellout_time_s"] is None


def test_oversold_counts_paid_units_beyond_stock_and_the_audit() -> None:
    rows = [{"result": "purchased", "units": 1} for _ in range(5)]
    rows.append({"result": "cancelled", "units": 1})
    out = make_outcome(rows, timeline=[{"t": 0.0, "stock_left": -2}])
    m = replication_metrics(scenario(), out)  # 6 paid for 4 units
    assert m["oversold_units"] == 2
    assert m["units_sold"] == 5
    assert m["cancelled_units"] == 1
    m = replication_metrics(scenario(), out, {"oversold_units": 7, "units_sold": 9})
    assert m["oversold_units"] == 7
    assert m["audit_mismatch_units"] == 4
    assert replication_metrics(scenario(), out)["audit_mismatch_units"] is None


def test_throughput_peak_and_time_to_purchase_from_requests() -> None:
    rows = [
        {"arrived": -5.0, "result": "purchased", "units": 1},
        {"arrived": 2.0, "result": "purchased", "units": 1},
        {"kind": "bot", "person": 9, "arrived": -1.0, "result": "purchased", "units": 1},
    ]
    reqs = [
        {"journey": 0, "step": "pay", "sent": 2.5, "latency": 0.5},  # done 3.0
        {"journey": 1, "step": "pay", "sent": 3.0, "latency": 2.0, "status": 402},
        {"journey": 1, "step": "pay", "sent": 5.2, "latency": 0.6},  # done 5.8
        {"journey": 2, "step": "pay", "sent": 0.1, "latency": 0.1},  # done 0.2
        {"journey": 2, "step": "view", "sent": 3.1, "latency": 0.1},
    ]
    m = replication_metrics(scenario(), make_outcome(rows, reqs))
    # Humans: 3.0 - max(-5, 0) = 3.0 and 5.8 - 2.0 = 3.8; bots: 0.2 - 0 = 0.2.
    assert m["time_to_purchase_p50_human_s"] == pytest.approx(3.4)
    assert m["time_to_purchase_p95_human_s"] == pytest.approx(3.0 + 0.95 * 0.8)
    assert m["time_to_purchase_p50_bot_s"] == pytest.approx(0.2)
    # Paid at 3.0, 5.8, 0.2: seconds since the first are 2.8, 5.6, 0 -> at most 1 per second.
    assert m["throughput_peak_orders_per_s"] == 1


def test_error_timeout_and_latency_percentiles_per_step() -> None:
    lat = [0.1, 0.2, 0.3, 0.4, 1.0]
    reqs = [
        {"step": "cart", "latency": v, "status": s}
        for v, s in zip(lat, (201, 201, 409, 503, 0), strict=True)
    ]
    reqs.append({"step": "view", "latency": 0.05, "status": 504})
    m = replication_metrics(scenario(), make_outcome([{}], reqs))
    assert m["error_rate"] == pytest.approx(3 / 6)  # 503, 0, 504
    assert m["timeout_rate"] == pytest.approx(2 / 6)  # 0, 504
    assert m["latency_p50_s.cart"] == pytest.approx(np.percentile(lat, 50))
    assert m["latency_p95_s.cart"] == pytest.approx(np.percentile(lat, 95))
    assert m["latency_p99_s.cart"] == pytest.approx(np.percentile(lat, 99))
    assert m["latency_p50_s.view"] == pytest.approx(0.05)
    assert "latency_p50_s.pay" not in m


def test_intended_latency_counts_from_when_the_request_was_due() -> None:
    reqs = [{"step": "cart", "intended": 1.0, "sent": 3.0, "latency": 0.5}]
    m = replication_metrics(scenario(), make_outcome([{}], reqs))
    assert m["latency_p95_s.cart"] == pytest.approx(0.5)
    assert m["intended_latency_p95_s.cart"] == pytest.approx(2.5)


def test_late_start_share() -> None:
    rows = [{"arrived": 0.0, "started": s} for s in (0.0, 0.5, 1.0, 1.5, 30.0)]
    m = replication_metrics(scenario(), make_outcome(rows))
    assert m["late_start_share"] == pytest.approx(2 / 5)  # more than 1 s late


def test_review_precision_recall_and_resale() -> None:
    sc = scenario(
        sale={"units": 10},
        defenses={"review": {"enabled": True}, "resale": {"enabled": True, "at_s": 100}},
    )
    rows = [
        {"kind": "bot", "person": 9, "result": "cancelled", "units": 2},
        {"kind": "bot", "person": 9, "result": "cancelled", "units": 2},
        {"kind": "bot", "person": 9, "result": "purchased", "units": 2},
        {"kind": "bot", "person": 9, "result": "purchased", "units": 2},
        {"person": 1, "result": "cancelled", "units": 1},
        {"person": 1, "sale": "resale", "arrived": 100.0, "result": "purchased", "units": 1},
        {"person": 2, "sale": "resale", "arrived": 101.0, "result": "purchased", "units": 1},
        {"kind": "bot", "person": 9, "sale": "resale", "result": "purchased", "units": 2},
    ]
    m = replication_metrics(sc, make_outcome(rows))
    assert m["review_precision"] == pytest.approx(2 / 3)  # 3 cancelled, 2 of them bots
    assert m["review_recall"] == pytest.approx(2 / 4)  # 4 bot journeys paid in the main sale
    assert m["cancelled_units"] == 5
    assert m["resale_units_to_humans"] == 2
    # Re-sale offered the 5 cancelled units; 4 were paid there: nothing oversold.
    assert m["oversold_units"] == 0
    plain = replication_metrics(scenario(), make_outcome(rows[:4]))
    assert plain["review_precision"] is None
    assert plain["resale_units_to_humans"] is None


def test_grouped_quantiles_match_numpy_per_group() -> None:
    rng = np.random.default_rng(2)
    g = rng.integers(0, 6, 500)
    v = rng.exponential(1.0, 500)
    got = grouped_quantiles(g, v, 7, [0.5, 0.95, 0.99])
    for k in range(6):
        assert got[:, k] == pytest.approx(np.percentile(v[g == k], [50, 95, 99]))
    assert np.isnan(got[:, 6]).all()


def test_success_by_arrival_bins() -> None:
    sc = scenario()  # early_window_s 10, window 20 -> 30 s span, 1 s bins
    rows = [
        {"arrived": -9.5, "result": "purchased", "units": 1},
        {"arrived": -9.2, "result": "sold_out"},
        {"arrived": 0.5, "result": "sold_out"},
        {"kind": "bot", "person": 9, "arrived": -9.9, "result": "sold_out"},  # not a human
    ]
    doc = compute_metrics(sc, [make_outcome(rows)])
    sba = doc["metrics"]["success_by_arrival"]
    assert sba["bin_s"] == 1.0
    i = sba["bin_start_s"].index(-10.0)
    assert sba["mean"][i] == pytest.approx(0.5)
    assert sba["mean"][sba["bin_start_s"].index(0.0)] == 0.0
    assert sba["mean"][sba["bin_start_s"].index(5.0)] is None  # nobody arrived


def test_metrics_json_holds_exactly_the_registry() -> None:
    # One request per step, so every per-step metric has its blocks.
    sc = scenario(defenses={"review": {"enabled": True}, "resale": {"enabled": True}})
    requests = [{"step": step, "sent": 0.1 * i} for i, step in enumerate(STEP)]
    out = make_outcome(_fleet(), requests)
    doc = compute_metrics(sc, [out], [{"units_sold": 4, "oversold_units": 0}])
    assert set(doc["metrics"]) == {m.name for m in METRICS}
    assert doc["doc"] == meanings()
    for m in METRICS:
        node = doc["metrics"][m.name]
        if not m.threshold:  # a curve
            continue
        names = [m.name]
        for level in m.parts:  # every part the registry names is in metrics.json
            assert set(node) == set(level), m.name
            names = [f"{n}.{p}" for n in names for p in level]
            node = node[level[0]]
        assert set(node) >= {"values", "mean", "ci_low", "ci_high", "n"}, m.name
        assert all(find(n) is m for n in names)
    assert doc["schema"] == METRICS_SCHEMA
    # Every number the report's table of every metric shows can be a threshold.
    shown = [name for name, _ in _flat_scalars(doc["metrics"])]
    assert len(shown) == sum(math.prod(map(len, m.parts)) for m in METRICS if m.threshold)
    assert all(parse_threshold_key(n) == (n, "mean") for n in shown)


def test_compute_metrics_ci_across_replications() -> None:
    sold = [1, 2, 3, 4, 5]
    outs = [
        make_outcome([{"result": "purchased", "units": 1, "person": p} for p in range(k)])
        for k in sold
    ]
    doc = compute_metrics(scenario(sale={"units": 10}), outs)
    u = doc["metrics"]["units_sold"]
    assert u["values"] == sold
    # Student t, n = 5: 3 +- t(0.975, 4) * s / sqrt(5), s = sqrt(2.5), t = 2.7764451
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert u["mean"] == pytest.approx(3.0)
    assert (u["ci_low"], u["ci_high"]) == pytest.approx((3 - half, 3 + half))
    assert doc["replications"] == [0, 1, 2, 3, 4]


def test_compute_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one replication"):
        compute_metrics(scenario(), [])
    with pytest.raises(ValueError, match="audit entries"):
        compute_metrics(scenario(), [make_outcome([{}])], [{}, {}])


def test_chart_windows_skip_quiet_days_before_a_resale() -> None:
    sc = scenario(
        sale={"units": 10, "window_s": 20},
        defenses={"review": {"enabled": True}, "resale": {"enabled": True, "at_s": 86_400}},
    )
    quiet = [{"t": float(t)} for t in range(30, 86_400, 50)]
    tl = [
        {"t": 0.0, "stock_left": 5, "sold_human": 5},
        {"t": 25.0, "stock_left": 0, "sold_bot": 5},
        *quiet,
        {"t": 86_400.0, "sold_human": 1, "stock_left": 1},
        {"t": 86_401.0, "sold_human": 1},
    ]
    doc = compute_metrics(sc, [make_outcome([{}], timeline=tl)])
    main = doc["series"]["timeline"]["main"]
    resale = doc["series"]["timeline"]["resale"]
    # The main chart ends after the last busy interval (t = 25), not 86,400 s later.
    assert (main["t_s"][0], main["t_end_s"][-1]) == (0.0, 26.0)
    assert (resale["t_s"][0], resale["t_end_s"][-1]) == (86_400.0, 86_402.0)
