"""Replications in parallel processes, each handed back as soon as it finishes.

A replication depends only on (scenario, seed, replication index), never on
which process ran it or in which order, so the tables are byte-identical
whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from flashsale.outcome import Outcome
from flashsale.scenario import Scenario

from .engine import simulate

__all__ = ["replication_outcome", "run_replications"]


def replication_outcome(scenario: Scenario, seed: int, replication: int) -> Outcome:
    """One replication's Outcome (a top-level function: worker processes import it)."""
    return simulate(scenario, replication, seed).outcome


def run_replications(
    scenario: Scenario,
    seed: int,
    replications: int,
    workers: int,
    on_done: Callable[[int, Outcome], None],
) -> None:
    """Run replications ``0..replications-1`` on ``workers`` processes (1 = this process);
    ``on_done(index, outcome)`` is called in this process as each one completes.

    The first failure cancels what has not started and propagates.
    """
    if replications < 1 or workers < 1:
        raise ValueError(f"replications(={replications}) and workers(={workers}) must be >= 1")
    if workers == 1:
        for r in range(replications):
            on_done(r, replication_outcome(scenario, seed, r))
        return
    with ProcessPoolExecutor(max_workers=min(workers, replications)) as pool:
        pending: dict[Future[Outcome], int] = {
            pool.submit(replication_outcome, scenario, seed, r): r for r in range(replications)
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=pending.__getitem__):
                    r = pending.pop(fut)
                    on_done(r, fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
