"""The HTTP status the simulated checkout records for each answer it gives.

The shop answers with meanings (:class:`flashsale.policy.Answer`), the buyer
policy's vocabulary; the requests table records the status the reference
service (flashsale.service) sends for the same meaning at the same step, so that
tables from both engines read the same. 499 is nginx's "client closed request":
the buyer ran out of patience before a worker took the request.
"""

from __future__ import annotations

from flashsale.outcome import STEP
from flashsale.policy import Answer

__all__ = ["STATUS"]

_STATUS = {
    Answer.SOLD_OUT: 409,
    Answer.NOT_OPEN: 425,
    Answer.RATE_LIMITED: 429,
    Answer.LIMIT_REACHED: 403,
    Answer.CAPTCHA_FAILED: 403,
    Answer.REJECTED: 403,
    Answer.PAYMENT_DECLINED: 402,
    Answer.PAYMENT_TIMED_OUT: 504,
    Answer.HOLD_EXPIRED: 410,
    Answer.OVERLOADED: 503,
    Answer.QUEUE_TIMEOUT: 503,
    Answer.ABANDONED: 499,
    Answer.AMBIGUOUS: 0,
    Answer.RETRY: 409,  # request_in_progress
}
_CREATES = {"cart", "pay", "lottery"}  # 201 Created; a view or a challenge is 200

_BY_STEP = {
    ("lottery", Answer.REJECTED): 410,  # the entries have closed
    # the sale page answers 200 and says in its body whether it is open, sold out
    ("view", Answer.NOT_OPEN): 200,
    ("view", Answer.SOLD_OUT): 200,
}

STATUS: tuple[tuple[int, ...], ...] = tuple(
    tuple(
        (201 if name in _CREATES else 200)
        if a is Answer.OK
        else _BY_STEP.get((name, a), _STATUS[a])
        for a in Answer
    )
    for name in STEP
)
"""``STATUS[step][answer]``: the recorded status (STEP code, Answer code)."""
