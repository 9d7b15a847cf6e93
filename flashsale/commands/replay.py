"""``flashsale replay``: the scenario as real traffic, against the reference service or staging.

Locust runs in a child process (``python -m locust -f`` the package's own
flashsale/replay/locustfile.py ``--headless``, so a wheel install replays without a
source checkout): gevent's monkey-patching stays out of this process, which starts
and stops the reference service, resets it to the sale, and writes the results
folder with the same post-run pipeline as ``flashsale simulate``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from flashsale._cli_utils import RUN_FAILED, SetOption, fail, load_or_exit, run_note
from flashsale._ports import free_port
from flashsale.children import die_with_parent
from flashsale.replay.scale import ScaleError, scale_scenario
from flashsale.replay.target import (
    TargetError,
    check_protocol,
    replayed_accounts,
    resolve_target,
    scenario_overrides,
)
from flashsale.runs import RunError, RunFolder, open_run
from flashsale.scenario import Scenario, ScenarioError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["LOCUSTFILE", "replay"]

LOCUSTFILE = Path(__file__).resolve().parents[1] / "replay" / "locustfile.py"
"""The locustfile this command runs, inside the package (``locustfiles/flashsale.py``,
the example for ``locust -f`` users, imports its classes from it)."""

_STARTUP_S = 5.0  # Locust's own start-up, before the first arrival is due
_GRACE_S = 60.0  # beyond the plan, before the child is declared stuck
_POLL_S = 0.5  # how often the progress bar reads Locust's progress.json
_RELAY_S = 10.0  # after Locust exits, for its last lines to come through


def replay(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    target: Annotated[
        str | None,
        typer.Option(help="Base URL of the target; default: start the reference service."),
    ] = None,
    target_config: Annotated[
        Path | None, typer.Option(help="TOML file with a [target] table (e.g. staging).")
    ] = None,
    scale: Annotated[float, typer.Option(help="Share of the people replayed, (0, 1].")] = 1.0,
    processes: Annotated[int, typer.Option(help="Locust worker processes (1 = none).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Results folder (new or empty).")] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback target that the configuration names."),
    ] = False,
    db: Annotated[
        str | None, typer.Option(help="Reference service database (default: fresh SQLite).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Replay SCENARIO with Locust (open model, bounded), then report and audit the run.

    Exit 0 ok, 1 a threshold breached / the audit disagrees / the replay failed,
    2 bad input or a refused target.
    """
    from flashsale.replay.session import ReplayError  # httpx: not at the CLI's start

    sc = load_or_exit(scenario, scenario_overrides(set_, target_config))
    try:
        sc, source, url = resolve_target(sc, scenario, target_config, set_, target, allow_remote)
        scaled = _scaled(sc, scale)
        check_protocol(scaled, replayed_accounts(scaled), source)
    except (TargetError, ScaleError) as e:
        fail(str(e))
    if processes < 1:
        fail(f"--processes: must be >= 1, got {processes}")
    if not LOCUSTFILE.exists():
        fail(f"{LOCUSTFILE}: the locustfile is missing (a broken install: reinstall flashsale)")
    passthrough = [x for item in (set_ or []) for x in ("--set", item)]
    if target_config is not None:
        passthrough += ["--target-config", str(target_config)]
    if allow_remote:
        passthrough.append("--allow-remote")
    # The run is complete only once its report is written: leaving the run's context
    # puts it in phase ``report`` (still ``running``) and ``conclude`` completes it, so
    # a replay killed between its tables and its report is never ``complete``.
    try:
        run_cm = open_run(
            scaled, "replay", out=out, seed=sc.seed, replications=1, report_follows=True
        )
        run = run_cm.__enter__()
    except RunError as e:
        fail(str(e))
    try:
        with contextlib.ExitStack() as stack:
            stack.push(run_cm)
            problems = _replay(
                run, stack, scenario, scaled, url, scale, processes, db, passthrough, source
            )
        code = conclude(run, problems)
    except ReplayError as e:
        fail(f"{run.path}: the replay failed: {e}", RUN_FAILED, [run_note(run.path)])
    except TargetError as e:  # the preflight: the target does not speak the protocol
        fail(str(e), notes=[run_note(run.path)])
    except BaseException as e:
        e.add_note(run_note(run.path))
        raise
    raise typer.Exit(code)


def conclude(run: RunFolder, problems: list[str]) -> int:
    """:func:`flashsale.replay.session.conclude`, imported when a replay concludes (that
    module loads httpx, which ``flashsale --help`` has no use for)."""
    from flashsale.replay.session import conclude

    return conclude(run, problems)


def _replay(
    run: RunFolder,
    stack: contextlib.ExitStack,
    scenario: Path,
    scaled: Scenario,
    url: str | None,
    scale: float,
    processes: int,
    db: str | None,
    passthrough: list[str],
    source: str,
) -> list[str]:
    """Start the service (unless there is a target), run Locust, write the tables, the
    counts and the audit into ``run``; return the audit's disagreements."""
    import httpx

    from flashsale.replay.audit import AuditError
    from flashsale.replay.preflight import Unreachable
    from flashsale.replay.session import (
        DRAIN_S,
        ReplayError,
        load_staging,
        opening_epoch,
        record_results,
    )

    admin = os.environ.get("FLASHSALE_ADMIN_TOKEN")
    if url is None:
        from flashsale.service.server import run_in_background

        service = stack.enter_context(run_in_background(scaled, db=db))
        url, admin = str(service), service.admin_token
    run.update(scale=scale)
    try:
        t0 = opening_epoch(url, scaled, admin, 0, source, _STARTUP_S + 5.0)
    except (AuditError, Unreachable) as e:
        raise ReplayError(str(e)) from None
    except httpx.HTTPError as e:  # nothing listening, a timeout: no traceback
        raise ReplayError(f"{url}: cannot reach the target: {e}") from None
    staging = run.path / ".locust"
    end = t0 + scaled.sale.window_s + 2 * scaled.target.request_timeout_s + DRAIN_S
    run_time = int(end - time.time() + 30)
    clock = "%H:%M:%S UTC"
    typer.echo(  # a sale that opens late must not look like a hang
        f"replay: {url}: the sale opens in {max(0.0, t0 - time.time()):,.0f} s "
        f"({time.strftime(clock, time.gmtime(t0))}); the replay ends by "
        f"{time.strftime(clock, time.gmtime(end))}"
    )
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--host",
        url,
        "--scenario",
        str(scenario),
        "--scale",
        repr(scale),
        "--flashsale-staging",
        str(staging),
        "--flashsale-opens-at",
        repr(t0),
        "--run-time",
        f"{run_time}s",
        *(_processes(processes) if processes > 1 else []),
        *passthrough,
    ]
    rc = _run_locust(cmd, run_time + _GRACE_S, staging / "progress.json", scaled.name)
    if not (staging / "replay.json").exists():
        raise ReplayError(f"Locust exited with code {rc} before the replay finished")
    outcome, counts = load_staging(staging)
    shutil.rmtree(staging)
    try:
        return record_results(run, outcome, counts, scale, url, admin)
    except AuditError as e:
        raise ReplayError(str(e)) from None
    except httpx.HTTPError as e:
        raise ReplayError(f"{url}/admin/audit: cannot read the audit: {e}") from None


def _processes(processes: int) -> list[str]:
    """Locust's options for ``processes`` workers forked from the master, which listens
    on a free loopback port of its own (Locust's fixed 5557 would clash with another
    replay's master, and its default binds every interface)."""
    port = str(free_port())
    return [
        "--processes", str(processes),
        "--master-bind-host", "127.0.0.1",
        "--master-bind-port", port,
        "--master-port", port,
    ]  # fmt: skip


def _relay(pipe: IO[bytes] | None, stream: str) -> None:
    """Copy Locust's lines to this process's ``stream`` as it is at each line (on a
    terminal the progress bar swaps it for one that prints above the bar)."""
    if pipe is None:
        return
    for line in iter(pipe.readline, b""):
        out = getattr(sys, stream)
        out.write(line.decode(errors="replace"))
        out.flush()


def _show_progress(bar: Progress, task: TaskID, path: Path, name: str) -> dict[str, Any] | None:
    """Move the bar to what progress.json says and return it (None before the sale
    opens: no file yet). Its fields: flashsale.replay.locust_app's Controller.progress."""
    try:
        p: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    bar.update(
        task,
        description=name,
        total=p["scheduled"],
        completed=p["ended"],
        detail=(
            f"ended, {p['started']:,} started, {p['rps']:,.0f} req/s, "
            f"{p['errors']:,} failed, {p['units']:,} sold"
        ),
    )
    return p


def _progress() -> Progress:
    """The replay's live bar: journeys ended of those scheduled, then journeys started,
    requests per second, failed requests and units sold; disabled off a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=6),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )


def _scaled(full: Scenario, scale: float) -> Scenario:
    """The sale at ``--scale``, or ScaleError naming --scale: when it leaves none of the
    sale's humans (the replay would measure no buyer, every fairness figure undefined,
    and still end ``complete``), with the smallest scale that replays anyone."""
    n = full.humans.count
    if n and 0 < scale <= 1 and round(n * scale) == 0:  # humans: rounded, no floor
        raise ScaleError(
            f"--scale {scale:g}: replays none of the {n:,} humans ({n:,} x {scale:g} rounds "
            f"to 0); the smallest scale that replays anyone is {_smallest_scale(full):g}"
        )
    try:
        return scale_scenario(full, scale)
    except ScenarioError as e:  # e.g. a rate scaled below its minimum
        raise ScaleError(f"--scale {scale:g}: {e}") from None


def _smallest_scale(full: Scenario) -> float:
    """The smallest scale, in two significant digits, at which the sale replays one
    human (1,000 humans need more than 0.0005: 0.5 rounds to 0) and is still valid."""
    least = 0.5 / full.humans.count
    exp = math.floor(math.log10(least)) - 1
    k = math.floor(least / 10**exp)
    while True:
        scale = float(f"{k}e{exp}")
        with contextlib.suppress(ScenarioError):
            if scale_scenario(full, scale).humans.count >= 1:
                return scale
        k += 1


def _run_locust(cmd: list[str], timeout_s: float, progress: Path, name: str) -> int:
    """Run Locust to its end, showing the replay's progress as its Locust writes it (a
    live bar on a terminal, the final line elsewhere); Locust's own output is relayed
    above the bar. On Ctrl-C stop Locust first (SIGINT, then kill), then re-raise."""
    from flashsale.replay.session import ReplayError

    proc = subprocess.Popen(
        cmd, preexec_fn=die_with_parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    relays = [
        threading.Thread(target=_relay, args=(pipe, stream), daemon=True)
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
    ]
    deadline = time.monotonic() + timeout_s
    try:
        with _progress() as bar:
            task = bar.add_task(f"{name}: waiting for the sale to open", total=None, detail="")
            for relay in relays:
                relay.start()
            while True:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    rc = proc.wait(timeout=_POLL_S)
                    break
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, timeout_s)
                _show_progress(bar, task, progress, name)
            last = _show_progress(bar, task, progress, name)
            for relay in relays:  # Locust's last lines, before the bar's last state
                relay.join(timeout=_RELAY_S)
        if bar.disable and last is not None:  # not a terminal: no bar, one line at the end
            typer.echo(
                f"replay: {last['ended']:,} of {last['scheduled']:,} journeys ended "
                f"({last['started']:,} started), {last['requests']:,} requests "
                f"({last['errors']:,} failed), {last['units']:,} units sold"
            )
        return rc
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ReplayError(f"Locust did not finish within {timeout_s:.0f} s; killed") from None
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
