"""``flashsale report RUN_DIR``: rebuild metrics.json, the charts and report.html of a run
(or of a sweep: every point's, then the sweep's; of a search: its charts and page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flashsale._cli_utils import run_note
from flashsale.runs import RunFolder

__all__ = ["report"]


def report(
    run_dir: Annotated[
        Path,
        typer.Argument(help="A run folder (results/<run>/), a sweep folder or a search folder."),
    ],
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Report on a run that is not whole (interrupted, failed, killed) from the "
            "replications it holds (a sweep: its whole points; a search: the values it "
            "judged); the page and metrics.json say it is partial.",
        ),
    ] = False,
) -> None:
    """Recompute metrics, charts and report.html from a run's stored tables.

    A run that stopped while writing its report is completed. Exit 0 when every
    threshold held, 1 when any was breached or the run is not whole (missing
    replications: add --partial to report on what it holds), 2 for a bad folder.
    A search folder: its charts and page from search.json, exit 0 when it found an
    answer, 1 when no value satisfies the thresholds or it did not finish.
    """
    from flashsale.postrun import finish_run
    from flashsale.search_run import is_search_folder, report_search
    from flashsale.sweep import is_sweep_folder, report_sweep

    if is_sweep_folder(run_dir):
        raise typer.Exit(code=report_sweep(run_dir, partial=partial))
    if is_search_folder(run_dir):
        raise typer.Exit(code=report_search(run_dir, partial=partial))
    run = RunFolder.load(run_dir)
    try:
        code = finish_run(run, partial=partial)
    except KeyboardInterrupt as e:
        e.add_note(run_note(run.path))
        raise
    except OSError as e:
        e.add_note(run_note(run.path))
        raise
    raise typer.Exit(code=code)
