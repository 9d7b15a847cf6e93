"""Replications in parallel processes, each handed back as soon as it finishes.

A replication depends only on (scenario, seed, replication index), never on
which process ran it or in which order, so the tables are byte-identical
whatever the number of workers. :func:`run_jobs` takes any list of such jobs
(a sweep's points times replications) through one pool, so every core stays busy
until the last job; :func:`run_replications` is the one-scenario case.

Workers never outlive the command that started them (:func:`worker_pool`): on
Linux the kernel kills each one when that process dies, SIGKILL included; when
the command stops (Ctrl-C, SIGTERM, a failed job) it kills them at once, rather
than letting them finish, or start, replications nobody will write. A worker
frees each replication before the next, so its memory stays flat.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager

from flashsale.children import die_with_parent, orphaned
from flashsale.outcome import Outcome
from flashsale.scenario import Scenario

from .engine import simulate

__all__ = ["Job", "replication_outcome", "run_jobs", "run_replications", "worker_pool"]

Job = tuple[Scenario, int, int]
"""One replication to run: (scenario, root seed, replication index)."""


def replication_outcome(scenario: Scenario, seed: int, replication: int) -> Outcome:
    """One replication's Outcome (a top-level function: worker processes import it).

    The engine runs with the cyclic collector off, and what it leaves (its SimPy
    environment, the journeys and their callbacks) is collected here, before the next
    replication in this process: left to the collector's own pace, a worker running
    replications back to back grew with each (a 1M-request sale: +33% peak RSS after
    8 replications; +6% with this; ``bench/sim_bench.py`` measures it).
    """
    outcome = simulate(scenario, replication, seed).outcome
    gc.collect()
    return outcome


def _init_worker(parent: int | None) -> None:
    """Set up a pool worker. Ctrl-C is ignored: the terminal sends it to the whole
    process group, and the command, not each worker, decides (it kills them).
    SIGTERM kills: a handler inherited from the command would turn it into an
    exception that the pool's worker loop reports and survives, going on to the
    next replication. And the worker dies with the command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(signal.SIGKILL)  # it writes nothing: nothing to clean up
    if parent is not None and orphaned(parent):  # the command died before prctl
        os._exit(1)


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes that stops with the command.

    Leaving normally waits for the workers. Leaving on an exception (Ctrl-C,
    SIGTERM, a failed job) cancels the jobs not started and kills the workers at
    once: a replication running or queued would otherwise run to its end (seconds
    to minutes, hundreds of MB) only to be thrown away. On Linux the workers are
    forked from this thread, so the kernel kills them if this process dies.
    """
    linux = sys.platform.startswith("linux")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork") if linux else None,
        initializer=_init_worker,
        initargs=(os.getpid() if linux else None,),
    )
    try:
        yield pool
    except BaseException:
        _kill(pool)
        raise
    pool.shutdown(wait=True)


def _kill(pool: ProcessPoolExecutor) -> None:
    # The pool has no public way to stop a running job. Its workers are its own
    # processes and write nothing, so SIGKILL (what the kernel sends them if this
    # process dies) loses nothing. The queued jobs are dropped first, so that the
    # pool does not try to fail futures already cancelled.
    workers = list(pool._processes.values()) if pool._processes else []
    # (typeshed calls this attribute a _ThreadWakeup; it is the pool's manager thread)
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in workers:
        p.kill()
    for p in workers:
        p.join()
    if manager is not None:
        manager.join()


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    on_done: Callable[[int, Outcome], None],
    executor: Executor | None = None,
) -> None:
    """Run ``jobs`` on ``workers`` processes (1 = this process), or on ``executor`` when
    given (e.g. a Dask cluster's); ``on_done(job_index, outcome)`` is called in this
    process as each one completes.

    The first failure (or Ctrl-C, SIGTERM) cancels what has not started, stops the
    local workers and propagates.
    """
    if not jobs or workers < 1:
        raise ValueError(f"jobs(={len(jobs)}) and workers(={workers}) must be >= 1")
    if executor is not None:
        _drain(executor, jobs, on_done)
    elif workers == 1:
        for i, job in enumerate(jobs):
            on_done(i, replication_outcome(*job))
    else:
        with worker_pool(min(workers, len(jobs))) as pool:
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
