"""``flashsale search``: the smallest (or largest) value of one parameter at which every
threshold holds, by bracketing and bisection over paired simulations."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale._cli_utils import SetOption, fail
from flashsale.runs import new_results_dir, prepare_output_dir
from flashsale.scenario import ScenarioError
from flashsale.sim.stock import OversellError

if TYPE_CHECKING:
    from flashsale.search import Number
    from flashsale.search_run import Tried

__all__ = ["search"]


def search(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file with a [thresholds] table.")],
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            help="The field to search and its range, e.g. --vary service.workers=64..1024 "
            "(both ends included).",
            metavar="PATH=LOW..HIGH",
        ),
    ],
    integer: Annotated[
        bool, typer.Option("--integer", help="Whole numbers only (workers, counts).")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="How close the answer must come to the limit: the grid step. Default 1 "
            "with --integer, else 1/100 of HIGH - LOW.",
        ),
    ] = None,
    largest: Annotated[
        bool,
        typer.Option(
            "--largest",
            help="Find the largest value at which every threshold holds (e.g. the most "
            "buyers a checkout can take) instead of the smallest.",
        ),
    ] = False,
    replications: Annotated[
        int, typer.Option(min=1, help="Replications per value (seeds r = 0..N-1), >= 2 for CIs.")
    ] = 3,
    seed: Annotated[
        int | None,
        typer.Option(min=0, help="Root seed shared by every value; default: the scenario's."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Parallel processes; default the CPU count."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Search folder (new or empty).")] = None,
    report: Annotated[
        str,
        typer.Option(
            help="Each tried value's run report: summary (metrics.json: enough to judge) or "
            "full (its charts and report.html too; slower).",
            metavar="summary|full",
        ),
    ] = "summary",
    set_: SetOption = None,
) -> None:
    """Find the smallest value of one parameter at which every threshold in the
    scenario's [thresholds] holds (with --largest, the largest).

    Every tried value is simulated with the same seeds (common random numbers) and
    judged like a run's thresholds (add some with --set, e.g. --set
    'thresholds.sellout_time_s=<= 300'). Both ends are tried first, then bisection:
    at most 2 + log2(cells) values. The search assumes the thresholds are monotone in
    the parameter (once they hold, they hold at every larger value; with --largest,
    every smaller one) and warns when a tried value contradicts it. Writes a run
    folder per tried value, search.json, a chart per threshold metric and a report.
    Exit 0 answer found, 1 no value in the range satisfies the thresholds or a run
    failed, 2 bad input (nothing runs then), 130 interrupted.
    """
    from flashsale.commands.sweep import progress_bar
    from flashsale.search import parse_range, show
    from flashsale.search_run import (
        answer_line,
        plan_search,
        run_search,
        verdict_text,
        warning_lines,
    )

    if report not in ("summary", "full"):
        fail(f"--report: must be summary or full (the verdicts need metrics.json), got {report!r}")
    if len(vary) != 1:
        fail(f"--vary: a search varies one parameter, got {len(vary)}: {', '.join(vary)}")
    try:
        grid = parse_range(vary[0], str(scenario), integer=integer, tolerance=tolerance)
        plan = plan_search(scenario, grid, set_ or [], seed, largest=largest)
    except ScenarioError as e:
        fail(str(e))
    n_workers = workers or os.cpu_count() or 1
    folder = out if out is not None else new_results_dir(f"{plan.scenario.name}-search")
    prepare_output_dir(folder)  # a bad --out: exit 2 before anything runs
    width = max(len(f"{grid.path}={show(v)}") for v in (grid.low, grid.high))
    typer.echo(
        f"searching {plan.scenario.name} for the {plan.goal} {grid.path} in "
        f"{show(grid.low)}..{show(grid.high)}"
        f"{'' if grid.integer and grid.step == 1 else f' (to within {show(grid.step)})'} "
        f"at which every threshold holds: {replications} replication(s) per value, "
        f"at most {grid.max_values} values"
    )
    typer.echo(f"thresholds: {'; '.join(str(th) for th in plan.thresholds)}")
    judged: list[Tried] = []
    try:
        with progress_bar() as bar:
            task = bar.add_task("", total=None)

            def batch(values: Sequence[Number]) -> None:
                shown = ", ".join(show(v) for v in values)
                bar.reset(
                    task,
                    total=len(values) * replications,
                    description=f"{grid.path}={shown}",
                )

            def tried(t: Tried) -> None:
                judged.append(t)
                word = "holds" if t.passed else "FAILS"
                checks = "; ".join(verdict_text(v) for v in t.verdicts)
                label = f"{grid.path}={show(t.value)}".ljust(width)
                bar.console.print(  # one line per value, however narrow the terminal
                    f"  {label}  {word}  {checks}", markup=False, highlight=False, soft_wrap=True
                )

            result = run_search(
                plan,
                replications=replications,
                workers=n_workers,
                folder=folder,
                on_batch=batch,
                on_job=lambda: bar.advance(task),
                on_tried=tried,
                level=report,
            )
    except (KeyboardInterrupt, OversellError, OSError) as e:
        if (folder / "search.json").is_file():
            e.add_note(
                f"{folder}: search.json marked {_status(folder)}; {len(judged)} value(s) "
                "judged, each a run folder point-NNN with its metrics and report"
            )
        raise
    for line in warning_lines(result):
        typer.echo(f"warning: {line}")
    typer.echo(answer_line(result))
    typer.echo(f"search:  {result.folder}")
    typer.echo(f"report:  {result.report}")
    if result.answer.value is None:
        raise typer.Exit(code=1)


def _status(folder: Path) -> str:
    try:
        return str(json.loads((folder / "search.json").read_text(encoding="utf-8"))["status"])
    except (OSError, ValueError, KeyError):
        return "unreadable"
