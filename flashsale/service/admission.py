"""Waiting room and lottery on the live sale's clock: tickets, tokens, the draw.

The rules are the simulator's (:class:`flashsale.defenses.waiting_room.WaitingRoom`
and :func:`flashsale.defenses.lottery.draw`); this module only keeps what HTTP
needs around them: which ticket is whose, the admission token each admitted
account got, who entered the lottery and who won. Time is sale time in seconds
(t = 0 at the main opening). Admissions are computed lazily, at each call, with
their exact times, so no background task is needed. Wall clocks may step back;
the rules refuse that, so each desk never lets its own clock go backwards.

State is in memory: a restart or a switch of defenses empties the room and the
lottery (the stock, orders and account counts live in the database).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from flashsale.defenses.lottery import draw
from flashsale.defenses.waiting_room import WaitingRoom
from flashsale.scenario import Lottery as LotteryConfig
from flashsale.scenario import WaitingRoom as WaitingRoomConfig
from flashsale.service.bodies import ApiError

__all__ = ["POLL_MAX_S", "POLL_MIN_S", "LotteryDesk", "RoomDesk"]

POLL_MIN_S = 0.5
"""Shortest poll interval a waiting visitor is told (``retry_after_s``)."""

POLL_MAX_S = 5.0
"""Longest: a visitor learns of its admission at most this late."""


class _Clock:
    """Sale time that never goes backwards (the rules raise if it did)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = -math.inf

    def __call__(self, t: float) -> float:
        self.last = max(self.last, t)
        return self.last


@dataclass(slots=True)
class _Admission:
    """One admission of an account: its token, when its session ends, and whether a
    cart went through the room's check under it."""

    token: str
    ends: float
    carted: bool = False


class RoomDesk:
    """The waiting room's front desk: one ticket per account, an admission token
    per admission, valid for the session (``session_s``) or until the account pays.

    Each admission is its own session in the room, so an account that paid, joined
    again and was admitted again holds a new session that nothing of the first one
    (its timeout, a late payment for what it carted) ends.
    """

    def __init__(self, config: WaitingRoomConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.room = WaitingRoom.from_config(config, rng)
        self._clock = _Clock()
        self._account_of: dict[str, int] = {}  # ticket -> account
        self._ticket_of: dict[int, str] = {}  # account -> its current ticket
        self._admitted: dict[int, _Admission] = {}  # account -> its current admission
        self.admissions: list[tuple[int, float]] = []
        """Every admission so far, (account, sale time), in order."""

    def _settle(self, t: float) -> float:
        t = self._clock(t)
        for visitor, at in self.room.admit(t):
            account = int(visitor)  # type: ignore[call-overload]
            self._admitted[account] = _Admission(
                secrets.token_urlsafe(16), at + self.config.session_s
            )
            self.admissions.append((account, at))
        return t

    def join(self, account: int, t: float) -> dict[str, Any]:
        """``account`` arrives; it keeps its ticket while waiting or in session."""
        t = self._settle(t)
        ticket = self._ticket_of.get(account)
        if ticket is not None:
            held = self._admitted.get(account)
            if held is None or t < held.ends:
                return self._state(ticket, account, t)
            self._forget(account)  # the session is over: queue again
        ticket = secrets.token_urlsafe(12)
        self._account_of[ticket] = account
        self._ticket_of[account] = ticket
        self.room.join(account, t)
        return self._state(ticket, account, self._settle(t))

    def poll(self, ticket: str, t: float) -> dict[str, Any]:
        """The ticket's state: admitted with a token, or still waiting (404 if unknown)."""
        account = self._account_of.get(ticket)
        if account is None:
            raise ApiError(404, "unknown_ticket", "no such waiting-room ticket", "ticket")
        return self._state(ticket, account, self._settle(t))

    def _state(self, ticket: str, account: int, t: float) -> dict[str, Any]:
        held = self._admitted.get(account)
        if held is not None:
            return {
                "ticket": ticket,
                "admitted": True,
                "admission_token": held.token,
                "session_ends_in_s": round(max(0.0, held.ends - t), 3),
                "retry_after_s": 0.0,
            }
        due = self.room.next_admission()
        wait = max(-t, 0.0 if due is None else due - t)
        return {
            "ticket": ticket,
            "admitted": False,
            "waiting": self.room.waiting(),
            "opens_in_s": round(max(0.0, -t), 3),
            "retry_after_s": round(min(POLL_MAX_S, max(POLL_MIN_S, wait)), 3),
        }

    def check(self, account: int, token: str | None, t: float) -> None:
        """403 ``not_admitted`` unless ``token`` is ``account``'s and its session runs."""
        t = self._settle(t)
        held = self._admitted.get(account)
        if held is None or token is None or not secrets.compare_digest(held.token, token):
            raise ApiError(
                403,
                "not_admitted",
                "join the waiting room (POST /v1/waiting-room) and send its admission_token",
                "admission_token",
            )
        if t >= held.ends:
            raise ApiError(
                403,
                "not_admitted",
                "the waiting-room session is over; join again",
                "admission_token",
            )
        held.carted = True

    def leave(self, account: int, t: float) -> None:
        """``account`` paid: the session it carted in ends and its slot goes to the
        next visitor. A payment for units carted in an earlier session (the account
        has not carted in its current one) leaves the current session running."""
        t = self._settle(t)
        held = self._admitted.get(account)
        if held is not None and held.carted:
            self.room.leave(account, t)
            self._forget(account)

    def _forget(self, account: int) -> None:
        self._admitted.pop(account, None)
        ticket = self._ticket_of.pop(account, None)
        if ticket is not None:
            del self._account_of[ticket]


class LotteryDesk:
    """Entries from the opening for ``entry_window_s``, the draw at its end, then
    ``claim_window_s`` in which only winners may add to the cart."""

    def __init__(self, config: LotteryConfig, winners: int, rng: np.random.Generator) -> None:
        self.entries_close = config.entry_window_s
        self.claim_closes = config.entry_window_s + config.claim_window_s
        self.winners_wanted = winners
        self._rng = rng
        self._entrants: set[int] = set()
        self.winners: frozenset[int] | None = None
        """The drawn accounts; None until the entry window has closed."""

    def _draw_if_due(self, t: float) -> None:
        if self.winners is None and t >= self.entries_close:
            won = draw(sorted(self._entrants), self.winners_wanted, self._rng)
            self.winners = frozenset(int(a) for a in won)

    def enter(self, account: int, t: float) -> bool:
        """Enter ``account``; False if it had entered already. 425 before the opening,
        410 once entries are closed."""
        if t < 0:
            raise ApiError(425, "not_open", f"entries open in {-t:.3f} s", None, -t)
        self._draw_if_due(t)
        if self.winners is not None:
            raise ApiError(410, "entries_closed", "the lottery has been drawn")
        if account in self._entrants:
            return False
        self._entrants.add(account)
        return True

    def result(self, account: int, t: float) -> dict[str, Any]:
        self._draw_if_due(t)
        out: dict[str, Any] = {
            "account": account,
            "entered": account in self._entrants,
            "drawn": self.winners is not None,
            "won": self.winners is not None and account in self.winners,
        }
        if self.winners is None:
            out["draw_in_s"] = round(self.entries_close - t, 3)
        else:
            out["claim_closes_in_s"] = round(max(0.0, self.claim_closes - t), 3)
        return out

    def check(self, account: int, t: float) -> None:
        """Add-to-cart in lottery mode: 425 before the draw, 409 after the claim
        window, 403 for anyone but a winner."""
        self._draw_if_due(t)
        if self.winners is None:
            wait = self.entries_close - t
            raise ApiError(425, "not_open", f"the lottery is drawn in {wait:.3f} s", None, wait)
        if t >= self.claim_closes:
            raise ApiError(409, "sale_closed", "the lottery's claim window is over")
        if account not in self.winners:
            raise ApiError(403, "not_admitted", "only lottery winners may buy", "account")
