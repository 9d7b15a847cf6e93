"""``flashsale sweep``: one scenario over a grid of overrides, every point paired."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flashsale._cli_utils import SetOption, fail
from flashsale.metrics import fmt_metric
from flashsale.runs import RunError
from flashsale.scenario import ScenarioError
from flashsale.sim.stock import OversellError
from flashsale.sweep import SweepResult, parse_vary, plan_sweep, run_sweep
from flashsale.sweep_charts import SWEEP_METRICS

__all__ = ["sweep"]


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
    try:
        axes = parse_vary(vary, str(scenario))
        points = plan_sweep(scenario, axes, set_ or [], seed)
    except ScenarioError as e:
        fail(str(e))
    n_workers = workers or os.cpu_count() or 1
    jobs = len(points) * replications
    try:
        with _executor(dask_scheduler) as executor, _progress() as bar:
            task = bar.add_task(
                f"sweeping {points[0].scenario.name}: {len(points)} points x {replications}",
                total=jobs,
            )
            fin = bar.add_task("point reports", total=len(points), start=False)

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
                folder=out,
                executor=executor,
                on_job=job_done,
                on_point=lambda: bar.advance(fin),
            )
    except RunError as e:
        fail(str(e))
    except OversellError as e:
        fail(f"the sweep failed: {e}", code=1)
    _print(result)
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


def _print(result: SweepResult) -> None:
    """One line per point: its settings and the key metrics' means."""
    head = ["point", "settings", *(label for _, label in SWEEP_METRICS), "thresholds"]
    table = [
        [
            r["folder"],
            r["label"],
            *(fmt_metric(name, r["metrics"][name]["mean"]) for name, _ in SWEEP_METRICS),
            "FAIL" if r["breached"] else "ok",
        ]
        for r in result.rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    for line in (head, *table):
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    typer.echo(f"sweep:   {result.folder}")
    typer.echo(f"report:  {result.report}")
    if result.compare_report is not None:
        typer.echo(f"compare: {result.compare_report}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )
