"""The simulator follows the buyer policy's table (flashsale.policy), as the replay does.

Every request the simulated shop answers is recorded with its meaning (a wrapper
around ``Shop.send`` that changes nothing), then each journey's next request, or
its end and result, is checked against :func:`flashsale.policy.decide` on small
sales that produce every row the simulated checkout can give.
"""

from __future__ import annotations

from typing import Any

import pytest

from flashsale.outcome import RESULT, STEP
from flashsale.policy import SPENDS, Act, Answer, decide, journey_result
from flashsale.scenario import Scenario
from flashsale.sim import shop as shop_module
from flashsale.sim.engine import simulate

from .conftest import scenario_with

SMOKE_LIKE: dict[str, Any] = {
    "schema_version": 1,
    "name": "policy",
    "seed": 5,
    "sale": {"sku": "S", "units": 40, "window_s": 120},
    "humans": {
        "count": 150,
        "think_s": {"dist": "exponential", "mean": 1.0},
        "patience_s": {"dist": "exponential", "mean": 2.0},
        "retries_on_error": 2,
        "arrivals": {"profile": "burst", "early_share": 0.2, "early_window_s": 5, "decay_s": 5},
    },
    "bots": {"operators": 2, "accounts_per_operator": 5, "units_per_order": 2, "max_retries": 8},
    "service": {
        "workers": 1,
        "queue_limit": 20,
        "queue_timeout_s": 1.5,
        "cart_hold_s": 3,
        "step_s": {"view": 0.01, "cart": 0.05, "pay": 0.1},
        "payment": {"failure_prob": 0.3},
    },
}

VARIANTS = {
    "declines, a small queue, impatience": {},
    "account limit": {
        "defenses__account_limit__enabled": True,
        "defenses__account_limit__max_units": 1,
    },
    "captcha": {"defenses__captcha__enabled": True},
    "rate limit": {
        "defenses__rate_limit__enabled": True,
        "defenses__rate_limit__per_account_per_s": 0.5,
        "defenses__rate_limit__per_operator_per_s": 1.0,
    },
    "lottery": {"defenses__lottery__enabled": True, "defenses__lottery__entry_window_s": 10},
}


def trace(sc: Scenario, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[Any, ...]], Any]:
    seen: list[tuple[Any, ...]] = []
    send = shop_module.Shop.send

    def recording(self: Any, j: Any, step: int, now: float, patience: float) -> Any:
        before = (j.retries, j.units)
        answer, end = send(self, j, step, now, patience)
        seen.append((j.id, j.kind, step, Answer(answer), before, j.allowed))
        return answer, end

    monkeypatch.setattr(shop_module.Shop, "send", recording)
    return seen, simulate(sc).outcome


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_simulated_journeys_follow_the_policy(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = scenario_with(dict(SMOKE_LIKE), **VARIANTS[variant])
    seen, outcome = trace(sc, monkeypatch)
    journeys = outcome.journeys
    by_journey: dict[int, list[tuple[Any, ...]]] = {}
    for row in seen:
        by_journey.setdefault(row[0], []).append(row)
    rows = set()
    for jid, reqs in by_journey.items():
        for n, (_, kind, step, answer, (retries, _units), allowed) in enumerate(reqs):
            rows.add((STEP[step], answer))
            d = decide(kind, step, answer, retries, allowed)
            nxt = reqs[n + 1] if n + 1 < len(reqs) else None
            why = f"journey {jid}: {STEP[step]}/{answer.name} then {nxt and STEP[nxt[2]]}"
            if d.act is Act.END:
                assert nxt is None, why
                carted = journeys["carted"][jid] == journeys["carted"][jid]
                got = RESULT[journeys["result"][jid]]
                assert got == RESULT[journey_result(d.result, bool(carted))], why
                continue
            if d.act is Act.NEXT and STEP[step] == "lottery":
                assert nxt is None or STEP[nxt[2]] in ("captcha", "cart"), why
                continue
            assert nxt is not None, why
            if d.act in SPENDS:
                assert nxt[4][0] == retries - 1, why
            if d.act in (Act.WAIT, Act.RETRY):
                assert nxt[2] == step, why
            elif d.act is Act.FEWER:
                assert (nxt[2], nxt[4][1]) == (step, allowed), why
            elif d.act in (Act.CART_AGAIN, Act.CHALLENGE):
                want = "captcha" if sc.defenses.captcha.enabled else "cart"
                assert STEP[nxt[2]] == want, why
            else:
                assert (
                    STEP[nxt[2]]
                    in {
                        "view": ("lottery", "captcha", "cart"),
                        "captcha": ("cart",),
                        "cart": ("pay",),
                    }[STEP[step]]
                ), why
    assert ("pay", Answer.OK) in rows and ("cart", Answer.OK) in rows
    wanted = {
        "declines, a small queue, impatience": [
            ("pay", Answer.PAYMENT_DECLINED),
            ("view", Answer.NOT_OPEN),
            ("cart", Answer.SOLD_OUT),
        ],
        "account limit": [("cart", Answer.LIMIT_REACHED)],
        "captcha": [("cart", Answer.CAPTCHA_FAILED), ("captcha", Answer.OK)],
        "rate limit": [("cart", Answer.RATE_LIMITED)],
        "lottery": [("lottery", Answer.OK)],
    }[variant]
    for row in wanted:
        assert row in rows, f"{variant}: {row} never happened; saw {sorted(rows)}"
