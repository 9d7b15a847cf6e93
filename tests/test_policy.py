"""The buyer policy: its decisions, its budget rule, and the README's table of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flashsale.arrivals import BOT, HUMAN
from flashsale.outcome import RESULT, STEP
from flashsale.policy import SPENDS, TABLE, Act, Answer, Pause, decide, journey_result, policy_rows

README = Path(__file__).resolve().parents[1] / "README.md"
CART, PAY, VIEW = STEP.index("cart"), STEP.index("pay"), STEP.index("view")


def test_readme_table_is_the_policy() -> None:
    text = README.read_text()
    block = text.split("<!-- policy-table")[1].split("<!-- /policy-table -->")[0]
    rows = [
        tuple(c.strip().strip("`") for c in line.strip("|").split("|"))
        for line in block.splitlines()
        if line.startswith("| `")
    ]
    assert rows == policy_rows()


def test_a_declined_payment_carts_again_until_the_budget_is_spent() -> None:
    d = decide(int(HUMAN), PAY, Answer.PAYMENT_DECLINED, retries_left=1, allowed=0)
    assert (d.act, d.pause) == (Act.CART_AGAIN, Pause.THINK)
    spent = decide(int(HUMAN), PAY, Answer.PAYMENT_DECLINED, retries_left=0, allowed=0)
    assert spent.act is Act.END
    # carted, then ended: the yellow cart
    assert RESULT[journey_result(spent.result, carted=True)] == "cart_failed"


def test_a_limit_that_allows_fewer_units_is_asked_for_those() -> None:
    assert decide(int(BOT), CART, Answer.LIMIT_REACHED, 3, allowed=1).act is Act.FEWER
    none_left = decide(int(BOT), CART, Answer.LIMIT_REACHED, 3, allowed=0)
    assert (none_left.act, RESULT[none_left.result]) == (Act.END, "rejected")


def test_waiting_for_the_opening_spends_no_retry() -> None:
    d = decide(int(HUMAN), VIEW, Answer.NOT_OPEN, retries_left=0, allowed=0)
    assert d.act is Act.WAIT and d.act not in SPENDS


def test_a_lost_cart_answer_is_never_sent_again_but_a_payment_is() -> None:
    assert decide(int(BOT), CART, Answer.AMBIGUOUS, 5, 0).act is Act.END
    assert decide(int(BOT), PAY, Answer.AMBIGUOUS, 5, 0).act is Act.RETRY


@pytest.mark.parametrize("kind", [int(HUMAN), int(BOT)])
def test_answers_a_step_cannot_give_end_in_error(kind: int) -> None:
    d = TABLE[kind][VIEW][Answer.PAYMENT_DECLINED]
    assert (d.act, RESULT[d.result]) == (Act.END, "error")


def test_every_row_names_a_known_step_answer_and_result() -> None:
    for step, answer, then, result in policy_rows():
        assert step in STEP and answer.upper() in Answer.__members__
        assert re.fullmatch(r"[a-z ]+", then) and (result == "-" or result in RESULT)
