"""``flashsale compare RUN_DIR RUN_DIR...``: runs side by side, with paired differences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["compare"]


def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Two or more run folders; the first is the baseline.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (new or empty); default results/<UTC time>-compare."
        ),
    ] = None,
) -> None:
    """Compare runs: key metrics with CIs, overlaid curves, paired differences vs the first
    (shares in percentage points). Names every setting that differs between the runs and
    says when a run differs from the first in more than one (an effect is then confounded).

    Exit 0 when the comparison was written, 2 for a bad run folder or output folder
    (``flashsale.runs.prepare_output_dir``: refused before any metric is computed).
    """
    from flashsale.compare import compare_runs, compare_summary

    path = compare_runs(run_dirs, out)  # RunError: `guarded` prints it, exit 2
    doc = json.loads((path.parent / "compare.json").read_text())
    for line in compare_summary(doc):
        typer.echo(line)
    typer.echo(f"report: {path}")
