"""Finite stock per channel: reserved at add-to-cart, sold at payment, released otherwise.

Decisions about stock are taken in the order in which the checkout's workers take
requests (FIFO), possibly ahead of simulated time (see flashsale.sim.service): a
cart request that a worker will start at time S is decided with the stock as it
will be at S. Releases (a hold that expires, a payment that fails) are therefore
kept in a heap by time and applied lazily by :meth:`Stock.advance`, so that a
decision at S sees exactly the releases up to S.

With pools per step (``[service.pools.*]``) each pool decides in its own time
order, and one pool may be seconds ahead of another: a release may only be applied
once no pool that reserves or pays can still decide before it (the *settled*
time: the earliest start the cart and pay pools can still give a request), or a
cart at 10.9 s would take units that a
payment declined at 11 s only gives back then, and the books would show the stock
below zero. A decision at S beyond the settled time also counts the releases
between the two that nothing can undo: a declined payment's, and a hold's expiry
when no payment can begin before it (``pay_from``). With one pool the settled time
is S itself, and this is the rule above.

Oversell is impossible by construction (a reservation needs that many units
available) and is still checked: :meth:`Stock.audit` raises :class:`OversellError`
if the books ever disagree.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable

__all__ = ["OversellError", "Stock"]

_HELD, _PAYING, _FAILING, _DONE = 0, 1, 2, 3


class OversellError(RuntimeError):
    """The stock books do not balance: a bug, never a legitimate outcome."""


class Stock:
    """Units available, reserved and sold per channel, with holds that expire."""

    def __init__(
        self,
        per_channel: list[int],
        hold_s: float,
        on_release: Callable[[int, int], None] | None = None,
    ) -> None:
        self.units = sum(per_channel)
        self.per_channel = list(per_channel)
        self.available = list(per_channel)
        self.hold_s = hold_s
        self._on_release = on_release  # (account, units): a defense giving units back
        # hold id -> [state, channel, units, account, expires]
        self._holds: list[list[float]] = []
        # heaps of (time, seq, hold id): holds' expiries (stale once paid for) and the
        # releases of payments that failed (each certain)
        self._expiries: list[tuple[float, int, int]] = []
        self._failures: list[tuple[float, int, int]] = []
        self._seq = 0
        self._settled = -math.inf  # releases up to here are applied
        self._pay_from = -math.inf  # no payment begins before this
        self.sold = 0
        # raw facts for the timeline: at `log_t`, available += d_avail, reserved += d_res;
        # sold_by_kind[kind] at `log_t` += d_sold
        self.log_t = array("d")
        self.log_avail = array("q")
        self.log_reserved = array("q")
        self.log_sold = array("q")
        self.log_kind = array("B")

    def _log(self, t: float, d_avail: int, d_res: int, d_sold: int, kind: int) -> None:
        self.log_t.append(t)
        self.log_avail.append(d_avail)
        self.log_reserved.append(d_res)
        self.log_sold.append(d_sold)
        self.log_kind.append(kind)

    def advance(self, settled: float, pay_from: float = -math.inf) -> None:
        """Apply every release due at or before ``settled`` (seconds: no pool that
        reserves or pays can still decide before it); no payment can begin before
        ``pay_from``."""
        self._settled, self._pay_from = settled, pay_from
        for heap in (self._expiries, self._failures):
            while heap and heap[0][0] <= settled:
                t, _, hid = heapq.heappop(heap)
                if self._due(hid, t):
                    self._release(hid, t)

    def _due(self, hid: int, t: float) -> bool:
        """The release of ``hid`` at ``t`` still stands: a hold not paid for, or the
        failed payment's own release."""
        h = self._holds[hid]
        return h[0] == _HELD or (h[0] == _FAILING and h[4] == t)

    def available_at(self, channel: int, at: float) -> int:
        """Units of ``channel`` available at ``at``: those after the releases applied,
        plus the certain ones due from the settled time to ``at`` (module docstring):
        failed payments', and holds' expiries no payment can precede. Walks of the
        heaps that stop below every entry later than the bound."""
        n = self.available[channel]
        if at <= self._settled:
            return n
        for heap, bound in ((self._failures, at), (self._expiries, min(at, self._pay_from))):
            todo = [0] if heap and heap[0][0] <= bound else []
            while todo:
                i = todo.pop()
                t, _, hid = heap[i]
                if t > bound:
                    continue
                h = self._holds[hid]
                if h[1] == channel and self._due(hid, t):
                    n += int(h[2])
                todo.extend(c for c in (2 * i + 1, 2 * i + 2) if c < len(heap))
        return n

    def _release(self, hid: int, t: float) -> None:
        h = self._holds[hid]
        h[0] = _DONE
        ch, units, account = int(h[1]), int(h[2]), int(h[3])
        self.available[ch] += units
        self._log(t, units, -units, 0, 0)
        if self._on_release is not None:
            self._on_release(account, units)

    def _schedule(self, heap: list[tuple[float, int, int]], t: float, hid: int) -> None:
        self._seq += 1
        heapq.heappush(heap, (t, self._seq, hid))

    def reserve(self, channel: int, units: int, account: int, now: float) -> int:
        """Hold ``units`` of ``channel`` for ``account`` from ``now``; returns the hold id.

        The caller checks :meth:`available_at` first (after :meth:`advance`); asking for
        more than is available is a bug and raises.
        """
        left = self.available_at(channel, now)
        if units > left:
            raise OversellError(f"reserve {units} units on channel {channel} with {left} left")
        self.available[channel] -= units
        hid = len(self._holds)
        expires = now + self.hold_s
        self._holds.append([_HELD, channel, units, account, expires])
        self._log(now, -units, units, 0, 0)
        self._schedule(self._expiries, expires, hid)
        return hid

    def begin_payment(self, hid: int, now: float) -> bool:
        """A worker starts the payment of hold ``hid`` at ``now``: False if it has expired."""
        h = self._holds[hid]
        if h[0] != _HELD or h[4] <= now:
            return False
        h[0] = _PAYING
        return True

    def end_payment(self, hid: int, at: float, paid: bool, kind: int) -> None:
        """The payment of ``hid`` completes at ``at``: sold to a buyer of ``kind``, or released."""
        h = self._holds[hid]
        units = int(h[2])
        if paid:
            h[0] = _DONE
            self.sold += units
            self._log(at, 0, -units, units, kind)
        else:
            h[0] = _FAILING
            h[4] = at  # released when the simulation reaches `at`
            self._schedule(self._failures, at, hid)

    def settle(self) -> None:
        """At the end of the run: apply every release still pending (holds expire)."""
        self.advance(float("inf"))

    def audit(self, units_bought: int) -> None:
        """Raise OversellError unless sold + available == stock and buyers paid for ``sold``."""
        avail = sum(self.available)
        if self.sold + avail != self.units or units_bought != self.sold or min(self.available) < 0:
            raise OversellError(
                f"stock books do not balance: sold {self.sold} + available {avail} "
                f"!= {self.units} units, or journeys paid for {units_bought}"
            )
