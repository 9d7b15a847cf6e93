"""Waiting-room admission: steady flow, active cap, sessions, pre-queue shuffle, orders."""

from __future__ import annotations

import numpy as np
import pytest

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
