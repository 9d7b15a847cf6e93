"""The checkout service's queue: ``workers`` servers, FIFO, bounded, with impatient clients.

A first-in first-out multi-server queue has a property that makes it cheap to
simulate exactly: a request's start time depends only on the requests that came
before it. So when a request arrives we compute at once when a worker will take
it (the earliest time a worker is free, Kiefer-Wolfowitz), whether its client
will have given up before then (it then leaves without using a worker, as in
Erlang A), and whether the queue is full (503). No SimPy event is spent on the
queue itself; callers must submit requests in time order, which the SimPy event
loop guarantees.

The queue keeps the raw facts the timeline needs (when each request entered and
left the queue, when it held a worker).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque

__all__ = ["FULL", "RENEGED", "SERVED", "CheckoutService"]

SERVED = 0
"""A worker took the request."""
FULL = 1
"""The queue was at its limit: rejected on arrival (503)."""
RENEGED = 2
"""The client gave up waiting before a worker was free."""


class CheckoutService:
    """FIFO ``workers``-server queue with at most ``queue_limit`` waiting requests."""

    def __init__(self, workers: int, queue_limit: int) -> None:
        if workers < 1:
            raise ValueError(f"workers(={workers}) must be >= 1")
        if queue_limit < 0:
            raise ValueError(f"queue_limit(={queue_limit}) must be >= 0")
        self.workers = workers
        self.queue_limit = queue_limit
        self._free = [-math.inf] * workers  # heap: when each worker is next free
        # when each waiting request leaves the queue: those a worker will take leave in
        # arrival order (FIFO), so a deque; those who give up leave in any order, a heap
        self._to_worker: deque[float] = deque()
        self._giving_up: list[float] = []
        # raw facts for the timeline
        self.arrived = array("d")  # a request reached the service (every one)
        self.left_queue = array("d")  # ... and left the queue: to a worker, giving up, or refused
        self.code = array("B")  # ... SERVED, FULL or RENEGED
        self.started = array("d")  # a worker took a request
        self.released = array("d")  # ... and was free again

    def queue_length(self, now: float) -> int:
        """Requests waiting for a worker at ``now``."""
        q, g = self._to_worker, self._giving_up
        while q and q[0] <= now:
            q.popleft()
        while g and g[0] <= now:
            heapq.heappop(g)
        return len(q) + len(g)

    def occupancy(self, now: float) -> float:
        """Requests in service or waiting, per worker, at ``now``.

        A worker is busy at ``now`` iff it is next free later (FIFO assigns work back
        to back); with anyone waiting, every worker is busy.
        """
        waiting = self.queue_length(now)
        busy = self.workers if waiting else sum(f > now for f in self._free)
        return (busy + waiting) / self.workers

    def earliest_start(self, now: float) -> float:
        """The earliest time a worker can take a request that arrives at ``now`` or later
        (FIFO: no later request starts before an earlier one)."""
        first_free = self._free[0]
        return first_free if first_free > now else now

    def arrive(self, now: float, service_s: float, patience_s: float) -> tuple[int, float, float]:
        """Submit a request at ``now`` needing ``service_s`` of a worker; its client waits
        at most ``patience_s``. Returns ``(code, start, end)``: SERVED with the worker's
        start and end, RENEGED with the time the client gave up (twice), FULL with ``now``.
        """
        free = self._free
        start = free[0] if free[0] > now else now
        self.arrived.append(now)
        if start > now:
            if self.queue_length(now) >= self.queue_limit:
                self.left_queue.append(now)
                self.code.append(FULL)
                return FULL, now, now
            if start - now > patience_s:
                gone = now + patience_s
                heapq.heappush(self._giving_up, gone)
                self.left_queue.append(gone)
                self.code.append(RENEGED)
                return RENEGED, gone, gone
            self._to_worker.append(start)
        self.left_queue.append(start)
        self.code.append(SERVED)
        end = start + service_s
        heapq.heapreplace(free, end)
        self.started.append(start)
        self.released.append(end)
        return SERVED, start, end
