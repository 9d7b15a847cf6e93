"""The injected payment gateway: latency outside the workers, load-dependent failures.

This is the yellow cart: stock is reserved, the buyer pays, and the gateway
declines or never answers. The failure probability grows with the service's
occupancy as the scenario's ``[service.payment]`` says; latency and failures
draw from the scenario's ``payment`` random stream, so a replay is reproducible
in distribution (not request by request: arrival order on a real server varies).

As in the simulation (flashsale.sim.shop), a gateway slower than ``timeout_s``
times out after ``timeout_s``, and the verdict depends on the load the payment
met when it reached the pay step's pool (requests in service and queued there,
per worker, itself not counted), not on the load after the gateway's wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np

from flashsale.distributions import Constant
from flashsale.scenario import Payment
from flashsale.service.store import Charge

__all__ = ["GIVE_UP_GRACE_S", "PaymentGateway"]

GIVE_UP_GRACE_S = 30.0
"""How long past the gateway's ``timeout_s`` the service still waits for a payment to
finish (the worker coming back, the database) before it gives the payment up."""


class PaymentGateway:
    """Charges a hold: ``paid``, ``failed`` (402) or ``timeout`` (504)."""

    def __init__(self, payment: Payment, rng: np.random.Generator) -> None:
        self.payment = payment
        self._rng = rng

    @property
    def instant(self) -> bool:
        """True when the gateway answers at once: checkout is then one transaction."""
        g = self.payment.gateway_s
        return isinstance(g, Constant) and g.value == 0

    @property
    def give_up_s(self) -> float:
        """A payment's deadline, from its start: a payment not finished by then is
        presumed lost (the service stopped or stalled), its hold released and a late
        answer voided. The gateway itself answers within ``timeout_s``."""
        return self.payment.timeout_s + GIVE_UP_GRACE_S

    def decide(self, load: float) -> Charge:
        """The gateway's verdict at ``load`` (requests in the pay step's pool per worker
        when the payment reached it; no latency)."""
        p = self.payment.failure_probability(load)
        if p > 0 and self._rng.random() < p:
            return "failed"
        return "paid"

    def start(self, load: float) -> Charge | Coroutine[Any, Any, Charge]:
        """Start a charge while a worker holds the payment, which met ``load`` when it
        reached its pool (the simulator reads it then too: flashsale.sim.shop). An
        instant gateway answers at once; otherwise the latency and the verdict are
        drawn now and the coroutine waits the latency, ``timeout_s`` at most, then
        answers."""
        if self.instant:
            return self.decide(load)
        latency = float(self.payment.gateway_s.sample(self._rng, 1)[0])
        if latency > self.payment.timeout_s:
            return _answer(self.payment.timeout_s, "timeout")
        return _answer(latency, self.decide(load))


async def _answer(after_s: float, verdict: Charge) -> Charge:
    await asyncio.sleep(after_s)
    return verdict
