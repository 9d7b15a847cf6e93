"""Service-side rules of the checkout that both engines implement, in one place.

The simulator (flashsale.sim.shop, .service, .stock) and the reference service
(flashsale.service) implement these facts the same way; the buyer policy
(flashsale.policy) is what a buyer does with the answers.

- Capacity: ``service.workers`` requests in service at once, at most
  ``service.queue_limit`` waiting for a worker, none waiting longer than
  ``service.queue_timeout_s``; beyond either limit the answer is 503 with a
  Retry-After of :data:`OVERLOADED_RETRY_AFTER_S` (the meaning OVERLOADED when the
  queue is full, QUEUE_TIMEOUT when the wait ran out).
- A hold: a cart reserves units for ``service.cart_hold_s``. A payment whose
  worker starts before the hold expires keeps it for the payment's whole
  duration (the gateway's wait included): a payment the gateway accepts is never
  thrown away because the hold ran out meanwhile (as shops do: stock reserved for
  a checkout in progress is not released under an authorised payment). A payment
  that starts after the expiry is answered 410 (HOLD_EXPIRED).
- A declined (402) or timed-out (504) payment releases the hold's units to the
  stock at once; the buyer must cart again.
- A CAPTCHA answer is good for one hold: carting again needs a new challenge.
- Retry-After: a 429 says when the refusing token bucket has a token again, a 503
  says :data:`OVERLOADED_RETRY_AFTER_S`, both as :func:`retry_after_header` sends
  them; a human waits at least that long (flashsale.policy), a bot does not.
- A per-account limit that refuses a cart (403 ``limit_reached``) says how many
  units it still allows (``allowed_units``); a bot asks for those.
"""

from __future__ import annotations

import math

__all__ = ["OVERLOADED_RETRY_AFTER_S", "retry_after_header"]

OVERLOADED_RETRY_AFTER_S = 1.0
"""Retry-After (seconds) of a 503 from a full queue or a queue timeout."""


def retry_after_header(seconds: float) -> int:
    """The Retry-After header's value for a wait of ``seconds``: whole seconds (RFC 9110
    section 10.2.3 allows no fraction), rounded up so a client never retries too soon,
    and at least 1."""
    return max(1, math.ceil(seconds))
