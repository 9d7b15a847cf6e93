"""``flashsale calibrate RUN_DIR``: fit the service model to a replay, write the
calibrated scenario and a report on the fit."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer

from flashsale._cli_utils import fail, load_or_exit
from flashsale.runs import RunFolder

__all__ = ["calibrate"]


def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="A replay's run folder.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Calibrated scenario file; default RUN_DIR/calibrated.toml."),
    ] = None,
    for_: Annotated[
        Path | None,
        typer.Option(
            "--for",
            help="Write this scenario (TOML) with the fitted [service] instead of the replay's: "
            "e.g. the full-scale sale. Workers are scaled by its workers / the replay's.",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="server-timing: the target's reported queue, service and gateway times where "
            "it sent them (else response times); response-times: the whole latency, an "
            "effective station that includes what the target did not report.",
        ),
    ] = "server-timing",
) -> None:
    """Fit per-step service demand, concurrency, gateway time and payment failures
    against load to a replay's tables (Server-Timing when the target sent it, else
    response times: Kraft et al. 2009) and write the scenario with its [service]
    replaced, each value commented with its 95% interval, plus a report in
    RUN_DIR/calibration/. Exit 0 ok, 2 bad input (not a replay, too few requests).
    """
    from flashsale.calibrate import CalibrationError, calibrate_outcomes
    from flashsale.calibration_report import calibration_summary, write_calibration_report
    from flashsale.calibration_toml import calibrated_scenario
    from flashsale.outcome import OutcomeError
    from flashsale.runs import write_text_atomic
    from flashsale.scenario import ScenarioError, parse_scenario

    if method not in ("server-timing", "response-times"):
        fail(f"--method {method!r}: use server-timing or response-times")
    run = RunFolder.load(run_dir)  # RunError: `guarded` prints it, exit 2
    engine = run.manifest.get("engine")
    if engine != "replay":
        fail(
            f"{run_dir}: a {engine} run, not a replay: calibrate fits the model to what a "
            "target measured (`flashsale replay` writes such a folder)"
        )
    reps = run.replications()
    if not reps:
        fail(f"{run_dir}: no replication's tables ({run.describe_state()})")
    try:
        outcomes = [run.load_replication(r) for r in reps]
    except OutcomeError as e:
        fail(str(e))
    replayed = run.scenario
    target_path = for_ if for_ is not None else run_dir / "scenario.toml"
    target = load_or_exit(target_path, None) if for_ is not None else replayed
    try:
        text = target_path.read_text(encoding="utf-8")
        tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"{target_path}: cannot read as TOML: {e}")
    try:
        cal = calibrate_outcomes(
            outcomes,
            replayed.to_toml_dict()["service"],
            server_timing=method == "server-timing",
        )
    except CalibrationError as e:
        fail(f"{run_dir}: {e}")
    ratio = target.service.workers / replayed.service.workers
    dest = out if out is not None else run_dir / "calibrated.toml"
    if dest.is_dir():
        fail(f"--out {dest}: a folder; give the scenario file to write")
    header = (
        f"{target.name}, its [service] calibrated by `flashsale calibrate` from the replay "
        f"{run_dir} ({len(reps)} replication{'s' if len(reps) != 1 else ''}).\n"
        "Each fitted value's comment gives its 95% interval and the method; the report is "
        f"{run_dir / 'calibration' / 'calibration.html'}."
    )
    calibrated = calibrated_scenario(text, cal, capacity_ratio=ratio, header=header)
    try:
        parse_scenario(tomllib.loads(calibrated), str(dest))
    except ScenarioError as e:  # a fit outside the scenario's limits: say which
        fail(f"the calibrated scenario does not validate: {e}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--out {dest}: cannot create its folder: {e.strerror or e}")
    write_text_atomic(dest, calibrated)
    page = write_calibration_report(
        cal, run_dir / "calibration", f"Calibration of {replayed.name} from {run_dir}", dest
    )
    for line in calibration_summary(cal):
        typer.echo(line)
    typer.echo(f"calibrated scenario: {dest}")
    typer.echo(f"report: {page}")
