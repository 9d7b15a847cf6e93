"""Waiting-room admission: steady flow, active cap, sessions, pre-queue shuffle, orders."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale.defenses.waiting_room import WaitingRoom


def _room(**over: object) -> WaitingRoom:
    cfg: dict[str, object] = {
        "prequeue_s": 900.0,
        "order": "fifo",
        "new_users_per_min": 600.0,  # one every 0.1 s
        "max_active": 1000,
        "session_s": 300.0,
        "rng": np.random.default_rng(0),
    }
    cfg.update(over)
    return WaitingRoom(**cfg)  # type: ignore[arg-type]


def test_admits_a_steady_flow_from_the_opening() -> None:
    room = _room()
    for v in range(50):
        room.join(v, -10.0 + v * 0.01)
    assert room.admit(-1.0) == []  # nobody before the opening
    out = room.admit(2.05)
    np.testing.assert_allclose([t for _, t in out], np.arange(21) * 0.1)
    assert room.waiting() == 29
    assert len(room.admit(100.0)) == 29  # the rest, one per 0.1 s


def test_prequeue_is_shuffled_and_later_arrivals_are_fifo() -> None:
    room = _room(rng=np.random.default_rng(4))
    early = list(range(100))
    for v in early:
        room.join(v, -50.0 + v * 0.1)
    for v in range(100, 110):
        room.join(v, 1.0 + v)
    order = [v for v, _ in room.admit(1000.0)]
    assert sorted(order[:100]) == early and order[:100] != early  # shuffled
    assert order[100:] == list(range(100, 110))  # first come, first admitted


def test_random_order_mixes_later_arrivals() -> None:
    room = _room(order="random", new_users_per_min=6.0, rng=np.random.default_rng(1))
    for v in range(30):
        room.join(v, 0.0)
    order = [v for v, _ in room.admit(10_000.0)]
    assert sorted(order) == list(range(30)) and order != list(range(30))


def test_active_cap_and_sessions() -> None:
    room = _room(max_active=3, session_s=5.0, new_users_per_min=6000.0)
    for v in range(7):
        room.join(v, 0.0)
    times = [t for _, t in room.admit(12.0)]
    np.testing.assert_allclose(times, [0.0, 0.01, 0.02, 5.0, 5.01, 5.02, 10.0])
    assert room.active(12.0) == 1


def test_leaving_frees_a_slot() -> None:
    room = _room(max_active=1, session_s=60.0)
    room.join("a", 0.0)
    room.join("b", 0.0)
    assert [v for v, _ in room.admit(1.0)] == ["a"]
    room.leave("a", 2.0)
    assert room.admit(2.5) == [("b", 2.0)]


def test_same_seed_same_admissions() -> None:
    def run() -> list[tuple[object, float]]:
        room = _room(order="random", rng=np.random.default_rng(9))
        for v in range(200):
            room.join(v, -5.0 + v * 0.05)
        return room.admit(1_000.0)

    assert run() == run()


def test_time_going_back_is_refused() -> None:
    room = _room()
    room.join("a", 5.0)
    with pytest.raises(ValueError, match="time went back"):
        room.join("b", 4.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prequeue_s", -1.0),
        ("order", "lifo"),
        ("new_users_per_min", 0.0),
        ("max_active", 0),
        ("session_s", 0.0),
    ],
)
def test_bad_configuration_is_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        _room(**{field: value})


def test_next_admission_peeks_without_admitting() -> None:
    room = _room(max_active=1, session_s=10.0)
    assert room.next_admission() is None
    room.join("a", -5.0)
    room.join("b", -4.0)
    assert room.next_admission() == 0.0
    first = room.admit(0.0)
    assert len(first) == 1
    assert room.next_admission() == 10.0  # the one slot frees when the session ends
    assert room.admit(9.0) == []
    room.leave(first[0][0], 9.0)
    assert room.next_admission() == 9.0
    assert len(room.admit(9.0)) == 1
    assert room.next_admission() is None


def test_an_earlier_sessions_end_does_not_free_a_later_sessions_slot() -> None:
    """V is admitted at 0, pays at 1, joins again and is admitted at 2 (one admission
    per 2 s); V's first session would have ended at 100, but it ended at 1: the slot
    V holds from 2 is its second session's, over at 102, so W waits until then."""
    room = _room(max_active=1, session_s=100.0, new_users_per_min=30.0)
    room.join("V", 0.0)
    assert room.admit(0.0) == [("V", 0.0)]
    room.leave("V", 1.0)
    room.join("V", 1.0)
    assert room.admit(1.0) == []  # the flow: 2 s after the last admission
    assert room.admit(2.0) == [("V", 2.0)]
    room.join("W", 3.0)
    assert room.next_admission() == 102.0
    assert room.admit(101.9) == [] and room.active(101.9) == 1
    assert room.admit(102.0) == [("W", 102.0)] and room.active(102.0) == 1


def test_a_timeout_ends_only_its_own_session() -> None:
    """V holds two sessions at once (it joined again while in session): the first
    one's timeout at 100 frees one slot, not both."""
    room = _room(max_active=2, session_s=100.0, new_users_per_min=30.0)
    room.join("V", 0.0)
    room.join("V", 1.0)
    assert room.admit(2.0) == [("V", 0.0), ("V", 2.0)]
    room.join("W", 3.0)
    room.join("X", 3.0)
    assert room.admit(101.0) == [("W", 100.0)]  # V's first session is over
    assert room.active(101.0) == 2
    assert room.admit(102.0) == [("X", 102.0)]  # V's second session is over


def test_leaving_ends_the_sessions_in_progress_not_a_later_one() -> None:
    room = _room(max_active=1, session_s=100.0, new_users_per_min=60.0)
    room.join("V", 0.0)
    room.join("V", 0.0)  # queued again behind its own first admission
    room.join("W", 0.0)
    assert room.admit(0.0) == [("V", 0.0)]
    room.leave("V", 5.0)  # its first session ends; its second admission follows
    assert room.admit(5.0) == [("V", 5.0)] and room.active(5.0) == 1
    assert room.admit(104.0) == []  # W waits for V's second session, until 105
    assert room.admit(105.0) == [("W", 105.0)]


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "wait"]),
        st.integers(0, 3),  # few visitors: many rejoins, leaves in and out of session
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.0]),  # equal times and exact ends
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=_OPS,
    max_active=st.integers(1, 3),
    session_s=st.sampled_from([1.0, 3.0, 10.0]),
    order=st.sampled_from(["fifo", "random"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_sessions_in_progress_never_exceed_max_active(
    ops: list[tuple[str, int, float]], max_active: int, session_s: float, order: str, seed: int
) -> None:
    """Against a model built from the admissions the room hands out: each admission
    is a session that ends at ``session_s`` or when its visitor leaves while it runs.
    The model replays those events in order; the room's count must equal it and
    never exceed ``max_active``, and admissions keep the flow's spacing."""
    room = _room(
        max_active=max_active,
        session_s=session_s,
        new_users_per_min=60.0,  # one admission a second at most
        prequeue_s=5.0,
        order=order,
        rng=np.random.default_rng(seed),
    )
    live: list[tuple[float, Hashable]] = []  # (ends, visitor) of sessions in progress
    times: list[float] = []

    def take(now: float) -> None:
        for visitor, at in room.admit(now):
            assert times == [] or at >= times[-1] + 1.0 - 1e-9  # the flow's spacing
            assert at <= now
            times.append(at)
            live[:] = [(e, v) for e, v in live if e > at]  # timed out by then
            live.append((at + session_s, visitor))
            assert len(live) <= max_active, (at, live)

    now = -3.0  # a few joins land in the pre-queue
    for op, visitor, dt in ops:
        now += dt
        take(now)
        if op == "join":
            room.join(visitor, now)
        elif op == "leave":
            room.leave(visitor, now)
            live[:] = [(e, v) for e, v in live if v != visitor]
        take(now)
        live[:] = [(e, v) for e, v in live if e > now]
        assert room.active(now) == len(live) <= max_active
