"""A virtual waiting room's admission logic, in the vocabulary of deployed products.

Visitors who arrive before the opening (t = 0) wait in a **pre-queue** and are
shuffled into a random order at the opening, so arriving earlier buys nothing.
(``prequeue_s`` is how long the pre-queue page is up; as in the products, a visitor
even earlier waits on a countdown page and is moved into the pre-queue when it
starts, so it is shuffled too.) Later arrivals queue in ``order``: ``fifo`` (first
come, first admitted) or ``random`` (each admission picks uniformly among those
waiting). The room lets visitors out as a steady flow of ``new_users_per_min``
(never a burst: consecutive admissions are at least ``60 / new_users_per_min``
apart), and never more than ``max_active`` at once; an admitted visitor stays
active for ``session_s`` or until it leaves.

Pure and clock-agnostic: callers pass the time (simulated seconds in the engine, a
monotonic clock minus the opening in the service) and a Generator for the
shuffles. :meth:`WaitingRoom.admit` returns every admission due up to ``now``
with its exact time, so a caller polling now and then loses no precision.
Calls must come with non-decreasing times.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Hashable
from typing import Literal

import numpy as np

from flashsale.scenario import WaitingRoom as WaitingRoomConfig

__all__ = ["WaitingRoom"]


class WaitingRoom:
    """Admission control for one sale."""

    def __init__(
        self,
        *,
        prequeue_s: float,
        order: Literal["fifo", "random"],
        new_users_per_min: float,
        max_active: int,
        session_s: float,
        rng: np.random.Generator,
    ) -> None:
        if prequeue_s < 0:
            raise ValueError(f"prequeue_s(={prequeue_s}) must be >= 0")
        if order not in ("fifo", "random"):
            raise ValueError(f"order(={order!r}) must be 'fifo' or 'random'")
        if not new_users_per_min > 0:
            raise ValueError(f"new_users_per_min(={new_users_per_min}) must be > 0")
        if max_active < 1:
            raise ValueError(f"max_active(={max_active}) must be >= 1")
        if not session_s > 0:
            raise ValueError(f"session_s(={session_s}) must be > 0")
        self.prequeue_s = prequeue_s
        self.order = order
        self.gap_s = 60.0 / new_users_per_min
        self.max_active = max_active
        self.session_s = session_s
        self._rng = rng
        self._prequeue: list[Hashable] = []
        self._opened = False
        self._eligible: deque[Hashable] = deque()  # may be admitted now, in queue order
        self._queue: deque[tuple[float, Hashable]] = deque()  # (joined, visitor), by time
        self._sessions: list[tuple[float, int, Hashable]] = []  # heap (ends, seq, visitor)
        self._seq = 0
        self._active: set[Hashable] = set()
        self._last = -math.inf  # last admission
        self._now = -math.inf
        self._settled = 0.0  # every admission due up to here is decided
        self._outbox: list[tuple[Hashable, float]] = []  # decided, not yet handed out

    @classmethod
    def from_config(cls, config: WaitingRoomConfig, rng: np.random.Generator) -> WaitingRoom:
        """The room a scenario's ``[defenses.waiting_room]`` describes."""
        return cls(
            prequeue_s=config.prequeue_s,
            order=config.order,
            new_users_per_min=config.new_users_per_min,
            max_active=config.max_active,
            session_s=config.session_s,
            rng=rng,
        )

    def _clock(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went back: {now} after {self._now}")
        self._now = now

    def _open(self) -> None:
        """At the opening the pre-queue, shuffled, goes ahead of everyone else."""
        if not self._opened:
            self._opened = True
            order = self._rng.permutation(len(self._prequeue))
            self._eligible = deque(self._prequeue[i] for i in order)
            self._prequeue = []

    def join(self, visitor: Hashable, now: float) -> None:
        """``visitor`` arrives at ``now``."""
        self._clock(now)
        if now < 0.0:
            self._prequeue.append(visitor)
            return
        self._queue.append((now, visitor))

    def leave(self, visitor: Hashable, now: float) -> None:
        """An admitted visitor is done (bought, gave up) before its session ends."""
        self._settle(now)
        self._active.discard(visitor)

    def active(self, now: float) -> int:
        """Visitors admitted and still in session at ``now``."""
        self._settle(now)
        return len(self._active)

    def waiting(self) -> int:
        """Visitors joined and not yet admitted (as of the last call)."""
        return len(self._prequeue) + len(self._eligible) + len(self._queue)

    def _expire(self, t: float) -> None:
        s = self._sessions
        while s and s[0][0] <= t:
            _, _, v = heapq.heappop(s)
            self._active.discard(v)

    def _slot_free_at(self, t: float) -> float:
        """The earliest time >= t with fewer than max_active in session; expires the
        sessions over by t (the caller makes sure t is not in the future)."""
        self._expire(t)
        if len(self._active) < self.max_active:
            return t
        s = self._sessions
        while s[0][2] not in self._active:  # left early: its slot is already free
            heapq.heappop(s)
        return s[0][0]  # that session's end frees a slot

    def next_admission(self) -> float | None:
        """When the next admission is due, as things stand (None: nobody is waiting).

        A join or a leave can make it sooner; call again after either.
        """
        if self._opened and not self._eligible and not self._queue:
            return None
        if not self._opened and not self._prequeue and not self._queue:
            return None
        t = max(self._settled, self._last + self.gap_s)
        if not self._eligible and not self._prequeue:
            t = max(t, self._queue[0][0])
        if len(self._active) < self.max_active:
            return t
        s = self._sessions
        while s[0][2] not in self._active:  # left early: already free
            heapq.heappop(s)
        return max(t, s[0][0])

    def admit(self, now: float) -> list[tuple[Hashable, float]]:
        """Admit everyone due up to ``now``; returns ``(visitor, admitted_at)`` in order,
        including admissions decided earlier (by leave() or active()) not yet returned."""
        self._settle(now)
        out, self._outbox = self._outbox, []
        return out

    def _settle(self, now: float) -> None:
        """Decide every admission due up to ``now``; later changes cannot move them."""
        self._clock(now)
        if now < 0.0:
            return
        self._open()
        while True:
            t = max(self._settled, self._last + self.gap_s)
            if not self._eligible:
                if not self._queue:
                    break
                t = max(t, self._queue[0][0])
            if t > now:
                break
            t = self._slot_free_at(t)  # expires sessions only up to t <= now
            if t > now:
                break
            self._expire(t)
            while self._queue and self._queue[0][0] <= t:
                self._eligible.append(self._queue.popleft()[1])
            visitor = self._pick()
            self._last = t
            self._active.add(visitor)
            self._seq += 1
            heapq.heappush(self._sessions, (t + self.session_s, self._seq, visitor))
            self._outbox.append((visitor, t))
        self._expire(now)
        self._settled = now

    def _pick(self) -> Hashable:
        e = self._eligible
        if self.order == "fifo":
            return e.popleft()
        i = int(self._rng.integers(len(e)))
        e[i], e[-1] = e[-1], e[i]
        return e.pop()
