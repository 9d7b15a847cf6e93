"""``flashsale sweep``: one scenario over a grid of overrides, every point paired."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale._cli_utils import SetOption, fail
from flashsale.runs import new_results_dir, prepare_output_dir
from flashsale.scenario import ScenarioError
from flashsale.sim.stock import OversellError

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["progress_bar", "sweep"]


def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            help="A field and its values, e.g. --vary service.workers=32,40,48 (repeatable: "
            "the grid is every combination; values are TOML literals, as for --set).",
            metavar="PATH=V1,V2,...",
        ),
    ],
    replications: Annotated[
        int, typer.Option(min=1, help="Replications per point (seeds r = 0..N-1), >= 2 for CIs.")
    ] = 3,
    seed: Annotated[
        int | None,
        typer.Option(min=0, help="Root seed shared by every point; default: the scenario's."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Parallel processes for all jobs; default the CPU count."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Sweep folder (new or empty).")] = None,
    report: Annotated[
        str,
        typer.Option(
            help="Each point's report: none (tables only, no sweep page), summary "
            "(metrics.json; the sweep's chart and page) or full (and each point's charts "
            "and report.html, and the comparison of all points).",
        ),
    ] = "summary",
    set_: SetOption = None,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run the jobs on a Dask distributed cluster at this address, e.g. "
            "tcp://10.0.0.5:8786 (needs the [cluster] extra).",
        ),
    ] = None,
) -> None:
    """Simulate SCENARIO at every point of a grid of overrides, same seed everywhere.

    Writes one run folder per point, a sweep chart and report, and the paired
    comparison of all points. Exit 0 ok, 1 a point breached its thresholds or a
    run failed, 2 bad input (nothing runs then).
    """
    from flashsale.postrun import check_report_level
    from flashsale.sweep import (
        is_sweep_folder,
        parse_vary,
        plan_sweep,
        run_sweep,
        summary_lines,
        sweep_note,
    )

    try:
        level = check_report_level(report)
        axes = parse_vary(vary, str(scenario))
        points = plan_sweep(scenario, axes, set_ or [], seed)
    except (ScenarioError, ValueError) as e:
        fail(str(e))
    n_workers = workers or os.cpu_count() or 1
    jobs = len(points) * replications
    folder = out if out is not None else new_results_dir(f"{points[0].scenario.name}-sweep")
    try:
        with _executor(dask_scheduler) as executor:
            prepare_output_dir(folder)  # a bad --out: exit 2 before anything is drawn
            with progress_bar() as bar:
                task = bar.add_task(
                    f"sweeping {points[0].scenario.name}: {len(points)} points x {replications}",
                    total=jobs,
                )
                fin = bar.add_task(f"point reports ({level})", total=len(points), start=False)

                def job_done() -> None:
                    bar.advance(task)
                    if bar.tasks[task].finished:  # the reports' clock starts with them
                        bar.start_task(fin)

                result = run_sweep(
                    scenario,
                    points,
                    axes,
                    replications=replications,
                    workers=n_workers,
                    folder=folder,
                    executor=executor,
                    on_job=job_done,
                    on_point=lambda: bar.advance(fin),
                    level=level,
                )
    except (KeyboardInterrupt, OversellError, OSError) as e:
        if is_sweep_folder(folder):  # else the sweep never started (a bad --out)
            e.add_note(sweep_note(folder))
        raise
    for line in summary_lines(result):
        typer.echo(line)
    if result.breached:
        typer.echo(f"thresholds breached at {len(result.breached)} point(s):")
        for r in result.breached:
            typer.echo(f"  {r['folder']} ({r['label']}): {'; '.join(r['breached'])}")
        raise typer.Exit(code=1)


@contextlib.contextmanager
def _executor(address: str | None) -> Iterator[Executor | None]:
    """None (local processes), or a Dask cluster's concurrent.futures executor."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        fail(
            "--dask-scheduler: Dask distributed is not installed; "
            "install the extra: pip install 'flashsale[cluster]'"
        )
    try:
        client = Client(address, timeout=10)  # type: ignore[no-untyped-call,unused-ignore]
    except (OSError, TimeoutError) as e:
        fail(f"--dask-scheduler: cannot reach {address}: {e}")
    with client:
        yield client.get_executor()  # type: ignore[no-untyped-call,unused-ignore]


def progress_bar() -> Progress:
    """A job bar: what runs, the bar, done of total, elapsed (sweep and search). It is
    erased when it stops, and off a terminal (a CI log, a pipe) it is never drawn,
    not even a blank line: what stays is the command's own output (a search's line
    per value, a sweep's table)."""
    from rich import get_console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = get_console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_interactive,
    )
