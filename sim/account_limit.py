"""Engine side of the per-account limit: units held in carts or bought count against it.

A cart asking for more than the account's remaining allowance is refused (403);
the buyer may ask again for what is left. Units come back when a hold expires or a
payment fails. The rule is flashsale.defenses.account_limit.
"""

from __future__ import annotations

from flashsale.defenses.account_limit import AccountLimit as Rule
from flashsale.scenario import AccountLimit as AccountLimitConfig

from .defense import Defense

__all__ = ["AccountLimit"]


class AccountLimit(Defense):
    """At most ``max_units`` per account over the sale."""

    def __init__(self, config: AccountLimitConfig) -> None:
        self._rule = Rule(config.max_units)

    def at_cart(self, account: int, units: int) -> int:
        if self._rule.allows(account, units):
            return units
        return self._rule.max_units - self._rule.used(account)

    def reserved(self, account: int, units: int) -> None:
        self._rule.record(account, units)

    def released(self, account: int, units: int) -> None:
        self._rule.release(account, units)
