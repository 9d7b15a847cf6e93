"""The scenario's defenses, applied to live requests.

The rules themselves live in :mod:`flashsale.defenses` and are the ones the
simulator runs; this module only feeds them wall-clock sale time (seconds from
the opening) and the request's account and IP, and turns a refusal into the
HTTP answer the API documents. The waiting room and the lottery live in
:mod:`~flashsale.service.admission`. The per-account limit is kept twice on purpose:
the database enforces it inside the stock transaction (the truth, surviving a
restart), and an :class:`~flashsale.defenses.account_limit.AccountLimit` mirror
refuses an account already at its limit without touching the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from flashsale.defenses.account_limit import AccountLimit
from flashsale.defenses.rate_limit import TokenBuckets
from flashsale.scenario import Defenses
from flashsale.service.admission import LotteryDesk, RoomDesk
from flashsale.service.bodies import ApiError
from flashsale.streams import Streams

__all__ = ["CAPTCHA_TOKEN_TTL_S", "NO_LIMIT", "Guards"]

NO_LIMIT = 2**62
"""The database's per-account cap when the limit is off (it still counts units)."""

CAPTCHA_TOKEN_TTL_S = 120.0
"""A solved CAPTCHA is good for one successful add-to-cart within this time."""


class Guards:
    """Live state of every defense for one sale; rebuilt when defenses are switched."""

    def __init__(
        self,
        defenses: Defenses,
        streams: Streams,
        usage: Mapping[int, int],
        captcha_delay_s: float = 0.0,
        lottery_winners: int = 1,
    ) -> None:
        self.config = defenses
        self.captcha_delay_s = captcha_delay_s
        rl = defenses.rate_limit
        self._per_account = TokenBuckets(rl.per_account_per_s, rl.burst) if rl.enabled else None
        self._per_ip = TokenBuckets(rl.per_operator_per_s, rl.burst) if rl.enabled else None
        al = defenses.account_limit
        self.account_limit = AccountLimit(al.max_units) if al.enabled else None
        if self.account_limit is not None:
            for account, used in usage.items():
                # Over the limit (lowered while running): capping refuses the same requests.
                self.account_limit.record(account, min(used, al.max_units))
        wr, lot = defenses.waiting_room, defenses.lottery
        self.room = RoomDesk(wr, streams["defense.waiting_room"]) if wr.enabled else None
        self.lottery = (
            LotteryDesk(lot, lot.winners or lottery_winners, streams["defense.lottery"])
            if lot.enabled
            else None
        )
        self._captcha_rng = streams["defense.captcha"]
        self._challenges: dict[int, tuple[int, str]] = {}
        self._captcha_tokens: dict[str, tuple[int, float]] = {}

    @property
    def max_units(self) -> int:
        """The per-account cap the stock transaction enforces."""
        return self.config.account_limit.max_units if self.account_limit else NO_LIMIT

    # ----------------------------------------------------------- rate limits

    def rate(self, account: int, ip: str, t: float) -> None:
        """Take a token from the IP's and the account's buckets, or raise 429."""
        for buckets, key, who in (
            (self._per_ip, ip, "ip"),
            (self._per_account, account, "account"),
        ):
            if buckets is not None and not buckets.take(key, t):
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests from this {who}",
                    retry_after_s=buckets.retry_after(key, t),
                )

    # ----------------------------------------------------------- account limit

    def check_limit(self, account: int, units: int) -> None:
        if self.account_limit is not None and not self.account_limit.allows(account, units):
            raise ApiError(
                403,
                "limit_reached",
                f"account {account} may hold or buy at most {self.account_limit.max_units} units",
                "units",
                extra={"allowed_units": max(0, self._room(account))},
            )

    def reserved(self, account: int, units: int, captcha_token: str | None) -> None:
        """A hold was taken: count it, and spend the CAPTCHA token."""
        if self.account_limit is not None:
            self.account_limit.record(account, min(units, self._room(account)))
        if captcha_token is not None:
            self._captcha_tokens.pop(captcha_token, None)

    def _room(self, account: int) -> int:
        assert self.account_limit is not None
        return self.account_limit.max_units - self.account_limit.used(account)

    def release(self, account: int, units: int) -> None:
        """Units came back (hold expired, payment failed, order cancelled)."""
        if self.account_limit is not None:
            n = min(units, self.account_limit.used(account))
            if n:
                self.account_limit.release(account, n)

    # ----------------------------------------------------------------- CAPTCHA

    def challenge(self, account: int) -> tuple[int, str]:
        """A new challenge for ``account``: (id, prompt). The answer is the sum."""
        a, b = (int(x) for x in self._captcha_rng.integers(1, 50, size=2))
        cid = len(self._challenges) + 1
        self._challenges[cid] = (account, str(a + b))
        return cid, f"{a} + {b}"

    def solve(self, cid: int, account: int, answer: str, t: float) -> str:
        """A single-use token for a right answer; a challenge takes one try."""
        owner_answer = self._challenges.get(cid)
        if owner_answer is None or owner_answer[0] != account:
            raise ApiError(404, "unknown_challenge", f"no challenge {cid} for this account")
        if owner_answer[1] == "":
            raise ApiError(409, "challenge_used", f"challenge {cid} was already answered")
        self._challenges[cid] = (account, "")
        if answer.strip() != owner_answer[1]:
            raise ApiError(403, "wrong_answer", "wrong CAPTCHA answer; ask for a new challenge")
        token = secrets.token_urlsafe(16)
        self._captcha_tokens[token] = (account, t + CAPTCHA_TOKEN_TTL_S)
        return token

    def check_captcha(self, account: int, token: str | None, t: float) -> None:
        if not self.config.captcha.enabled:
            return
        held = self._captcha_tokens.get(token) if token else None
        if held is None or held[0] != account or held[1] < t:
            raise ApiError(
                403,
                "captcha_required",
                "solve a CAPTCHA (POST /v1/captcha) and send its captcha_token",
                "captcha_token",
            )
