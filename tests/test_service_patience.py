"""A client's patience (``X-Patience-S``) on the reference service: a request still
queued when it runs out leaves the queue unserved with 499, as the simulator's
impatient buyer does (flashsale.sim.service: reneging, Erlang A); one that finds a
worker is served whatever its patience."""

from __future__ import annotations

import asyncio

from flashsale.service.limiter import Abandoned, CapacityLimiter, Overloaded

from ._inprocess import Clock, service
from .test_replay_contract import sale


def test_patience_shorter_than_the_queue_timeout_abandons_longer_times_out() -> None:
    async def run() -> list[str]:
        lim = CapacityLimiter(workers=1, queue_limit=5, queue_timeout_s=0.2)
        seen: list[str] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with lim.slot():
                seen.append("served")
                await release.wait()

        async def waiter(patience: float) -> None:
            try:
                async with lim.slot(patience):
                    seen.append("served late")
            except Abandoned:
                seen.append("abandoned")
            except Overloaded as e:
                seen.append(e.reason)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        await asyncio.gather(waiter(0.01), waiter(5.0))  # both wait; neither gets a worker
        release.set()
        await first
        return seen

    assert sorted(asyncio.run(run())) == ["abandoned", "queue timeout", "served"]


def test_a_patient_header_does_not_matter_when_a_worker_is_free(db: str) -> None:
    with service(db, sale(), Clock()) as c:
        for value in ("0", "0.001", "nan", "-1", "soon"):
            r = c.get("/v1/sale", headers={"X-Patience-S": value})
            assert r.status_code == 200, value
