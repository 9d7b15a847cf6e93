"""The stock rules in SQL, written once for SQLite and PostgreSQL.

Why it cannot oversell: stock is taken by one conditional statement,
``UPDATE stock SET left_units = left_units - n WHERE channel = ? AND left_units >= n``,
inside the transaction that records the hold; if no row matched, nothing was
taken and the transaction rolls back. ``left_units >= 0`` is also a CHECK
constraint. An order row references its hold with a UNIQUE column, so a hold is
paid at most once whatever the idempotency keys say. The per-account limit is an
upsert guarded by the same kind of condition, in the same transaction.

A reservation's life, the rule the simulator follows too (flashsale.sim.stock)::

    held --pay starts before expires_at--> paying --gateway: paid--> paid
      |                                       |--gateway: declined / timed out,
      |                                       |  or no answer by its deadline--> failed
      |--expires_at reached, not paying--> expired
    paid --order cancelled--> cancelled

A hold is live while ``now < expires_at``. When a worker starts its payment the
hold becomes ``paying`` and ``expires_at`` becomes the payment's deadline (the
gateway's timeout plus a grace, see :class:`~flashsale.service.store.Store`):
the sweeper and other carts cannot take its units while the gateway decides, so
a payment the gateway accepts is never thrown away because the cart timer ran
out meanwhile. ``failed`` and ``expired`` give the units back to the stock.

Backends subclass :class:`SqlStore` and provide a transaction (``_tx``) whose
``run``/``one``/``all`` execute SQL written with ``?`` placeholders.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any, Literal, Protocol

from flashsale.service.store import Charge, Reply, Reserved, SaleRecord

__all__ = ["LIVE", "TABLES", "Abort", "SqlStore", "Tx"]

TABLES = ("sale", "stock", "reservations", "orders", "accounts", "idempotency")

LIVE = "status IN ('held', 'paying')"
"""Reservations whose units are out of the stock and not sold: the sweeper's rows
(also the predicate of the partial index the backends create for it)."""


class Tx(Protocol):
    """One open transaction."""

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""

    async def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Execute; the first row or None."""

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute; every row."""


class Abort(Exception):
    """Roll the transaction back and answer ``reason``."""

    def __init__(self, reason: Literal["sold_out", "limit_reached"]) -> None:
        super().__init__(reason)
        self.reason: Literal["sold_out", "limit_reached"] = reason


def _err(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, "field": None, **extra}


_ORDER_COLUMNS = "id, reservation_id, account, channel, units, created_at, status"


def _order(row: Sequence[Any]) -> dict[str, Any]:
    keys = ("order_id", "reservation_id", "account", "channel", "units", "created_at", "status")
    return dict(zip(keys, row, strict=True))


class SqlStore(ABC):
    """:class:`~flashsale.service.store.Store` on any SQL database with RETURNING and upserts."""

    @abstractmethod
    def _tx(self, snapshot: bool = False) -> AbstractAsyncContextManager[Tx]:
        """A write transaction (``snapshot``: a read-only consistent snapshot)."""

    @abstractmethod
    async def _wipe(self, tx: Tx) -> None:
        """Delete every row of every table."""

    # ------------------------------------------------------------------ sale

    async def load_sale(self) -> SaleRecord | None:
        async with self._tx() as tx:
            row = await tx.one("SELECT record FROM sale WHERE id = 1")
        return None if row is None else SaleRecord(**json.loads(row[0]))

    async def reset(self, sale: SaleRecord, stock: Mapping[str, int]) -> None:
        async with self._tx() as tx:
            await self._wipe(tx)
            await tx.run("INSERT INTO sale (id, record) VALUES (1, ?)", (json.dumps(asdict(sale)),))
            for channel, units in stock.items():
                await tx.run(
                    "INSERT INTO stock (channel, units, left_units) VALUES (?, ?, ?)",
                    (channel, units, units),
                )

    async def update_sale(self, sale: SaleRecord, add_units: Mapping[str, int]) -> None:
        async with self._tx() as tx:
            await tx.run("UPDATE sale SET record = ? WHERE id = 1", (json.dumps(asdict(sale)),))
            for channel, units in add_units.items():
                await tx.run(
                    "UPDATE stock SET units = units + ?, left_units = left_units + ? "
                    "WHERE channel = ?",
                    (units, units, channel),
                )

    async def levels(self) -> dict[str, tuple[int, int]]:
        async with self._tx(snapshot=True) as tx:
            rows = await tx.all("SELECT channel, units, left_units FROM stock ORDER BY channel")
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def account_usage(self) -> dict[int, int]:
        async with self._tx(snapshot=True) as tx:
            rows = await tx.all("SELECT account, units FROM accounts WHERE units > 0")
        return {int(a): int(u) for a, u in rows}

    # ------------------------------------------------------------------ cart

    async def reserve(
        self, account: int, channel: str, units: int, now: float, hold_s: float, max_units: int
    ) -> Reserved | Literal["sold_out", "limit_reached"]:
        if units > max_units:
            return "limit_reached"
        try:
            async with self._tx() as tx:
                reservation_id = await self._take(
                    tx, account, channel, units, now, now + hold_s, max_units
                )
        except Abort as e:
            return e.reason
        return Reserved(reservation_id, units, now + hold_s)

    async def _take(
        self,
        tx: Tx,
        account: int,
        channel: str,
        units: int,
        now: float,
        expires_at: float,
        max_units: int,
    ) -> int:
        """Count the units against the account, record the hold, take the stock; the
        new reservation's id, or :class:`Abort` (the caller rolls back)."""
        took = await tx.run(
            "INSERT INTO accounts (account, units) VALUES (?, ?) "
            "ON CONFLICT (account) DO UPDATE SET units = accounts.units + excluded.units "
            "WHERE accounts.units + excluded.units <= ?",
            (account, units, max_units),
        )
        if not took:
            raise Abort("limit_reached")
        row = await tx.one(
            "INSERT INTO reservations (account, channel, units, created_at, expires_at, "
            "status) VALUES (?, ?, ?, ?, ?, 'held') RETURNING id",
            (account, channel, units, now, expires_at),
        )
        # The hot row last: its lock is held only until the commit.
        took = await tx.run(
            "UPDATE stock SET left_units = left_units - ? WHERE channel = ? AND left_units >= ?",
            (units, channel, units),
        )
        if not took or row is None:
            raise Abort("sold_out")
        return int(row[0])

    async def expire(self, now: float) -> list[tuple[int, int]]:
        async with self._tx() as tx:
            return await self._expire(tx, now)

    async def _expire(self, tx: Tx, now: float) -> list[tuple[int, int]]:
        rows = await tx.all(
            "UPDATE reservations "
            "SET status = CASE status WHEN 'paying' THEN 'failed' ELSE 'expired' END "
            f"WHERE {LIVE} AND expires_at <= ? RETURNING account, channel, units",
            (now,),
        )
        per_channel: dict[str, int] = defaultdict(int)
        for _, channel, units in rows:
            per_channel[channel] += units
        for channel, units in per_channel.items():
            await tx.run(
                "UPDATE stock SET left_units = left_units + ? WHERE channel = ?", (units, channel)
            )
        for account, _, units in rows:
            await self._give_back(tx, account, units)
        return [(int(a), int(u)) for a, _, u in rows]

    @staticmethod
    async def _give_back(tx: Tx, account: int, units: int) -> None:
        await tx.run("UPDATE accounts SET units = units - ? WHERE account = ?", (units, account))

    # -------------------------------------------------------------- checkout

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
        async with self._tx() as tx:
            now = clock()
            early = await self._claim(
                tx, key, body_hash, reservation_id, account, now, stale_after_s
            )
            if early is not None:
                return early
            pending = charge()
            if isinstance(pending, str):
                return await self._finish(tx, key, reservation_id, pending, now)
        result = await pending
        async with self._tx() as tx:
            return await self._finish(tx, key, reservation_id, result, clock())

    async def _claim(
        self,
        tx: Tx,
        key: str,
        body_hash: str,
        reservation_id: int,
        account: int,
        now: float,
        stale_after_s: float,
    ) -> Reply | None:
        """Claim the key and start paying the hold; a Reply ends the checkout here."""
        row = None
        if not await tx.run(  # a new key (the usual case) costs one statement
            "INSERT INTO idempotency (key, body_hash, claimed_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, body_hash, now),
        ):
            row = await tx.one(
                "SELECT body_hash, claimed_at, status, reply FROM idempotency WHERE key = ?",
                (key,),
            )
        if row is not None:
            if row[0] != body_hash:
                return Reply(
                    409,
                    _err(
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another body; use a new key",
                    ),
                )
            if row[2] is not None:
                return Reply(int(row[2]), json.loads(row[3]))
            if now - float(row[1]) < stale_after_s:
                return Reply(
                    409,
                    _err("request_in_progress", "a request with this key is being processed"),
                )
            await tx.run("UPDATE idempotency SET claimed_at = ? WHERE key = ?", (now, key))
        # The hold is checked once, now (a worker has taken the request), and from
        # here on belongs to this payment until its deadline: nothing expires it
        # while the gateway decides.
        if await tx.run(
            "UPDATE reservations SET status = 'paying', expires_at = ? "
            "WHERE id = ? AND account = ? AND status = 'held' AND expires_at > ?",
            (now + stale_after_s, reservation_id, account, now),
        ):
            return None
        res = await tx.one(
            "SELECT account, status, expires_at FROM reservations WHERE id = ?", (reservation_id,)
        )
        if res is None or int(res[0]) != account:
            return await self._keep(
                tx,
                key,
                Reply(
                    404,
                    _err("unknown_reservation", f"no reservation {reservation_id} of this account"),
                ),
            )
        if res[1] == "paid":
            return await self._keep(tx, key, await self._already_paid(tx, reservation_id))
        if res[1] == "paying" and float(res[2]) > now:
            # Another key's payment of this hold is under way: not an answer to keep,
            # so this key may ask again and then get the outcome.
            await tx.run("DELETE FROM idempotency WHERE key = ?", (key,))
            return Reply(
                409,
                _err(
                    "request_in_progress",
                    f"a payment of reservation {reservation_id} is being processed",
                ),
            )
        return await self._keep(tx, key, _expired(reservation_id))

    async def _finish(
        self, tx: Tx, key: str, reservation_id: int, charge: Charge, now: float
    ) -> Reply:
        """The gateway answered: paid sells the units, anything else releases them."""
        if charge == "paid":
            row = await self._pay(tx, reservation_id, now)
            if row is not None:
                body = {"order_id": int(row[0]), "reservation_id": reservation_id}
                return await self._keep(tx, key, Reply(201, {**body, "units": int(row[1])}))
            # Only a payment that outlived its deadline gets here (the service stalled
            # or was stopped mid-payment): the shop gave it up, so it is voided.
            return await self._keep(tx, key, await self._fail(tx, reservation_id, "late"))
        return await self._keep(tx, key, await self._fail(tx, reservation_id, charge))

    async def _pay(self, tx: Tx, reservation_id: int, now: float) -> tuple[Any, ...] | None:
        """Turn a hold being paid into an order: (order id, units), or None if the
        payment's deadline has passed."""
        if not await tx.run(
            "UPDATE reservations SET status = 'paid' "
            "WHERE id = ? AND status = 'paying' AND expires_at > ?",
            (reservation_id, now),
        ):
            return None
        return await tx.one(
            "INSERT INTO orders (reservation_id, account, channel, units, created_at, status) "
            "SELECT id, account, channel, units, ?, 'paid' FROM reservations WHERE id = ? "
            "RETURNING id, units",
            (now, reservation_id),
        )

    async def _fail(
        self, tx: Tx, reservation_id: int, charge: Literal["failed", "timeout", "late"]
    ) -> Reply:
        """A declined, timed-out or too-late payment gives the hold back, as in the
        simulation: the buyer must add to the cart again (and may find the stock gone).
        The sweeper may have given it back already (a payment past its deadline)."""
        row = await tx.one(
            "UPDATE reservations SET status = 'failed' WHERE id = ? AND status = 'paying' "
            "RETURNING account, channel, units",
            (reservation_id,),
        )
        released = None
        if row is not None:
            account, channel, units = int(row[0]), row[1], int(row[2])
            await tx.run(
                "UPDATE stock SET left_units = left_units + ? WHERE channel = ?", (units, channel)
            )
            await self._give_back(tx, account, units)
            released = (account, units)
        if charge == "failed":
            body = _err("payment_failed", "the payment gateway declined; cart again")
            return Reply(402, body, released)
        if charge == "late":
            detail = "the payment did not finish in time and was voided; cart again"
        else:
            detail = "the payment gateway did not answer in time; cart again"
        return Reply(504, _err("payment_timeout", detail), released)

    @staticmethod
    async def _already_paid(tx: Tx, reservation_id: int) -> Reply:
        row = await tx.one("SELECT id FROM orders WHERE reservation_id = ?", (reservation_id,))
        return Reply(
            409,
            _err(
                "already_paid",
                f"reservation {reservation_id} is already paid",
                order_id=None if row is None else int(row[0]),
            ),
        )

    @staticmethod
    async def _keep(tx: Tx, key: str, reply: Reply) -> Reply:
        """Store the final answer under the key: a retry gets exactly this."""
        await tx.run(
            "UPDATE idempotency SET status = ?, reply = ? WHERE key = ?",
            (reply.status, json.dumps(reply.body), key),
        )
        return reply

    # ---------------------------------------------------------------- orders

    async def order(self, order_id: int, account: int) -> dict[str, Any] | None:
        async with self._tx(snapshot=True) as tx:
            row = await tx.one(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ? AND account = ?",
                (order_id, account),
            )
        return None if row is None else _order(row)

    async def cancel(self, order_id: int, account: int | None) -> dict[str, Any] | None:
        async with self._tx() as tx:
            return await self._cancel(tx, order_id, account)

    async def _cancel(self, tx: Tx, order_id: int, account: int | None) -> dict[str, Any] | None:
        row = await tx.one(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,))
        if row is None or (account is not None and int(row[2]) != account):
            return None
        if await tx.run(
            "UPDATE orders SET status = 'cancelled' WHERE id = ? AND status = 'paid'", (order_id,)
        ):
            _, reservation_id, owner, channel, units, _, _ = row
            await tx.run(
                "UPDATE reservations SET status = 'cancelled' WHERE id = ?", (reservation_id,)
            )
            await tx.run(
                "UPDATE stock SET left_units = left_units + ? WHERE channel = ?", (units, channel)
            )
            await self._give_back(tx, owner, units)
        return {**_order(row), "status": "cancelled"}

    async def paid_orders(self) -> list[tuple[int, int, int]]:
        async with self._tx(snapshot=True) as tx:
            rows = await tx.all(
                "SELECT id, account, units FROM orders WHERE status = 'paid' ORDER BY id"
            )
        return [(int(i), int(a), int(u)) for i, a, u in rows]

    # ----------------------------------------------------------------- audit

    async def audit(self, now: float) -> dict[str, Any]:
        await self.expire(now)
        async with self._tx(snapshot=True) as tx:
            stock = await tx.all("SELECT channel, units, left_units FROM stock ORDER BY channel")
            reservations = await tx.all(
                "SELECT id, account, channel, units, created_at, expires_at, status "
                "FROM reservations ORDER BY id"
            )
            orders = await tx.all(f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY id")
        return _audit(stock, reservations, orders)


def _expired(reservation_id: int) -> Reply:
    return Reply(
        410,
        _err(
            "hold_expired",
            f"reservation {reservation_id} is no longer held (it expired, or a failed "
            "payment released it); cart again",
        ),
    )


def _audit(
    stock: list[tuple[Any, ...]],
    reservations: list[tuple[Any, ...]],
    orders: list[tuple[Any, ...]],
) -> dict[str, Any]:
    """Totals recomputed from the rows, not read from counters, so a broken counter shows.

    Oversold units are counted per channel: units paid or held beyond what the
    channel ever offered.
    """
    sold: dict[str, int] = defaultdict(int)
    held: dict[str, int] = defaultdict(int)
    for _, _, _, channel, units, _, status in orders:
        if status == "paid":
            sold[channel] += int(units)
    for _, _, channel, units, _, _, status in reservations:
        if status in ("held", "paying"):
            held[channel] += int(units)
    offered = {r[0]: int(r[1]) for r in stock}
    oversold = sum(max(0, sold[c] + held[c] - offered.get(c, 0)) for c in set(sold) | set(held))
    res_keys = ("reservation_id", "account", "channel", "units", "created_at", "expires_at")
    return {
        "units": sum(offered.values()),
        "units_sold": sum(sold.values()),
        "units_reserved": sum(held.values()),
        "stock_left": sum(int(r[2]) for r in stock),
        "oversold_units": oversold,
        "orders": sum(1 for r in orders if r[6] == "paid"),
        "cancelled_units": sum(int(r[4]) for r in orders if r[6] == "cancelled"),
        "channels": {
            r[0]: {"units": int(r[1]), "stock_left": int(r[2]), "sold": sold[r[0]]} for r in stock
        },
        "reservations": [
            {**dict(zip(res_keys, r[:6], strict=True)), "status": r[6]} for r in reservations
        ],
        "order_rows": [_order(r) for r in orders],
    }
