"""A buyer's journey against a scripted in-memory checkout: the steps a user would see."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from flashsale.arrivals import BOT, HUMAN
from flashsale.replay.journey import Buyer, Halt, Journey, Reply, client_ip, solve_captcha
from flashsale.scenario import Scenario

from .conftest import scenario_with


def _scenario(**over: Any) -> Scenario:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "j",
        "sale": {"units": 10, "sku": "S"},
        "humans": {"count": 1, "think_s": 0.5, "refresh_s": 1.0, "retries_on_error": 2},
        "bots": {"operators": 1, "request_rate_per_s": 4.0, "max_retries": 3},
    }
    return scenario_with(data, **over)


class FakeShop:
    """The reference API's answers, without HTTP; responses take ``latency`` seconds."""

    def __init__(self, stock: int = 10, pay_fail: int = 0, latency: float = 0.0) -> None:
        self.t = 0.0
        self.stock = stock
        self.pay_fail = pay_fail
        self.latency = latency
        self.calls: list[tuple[str, str, float, float, dict[str, str]]] = []
        self.keys: list[str] = []
        self.end = math.inf

    def now(self) -> float:
        return self.t

    def wait_until(self, t: float) -> None:
        if t > self.end:
            raise Halt("timed_out", "window over")
        self.t = max(self.t, t)

    def call(
        self,
        step: str,
        method: str,
        path: str,
        intended: float,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        self.calls.append((step, path, intended, self.t, dict(headers or {})))
        self.t += self.latency
        is_open = self.t >= 0
        if step == "view":
            return Reply(
                200, {"open": is_open, "opens_in_s": max(0.0, -self.t), "stock_left": self.stock}
            )
        if step == "cart":
            if not is_open:
                return Reply(425, {"error": "not_open"}, -self.t)
            if self.stock < int((body or {})["units"]):
                return Reply(409, {"error": "sold_out"})
            self.stock -= int((body or {})["units"])
            return Reply(201, {"reservation_id": "r1", "units": (body or {})["units"]})
        if step == "pay":
            self.keys.append((headers or {})["Idempotency-Key"])
            if self.pay_fail > 0:
                self.pay_fail -= 1
                return Reply(402, {"error": "payment_failed"})
            return Reply(201, {"order_id": "o1", "units": 2 if "11." in str(headers) else 1})
        if step == "captcha" and path.endswith("captcha"):
            return Reply(201, {"challenge_id": "c1", "prompt": "What is 3 + 4?"})
        if step == "captcha":
            ok = (body or {}).get("answer") == "7"
            return Reply(200, {"captcha_token": "tok"}) if ok else Reply(403, {})
        raise AssertionError(step)


def _run(sc: Scenario, who: Buyer, shop: FakeShop, seed: int = 1) -> Any:
    shop.t = who.arrived
    return Journey(sc, who, shop, np.random.default_rng(seed), "k").run()


HUMAN_AT = Buyer(journey=0, kind=int(HUMAN), account=0, person=0, channel=0, arrived=2.0)
BOT_AT = Buyer(journey=1, kind=int(BOT), account=1, person=1, channel=0, arrived=-1.0)


def test_human_after_opening_views_carts_and_pays() -> None:
    shop = FakeShop()
    log = _run(_scenario(), HUMAN_AT, shop)
    assert log.result == "purchased" and log.units == 1
    assert [c[0] for c in shop.calls] == ["view", "cart", "pay"]
    # constant think time 0.5 s between a response and the next request
    assert [c[2] for c in shop.calls] == [2.0, 2.5, 3.0]
    assert log.carted == 2.5 and log.requests == 3 and shop.stock == 9


def test_early_human_refreshes_until_the_opening() -> None:
    shop = FakeShop()
    early = Buyer(journey=0, kind=int(HUMAN), account=0, person=0, channel=0, arrived=-3.5)
    log = _run(_scenario(), early, shop)
    views = [c for c in shop.calls if c[0] == "view"]
    # refresh every 1 s from -3.5: -3.5, -2.5, -1.5, -0.5, then at the opening (0.0)
    assert [v[2] for v in views] == [-3.5, -2.5, -1.5, -0.5, 0.0]
    assert log.result == "purchased"


def test_human_sees_sold_out() -> None:
    log = _run(_scenario(), HUMAN_AT, FakeShop(stock=0))
    assert log.result == "sold_out" and log.units == 0 and math.isnan(log.carted)


def test_payment_failures_end_in_the_yellow_cart_with_a_new_key_per_attempt() -> None:
    shop = FakeShop(pay_fail=10)
    log = _run(_scenario(), HUMAN_AT, shop)
    assert log.result == "cart_failed" and not math.isnan(log.carted)
    # retries_on_error = 2: one payment and two retries, each with its own key
    assert len(shop.keys) == 3 and len(set(shop.keys)) == 3


def test_payment_recovers_within_the_retries() -> None:
    shop = FakeShop(pay_fail=2)
    assert _run(_scenario(), HUMAN_AT, shop).result == "purchased"


def test_bot_keeps_its_cadence_before_the_opening() -> None:
    shop = FakeShop()
    log = _run(_scenario(), BOT_AT, shop)
    carts = [c for c in shop.calls if c[0] == "cart"]
    # 4 requests/s from -1.0: refused (425) at -1, -0.75, -0.5, -0.25, served at 0
    assert [c[2] for c in carts] == [-1.0, -0.75, -0.5, -0.25, 0.0]
    assert log.result == "purchased" and log.units == 2
    assert all(c[4]["X-Forwarded-For"] == client_ip(int(BOT), 1) for c in shop.calls)


def test_slow_responses_make_bot_requests_late_not_rescheduled() -> None:
    # each response takes 1 s; the bot's intended times stay on its 0.25 s cadence,
    # so the gap between intended and sent grows (what coordinated omission hides)
    shop = FakeShop(pay_fail=100, latency=1.0)
    bot = Buyer(journey=1, kind=int(BOT), account=1, person=1, channel=0, arrived=1.0)
    log = _run(_scenario(), bot, shop)
    pays = [c for c in shop.calls if c[0] == "pay"]
    assert [c[2] for c in pays] == [1.25, 1.5, 1.75, 2.0]  # max_retries = 3
    assert [c[3] for c in pays] == [2.0, 3.0, 4.0, 5.0]
    assert log.result == "cart_failed"


def test_captcha_is_solved_by_a_human_who_passes() -> None:
    sc = _scenario(defenses__captcha__enabled=True, humans__captcha_pass_prob=1.0)
    shop = FakeShop()
    log = _run(sc, HUMAN_AT, shop)
    assert log.result == "purchased" and not math.isnan(log.admitted)


def test_captcha_failure_rejects() -> None:
    sc = _scenario(defenses__captcha__enabled=True, humans__captcha_pass_prob=0.0)
    log = _run(sc, HUMAN_AT, FakeShop())
    assert log.result == "rejected" and log.units == 0


def test_replay_window_end_cuts_the_journey() -> None:
    shop = FakeShop(pay_fail=100)
    shop.end = 3.2
    log = _run(_scenario(), HUMAN_AT, shop)
    assert log.result == "timed_out" and log.finished == pytest.approx(shop.t)


def test_captcha_prompt_arithmetic() -> None:
    assert solve_captcha("What is 12 + 30?") == "42"
    assert solve_captcha("7 - 9") == "-2"
    assert solve_captcha("no numbers") == ""
