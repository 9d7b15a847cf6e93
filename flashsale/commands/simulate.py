"""``flashsale simulate``: the SimPy engine over many replications, then metrics and charts."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale._cli_utils import SetOption, fail, load_or_exit, run_note
from flashsale.runs import open_run
from flashsale.scenario import Scenario, run_size

if TYPE_CHECKING:
    from rich.progress import Progress

    from flashsale.outcome import Outcome

__all__ = ["MAX_REPLICATIONS", "simulate"]

MAX_REPLICATIONS = 1000
"""A run folder names replications rep-000 to rep-999."""

_BYTES_PER_JOURNEY = 120
"""Memory one journey takes in the metrics, at the least: its journeys row (77 bytes) and
its first request's row (44 bytes). Metrics read every replication's tables at once."""


def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    replications: Annotated[
        int,
        typer.Option(help=f"Independent replications (seeds r = 0..N-1), 1 to {MAX_REPLICATIONS}."),
    ] = 1,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Root seed; default: the scenario's seed.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Parallel processes; default min(replications, CPU count)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Results folder (new or empty).")] = None,
    report: Annotated[
        str,
        typer.Option(
            help="What to write after the tables: none, summary (metrics.json and the "
            "printed summary) or full (and the charts and report.html).",
        ),
    ] = "full",
    set_: SetOption = None,
) -> None:
    """Simulate SCENARIO at full scale with SimPy, write the run folder, print the summary.

    Exit 0 ok, 1 a threshold breached or the run failed (e.g. the stock books did not
    balance), 2 bad input (including a defense the simulator does not model).
    """
    from flashsale.postrun import check_report_level, finish_run
    from flashsale.sim.engine import UnsupportedScenario, check_supported
    from flashsale.sim.runner import run_replications

    try:
        level = check_report_level(report)
    except ValueError as e:
        fail(str(e))
    sc = load_or_exit(scenario, set_)
    try:
        check_supported(sc)
    except UnsupportedScenario as e:
        fail(f"{scenario}: {e}")
    _check_replications(sc, replications)
    if seed is not None:  # the run folder's scenario.toml then re-runs this very sale
        sc = sc.model_copy(update={"seed": seed})
    root_seed = sc.seed
    n_workers = workers or min(replications, os.cpu_count() or 1)
    # A bad --out is refused (exit 2) before the run starts. The run is complete only
    # once its report is written: a stop before says what the folder holds.
    stack = contextlib.ExitStack()
    run = stack.enter_context(
        open_run(sc, "sim", out=out, seed=root_seed, replications=replications, report_follows=True)
    )
    try:
        with stack, _progress() as bar:
            task = bar.add_task(f"simulating {sc.name}", total=replications)

            def done(r: int, outcome: Outcome) -> None:
                run.save_replication(r, outcome)
                bar.advance(task)

            run_replications(sc, root_seed, replications, n_workers, done)
        code = finish_run(run, level=level)
    except BaseException as e:
        e.add_note(run_note(run.path))
        raise
    raise typer.Exit(code=code)


def _check_replications(sc: Scenario, replications: int) -> None:
    """Exit 2 unless 1 <= replications <= MAX_REPLICATIONS and their tables fit in memory."""
    if not 1 <= replications <= MAX_REPLICATIONS:
        fail(f"--replications: must be from 1 to {MAX_REPLICATIONS:,}, got {replications:,}")
    need = replications * run_size(sc).journeys * _BYTES_PER_JOURNEY
    have = _memory_bytes()
    if have is not None and need > have:
        fail(
            f"--replications: {replications:,} replications of {sc.name} need at least "
            f"{need / 2**30:,.1f} GiB of memory for their tables and this machine has "
            f"{have / 2**30:,.1f} GiB; run at most {max(1, have // (need // replications)):,}"
        )


def _memory_bytes() -> int | None:
    """Physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replications"),
        TimeElapsedColumn(),
        transient=False,
    )
