"""``flashsale report RUN_DIR``: rebuild metrics.json, the charts and report.html of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flashsale._cli_utils import fail
from flashsale.postrun import finish_run
from flashsale.runs import RunError, RunFolder

__all__ = ["report"]


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (results/<run>/).")],
) -> None:
    """Recompute metrics, charts and report.html from a run's stored tables.

    Exit 0 when every threshold held, 1 when any was breached, 2 for a bad run folder.
    """
    try:
        run = RunFolder.load(run_dir)
        if run.status != "complete":
            typer.echo(
                f"warning: {run_dir}: status {run.status}; reporting the finished replications",
                err=True,
            )
        code = finish_run(run)
    except RunError as e:
        fail(str(e))
    raise typer.Exit(code=code)
