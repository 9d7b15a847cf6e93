"""The capacity limiter: ``workers`` requests in service, a bounded queue, a timeout.

It mirrors the simulation's checkout model (scenario ``[service]``): a request
that finds every worker busy waits in a FIFO queue; if ``queue_limit`` requests
already wait it is refused at once, and if it waits ``queue_timeout_s`` it gives
up. Both refusals are :class:`Overloaded` (a 503 with Retry-After) rather than an
unbounded queue, which is what turns a flash sale into timeouts everywhere. A
client may say how long it will wait (its patience); if that runs out first, the
request leaves the queue unserved: :class:`Abandoned` (499), as in the simulation.

A worker taken free is held across at least one turn of the event loop. The
service is one event loop: a request that never waits (SQLite answers in
microseconds, on the loop) would take its worker and give it back within one
callback, so no other request could ever find the workers busy, none was ever
queued or refused, and the real queue formed where no limit or timeout applies:
in the loop's ready queue, the sockets and the kernel's accept queue (issue 11:
no 503 with ``workers = 1, queue_limit = 0`` on SQLite, p99 25.6 s against
``queue_timeout_s = 2``). Held for a turn, the worker is busy for every request
that arrives in that turn: those are the concurrent requests of a single-threaded
server, and they queue or are refused by the rules above. (Handing SQLite to a
thread instead cost 40-50% of the checkout throughput: the GIL changes hands at
every statement.)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flashsale.checkout import OVERLOADED_RETRY_AFTER_S

__all__ = ["Abandoned", "CapacityLimiter", "Overloaded"]


class Abandoned(Exception):
    """The client's patience ran out before a worker was free: answer 499."""


class Overloaded(Exception):
    """No worker could take the request: answer 503 with ``Retry-After``."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class CapacityLimiter:
    """At most ``workers`` holders of a slot; at most ``queue_limit`` waiting for one."""

    def __init__(self, workers: int, queue_limit: int, queue_timeout_s: float) -> None:
        if workers < 1:
            raise ValueError(f"workers(={workers}) must be >= 1")
        if queue_limit < 0:
            raise ValueError(f"queue_limit(={queue_limit}) must be >= 0")
        if not queue_timeout_s > 0:
            raise ValueError(f"queue_timeout_s(={queue_timeout_s}) must be > 0")
        self.workers = workers
        self.queue_limit = queue_limit
        self.queue_timeout_s = queue_timeout_s
        self.active = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(workers)

    @property
    def occupancy(self) -> float:
        """Requests in service and queued, per worker: the payment model's load."""
        return (self.active + self.waiting) / self.workers

    async def _acquire(self, patience_s: float) -> bool:
        """Take a worker; True if the request had to wait for it."""
        if self._sem.locked():
            if self.waiting >= self.queue_limit:
                raise Overloaded("queue full", OVERLOADED_RETRY_AFTER_S)
            self.waiting += 1
            try:
                await asyncio.wait_for(self._sem.acquire(), min(self.queue_timeout_s, patience_s))
            except TimeoutError:
                if patience_s < self.queue_timeout_s:
                    raise Abandoned() from None
                raise Overloaded("queue timeout", OVERLOADED_RETRY_AFTER_S) from None
            finally:
                self.waiting -= 1
            self.active += 1
            return True
        await self._sem.acquire()  # a free worker: returns without suspending
        self.active += 1
        return False

    def _release(self) -> None:
        self.active -= 1
        self._sem.release()

    @asynccontextmanager
    async def slot(self, patience_s: float = math.inf) -> AsyncIterator[None]:
        """Hold a worker for the block; raises :class:`Overloaded` if none comes within
        the queue's limits, :class:`Abandoned` if none comes within ``patience_s``."""
        waited = await self._acquire(patience_s)
        try:
            if not waited:
                await asyncio.sleep(0)  # hold it for a turn of the loop (module docstring)
            yield
        finally:
            self._release()

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Give the worker back during the block (a wait outside the service, like the
        payment gateway) and take one again afterwards, ahead of the queue's limits:
        a request already admitted is never refused half-way."""
        self._release()
        try:
            yield
        finally:
            await self._sem.acquire()
            self.active += 1
