"""The ``flashsale`` command line. Each command is a thin shell over a library call.

Importing this module (``flashsale --help``, ``validate``, ``show``) loads the scenario
schema and typer, not the engines: each command imports the charts, the simulator,
the service or the replay when it runs (tests/test_cli_startup.py checks which).

Exit codes: 0 ok, 1 thresholds breached or the run failed, 2 bad input, 130
interrupted (Ctrl-C, SIGTERM). Every command runs inside ``guarded``: the one
place where an exception becomes an exit code and a line on stderr.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from flashsale._cli_utils import USER_ERROR, SetOption, guarded, load_or_exit, terminate
from flashsale.commands.calibrate import calibrate
from flashsale.commands.compare import compare
from flashsale.commands.export import export_app
from flashsale.commands.predict import predict
from flashsale.commands.probe import probe
from flashsale.commands.replay import replay
from flashsale.commands.report import report
from flashsale.commands.search import search
from flashsale.commands.serve import serve_command
from flashsale.commands.simulate import simulate
from flashsale.commands.sweep import sweep
from flashsale.scenario import ScenarioError, load_scenario

__all__ = ["app", "main"]

app = typer.Typer(
    name="flashsale",
    help="Simulate and replay e-commerce flash sales; chart who got the stock and what broke.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "[target]" is a TOML table, not markup
)


@app.command()
@guarded
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(help="Scenario files to check: TOML, or JSON as `show --json` prints."),
    ],
    set_: SetOption = None,
) -> None:
    """Check scenario files against the schema; exit 2 naming file and field if any is bad."""
    bad = 0
    for path in files:
        try:
            sc = load_scenario(path, set_ or [])
        except (ScenarioError, OSError) as e:
            bad += 1
            text = str(e) if isinstance(e, ScenarioError) else f"{path}: cannot read: {e.strerror}"
            for line in text.splitlines():
                typer.echo(f"error: {line}", err=True)
            continue
        typer.echo(
            f"ok: {path} ({sc.name}: {sc.sale.units:,} units, {sc.humans.count:,} humans, "
            f"{sc.bots.accounts:,} bot accounts)"
        )
    if bad:
        raise typer.Exit(code=USER_ERROR)


@app.command()
@guarded
def show(
    file: Annotated[Path, typer.Argument(help="Scenario file (TOML or JSON).")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the resolved scenario with every default filled in."""
    sc = load_or_exit(file, set_)
    typer.echo(json.dumps(sc.to_toml_dict(), indent=2) if as_json else sc.to_toml())


app.command()(guarded(report))
app.command()(guarded(compare))
app.command()(guarded(predict))
app.command("serve")(guarded(serve_command))
app.command()(guarded(replay))
app.command()(guarded(probe))
app.command()(guarded(simulate))
app.command()(guarded(sweep))
app.command()(guarded(search))
app.command()(guarded(calibrate))
app.add_typer(export_app)


def main() -> None:
    """Console-script entry point. SIGTERM stops a command the way Ctrl-C does, so
    its run folder is marked incomplete (and a replay stops Locust and the service)."""
    signal.signal(signal.SIGTERM, terminate)
    app()
