"""Shared pieces of the command line: the ``--set`` option and error handling.

Every command runs inside :func:`guarded`, the one place where an exception
becomes an exit code and a line on stderr, never a traceback:

- bad input (a scenario, a run folder, an option, an output folder): ``error:``
  one line per problem, exit 2;
- a run that failed (the stock books did not balance, a full disk) or a run folder
  that is not whole where a whole one is needed: ``error:``, exit 1;
- Ctrl-C or SIGTERM: ``interrupted (...)``, exit 130 (:func:`terminate` makes
  SIGTERM an exception, as Ctrl-C is).

Lines after the first (indented) say what the command left behind and what to
run next, e.g. that the run folder is marked incomplete and how to report on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn, ParamSpec

import typer

from flashsale.runs import IncompleteRun, RunError, RunFolder, Terminated, interruption
from flashsale.scenario import Scenario, ScenarioError, load_scenario
from flashsale.sim.stock import OversellError

__all__ = [
    "INTERRUPTED",
    "RUN_FAILED",
    "USER_ERROR",
    "SetOption",
    "fail",
    "guarded",
    "load_or_exit",
    "run_note",
    "terminate",
]

USER_ERROR = 2
"""Exit code for bad input: a scenario, a run folder or an option the user gave."""

RUN_FAILED = 1
"""Exit code for a run that failed, or a breached threshold."""

INTERRUPTED = 130
"""Exit code after Ctrl-C or SIGTERM (the shell's 128 + SIGINT)."""

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a scenario field, e.g. --set humans.count=1000 (repeatable; "
        "values are TOML literals).",
        metavar="PATH=VALUE",
    ),
]

P = ParamSpec("P")


def fail(message: str, code: int = USER_ERROR, notes: list[str] | None = None) -> NoReturn:
    """Print ``error: message`` on stderr (then ``notes``, indented) and exit with ``code``."""
    for line in message.splitlines():
        typer.echo(f"error: {line}", err=True)
    for note in notes or []:
        typer.echo(f"  {note}", err=True)
    raise typer.Exit(code=code)


def terminate(signum: int, frame: FrameType | None) -> NoReturn:
    """The SIGTERM handler: raise :class:`~flashsale.runs.Terminated` where Ctrl-C would
    raise KeyboardInterrupt, so that cleanups run (Python's default is to die on the spot)."""
    raise Terminated


def _os_error(e: OSError) -> str:
    """``path: No space left on device``, not ``[Errno 28] ...: 'path'``."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def guarded(command: Callable[P, None]) -> Callable[P, None]:
    """``command`` with its exceptions turned into exit codes and stderr lines (the
    module docstring says which). Anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (ScenarioError, RunError) as e:
            fail(str(e), USER_ERROR, getattr(e, "__notes__", None))
        except IncompleteRun as e:
            fail(str(e), RUN_FAILED, getattr(e, "__notes__", None))
        except OversellError as e:
            fail(f"the run failed: {e}", RUN_FAILED, getattr(e, "__notes__", None))
        except OSError as e:
            fail(_os_error(e), RUN_FAILED, getattr(e, "__notes__", None))
        except KeyboardInterrupt as e:
            typer.echo(interruption(e), err=True)
            for note in getattr(e, "__notes__", []):
                typer.echo(f"  {note}", err=True)
            raise typer.Exit(code=INTERRUPTED) from None

    return run


def run_note(path: Path) -> str:
    """What a stopped run left in ``path`` and the command that reports on it."""
    try:
        run = RunFolder.load(path)
    except RunError as e:
        return str(e)
    if run.whole:
        return (
            f"{path}: {run.describe_state()} while writing its report; "
            f"`flashsale report {path}` writes it again from the tables"
        )
    if not run.replications():
        return f"{path}: {run.describe_state()}"
    return (
        f"{path}: {run.describe_state()}; "
        f"`flashsale report --partial {path}` reports on what it holds"
    )


def load_or_exit(path: Path, overrides: list[str] | None) -> Scenario:
    """Load and validate a scenario, or exit 2 naming file, field and value (or why the
    file cannot be read: a run folder given where its scenario.toml was meant)."""
    if path.is_dir():
        if (path / "scenario.toml").is_file():
            fail(f"{path}: a run folder, not a scenario file; its sale is {path / 'scenario.toml'}")
        fail(f"{path}: a folder, not a scenario file")
    try:
        return load_scenario(path, overrides or [])
    except ScenarioError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{path}: cannot read the scenario: {e.strerror or e}")
