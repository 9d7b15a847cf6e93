"""The injected payment gateway: latency outside the workers, load-dependent failures.

This is the yellow cart: stock is reserved, the buyer pays, and the gateway
declines or never answers. The failure probability grows with the service's
occupancy as the scenario's ``[service.payment]`` says; latency and failures
draw from the scenario's ``payment`` random stream, so a replay is reproducible
in distribution (not request by request: arrival order on a real server varies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from flashsale.distributions import Constant
from flashsale.scenario import Payment
from flashsale.service.store import Charge

__all__ = ["PaymentGateway"]


class PaymentGateway:
    """Charges a hold: ``paid``, ``failed`` (402) or ``timeout`` (504)."""

    def __init__(
        self, payment: Payment, rng: np.random.Generator, load: Callable[[], float]
    ) -> None:
        self.payment = payment
        self._rng = rng
        self._load = load

    @property
    def instant(self) -> bool:
        """True when the gateway answers at once: checkout is then one transaction."""
        g = self.payment.gateway_s
        return isinstance(g, Constant) and g.value == 0

    def decide(self) -> Charge:
        """The gateway's verdict at the current load (no latency)."""
        p = self.payment.failure_probability(self._load())
        if p > 0 and self._rng.random() < p:
            return "failed"
        return "paid"

    async def charge(self) -> Charge:
        """Wait the gateway's latency (at most ``timeout_s``), then decide."""
        latency = float(self.payment.gateway_s.sample(self._rng, 1)[0])
        if latency >= self.payment.timeout_s:
            await asyncio.sleep(self.payment.timeout_s)
            return "timeout"
        await asyncio.sleep(latency)
        return self.decide()
