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

Each slot keeps a :class:`Timing`: how long the request waited for a worker, held
one, and spent outside it (a payment gateway's wait); the routes send it as the
standard ``Server-Timing`` header, in the simulation's terms (queue wait, service
time, gateway time), so a replay can take a latency apart.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from flashsale.checkout import OVERLOADED_RETRY_AFTER_S

__all__ = ["Abandoned", "CapacityLimiter", "Overloaded", "Timing"]


@dataclass
class Timing:
    """Where one request's time went on the server, in seconds (``time.perf_counter``):
    waiting for a worker (``queue_s``), holding one (``service_s``, set when the slot
    ends), outside the worker after it (``away_s``: the block of
    :meth:`CapacityLimiter.leave`), and of that at the payment gateway (``gateway_s``;
    None: the request did not reach the gateway)."""

    queue_s: float = 0.0
    service_s: float | None = None
    away_s: float = 0.0
    gateway_s: float | None = None
    left_at: float | None = field(default=None, repr=False)
    """When the request gave its worker back for good (:meth:`CapacityLimiter.leave`)."""

    def header(self) -> str:
        """The ``Server-Timing`` header value (W3C Server Timing; ``dur`` in ms):
        ``queue;dur=1.250, service;dur=3.400, gateway;dur=1000.000``, each part only
        when known."""
        parts = {"queue": self.queue_s, "service": self.service_s, "gateway": self.gateway_s}
        return ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in parts.items() if v is not None)


class Abandoned(Exception):
    """The client's patience ran out before a worker was free (after ``waited_s``):
    answer 499."""

    def __init__(self, waited_s: float = 0.0) -> None:
        super().__init__()
        self.waited_s = waited_s


class Overloaded(Exception):
    """No worker could take the request (after ``waited_s`` in the queue): answer 503
    with ``Retry-After``."""

    def __init__(self, reason: str, retry_after_s: float, waited_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.waited_s = waited_s


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
            queued = time.perf_counter()
            try:
                await asyncio.wait_for(self._sem.acquire(), min(self.queue_timeout_s, patience_s))
            except TimeoutError:
                waited = time.perf_counter() - queued
                if patience_s < self.queue_timeout_s:
                    raise Abandoned(waited) from None
                raise Overloaded("queue timeout", OVERLOADED_RETRY_AFTER_S, waited) from None
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
    async def slot(self, patience_s: float = math.inf) -> AsyncIterator[Timing]:
        """Hold a worker for the block (or until :meth:`leave`), which gets the
        request's :class:`Timing`; raises :class:`Overloaded` if none comes within the
        queue's limits, :class:`Abandoned` if none comes within ``patience_s``."""
        asked = time.perf_counter()
        waited = await self._acquire(patience_s)
        taken = time.perf_counter()
        timing = Timing(queue_s=taken - asked)
        try:
            if not waited:
                await asyncio.sleep(0)  # hold it for a turn of the loop (module docstring)
            yield timing
        finally:
            if timing.left_at is None:  # still on the worker
                self._release()
                timing.service_s = time.perf_counter() - taken
            else:
                timing.service_s = timing.left_at - taken

    @asynccontextmanager
    async def leave(self, timing: Timing) -> AsyncIterator[None]:
        """Give the worker back for the rest of the request: a wait outside the service
        (the payment gateway, a CAPTCHA provider's check) and what follows it (the
        payment's commit) hold no worker and never queue for one again. The simulator
        models a step so: its time on a worker, then the gateway (sim/shop.py); a
        payment that queued again behind the payments not yet started would wait
        twice. The block's time goes to ``timing.away_s``."""
        if timing.left_at is not None:
            raise RuntimeError("the request has already given its worker back")
        timing.left_at = time.perf_counter()
        self._release()
        try:
            yield
        finally:
            timing.away_s += time.perf_counter() - timing.left_at
