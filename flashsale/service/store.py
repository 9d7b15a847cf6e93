"""The storage interface of the checkout service, and what travels through it.

The service never touches SQL; it calls a :class:`Store`. Both backends
(:mod:`~flashsale.service.sqlite_store`, :mod:`~flashsale.service.postgres_store`)
share one implementation of the rules (:mod:`~flashsale.service.sql`), so SQLite
and PostgreSQL take stock, expire holds and replay idempotent payments the same
way; only connections and DDL differ.

The payment rule, the simulator's too (flashsale.sim.stock): the hold is checked
when a worker starts the payment (410 if it has expired by then); from then on
it belongs to the payment and cannot expire while the gateway decides. Paid
sells the units (201) even if the cart's hold time ran out meanwhile: shops
capture an authorised payment and keep the order, and extend the stock
reservation of a checkout in progress. Declined (402) or timed out (504)
releases the units to the stock at once; the buyer must cart again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "Charge",
    "Reply",
    "Reserved",
    "SaleRecord",
    "Store",
    "unstorable_channel",
]


def unstorable_channel(names: Iterable[str]) -> str | None:
    """A channel name no backend can keep as a row key, or None. PostgreSQL text holds
    no NUL character (a scenario may: TOML and JSON can write ``\\u0000``); SQLite
    would, but both backends take the same sales."""
    return next((n for n in names if "\x00" in n), None)


@dataclass(frozen=True)
class SaleRecord:
    """The sale the database holds; survives a restart.

    ``opens_at``/``closes_at`` are wall-clock epoch seconds of the current phase
    (the main sale, then perhaps a re-sale); ``main_opens_at`` is the main sale's
    t = 0, the origin of sale time for every defense.
    """

    scenario: dict[str, Any]
    replication: int
    main_opens_at: float
    opens_at: float
    closes_at: float
    phase: Literal["main", "resale"] = "main"


@dataclass(frozen=True)
class Reserved:
    """A hold on stock: paid for by checkout, or released when it expires (at
    ``expires_at``, unless a payment started before then)."""

    reservation_id: int
    units: int
    expires_at: float


@dataclass(frozen=True)
class Reply:
    """An HTTP answer decided inside a transaction (stored under an idempotency key)."""

    status: int
    body: dict[str, Any]
    released: tuple[int, int] | None = None
    """(account, units) given back to the stock by this answer (a declined or
    timed-out payment)."""


Charge = Literal["paid", "failed", "timeout"]
"""What the payment gateway answered."""


class Store(Protocol):
    """Everything the service persists. Each method is one transaction."""

    async def setup(self) -> None:
        """Create the tables if they do not exist."""

    async def close(self) -> None:
        """Release connections."""

    async def load_sale(self) -> SaleRecord | None:
        """The sale in the database, or None if it holds none yet."""

    async def reset(self, sale: SaleRecord, stock: Mapping[str, int]) -> None:
        """Wipe every row and start ``sale`` with ``stock`` units per channel."""

    async def update_sale(self, sale: SaleRecord, add_units: Mapping[str, int]) -> None:
        """Replace the sale record (a re-sale) and add ``add_units`` to each channel."""

    async def levels(self) -> dict[str, tuple[int, int]]:
        """Per channel: (units ever offered, units left to reserve)."""

    async def account_usage(self) -> dict[int, int]:
        """Units each account holds in carts or has bought (the per-account limit's truth)."""

    async def reserve(
        self, account: int, channel: str, units: int, now: float, hold_s: float, max_units: int
    ) -> Reserved | Literal["sold_out", "limit_reached"]:
        """Take ``units`` from the channel's stock into a hold, if the stock and the
        account's limit (``max_units`` held or bought) allow it; else take nothing."""

    async def checkout(
        self,
        key: str,
        body_hash: str,
        reservation_id: int,
        account: int,
        clock: Callable[[], float],
        charge: Callable[[], Charge | Awaitable[Charge]],
        stale_after_s: float,
    ) -> Reply:
        """Pay for a hold, once per idempotency key; the Reply to keep for the key.

        Called when a worker takes the request. The key is claimed, then the hold
        is checked: 404 ``unknown_reservation`` (none of this account's), 409
        ``already_paid``, 410 ``hold_expired`` (it expired, or a failed payment
        released it), 409 ``request_in_progress`` (another key is paying it: not
        kept, ask again). A live hold becomes the payment's: nothing expires it
        until ``stale_after_s`` from now, the payment's deadline.

        Then ``charge()`` is called. If it returns the gateway's answer at once, the
        whole checkout is one transaction; if it returns an awaitable, that is
        awaited between two transactions so no lock is held while the gateway is
        slow. Paid: the order (201), however long the gateway took, as long as it
        answered before the deadline. Declined or timed out: the units go back to
        the stock (402 ``payment_failed``, 504 ``payment_timeout``, with
        ``released``). A payment that never finished by its deadline (the service
        was stopped or stalled mid-payment) is given up: the sweeper releases the
        hold, a late "paid" is voided (504), and its key may be claimed again.
        """

    async def order(self, order_id: int, account: int) -> dict[str, Any] | None:
        """One order as the API shows it, if ``account`` placed it; else None (an
        order answers only to its account)."""

    async def cancel(self, order_id: int, account: int | None) -> dict[str, Any] | None:
        """Cancel a paid order (``account`` None: the operator's review) and give its
        units back to the stock. None if no such order (or not this account's)."""

    async def expire(self, now: float) -> list[tuple[int, int]]:
        """Release the holds whose time is up at ``now`` (a hold lives while
        ``now < expires_at``): carts not being paid, and payments past their deadline
        (the service stopped mid-payment); (account, units) per hold."""

    async def paid_orders(self) -> list[tuple[int, int, int]]:
        """(order_id, account, units) of every paid order, oldest first."""

    async def audit(self, now: float) -> dict[str, Any]:
        """Expire stale holds, then export every reservation and order with totals."""
