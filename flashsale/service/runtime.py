"""The running sale: scenario, clock, store, limiter, gateway and defenses together.

The database is the source of truth; everything here can be rebuilt from it. On
start an existing sale in the database is resumed (a restart after a crash loses
no committed order), unless a fresh sale is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from flashsale.defenses.review import Review
from flashsale.distributions import Distribution
from flashsale.scenario import SERVICE_STEPS, Scenario, parse_scenario
from flashsale.service.guards import Guards
from flashsale.service.limiter import CapacityLimiter
from flashsale.service.payment import PaymentGateway
from flashsale.service.store import SaleRecord, Store
from flashsale.streams import Streams

__all__ = ["SWEEP_INTERVAL_S", "Runtime"]

SWEEP_INTERVAL_S = 0.5
"""Expired holds go back to the stock within this long of their expiry."""


class Runtime:
    """Everything a request handler needs; ``app.state.runtime``."""

    def __init__(
        self,
        store: Store,
        scenario: Scenario,
        admin_token: str,
        *,
        fresh: bool = True,
        opens_in_s: float = 0.0,
        replication: int = 0,
        captcha_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        """Epoch seconds; injectable so tests can step time instead of sleeping."""
        self.admin_token = admin_token
        self._initial = (scenario, fresh, opens_in_s, replication)
        self._captcha_delay_s = captcha_delay_s
        self._sweeper: asyncio.Task[None] | None = None
        self.resumed = False

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        scenario, fresh, opens_in_s, replication = self._initial
        await self.store.setup()
        record = None if fresh else await self.store.load_sale()
        if record is None:
            await self.reset(scenario, opens_in_s, replication)
        else:
            self.resumed = True
            await self._configure(record)
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.store.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for account, units in await self.store.expire(self.clock()):
                self.guards.release(account, units)

    # ------------------------------------------------------------------ sale

    async def reset(self, scenario: Scenario, opens_in_s: float, replication: int) -> None:
        """Start ``scenario`` afresh: t = 0 is ``opens_in_s`` from now."""
        opens_at = self.clock() + opens_in_s
        record = SaleRecord(
            scenario=scenario.to_toml_dict(),
            replication=replication,
            main_opens_at=opens_at,
            opens_at=opens_at,
            closes_at=opens_at + scenario.sale.window_s,
        )
        stock = scenario.sale.split(scenario.sale.units)
        await self.store.reset(
            record, {c.name: n for c, n in zip(scenario.sale.channels, stock, strict=True)}
        )
        await self._configure(record)

    async def _configure(self, record: SaleRecord) -> None:
        self.record = record
        self.scenario = parse_scenario(record.scenario, "<sale in the database>")
        svc = self.scenario.service
        self.streams = Streams.for_replication(self.scenario.seed, record.replication)
        # one limiter per pool ([service.pools.*]; one for every step by default),
        # reached through each step it serves
        pools: dict[str, CapacityLimiter] = {}
        self.limiters: dict[str, CapacityLimiter] = {}
        for step in SERVICE_STEPS:
            at = svc.pool_of(step)
            if at.name not in pools:
                pools[at.name] = CapacityLimiter(at.workers, at.queue_limit, at.queue_timeout_s)
            self.limiters[step] = pools[at.name]
        self.gateway = PaymentGateway(svc.payment, self.streams["payment"])
        self.channels = [c.name for c in self.scenario.sale.channels]
        await self.rebuild_guards()

    async def rebuild_guards(self, captcha_delay_s: float | None = None) -> None:
        if captcha_delay_s is not None:
            self._captcha_delay_s = captcha_delay_s
        self.guards = Guards(
            self.scenario.defenses,
            self.streams,
            await self.store.account_usage(),
            self._captcha_delay_s,
            lottery_winners=max(
                1, self.scenario.sale.units // self.scenario.humans.units_per_order
            ),
        )

    async def switch_defenses(self, scenario: Scenario, captcha_delay_s: float | None) -> None:
        """New defenses, same sale: the stock, orders and clock stay."""
        self.record = dataclasses.replace(self.record, scenario=scenario.to_toml_dict())
        await self.store.update_sale(self.record, {})
        self.scenario = scenario
        await self.rebuild_guards(captcha_delay_s)

    async def open_resale(
        self, opens_in_s: float, units: int | None, window_s: float | None
    ) -> int:
        """A second sale phase; ``units`` more are added (default: the scenario's number,
        or none when the re-sale offers the cancelled units, already back in stock)."""
        rs = self.scenario.defenses.resale
        add = units if units is not None else (rs.units if isinstance(rs.units, int) else 0)
        opens_at = self.clock() + opens_in_s
        self.record = dataclasses.replace(
            self.record,
            phase="resale",
            opens_at=opens_at,
            closes_at=opens_at + (window_s if window_s is not None else rs.window_s),
        )
        extra = dict(zip(self.channels, self.scenario.sale.split(add), strict=True)) if add else {}
        await self.store.update_sale(self.record, extra)
        return add

    async def review(self, bot_accounts: Collection[int]) -> dict[str, Any]:
        """The post-hoc review over every paid order (oldest first), with the shared
        rule and the ``defense.review`` stream; flagged orders are cancelled and their
        units go back to the stock, where a re-sale can offer them."""
        cfg = self.scenario.defenses.review
        orders = await self.store.paid_orders()
        is_bot = np.fromiter((a in bot_accounts for _, a, _ in orders), bool, len(orders))
        rule = Review(cfg.bot_detection_prob, cfg.human_false_positive_prob)
        flags = rule.flags(is_bot, self.streams["defense.review"])
        cancelled = {"orders": 0, "units": 0, "bots": 0, "humans": 0}
        for (order_id, account, units), flagged, bot in zip(orders, flags, is_bot, strict=True):
            if flagged and await self.store.cancel(order_id, None) is not None:
                self.guards.release(account, units)
                cancelled["orders"] += 1
                cancelled["units"] += units
                cancelled["bots" if bot else "humans"] += 1
        return {
            "reviewed_orders": len(orders),
            "bot_orders": int(is_bot.sum()),
            "cancelled_orders": cancelled["orders"],
            "cancelled_units": cancelled["units"],
            "flagged_bot_orders": cancelled["bots"],
            "flagged_human_orders": cancelled["humans"],
        }

    async def work(self, step: str) -> None:
        """The step's service demand, on the worker that holds the request: with
        ``[service] emulate_step_s``, a draw of ``step_s.<step>`` (one of
        SERVICE_STEPS) from the ``service`` stream, slept; nothing otherwise."""
        svc = self.scenario.service
        if svc.emulate_step_s:
            demand: Distribution = getattr(svc.step_s, step)
            await asyncio.sleep(float(demand.sample(self.streams["service"], 1)[0]))

    # ----------------------------------------------------------------- clock

    def t(self, now: float) -> float:
        """Sale time: seconds from the main sale's opening."""
        return now - self.record.main_opens_at

    def closes_at(self) -> float:
        """When add-to-cart closes in the current phase: the main sale's end, or the
        lottery's claim window's end if later."""
        lottery = self.guards.lottery
        if lottery is None or self.record.phase != "main":
            return self.record.closes_at
        return max(self.record.closes_at, self.record.main_opens_at + lottery.claim_closes)

    async def status(self, now: float) -> dict[str, Any]:
        levels = await self.store.levels()
        r = self.record
        closes_at = self.closes_at()
        return {
            "sku": self.scenario.sale.sku,
            "open": r.opens_at <= now < closes_at,
            "opens_in_s": round(max(0.0, r.opens_at - now), 3),
            "closes_in_s": round(max(0.0, closes_at - now), 3),
            "phase": r.phase,
            "units": sum(u for u, _ in levels.values()),
            "stock_left": sum(left for _, left in levels.values()),
            "channels": {c: left for c, (_, left) in levels.items()},
        }
