"""HTTP-like statuses the simulated checkout answers with, and what each means for a journey.

They match the reference service's API (flashsale.service) so that tables from
both engines read the same. 499 is nginx's "client closed request": the buyer ran
out of patience before a worker took the request.
"""

from __future__ import annotations

from flashsale.outcome import RESULT

__all__ = [
    "ABANDONED",
    "CREATED",
    "FINAL_RESULT",
    "GATEWAY_TIMEOUT",
    "GONE",
    "LIMITED",
    "NOT_OPEN",
    "OK",
    "PAYMENT_FAILED",
    "REJECTED",
    "SOLD_OUT",
    "UNAVAILABLE",
]

OK = 200  # a view: the sale is open and has stock
CREATED = 201  # reserved (cart) or paid (pay)
PAYMENT_FAILED = 402  # the gateway declined; the hold is released
REJECTED = 403  # a defense refused (e.g. account limit reached)
SOLD_OUT = 409  # no stock left in the buyer's channel, or the sale window closed
GONE = 410  # the cart hold expired before the payment started
NOT_OPEN = 425  # too early: the sale has not opened yet
LIMITED = 429  # rate limited
ABANDONED = 499  # the buyer gave up waiting for a worker (patience)
UNAVAILABLE = 503  # the queue was full
GATEWAY_TIMEOUT = 504  # waited longer than service.queue_timeout_s, or the payment timed out

FINAL_RESULT = {
    SOLD_OUT: RESULT.index("sold_out"),
    ABANDONED: RESULT.index("abandoned"),
    GATEWAY_TIMEOUT: RESULT.index("timed_out"),
    REJECTED: RESULT.index("rejected"),
    LIMITED: RESULT.index("rejected"),
    UNAVAILABLE: RESULT.index("error"),
    PAYMENT_FAILED: RESULT.index("error"),
    GONE: RESULT.index("error"),
}
"""The journey result when a response with this status ends it (before any cart)."""
