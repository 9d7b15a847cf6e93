"""Waiting room, lottery and post-hoc review of the service, on SQLite and PostgreSQL.

Time is an injected clock the test steps (Runtime(clock=...)), so admission
rates are counted exactly, never timed. Expected numbers come from the
scenario's rates (hand-computed admission counts) and, for which account the
randomness picks, from the scenario's named random streams fed to the shared
rules directly, i.e. what the simulator would draw.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flashsale.arrivals import BOT, HUMAN
from flashsale.defenses.lottery import draw
from flashsale.defenses.review import Review
from flashsale.replay.journey import Buyer, Journey
from flashsale.scenario import Scenario
from flashsale.service.admission import RoomDesk
from flashsale.service.app import create_app
from flashsale.service.backends import open_store
from flashsale.service.runtime import Runtime
from flashsale.streams import Streams

from ._inprocess import T0, Clock, Conductor, StepClient
from .test_service import ADMIN, TOKEN, audit, cart, pay, scenario

SEED = 3  # scenario()'s seed


def client(db: str, sc: Scenario, clock: Clock, opens_in_s: float = 0.0) -> TestClient:
    """The service with its sale opening at ``T0 + opens_in_s``."""
    clock.now = T0
    rt = Runtime(
        open_store(db, pool_size=4), sc, TOKEN, fresh=True, opens_in_s=opens_in_s, clock=clock
    )
    return TestClient(create_app(rt))


def room(**cfg: Any) -> Scenario:
    return scenario(defenses={"waiting_room": {"enabled": True, **cfg}})


def join(c: TestClient, account: int) -> dict[str, Any]:
    r = c.post("/v1/waiting-room", json={"account": account})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def room_desk(c: TestClient) -> RoomDesk:
    desk: RoomDesk = cast(Starlette, c.app).state.runtime.guards.room
    return desk


def poll(c: TestClient, ticket: str) -> dict[str, Any]:
    r = c.get(f"/v1/waiting-room/{ticket}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ------------------------------------------------------------------ waiting room


def test_room_admits_at_the_configured_rate(db: str) -> None:
    clock = Clock()
    with client(db, room(new_users_per_min=60, max_active=1000, session_s=600), clock) as c:
        clock.now = T0 + 0.5
        tickets = [join(c, a)["ticket"] for a in range(10)]
        step = 0.25
        for k in range(int(6.0 / step) + 1):
            t = 0.5 + k * step
            clock.now = T0 + t
            admitted = sum(poll(c, tk)["admitted"] for tk in tickets)
            # one admission per 60/60 = 1 s, the first at the join (t = 0.5)
            assert admitted == min(10, math.floor(t - 0.5 + 1e-9) + 1), t
        waiting = poll(c, tickets[-1])
        assert not waiting["admitted"] and waiting["waiting"] == 3
        assert 0.5 <= waiting["retry_after_s"] <= 5.0


def test_cart_needs_the_accounts_own_admission_token(db: str) -> None:
    clock = Clock()
    with client(db, room(new_users_per_min=6000), clock) as c:
        clock.now = T0 + 1
        first, second = join(c, 1), join(c, 2)
        assert first["admitted"]
        clock.now += 1
        token = poll(c, second["ticket"])["admission_token"]
        r = cart(c, 1)
        assert r.status_code == 403 and r.json()["error"] == "not_admitted"
        assert cart(c, 1, admission_token=token).status_code == 403  # account 2's token
        r = cart(c, 1, admission_token=first["admission_token"])
        assert r.status_code == 201, r.text
        assert pay(c, r.json()["reservation_id"], 1, "k1").status_code == 201
        # the same account joining again keeps one ticket while waiting or in session
        assert join(c, 2)["ticket"] == second["ticket"]
        assert c.get("/v1/waiting-room/nope").status_code == 404
        a = audit(c)
        assert (a["units_sold"], a["stock_left"]) == (1, 9)


def test_prequeue_is_shuffled_at_the_opening(db: str) -> None:
    clock = Clock()
    n = 20
    with client(db, room(new_users_per_min=60), clock, opens_in_s=100) as c:
        clock.now = T0 + 50  # t = -50: the pre-queue
        tickets = []
        for a in range(n):
            j = join(c, a)
            assert not j["admitted"] and j["opens_in_s"] == 50
            tickets.append(j["ticket"])
        assert cart(c, 0).status_code == 425
        order: list[int] = []
        for k in range(n):
            clock.now = T0 + 100 + k  # t = k: one admission a second from the opening
            order += [a for a in range(n) if a not in order and poll(c, tickets[a])["admitted"]]
            assert len(order) == k + 1
    expected = Streams.for_replication(SEED, 0)["defense.waiting_room"].permutation(n)
    assert order == expected.tolist()
    assert order != sorted(order)  # arriving first bought nothing


def test_active_cap_frees_a_slot_when_a_buyer_pays(db: str) -> None:
    clock = Clock()
    with client(db, room(new_users_per_min=6000, max_active=2, session_s=30), clock) as c:
        clock.now = T0 + 1
        tickets = [join(c, a)["ticket"] for a in range(3)]
        clock.now += 1
        states = [poll(c, tk) for tk in tickets]
        assert [s["admitted"] for s in states] == [True, True, False]
        r = cart(c, 0, admission_token=states[0]["admission_token"])
        assert pay(c, r.json()["reservation_id"], 0, "k0").status_code == 201
        clock.now += 0.1
        assert poll(c, tickets[2])["admitted"]
        # a session is over after session_s: its token no longer carts
        clock.now += 30
        r = cart(c, 1, admission_token=states[1]["admission_token"])
        assert r.status_code == 403 and "over" in r.json()["detail"]
        audit(c)


def test_a_rejoining_account_keeps_its_slot_for_its_whole_second_session(db: str) -> None:
    """V admitted at 0 pays at 1, joins again and is admitted at 2 (one admission per
    2 s); W joins at 3. V's first session ended with its payment, so its would-be end
    at 100 frees nothing: V is in session until 102, and W is admitted then."""
    clock = Clock()
    sc = room(new_users_per_min=30, max_active=1, session_s=100)
    with client(db, sc, clock) as c:
        first = join(c, 1)  # t = 0
        assert first["admitted"]
        clock.now = T0 + 0.5
        r = cart(c, 1, admission_token=first["admission_token"])
        assert r.status_code == 201, r.text
        clock.now = T0 + 1
        assert pay(c, r.json()["reservation_id"], 1, "v1").status_code == 201
        again = join(c, 1)
        assert not again["admitted"] and again["ticket"] != first["ticket"]
        clock.now = T0 + 2
        v = poll(c, again["ticket"])
        assert v["admitted"] and v["session_ends_in_s"] == 100
        clock.now = T0 + 3
        w_ticket = join(c, 2)["ticket"]
        for k in range(3 * 4, 104 * 4 + 1):  # every 0.25 s from 3 to 104
            t = k / 4
            clock.now = T0 + t
            v, w = poll(c, again["ticket"]), poll(c, w_ticket)
            in_session = [s["admitted"] and s["session_ends_in_s"] > 0 for s in (v, w)]
            assert sum(in_session) <= 1, (t, v, w)  # max_active = 1
            assert in_session == [t < 102, t >= 102], (t, v, w)
            if t in (101.75, 102.0):  # V's token carts until its session ends at 102
                late = cart(c, 1, admission_token=v["admission_token"])
                assert late.status_code == (201 if t < 102 else 403), (t, late.text)
        assert cart(c, 2, admission_token=w["admission_token"]).status_code == 201
        desk = room_desk(c)
        assert desk.admissions == [(1, 0.0), (1, 2.0), (2, 102.0)]
        audit(c)


def test_paying_for_an_earlier_sessions_cart_leaves_the_current_session(db: str) -> None:
    """V carts in its first session, which times out at 10 unpaid; V joins again and
    is admitted at 11, then pays the first session's reservation at 13 (its hold
    lasts 60 s). That payment ends nothing: V's second session runs to 21, when W,
    waiting since 12, is admitted."""
    clock = Clock()
    sc = room(new_users_per_min=30, max_active=1, session_s=10)
    with client(db, sc, clock) as c:
        first = join(c, 1)  # t = 0
        clock.now = T0 + 1
        r = cart(c, 1, admission_token=first["admission_token"])
        assert r.status_code == 201, r.text
        clock.now = T0 + 11
        second = join(c, 1)
        assert second["admitted"] and second["admission_token"] != first["admission_token"]
        clock.now = T0 + 12
        w_ticket = join(c, 2)["ticket"]
        clock.now = T0 + 13
        assert pay(c, r.json()["reservation_id"], 1, "v1").status_code == 201
        assert not poll(c, w_ticket)["admitted"]
        assert cart(c, 1, admission_token=second["admission_token"]).status_code == 201
        clock.now = T0 + 20.9
        assert not poll(c, w_ticket)["admitted"]
        clock.now = T0 + 21
        assert poll(c, w_ticket)["admitted"]
        desk = room_desk(c)
        assert desk.admissions == [(1, 0.0), (1, 11.0), (2, 21.0)]
        audit(c)


def test_room_off_and_bad_input(db: str) -> None:
    clock = Clock()
    with client(db, scenario(), clock) as c:
        assert c.post("/v1/waiting-room", json={"account": 1}).status_code == 409
        assert c.post("/v1/lottery", json={"account": 1}).status_code == 409
    with client(db, room(), clock) as c:
        assert c.post("/v1/waiting-room", json={"account": -1}).status_code == 422
        assert c.post("/v1/waiting-room", content=b"{").status_code == 400


# ----------------------------------------------------------------------- lottery


def lottery_sale(winners: int) -> Scenario:
    return scenario(
        sale={"window_s": 30},
        defenses={
            "lottery": {
                "enabled": True,
                "winners": winners,
                "entry_window_s": 60,
                "claim_window_s": 60,
            }
        },
    )


def test_lottery_draws_exactly_the_winners_and_only_they_buy(db: str) -> None:
    clock = Clock()
    with client(db, lottery_sale(3), clock, opens_in_s=10) as c:
        clock.now = T0 + 5  # before the opening
        assert c.post("/v1/lottery", json={"account": 0}).status_code == 425
        clock.now = T0 + 15  # t = 5
        for a in range(10):
            r = c.post("/v1/lottery", json={"account": a})
            assert r.status_code == 201 and r.json()["draw_in_s"] == 55
        again = c.post("/v1/lottery", json={"account": 4})
        assert again.status_code == 409 and again.json()["draw_in_s"] == 55
        assert c.get("/v1/lottery/4").json() == {
            "account": 4,
            "entered": True,
            "drawn": False,
            "won": False,
            "draw_in_s": 55,
        }
        assert cart(c, 4).status_code == 425  # nobody buys before the draw
        clock.now = T0 + 10 + 60  # the entry window is over
        results = [c.get(f"/v1/lottery/{a}").json() for a in range(10)]
        won = [r["account"] for r in results if r["won"]]
        assert all(r["drawn"] for r in results) and len(won) == 3
        rng = Streams.for_replication(SEED, 0)["defense.lottery"]
        assert won == draw(list(range(10)), 3, rng).tolist()
        assert c.post("/v1/lottery", json={"account": 11}).status_code == 410
        assert c.get("/v1/sale").json()["open"]  # claim window outlasts the 30 s sale window
        loser = next(a for a in range(10) if a not in won)
        r = cart(c, loser)
        assert r.status_code == 403 and r.json()["error"] == "not_admitted"
        for a in won:
            r = cart(c, a)
            assert r.status_code == 201, r.text
            assert pay(c, r.json()["reservation_id"], a, f"k{a}").status_code == 201
        clock.now = T0 + 10 + 120  # the claim window is over
        assert cart(c, won[0]).status_code == 409
        a = audit(c)
        assert a["units_sold"] == 3 and {o["account"] for o in a["order_rows"]} == set(won)


def test_lottery_with_fewer_entrants_than_winners_all_win(db: str) -> None:
    clock = Clock()
    with client(db, lottery_sale(5), clock) as c:
        clock.now = T0 + 1
        for a in (7, 8):
            assert c.post("/v1/lottery", json={"account": a}).status_code == 201
        clock.now = T0 + 61
        assert [c.get(f"/v1/lottery/{a}").json()["won"] for a in (7, 8, 9)] == [True, True, False]
        assert not c.get("/v1/lottery/9").json()["entered"]
        assert c.get("/v1/lottery/x").status_code == 404


# ------------------------------------------------------------------------ review


def review_sale(detect: float, false_pos: float, max_units: int = 5) -> Scenario:
    return scenario(
        defenses={
            "review": {
                "enabled": True,
                "bot_detection_prob": detect,
                "human_false_positive_prob": false_pos,
            },
            "account_limit": {"enabled": True, "max_units": max_units},
        }
    )


def buy(c: TestClient, account: int, units: int = 1) -> int:
    r = cart(c, account, units)
    assert r.status_code == 201, r.text
    p = pay(c, r.json()["reservation_id"], account, f"buy-{account}-{r.json()['reservation_id']}")
    assert p.status_code == 201, p.text
    order_id: int = p.json()["order_id"]
    return order_id


def test_review_cancels_flagged_orders_and_restores_the_stock(db: str) -> None:
    clock = Clock()
    with client(db, review_sale(1.0, 0.0, max_units=1), clock) as c:
        orders = {a: buy(c, a) for a in range(6)}
        assert cart(c, 0).status_code == 403  # at the account limit
        r = c.post("/admin/review", json={"bot_accounts": [0, 1, 2]}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "reviewed_orders": 6,
            "bot_orders": 3,
            "cancelled_orders": 3,
            "cancelled_units": 3,
            "flagged_bot_orders": 3,
            "flagged_human_orders": 0,
            "stock_left": 7,
        }
        for a, oid in orders.items():
            status = c.get(f"/v1/orders/{oid}?account={a}").json()["status"]
            assert status == ("cancelled" if a < 3 else "paid")
        a = audit(c)
        assert (a["units_sold"], a["cancelled_units"], a["stock_left"], a["orders"]) == (3, 3, 7, 3)
        assert cart(c, 0).status_code == 201  # its units came back to it and to the stock
        audit(c)


def test_review_draws_from_the_review_stream(db: str) -> None:
    clock = Clock()
    with client(db, review_sale(0.5, 0.5), clock) as c:
        for a in range(10):
            buy(c, a)
        bots = [1, 3, 5, 7, 9]
        r = c.post("/admin/review", json={"bot_accounts": bots}, headers=ADMIN).json()
        flags = Review(0.5, 0.5).flags(
            np.isin(np.arange(10), bots), Streams.for_replication(SEED, 0)["defense.review"]
        )
        assert r["cancelled_orders"] == int(flags.sum())
        assert r["flagged_bot_orders"] == int(flags[bots].sum())
        cancelled = {o["account"] for o in audit(c)["order_rows"] if o["status"] == "cancelled"}
        assert cancelled == set(np.flatnonzero(flags).tolist())


def test_review_guards(db: str) -> None:
    clock = Clock()
    with client(db, scenario(), clock) as c:
        assert c.post("/admin/review", json={"bot_accounts": []}).status_code == 401
        r = c.post("/admin/review", json={"bot_accounts": []}, headers=ADMIN)
        assert r.status_code == 409 and r.json()["error"] == "review_off"
    with client(db, review_sale(1.0, 0.0), clock) as c:
        r = c.post("/admin/review", json={"bot_accounts": ["1"]}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["field"] == "bot_accounts.0"
        empty = c.post("/admin/review", json={}, headers=ADMIN).json()
        assert empty["reviewed_orders"] == 0 and empty["stock_left"] == 10


# ------------------------------------------------- the replay's journeys against it


@pytest.mark.parametrize("defense", ["waiting_room", "lottery"])
def test_replay_journeys_get_through_the_admission(db: str, defense: str) -> None:
    clock = Clock()
    cfg: dict[str, Any] = {"enabled": True}
    if defense == "lottery":
        cfg |= {"winners": 2, "entry_window_s": 30, "claim_window_s": 600}
    else:
        cfg |= {"new_users_per_min": 30}
    sc = scenario(
        defenses={defense: cfg}, humans={"patience_s": {"dist": "constant", "value": 600}}
    )
    buyers = [(HUMAN, 1.0), (BOT, -3.0), (HUMAN, 2.0)]
    with client(db, sc, clock, opens_in_s=5) as c:
        conductor = Conductor(c, clock, T0 + 5, len(buyers))
        journeys = [
            Journey(
                sc,
                Buyer(journey=j, kind=int(kind), account=j, person=j, channel=0, arrived=at),
                StepClient(conductor, j),
                np.random.default_rng(j),
                "replay",
            )
            for j, (kind, at) in enumerate(buyers)
        ]
        results = conductor.run(journeys)
        a = audit(c)
    if defense == "lottery":
        assert sorted(results) == ["purchased", "purchased", "rejected"]
    else:
        assert results == ["purchased"] * 3
    assert a["units_sold"] == results.count("purchased")
