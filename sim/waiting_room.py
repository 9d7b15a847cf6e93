"""Engine side of the waiting room: every visitor queues before its journey starts.

Each arriving journey (a human, or one bot account) joins the room; when the room
admits it (flashsale.defenses.waiting_room: pre-queue shuffle at the opening,
fifo or random order, a steady flow, an active cap, sessions) its journey starts,
with ``admitted`` set to that time. A journey that ends leaves the room, freeing
its slot before its session would have. Visitors wait in the room however long
it takes (a visible position keeps them); patience applies to the checkout's
queue as before. One SimPy timeout is pending at a time, at the next admission.
"""

from __future__ import annotations

import math

import numpy as np
import simpy
from simpy.events import Timeout

from flashsale.defenses.waiting_room import WaitingRoom
from flashsale.scenario import WaitingRoom as WaitingRoomConfig

from .journey import Journey

__all__ = ["RoomDriver"]


class RoomDriver:
    """Runs a WaitingRoom on the SimPy clock and starts journeys as they are admitted."""

    def __init__(
        self, env: simpy.Environment, config: WaitingRoomConfig, rng: np.random.Generator
    ) -> None:
        self._env = env
        self._room = WaitingRoom.from_config(config, rng)
        self._waiting: dict[int, Journey] = {}
        self._wake_at = math.inf

    def join(self, j: Journey) -> None:
        """``j`` arrives now and waits for admission."""
        self._waiting[j.id] = j
        self._room.join(j.id, self._env.now)
        self._schedule()

    def leave(self, j: Journey) -> None:
        """``j`` ended: its slot is free."""
        self._room.leave(j.id, self._env.now)
        self._schedule()

    def _schedule(self) -> None:
        t = self._room.next_admission()
        if t is None or t >= self._wake_at:
            return
        self._wake_at = t
        now = self._env.now
        Timeout(self._env, max(0.0, t - now)).callbacks.append(self._admit)

    def _admit(self, woke: Timeout) -> None:
        if self._env.now != self._wake_at:  # superseded by an earlier wake-up
            return
        self._wake_at = math.inf
        for visitor, at in self._room.admit(self._env.now):
            j = self._waiting.pop(int(visitor))  # type: ignore[call-overload]
            j.admitted = at
            j.act()
        self._schedule()
