"""The reference service's answer map: what each of its answers means to a buyer.

Maps a (step, :class:`Reply`) of the bundled checkout's API (flashsale.service,
documented there and in the README) to the buyer policy's :class:`Answer`, so
the replay's journey is driven by the same rules as the simulation. An answer
this map does not know is ``None``: the journey ends ``error`` (a protocol
error, never a success).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flashsale.policy import Answer

__all__ = ["ABANDONED_STATUS", "PATIENCE_HEADER", "Reply", "meaning"]

ABANDONED_STATUS = 499
"""The status of a request whose buyer stopped waiting for a worker (nginx's "client
closed request"), as the simulator records it."""

PATIENCE_HEADER = "X-Patience-S"
"""Request header: how many seconds this buyer waits for a worker (a human's
patience draw). The reference service answers 499 to a request still queued then."""


class Reply(NamedTuple):
    """What a journey needs from a response: status (0 = none), JSON body, Retry-After."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


_COMMON = {
    0: Answer.AMBIGUOUS,
    ABANDONED_STATUS: Answer.ABANDONED,
    425: Answer.NOT_OPEN,
    429: Answer.RATE_LIMITED,
}
_BY_CODE = {
    "sold_out": Answer.SOLD_OUT,
    "sale_closed": Answer.SOLD_OUT,
    "limit_reached": Answer.LIMIT_REACHED,
    "captcha_required": Answer.CAPTCHA_FAILED,
    "wrong_answer": Answer.CAPTCHA_FAILED,
    "not_admitted": Answer.REJECTED,
    "payment_failed": Answer.PAYMENT_DECLINED,
    "payment_timeout": Answer.PAYMENT_TIMED_OUT,
    "hold_expired": Answer.HOLD_EXPIRED,
    "unknown_reservation": Answer.HOLD_EXPIRED,
    "already_paid": Answer.OK,
    "already_entered": Answer.OK,
    "request_in_progress": Answer.RETRY,
}


def meaning(step: str, reply: Reply) -> Answer | None:
    """The meaning of the reference service's ``reply`` to a request of ``step``.

    A sale-status page (``view``) is read for its content: open with stock is OK,
    open without stock or closed is SOLD_OUT, not yet open is NOT_OPEN.
    """
    status, body = reply.status, reply.body
    if status in _COMMON:
        return _COMMON[status]
    if step == "view" and status == 200:
        if body.get("open"):
            return Answer.OK if int(body.get("stock_left", 1)) > 0 else Answer.SOLD_OUT
        if float(body.get("closes_in_s", 1.0)) <= 0:
            return Answer.SOLD_OUT
        return Answer.NOT_OPEN
    if 200 <= status < 300:
        return Answer.OK
    code = str(body.get("error", ""))
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status == 503:
        return Answer.QUEUE_TIMEOUT if body.get("reason") == "queue_timeout" else Answer.OVERLOADED
    if status == 410 and step == "lottery":
        return Answer.REJECTED  # the entries have closed
    if status in (402, 504) and step == "pay":
        return Answer.PAYMENT_DECLINED if status == 402 else Answer.PAYMENT_TIMED_OUT
    return None
