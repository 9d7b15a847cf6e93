"""Shared pieces of the command line: the ``--set`` option and user-error handling.

User errors (bad scenario, bad run folder, bad option) print one line per problem
on stderr and exit with code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from flashsale.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["USER_ERROR", "SetOption", "fail", "load_or_exit"]

USER_ERROR = 2
"""Exit code for bad input: a scenario, a run folder or an option the user gave."""

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a scenario field, e.g. --set humans.count=1000 (repeatable; "
        "values are TOML literals).",
        metavar="PATH=VALUE",
    ),
]


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    for line in message.splitlines():
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code=code)


def load_or_exit(path: Path, overrides: list[str] | None) -> Scenario:
    """Load and validate a scenario, or exit 2 naming file, field and value."""
    try:
        return load_scenario(path, overrides or [])
    except ScenarioError as e:
        fail(str(e))
