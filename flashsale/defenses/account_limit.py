"""Per-account purchase limit: at most ``max_units`` units per account over the sale.

Units count from the moment they are reserved (added to a cart), so a buyer cannot
hold more than the limit in parallel carts; a hold that expires or a payment that
fails gives them back (``release``). Bot operators dodge it by spreading purchases
over many accounts, which is why fairness is measured per person, not per account.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["AccountLimit"]


class AccountLimit:
    """Units held or bought per account, against a fixed limit."""

    __slots__ = ("_used", "max_units")

    def __init__(self, max_units: int) -> None:
        if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
            raise ValueError(f"max_units(={max_units!r}) must be an integer >= 1")
        self.max_units = max_units
        self._used: dict[Hashable, int] = {}

    def used(self, account: Hashable) -> int:
        """Units ``account`` holds in carts or has bought."""
        return self._used.get(account, 0)

    def allows(self, account: Hashable, units: int) -> bool:
        """Whether ``account`` may reserve ``units`` more without passing the limit."""
        if units < 1:
            raise ValueError(f"units(={units}) must be >= 1")
        return self.used(account) + units <= self.max_units

    def record(self, account: Hashable, units: int) -> None:
        """Count ``units`` against ``account``; refuses to go over the limit."""
        if not self.allows(account, units):
            raise ValueError(
                f"account {account!r}: recording {units} units would exceed max_units="
                f"{self.max_units} (holds {self.used(account)})"
            )
        self._used[account] = self.used(account) + units

    def release(self, account: Hashable, units: int) -> None:
        """Give back ``units`` (hold expired, payment failed, order cancelled)."""
        held = self.used(account)
        if units < 1 or units > held:
            raise ValueError(f"account {account!r}: cannot release {units} units, holds {held}")
        if units == held:
            del self._used[account]
        else:
            self._used[account] = held - units
