"""Contract tests: the replay's journey against the real reference service follows the
buyer policy's table, row by row, and the service's books agree.

For each row the reference service can give in process (one journey at a time,
on a stepped clock), a small sale is set up to produce it; the journey's
requests are then read back and every answer's follow-up is checked against
:func:`flashsale.policy.decide`: the next request (same step, the cart again,
fewer units, a new challenge, the next step) or the end with the table's result.
The rows that need concurrency or a lost connection (a full queue, a queue
timeout, patience) are the transport's: tests/test_service_load.py and
tests/test_locust_replay.py drive those over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flashsale.arrivals import BOT, HUMAN
from flashsale.outcome import RESULT, STEP
from flashsale.policy import SPENDS, Act, Answer, decide
from flashsale.protocol import Reply
from flashsale.scenario import Scenario, parse_scenario

from ._inprocess import Sent, meaning, play


def sale(**sections: Any) -> Scenario:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "contract",
        "seed": 3,
        "sale": {"sku": "SKU-T", "units": 10, "window_s": 600},
        "humans": {"count": 10, "think_s": 1.0, "refresh_s": 1.0, "retries_on_error": 2},
        "bots": {"operators": 1, "accounts_per_operator": 2, "max_retries": 3},
        "service": {"workers": 4, "queue_limit": 50, "cart_hold_s": 60},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_scenario(data)


def decisions(sent: list[Sent]) -> list[tuple[int, str, Answer, int]]:
    """(index in ``sent``, policy step, answer, kind-less) for each exchange the policy
    decides on: a CAPTCHA answer refused stands for the cart it would have gone with;
    waiting-room visits and lottery polls that say "not yet" are not decisions."""
    out = []
    for i, s in enumerate(sent):
        if s.step == "waiting_room":
            continue
        if s.step == "captcha" and s.path.count("/") > 2:  # the answer to a challenge
            if s.reply.status != 200:
                out.append((i, "cart", Answer.CAPTCHA_FAILED, s.journey))
            continue
        if s.step == "lottery" and s.method == "GET":
            if s.reply.status == 200 and s.reply.body.get("drawn"):
                won = s.reply.body.get("won")
                out.append((i, "lottery", Answer.OK if won else Answer.REJECTED, s.journey))
            continue
        answer = meaning(s.step, s.reply)
        assert answer is not None, f"the reference map does not know {s}"
        if s.step == "lottery" and answer is Answer.OK:
            continue  # entered: the decision comes with the draw
        out.append((i, s.step, answer, s.journey))
    return out


def check_follows_policy(
    sc: Scenario, kind: int, sent: list[Sent], result: str
) -> set[tuple[str, Answer]]:
    """Assert that every decision of one journey was followed as the table says;
    return the rows (step, answer) it exercised."""
    retries = sc.humans.retries_on_error if kind == HUMAN else sc.bots.max_retries
    allowed = 0
    rows = set()
    points = decisions(sent)
    carted = False
    for n, (i, step, answer, _) in enumerate(points):
        rows.add((step, answer))
        if step == "cart" and answer is Answer.LIMIT_REACHED:
            allowed = int(sent[i].reply.body.get("allowed_units") or 0)
        if step == "cart" and answer is Answer.OK:
            carted = True
        d = decide(kind, STEP.index(step), answer, retries, allowed)
        if d.act in SPENDS:
            retries -= 1
        after = sent[i + 1 :]
        why = f"after {step}/{answer.name} ({sent[i].reply.status}): {[s.step for s in after]}"
        if d.act is Act.END:
            assert n == len(points) - 1 and not [s for s in after if s.step != "lottery"], why
            want = RESULT[d.result]
            assert result == ("cart_failed" if carted and want != "purchased" else want), why
            continue
        nxt = after[0]
        if d.act in (Act.WAIT, Act.RETRY):
            assert (nxt.step, nxt.method) == (sent[i].step, sent[i].method), why
        elif d.act is Act.FEWER:
            assert nxt.step == "cart" and nxt.body is not None, why
            assert nxt.body["units"] == allowed, why
        elif d.act is Act.CHALLENGE:
            assert (nxt.step, nxt.path) == ("captcha", sc.target.steps["captcha"].path), why
        elif d.act is Act.CART_AGAIN:
            first = "captcha" if sc.defenses.captcha.enabled else "cart"
            assert nxt.step == first, why
        else:  # NEXT
            want_next = {"cart": "pay", "captcha": "captcha", "view": None, "lottery": None}[step]
            if want_next is None:  # the step that leads to the cart
                d_ = sc.defenses
                want_next = (
                    "lottery"
                    if d_.lottery.enabled and step == "view"
                    else "captcha"
                    if d_.captcha.enabled
                    else "cart"
                )
            assert nxt.step == want_next, why
    return rows


HUMAN_AT_1 = [(int(HUMAN), 1.0)]
BOT_AT_1 = [(int(BOT), 1.0)]

CASES: dict[str, tuple[dict[str, Any], list[tuple[int, float]], tuple[str, Answer], str]] = {
    # name: (scenario sections, buyers, the row it must exercise, the journey's result)
    "a human buys": ({}, HUMAN_AT_1, ("pay", Answer.OK), "purchased"),
    "early: not open, wait": ({}, [(int(HUMAN), -3.0)], ("view", Answer.NOT_OPEN), "purchased"),
    "a bot early at the cart": ({}, [(int(BOT), -2.0)], ("cart", Answer.NOT_OPEN), "purchased"),
    "sold out at the cart": (
        {"sale": {"units": 2}, "bots": {"units_per_order": 2}},
        [(int(BOT), 1.0), (int(BOT), 1.1)],
        ("cart", Answer.SOLD_OUT),
        "sold_out",
    ),
    "sold out on the page": (
        {"sale": {"units": 2}, "bots": {"units_per_order": 2}},
        [(int(BOT), 0.5), (int(HUMAN), 30.0)],
        ("view", Answer.SOLD_OUT),
        "sold_out",
    ),
    "declined payments: cart again, then the yellow cart": (
        {"service": {"payment": {"failure_prob": 1.0}}},
        HUMAN_AT_1,
        ("pay", Answer.PAYMENT_DECLINED),
        "cart_failed",
    ),
    "a declined payment, then paid": (
        {"service": {"payment": {"failure_prob": 0.5}}},
        [(int(BOT), 1.0 + k) for k in range(6)],
        ("pay", Answer.PAYMENT_DECLINED),
        "",
    ),
    "hold expired while thinking: cart again": (
        {"service": {"cart_hold_s": 0.5}, "humans": {"think_s": 2.0}},
        HUMAN_AT_1,
        ("pay", Answer.HOLD_EXPIRED),
        "cart_failed",
    ),
    "account limit: ask for fewer": (
        {
            "defenses": {"account_limit": {"enabled": True, "max_units": 1}},
            "bots": {"units_per_order": 2},
        },
        BOT_AT_1,
        ("cart", Answer.LIMIT_REACHED),
        "purchased",
    ),
    "rate limited: retry": (
        {
            "defenses": {
                "rate_limit": {
                    "enabled": True,
                    "per_account_per_s": 0.5,
                    "per_operator_per_s": 0.5,
                    "burst": 1,
                }
            },
            "bots": {"request_rate_per_s": 10.0, "max_retries": 50},
        },
        BOT_AT_1,
        ("pay", Answer.RATE_LIMITED),
        "purchased",
    ),
    "a wrong CAPTCHA answer: a new challenge, until the budget is spent": (
        {"defenses": {"captcha": {"enabled": True}}, "bots": {"captcha_solve_prob": 0.0}},
        BOT_AT_1,
        ("cart", Answer.CAPTCHA_FAILED),
        "rejected",
    ),
    "CAPTCHA passed: challenge, cart, pay": (
        {"defenses": {"captcha": {"enabled": True}}, "humans": {"captcha_pass_prob": 1.0}},
        HUMAN_AT_1,
        ("captcha", Answer.OK),
        "purchased",
    ),
    "a CAPTCHA answer is good for one hold": (
        {
            "defenses": {"captcha": {"enabled": True}},
            "humans": {"captcha_pass_prob": 1.0},
            "service": {"payment": {"failure_prob": 1.0}},
        },
        HUMAN_AT_1,
        ("pay", Answer.PAYMENT_DECLINED),
        "cart_failed",
    ),
    "lottery: winners buy, losers are rejected": (
        {"defenses": {"lottery": {"enabled": True, "winners": 1, "entry_window_s": 20}}},
        [(int(HUMAN), 1.0), (int(HUMAN), 2.0)],
        ("lottery", Answer.REJECTED),
        "",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_replay_journey_follows_the_policy_against_the_service(db: str, name: str) -> None:
    sections, buyers, row, result = CASES[name]
    sc = sale(**sections)
    results, sent, books = play(db, sc, buyers)
    rows: set[tuple[str, Answer]] = set()
    for j, (kind, _) in enumerate(buyers):
        rows |= check_follows_policy(sc, kind, [s for s in sent if s.journey == j], results[j])
    assert row in rows, f"{name}: {row} never happened; saw {sorted(rows)}"
    if result:
        assert results[-1] == result
    # the service's books agree with what the journeys saw
    bought = sum(
        int(s.reply.body.get("units", 0)) for s in sent if s.step == "pay" and s.reply.status == 201
    )
    assert books["units_sold"] == bought
    assert results.count("purchased") == sum(
        1 for s in sent if s.step == "pay" and s.reply.status == 201
    )


def test_a_lost_payment_answer_is_asked_again_with_the_same_key(db: str) -> None:
    """AMBIGUOUS at pay: the service took the payment but the answer was lost; paying
    again with the same Idempotency-Key returns the order, and one unit is sold."""
    sc = sale()
    # a bot sends cart (request 0), then pay (request 1): lose the pay's answer
    results, sent, books = play(db, sc, BOT_AT_1, lose={0: frozenset({1})})
    pays = [s for s in sent if s.step == "pay"]
    assert results == ["purchased"]
    assert len(pays) == 2 and pays[0].reply.status == 0
    assert books["units_sold"] == 1
    check_follows_policy(sc, int(BOT), sent, results[0])


def test_a_lost_cart_answer_is_never_sent_again(db: str) -> None:
    """AMBIGUOUS at cart: it may hold stock, so the journey ends ``timed_out`` and the
    service's books show the hold it took."""
    sc = sale()
    results, sent, books = play(db, sc, BOT_AT_1, lose={0: frozenset({0})})
    assert results == ["timed_out"]
    assert [s.step for s in sent] == ["cart"]
    assert books["units_reserved"] == 1


def test_the_reference_map_reads_both_kinds_of_503() -> None:
    """A full queue and a queue timeout are both 503 on the wire; the body's ``reason``
    tells them apart (tests/test_service_load.py checks the service sends it)."""
    for reason, want in (
        ("queue_full", Answer.OVERLOADED),
        ("queue_timeout", Answer.QUEUE_TIMEOUT),
    ):
        body = {"error": "overloaded", "reason": reason}
        assert meaning("cart", Reply(503, body, json.dumps(body))) is want
