"""What an engine-side defense may hook into; the shop composes whichever are enabled.

A defense overrides only the hooks it needs; the shop calls only those (a disabled
or absent defense costs nothing per request). The rules themselves live in
flashsale.defenses, shared with the reference service.
"""

from __future__ import annotations

__all__ = ["Defense"]


class Defense:
    """Base class: every hook lets everything through."""

    def at_edge(self, account: int, person: int, now: float) -> float | None:
        """A request reaches the service at ``now``: None to let it queue, or the
        Retry-After (seconds) of a 429 that refuses it."""
        return None

    def at_cart(self, account: int, units: int) -> int:
        """A worker is about to reserve ``units`` for ``account``: how many it may have."""
        return units

    def reserved(self, account: int, units: int) -> None:
        """``units`` were reserved for ``account``."""

    def released(self, account: int, units: int) -> None:
        """``units`` reserved for ``account`` went back to the stock (expired, payment failed)."""

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this defense implements ``hook`` (the shop skips the others)."""
        return getattr(cls, hook) is not getattr(Defense, hook)
