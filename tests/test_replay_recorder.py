"""Raw rows per process, merged into one Outcome: nothing counted twice, nothing lost."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashsale.arrivals import BOT, HUMAN
from flashsale.outcome import RESULT
from flashsale.replay.audit import cross_check
from flashsale.replay.journey import Buyer, JourneyLog
from flashsale.replay.recorder import (
    MergeError,
    Recorder,
    decode_part,
    encode_part,
    lateness,
    merge_parts,
)
from flashsale.replay.timeline import build_timeline
from flashsale.scenario import parse_scenario

T0 = 1_700_000_000.0


def _buyer(j: int, kind: np.uint8 = HUMAN, arrived: float = 0.0) -> Buyer:
    return Buyer(journey=j, kind=int(kind), account=j, person=j, channel=0, arrived=arrived)


def _log(result: str, started: float, carted: float, finished: float, units: int) -> JourneyLog:
    return JourneyLog(
        started=started, carted=carted, finished=finished, result=result, units=units, requests=1
    )


def _share(journeys: list[int]) -> Recorder:
    rec = Recorder(T0)
    for j in journeys:
        rec.journey(_buyer(j), _log("purchased", 0.0, 0.5, 1.0, 1))
        rec.request(
            journey=j,
            account=j,
            step="cart",
            intended=0.2,
            sent_epoch=T0 + 0.25,
            latency_s=0.01,
            status=201,
        )
    return rec


def _chunks(*recs: Recorder) -> list[tuple[str, dict[str, np.ndarray]]]:
    return [decode_part(p) for rec in recs for p in encode_part(rec)]


def test_two_shares_merge_into_one_sorted_table() -> None:
    jr, rq = merge_parts(_chunks(_share([0, 2, 4]), _share([1, 3])), expected_journeys=5)
    assert jr["journey"].tolist() == [0, 1, 2, 3, 4]
    assert rq["journey"].size == 5
    assert rq["sent"] == pytest.approx(np.full(5, 0.25))  # epoch -> sale seconds


def test_a_journey_recorded_twice_is_refused() -> None:
    with pytest.raises(MergeError, match=r"recorded twice: \[1\]"):
        merge_parts(_chunks(_share([0, 1]), _share([1, 2])), expected_journeys=4)


def test_a_lost_share_is_refused() -> None:
    with pytest.raises(MergeError, match="2 journeys recorded, 5 scheduled"):
        merge_parts(_chunks(_share([0, 1])), expected_journeys=5)


def test_requests_of_unknown_journeys_are_refused() -> None:
    rec = _share([0])
    rec.request(
        journey=9, account=9, step="view", intended=0.0, sent_epoch=T0, latency_s=0.0, status=200
    )
    with pytest.raises(MergeError, match="1 requests of journeys nobody recorded"):
        merge_parts(_chunks(rec), expected_journeys=1)


def test_lateness_counts_late_and_unstarted_journeys() -> None:
    jr = {"arrived": np.array([0.0, 1.0, 2.0, 3.0]), "started": np.array([0.05, 1.5, 4.0, np.nan])}
    got = lateness(jr)
    assert got["not_started"] == 1 and got["late_over_1s"] == 1 and got["late_over_100ms"] == 2
    assert got["max_late_s"] == pytest.approx(2.0)


def _timeline_case() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rec = Recorder(T0)
    rec.journey(_buyer(0, HUMAN, 0.2), _log("purchased", 0.2, 0.5, 1.5, 1))
    rec.journey(_buyer(1, BOT, 0.1), _log("purchased", 0.1, 0.3, 0.8, 2))
    rec.journey(_buyer(2, HUMAN, 1.1), _log("cart_failed", 1.1, 1.2, 2.0, 0))
    for j, step, sent, lat, status in (
        (0, "cart", 0.4, 0.1, 201),
        (0, "pay", 1.4, 0.1, 201),
        (1, "cart", 0.2, 0.1, 201),
        (1, "pay", 0.7, 0.1, 201),
        (2, "view", 1.0, 2.5, 0),  # never answered
        (2, "cart", 1.1, 0.1, 201),
        (2, "pay", 1.9, 0.2, 402),  # declined at 2.1: the service released the hold
    ):
        rec.request(
            journey=j,
            account=j,
            step=step,
            intended=sent,
            sent_epoch=T0 + sent,
            latency_s=lat,
            status=status,
        )
    return merge_parts(_chunks(rec), expected_journeys=3)


def test_timeline_by_hand() -> None:
    sc = parse_scenario(
        {
            "schema_version": 1,
            "name": "t",
            "sale": {"units": 10},
            "humans": {"count": 2},
            "bots": {"operators": 1, "units_per_order": 2},
            "service": {"cart_hold_s": 5},
        }
    )
    jr, rq = _timeline_case()
    tl = build_timeline(sc, jr, rq)
    assert tl["t"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # held at each interval's end: the human's hold until paid at 1.5, the yellow
    # cart's from 1.2 until its payment was declined at 2.1 (released, not held on)
    assert tl["reserved"].tolist() == [1, 1, 0, 0, 0]
    assert tl["sold_human"].tolist() == [0, 1, 0, 0, 0]
    assert tl["sold_bot"].tolist() == [2, 0, 0, 0, 0]
    assert tl["stock_left"].tolist() == [7, 6, 7, 7, 7]
    sold = np.cumsum(tl["sold_human"] + tl["sold_bot"])
    assert np.all(sold + tl["reserved"] + tl["stock_left"] == 10)
    assert tl["arrivals"].tolist() == [2, 1, 0, 0, 0]
    assert tl["in_flight"].tolist() == [0, 2, 1, 0, 0]
    assert tl["errors"].tolist() == [0, 0, 0, 1, 0]
    assert tl["queue"].tolist() == [0] * 5


def test_audit_cross_check_catches_a_wrong_count_and_oversell() -> None:
    jr, _ = _timeline_case()
    assert int(jr["units"].sum()) == 3 and math.isnan(jr["admitted"][0])
    ok = {"units_sold": 3, "oversold_units": 0, "source": "http://127.0.0.1:1/admin/audit"}
    assert cross_check(jr, ok) == []
    wrong = cross_check(jr, ok | {"units_sold": 4})
    assert wrong and "bought 3 units" in wrong[0] and "says 4 sold" in wrong[0]
    assert "oversold" in cross_check(jr, ok | {"oversold_units": 1})[0]
    assert RESULT[int(jr["result"][2])] == "cart_failed"


def test_a_hold_cut_by_the_account_limit_counts_what_it_held() -> None:
    """A bot orders 2, the limit allows 1: it holds 1 (not 2) until its payment is
    declined, so sold + held + left stays the sale's units (a new user's finding)."""
    sc = parse_scenario(
        {
            "schema_version": 1,
            "name": "t",
            "sale": {"units": 1},
            "humans": {"count": 0},
            "bots": {"operators": 1, "accounts_per_operator": 1, "units_per_order": 2},
            "defenses": {"account_limit": {"enabled": True, "max_units": 1}},
            "service": {"cart_hold_s": 30},
        }
    )
    rec = Recorder(T0)
    rec.journey(_buyer(0, BOT, 0.0), _log("cart_failed", 0.0, 1.1, 2.1, 0))
    for step, sent, status in (("cart", 0.5, 403), ("cart", 1.0, 201), ("pay", 2.0, 402)):
        rec.request(
            journey=0,
            account=0,
            step=step,
            intended=sent,
            sent_epoch=T0 + sent,
            latency_s=0.1,
            status=status,
        )
    jr, rq = merge_parts(_chunks(rec), expected_journeys=1)
    tl = build_timeline(sc, jr, rq)
    assert tl["reserved"].tolist() == [0, 1, 0, 0]
    sold = np.cumsum(tl["sold_human"] + tl["sold_bot"])
    assert np.all(sold + tl["reserved"] + tl["stock_left"] == 1)
