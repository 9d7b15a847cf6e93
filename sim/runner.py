"""Replications in parallel processes, each handed back as soon as it finishes.

A replication depends only on (scenario, seed, replication index), never on
which process ran it or in which order, so the tables are byte-identical
whatever the number of workers. :func:`run_jobs` takes any list of such jobs
(a sweep's points times replications) through one pool, so every core stays busy
until the last job; :func:`run_replications` is the one-scenario case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait

from flashsale.outcome import Outcome
from flashsale.scenario import Scenario

from .engine import simulate

__all__ = ["Job", "replication_outcome", "run_jobs", "run_replications"]

Job = tuple[Scenario, int, int]
"""One replication to run: (scenario, root seed, replication index)."""


def replication_outcome(scenario: Scenario, seed: int, replication: int) -> Outcome:
    """One replication's Outcome (a top-level function: worker processes import it)."""
    return simulate(scenario, replication, seed).outcome


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    on_done: Callable[[int, Outcome], None],
    executor: Executor | None = None,
) -> None:
    """Run ``jobs`` on ``workers`` processes (1 = this process), or on ``executor`` when
    given (e.g. a Dask cluster's); ``on_done(job_index, outcome)`` is called in this
    process as each one completes.

    The first failure cancels what has not started and propagates.
    """
    if not jobs or workers < 1:
        raise ValueError(f"jobs(={len(jobs)}) and workers(={workers}) must be >= 1")
    if executor is not None:
        _drain(executor, jobs, on_done)
    elif workers == 1:
        for i, job in enumerate(jobs):
            on_done(i, replication_outcome(*job))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            _drain(pool, jobs, on_done)


def _drain(pool: Executor, jobs: Sequence[Job], on_done: Callable[[int, Outcome], None]) -> None:
    pending: dict[Future[Outcome], int] = {
        pool.submit(replication_outcome, *job): i for i, job in enumerate(jobs)
    }
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.__getitem__):
                i = pending.pop(fut)
                on_done(i, fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


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
    run_jobs([(scenario, seed, r) for r in range(replications)], workers, on_done)
