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

Sessions are per admission, not per visitor: a visitor admitted again (it paid,
joined again and was let in again) holds a new session, which the end of an
earlier one, by timeout or by leaving, never ends. Otherwise the first session's
timeout would free the second's slot while the second still runs, and one more
visitor than ``max_active`` would be in session.

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

_LEFT = object()  # a session that ended early, as looked up in WaitingRoom._live


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
        self._ends: list[tuple[float, int]] = []  # heap (ends, session); some left early
        self._seq = 0  # the last session's id: one per admission
        self._live: dict[int, Hashable] = {}  # session -> its visitor, while in session
        self._live_of: dict[Hashable, list[int]] = {}  # visitor -> its sessions in session
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
        """An admitted visitor is done (bought, gave up) before its session ends: the
        sessions it has in progress at ``now`` end. An admission decided later is a new
        session, which this leave does not touch."""
        self._settle(now)
        for session in self._live_of.pop(visitor, ()):
            del self._live[session]

    def active(self, now: float) -> int:
        """Sessions in progress at ``now`` (admitted, neither timed out nor left)."""
        self._settle(now)
        return len(self._live)

    def waiting(self) -> int:
        """Visitors joined and not yet admitted (as of the last call)."""
        return len(self._prequeue) + len(self._eligible) + len(self._queue)

    def _expire(self, t: float) -> None:
        """End the sessions whose time is up by ``t``; each ends itself only, never
        another session of the same visitor."""
        ends, live = self._ends, self._live
        while ends and ends[0][0] <= t:
            session = heapq.heappop(ends)[1]
            visitor = live.pop(session, _LEFT)
            if visitor is _LEFT:  # left early: already ended
                continue
            mine = self._live_of[visitor]
            if len(mine) == 1:
                del self._live_of[visitor]
            else:
                mine.remove(session)

    def _first_end(self) -> float:
        """When the first session in progress ends (there is one)."""
        ends, live = self._ends, self._live
        while ends[0][1] not in live:  # left early: its slot is already free
            heapq.heappop(ends)
        return ends[0][0]

    def _slot_free_at(self, t: float) -> float:
        """The earliest time >= t with fewer than max_active in session; expires the
        sessions over by t (the caller makes sure t is not in the future)."""
        self._expire(t)
        if len(self._live) < self.max_active:
            return t
        return self._first_end()  # that session's end frees a slot

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
        if len(self._live) < self.max_active:
            return t
        return max(t, self._first_end())

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
            self._seq += 1
            session = self._seq
            self._live[session] = visitor
            mine = self._live_of.get(visitor)
            if mine is None:
                self._live_of[visitor] = [session]
            else:  # joined again while in session: a second session of its own
                mine.append(session)
            heapq.heappush(self._ends, (t + self.session_s, session))
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
