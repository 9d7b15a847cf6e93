"""A buyer's journey against the real reference service (in process): the steps and
timings a user would see. What follows each answer is checked row by row in
tests/test_replay_contract.py; here, the timing and the identities."""

from __future__ import annotations

from typing import Any

import pytest

from flashsale.arrivals import BOT, HUMAN
from flashsale.replay.journey import client_ip, solve_captcha
from flashsale.scenario import Scenario

from ._inprocess import play
from .test_replay_contract import sale


def _scenario(**sections: Any) -> Scenario:
    base: dict[str, Any] = {
        "humans": {"think_s": 0.5, "refresh_s": 1.0, "retries_on_error": 2},
        "bots": {"request_rate_per_s": 4.0, "max_retries": 3, "units_per_order": 2},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return sale(**base)


def test_human_after_opening_views_carts_and_pays(db: str) -> None:
    results, sent, books = play(db, _scenario(), [(int(HUMAN), 2.0)])
    assert results == ["purchased"] and books["units_sold"] == 1
    assert [s.step for s in sent] == ["view", "cart", "pay"]
    # constant think time 0.5 s between a response and the next request
    assert [s.intended for s in sent] == [2.0, 2.5, 3.0]
    assert sent[0].headers["X-Forwarded-For"] == client_ip(int(HUMAN), 0)


def test_early_human_refreshes_until_the_opening(db: str) -> None:
    results, sent, _ = play(db, _scenario(), [(int(HUMAN), -3.5)])
    views = [s.intended for s in sent if s.step == "view"]
    # refresh every 1 s from -3.5: not open at -3.5 .. -0.5, open at 0.5
    assert views == [-3.5, -2.5, -1.5, -0.5, 0.5]
    assert results == ["purchased"]


def test_payment_failures_end_in_the_yellow_cart_with_a_new_key_per_attempt(db: str) -> None:
    sc = _scenario(service={"payment": {"failure_prob": 1.0}})
    results, sent, books = play(db, sc, [(int(HUMAN), 2.0)])
    assert results == ["cart_failed"]
    # retries_on_error = 2, one budget for the journey: cart, pay (declined), cart
    # again, pay (declined), cart again, pay (declined): the budget is spent
    assert [s.step for s in sent] == ["view", "cart", "pay", "cart", "pay", "cart", "pay"]
    keys = [s.headers["Idempotency-Key"] for s in sent if s.step == "pay"]
    assert len(set(keys)) == 3
    # each declined payment released its hold: nothing sold, nothing held
    assert books["units_sold"] == 0 and books["units_reserved"] == 0


def test_bot_keeps_its_cadence_before_the_opening(db: str) -> None:
    results, sent, _ = play(db, _scenario(), [(int(BOT), -1.0)])
    carts = [s.intended for s in sent if s.step == "cart"]
    # 4 requests/s from -1.0: refused (425) at -1, -0.75, -0.5, -0.25, served at 0
    assert carts == [-1.0, -0.75, -0.5, -0.25, 0.0]
    assert results == ["purchased"]
    assert sum(s.reply.body.get("units", 0) for s in sent if s.step == "pay") == 2


@pytest.mark.parametrize(("passes", "result"), [(1.0, "purchased"), (0.0, "rejected")])
def test_captcha_is_solved_by_a_human_who_passes(db: str, passes: float, result: str) -> None:
    sc = _scenario(defenses={"captcha": {"enabled": True}}, humans={"captcha_pass_prob": passes})
    results, sent, _ = play(db, sc, [(int(HUMAN), 2.0)])
    assert results == [result]
    assert sent[1].step == "captcha"


def test_captcha_prompt_arithmetic() -> None:
    assert solve_captcha("What is 12 + 30?") == "42"
    assert solve_captcha("7 - 9") == "-2"
    assert solve_captcha("no numbers") == ""


def test_patience_is_sent_to_the_checkout_not_to_the_waiting_room(db: str) -> None:
    """A human's patience bounds waits for the checkout's workers (X-Patience-S); the
    waiting room, which takes no worker, gets none, as in the simulation."""
    sc = _scenario(
        humans={"patience_s": {"dist": "exponential", "mean": 20.0}},
        defenses={"waiting_room": {"enabled": True, "new_users_per_min": 600}},
    )
    results, sent, _ = play(db, sc, [(int(HUMAN), 2.0)])
    assert results == ["purchased"]
    room = [s for s in sent if s.step == "waiting_room"]
    checkout = [s for s in sent if s.step != "waiting_room"]
    assert room and all("X-Patience-S" not in s.headers for s in room)
    assert checkout and all(float(s.headers["X-Patience-S"]) >= 0 for s in checkout)
