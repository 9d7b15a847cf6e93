"""The buyer policy: what a human or a bot does after each answer. Written once, pure.

Both engines call it: the simulator (flashsale.sim.journey) reads the table in
its hot path as list lookups; the replay's journey (flashsale.replay.journey)
calls :func:`decide` after each request. An answer is not an HTTP status but
its *meaning* (:class:`Answer`): the simulated checkout produces meanings
directly, the replay gets them from the target's answer map
(flashsale/protocols/reference.toml for the bundled service's API). So a difference
between a simulation and a replay of one scenario is the checkout's doing,
never the harness's.

The decision is ``(act, pause, result)``:

- ``act`` (:class:`Act`): go on, wait, retry, cart again, ask for fewer units,
  take a new CAPTCHA challenge, or end;
- ``pause`` (:class:`Pause`): how long before the next request: a think time
  (a bot: its request interval), the refresh interval, or the think time but at
  least the answer's Retry-After (bots ignore Retry-After and keep their cadence);
- ``result``: the journey's result (``flashsale.outcome.RESULT``) if it ends
  here, or if a retry is called for but the journey's retry budget is spent.

Retries are one budget per journey (``humans.retries_on_error``,
``bots.max_retries``): every act in :data:`SPENDS` uses one. A journey that
carted and ends without paying is recorded ``cart_failed`` whatever the result
here (the yellow cart; flashsale.sim.record and the replay's recorder).

Patience is a property of a wait, not a decision: a human's request that waits
longer than a fresh patience draw for a checkout worker is abandoned
(``ABANDONED``, 499). The simulator decides it in its queue; the replay sends the
draw (``X-Patience-S``) and the reference service decides it in its queue. Not
in the waiting room, which takes no worker.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from flashsale.outcome import KIND, RESULT, STEP

__all__ = [
    "SPENDS",
    "STEPS",
    "TABLE",
    "Act",
    "Answer",
    "Decision",
    "Pause",
    "decide",
    "journey_result",
    "policy_rows",
]


class Answer(IntEnum):
    """What an answer means to a buyer (the meanings a target's answer map yields)."""

    OK = 0  # the step succeeded: page open with stock, challenge served, reserved, paid
    SOLD_OUT = 1  # no stock left in the buyer's channel, or the sale has closed
    NOT_OPEN = 2  # too early: the sale has not opened yet
    RATE_LIMITED = 3  # too many requests from this account or IP (429)
    LIMIT_REACHED = 4  # the per-account limit allows fewer units than asked (maybe none)
    CAPTCHA_FAILED = 5  # no valid CAPTCHA answer: a new challenge is needed
    REJECTED = 6  # refused for good (not admitted, lottery lost, request refused)
    PAYMENT_DECLINED = 7  # the gateway declined; the service released the hold
    PAYMENT_TIMED_OUT = 8  # the gateway did not answer in time; the hold was released
    HOLD_EXPIRED = 9  # the hold had expired before the payment started
    OVERLOADED = 10  # the service's queue was full (503)
    QUEUE_TIMEOUT = 11  # waited service.queue_timeout_s for a worker (503)
    ABANDONED = 12  # the buyer's patience ran out before the answer came (499)
    AMBIGUOUS = 13  # the answer was lost (client timeout, reset): it may have taken effect
    RETRY = 14  # the target asks for the same request again (a transient refusal)


class Act(IntEnum):
    """What the buyer does next."""

    NEXT = 0  # on to the next step (view -> [lottery] -> [captcha] -> cart -> pay)
    WAIT = 1  # the same step again, spends no retry (the sale is not open yet)
    RETRY = 2  # the same step again; spends a retry
    CART_AGAIN = 3  # the hold is gone: back to the cart; spends a retry
    FEWER = 4  # cart again asking only for what the limit still allows; spends a retry
    CHALLENGE = 5  # a new CAPTCHA challenge, then the cart; spends a retry
    END = 6  # the journey ends with the decision's result


class Pause(IntEnum):
    """How long the buyer waits before its next request."""

    NONE = 0  # the journey ended
    THINK = 1  # a think time (human) or the request interval (bot)
    REFRESH = 2  # humans.refresh_s (human) or the request interval (bot)
    BACKOFF = 3  # THINK, but a human waits at least the answer's Retry-After
    SOLVE = 4  # the buyer's CAPTCHA solve time, then the answer goes with the next request
    DRAW = 5  # until the lottery is drawn (then a think time before the cart)


class Decision(NamedTuple):
    act: Act
    pause: Pause
    result: int  # RESULT code: the end if act is END, or if the retry budget is spent


SPENDS = frozenset({Act.RETRY, Act.CART_AGAIN, Act.FEWER, Act.CHALLENGE})
"""Acts that use one of the journey's retries."""

STEPS = ("view", "captcha", "lottery", "cart", "pay")
"""The journey steps the policy covers (names from ``flashsale.outcome.STEP``)."""

_R = {name: RESULT.index(name) for name in RESULT}
_END = {
    a: Decision(Act.END, Pause.NONE, _R[r])
    for a, r in (
        (Answer.SOLD_OUT, "sold_out"),
        (Answer.REJECTED, "rejected"),
        (Answer.ABANDONED, "abandoned"),
    )
}
_BUSY = {
    Answer.RATE_LIMITED: Decision(Act.RETRY, Pause.BACKOFF, _R["rejected"]),
    Answer.OVERLOADED: Decision(Act.RETRY, Pause.BACKOFF, _R["error"]),
    Answer.QUEUE_TIMEOUT: Decision(Act.RETRY, Pause.BACKOFF, _R["timed_out"]),
    Answer.RETRY: Decision(Act.RETRY, Pause.BACKOFF, _R["error"]),
}
_NOT_OPEN = {Answer.NOT_OPEN: Decision(Act.WAIT, Pause.REFRESH, _R["error"])}
_NEXT = {Answer.OK: Decision(Act.NEXT, Pause.THINK, _R["error"])}
_SAFE_AGAIN = {Answer.AMBIGUOUS: Decision(Act.RETRY, Pause.THINK, _R["timed_out"])}
_CHALLENGE = {Answer.CAPTCHA_FAILED: Decision(Act.CHALLENGE, Pause.THINK, _R["rejected"])}

_BY_STEP: dict[str, dict[Answer, Decision]] = {
    # a page view and a challenge change nothing on the service: safe to send again
    "view": {**_NEXT, **_NOT_OPEN, **_BUSY, **_END, **_SAFE_AGAIN},
    "captcha": {
        Answer.OK: Decision(Act.NEXT, Pause.SOLVE, _R["error"]),
        **_NOT_OPEN,
        **_BUSY,
        **_END,
        **_SAFE_AGAIN,
    },
    # entered: wait for the draw, then the cart (a lost entry answer: enter again,
    # the service keeps one entry per account)
    "lottery": {
        Answer.OK: Decision(Act.NEXT, Pause.DRAW, _R["error"]),
        **_NOT_OPEN,
        **_BUSY,
        **_END,
        **_SAFE_AGAIN,
        **_CHALLENGE,
    },
    "cart": {
        **_NEXT,
        **_NOT_OPEN,
        **_BUSY,
        **_END,
        **_CHALLENGE,
        Answer.LIMIT_REACHED: Decision(Act.FEWER, Pause.THINK, _R["rejected"]),
        # a lost cart answer may hold stock: never sent again blindly
        Answer.AMBIGUOUS: Decision(Act.END, Pause.NONE, _R["timed_out"]),
    },
    "pay": {
        Answer.OK: Decision(Act.END, Pause.NONE, _R["purchased"]),
        **_BUSY,
        **_END,
        Answer.PAYMENT_DECLINED: Decision(Act.CART_AGAIN, Pause.THINK, _R["error"]),
        Answer.PAYMENT_TIMED_OUT: Decision(Act.CART_AGAIN, Pause.THINK, _R["timed_out"]),
        Answer.HOLD_EXPIRED: Decision(Act.CART_AGAIN, Pause.THINK, _R["error"]),
        # paying is idempotent (the same Idempotency-Key): a lost answer is asked again
        **_SAFE_AGAIN,
    },
}
_UNEXPECTED = Decision(Act.END, Pause.NONE, _R["error"])
"""An answer a step cannot give (a payment answer to a page view): the journey errs."""

TABLE: tuple[tuple[tuple[Decision, ...], ...], ...] = tuple(
    tuple(
        tuple(
            _BY_STEP[STEP[s]].get(a, _UNEXPECTED) if STEP[s] in _BY_STEP else _UNEXPECTED
            for a in Answer
        )
        for s in range(len(STEP))
    )
    for _kind in KIND
)
"""``TABLE[kind][step][answer]``: the decision before the journey's state is taken into
account; indexed by ``flashsale.outcome`` KIND and STEP codes and :class:`Answer`.
Humans and bots follow the same rules; what differs is their pauses (think times vs
a fixed request interval, Retry-After honoured or not), budgets and patience."""


def decide(kind: int, step: int, answer: int, retries_left: int, allowed: int) -> Decision:
    """The next act of a journey of ``kind`` (KIND code) that got ``answer`` at ``step``
    (STEP code), with ``retries_left`` retries and ``allowed`` units the account limit
    still allows (only read after LIMIT_REACHED).

    A spending act with no retry left ends the journey with the decision's result; a
    limit that allows nothing more ends it ``rejected``.
    """
    d = TABLE[kind][step][answer]
    if d.act in SPENDS:
        if retries_left <= 0:
            return Decision(Act.END, Pause.NONE, d.result)
        if d.act is Act.FEWER and allowed <= 0:
            return Decision(Act.END, Pause.NONE, d.result)
    return d


_PURCHASED, _CART_FAILED = RESULT.index("purchased"), RESULT.index("cart_failed")


def journey_result(result: int, carted: bool) -> int:
    """The result a journey is recorded with: one that carted and did not buy is
    ``cart_failed`` (the yellow cart), whatever ended it."""
    return _CART_FAILED if carted and result != _PURCHASED else result


def policy_rows() -> list[tuple[str, str, str, str]]:
    """The policy as rows ``(step, answer, act and pause, result when it ends)`` for
    every answer a step can meaningfully get; the result is the end's, or the one a
    spent retry budget ends with, "-" where neither applies. The README's table is
    checked against these. Both kinds share the rows."""
    rows = []
    for step in STEPS:
        for answer, d in _BY_STEP[step].items():
            what = d.act.name.lower().replace("_", " ")
            if d.pause is not Pause.NONE:
                what += f" after {d.pause.name.lower()}"
            ends = d.act is Act.END or d.act in SPENDS
            rows.append((step, answer.name.lower(), what, RESULT[d.result] if ends else "-"))
    return rows
