"""``flashsale predict REPLAY_DIR SIM_DIR``: a replay held against the simulation's prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["predict"]


def predict(
    replay_dir: Annotated[
        Path, typer.Argument(help="A replay's run folder: what was observed (one draw).")
    ],
    sim_dir: Annotated[
        Path,
        typer.Argument(
            help="A simulation's run folder, typically of the replay's calibrated scenario "
            "(30 replications or so): the prediction."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (new or empty); default results/<UTC time>-predict."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 1 when any figure falls outside its prediction interval."
        ),
    ] = False,
) -> None:
    """Observed vs predicted: each key figure's replay value, the simulation's mean and
    95% prediction interval for one new replication, the error and whether the
    observation falls inside; curves over time in report.html, figures in predict.json.

    Exit 0 when the prediction was written (with --strict: 1 when a figure falls
    outside), 2 when REPLAY_DIR is not a replay's run folder, SIM_DIR not a
    simulation's, or the output folder cannot be used. Scenarios that differ in
    anything but the service model, the seed and the scale are a warning.
    """
    from flashsale.predict import outside, predict_runs, prediction_summary

    path, doc = predict_runs(replay_dir, sim_dir, out)  # RunError: `guarded`, exit 2
    for line in prediction_summary(doc):
        typer.echo(line, err=line.startswith("warning:"))
    typer.echo(f"report: {path}")
    if strict and outside(doc):
        raise typer.Exit(code=1)
