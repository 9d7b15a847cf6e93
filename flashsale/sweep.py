"""Parameter sweeps: one scenario, a grid of overrides, one run folder per grid point.

``flashsale sweep`` answers the capacity planner's question "how do the sell-out
time, the humans' success share and the yellow-cart rate move with
``service.workers`` = 32, 40, 48, 64?". The grid is the cartesian product of the
``--vary path=v1,v2`` lists; each value is a TOML literal applied exactly like
``--set``, so a bad path or value is refused, naming the field, before anything
runs.

Every point is a normal run folder (engine ``sim``) under one sweep folder, and
every point runs with the same root seed and replications: replication r of each
point saw the same arrivals and buyers (common random numbers), so differences
between points are the parameter's doing and the comparison is paired. All
(point, replication) jobs go through one process pool, so the cores stay busy
until the last job::

    results/<UTC stamp>-<scenario>-sweep/
        sweep.json        the grid, each point's overrides, folder and status
        point-000/ ...    a run folder each: manifest, tables, metrics, charts, report
        charts/           key metrics against the varied parameter(s)
        compare/          the compare report of all points (paired differences)
        report.html       the sweep report

sweep.json is written first with status ``running`` and kept honest like a run
manifest: ``complete``, ``failed`` (with the error) or ``incomplete`` (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from flashsale.compare import compare_runs
from flashsale.html_page import escape
from flashsale.metric_registry import SWEEP_COLUMNS
from flashsale.metrics import fmt_metric
from flashsale.outcome import Outcome
from flashsale.postrun import finish_run
from flashsale.runs import (
    IncompleteRun,
    RunError,
    RunFolder,
    interruption,
    new_results_dir,
    open_run,
    prepare_output_dir,
    process_gone,
    redact_command,
    remove_partials,
    write_json_atomic,
    write_text_atomic,
)
from flashsale.scenario import Scenario, ScenarioError, load_scenario
from flashsale.sim.engine import UnsupportedScenario, check_supported
from flashsale.sim.runner import run_jobs, worker_pool
from flashsale.sweep_charts import (
    draw_sweep_charts,
    metric_block,
    write_sweep_report,
)

__all__ = [
    "MAX_POINTS",
    "SWEEP_SCHEMA",
    "Axis",
    "Point",
    "SweepResult",
    "finish_points",
    "is_sweep_folder",
    "keep_honest",
    "ledger_state",
    "literal",
    "load_ledger",
    "parse_vary",
    "plan_sweep",
    "report_sweep",
    "run_points",
    "run_sweep",
    "summary_lines",
    "sweep_note",
]

SWEEP_SCHEMA = "flashsale.sweep/1"

MAX_POINTS = 200
"""Largest grid accepted: beyond it a typo in a --vary list costs hours, not seconds."""

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Axis:
    """One varied field: its dotted path and its values as TOML literals."""

    path: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    """One grid point: its index, the value of each axis and the resolved scenario."""

    index: int
    settings: tuple[tuple[str, str], ...]
    scenario: Scenario

    @property
    def folder(self) -> str:
        return f"point-{self.index:03d}"

    @property
    def overrides(self) -> list[str]:
        return [f"{path}={raw}" for path, raw in self.settings]

    @property
    def label(self) -> str:
        return ", ".join(self.overrides)

    def values(self) -> dict[str, Any]:
        """Each axis' value as a TOML literal reads (32 -> int, "fifo" -> str)."""
        return {path: literal(raw) for path, raw in self.settings}


def literal(raw: str) -> Any:
    """A --set/--vary value as the scenario loader reads it: TOML, else a bare string;
    dates and times as ISO text, so sweep.json and the charts can hold them."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def _split_values(raw: str) -> list[str]:
    """Split ``v1,v2`` on the commas outside quotes, [arrays] and {inline tables}."""
    parts, cur, depth, quote = [], "", 0, ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote and not cur.endswith("\\") else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    parts.append(cur.strip())
    return parts


def parse_vary(items: Sequence[str], source: str) -> list[Axis]:
    """``["service.workers=32,40", ...]`` -> axes; ScenarioError naming the bad item."""
    if not items:
        raise ScenarioError(f"{source}: --vary: give at least one, e.g. service.workers=32,40,48")
    axes: list[Axis] = []
    for item in items:
        path, sep, raw = item.partition("=")
        path = path.strip()
        if not sep or not _PATH.match(path):
            raise ScenarioError(
                f"{source}: --vary {item!r}: expected dotted.path=v1,v2,..., "
                "e.g. service.workers=32,40,48"
            )
        if path == "seed":
            raise ScenarioError(
                f"{source}: seed: cannot be varied: every point shares one root seed "
                "(common random numbers); use --replications for more seeds"
            )
        values = _split_values(raw)
        if any(not v for v in values):
            raise ScenarioError(f"{source}: {path}: --vary {item!r} has an empty value")
        if len(set(values)) != len(values):
            raise ScenarioError(f"{source}: {path}: --vary {item!r} repeats a value")
        if any(a.path == path for a in axes):
            raise ScenarioError(f"{source}: {path}: varied twice; give its values in one --vary")
        axes.append(Axis(path, tuple(values)))
    return axes


def plan_sweep(
    scenario_path: Path, axes: Sequence[Axis], set_: Sequence[str], seed: int | None
) -> list[Point]:
    """Every grid point's scenario, validated like ``--set``; one shared root seed.

    Raises ScenarioError (naming file and field) for a bad value at any point, a
    defense the simulator does not model, or a grid over :data:`MAX_POINTS`.
    """
    size = 1
    for a in axes:
        size *= len(a.values)
    if size > MAX_POINTS:
        shape = " x ".join(f"{len(a.values)} ({a.path})" for a in axes)
        raise ScenarioError(
            f"{scenario_path}: --vary: the grid has {size} points ({shape}); "
            f"at most {MAX_POINTS} per sweep: split it"
        )
    points = []
    for i, combo in enumerate(itertools.product(*(a.values for a in axes))):
        settings = tuple((a.path, v) for a, v in zip(axes, combo, strict=True))
        sc = load_scenario(scenario_path, [*set_, *(f"{p}={v}" for p, v in settings)])
        try:
            check_supported(sc)
        except UnsupportedScenario as e:
            raise ScenarioError(f"{scenario_path}: {e}") from None
        if seed is not None:  # each point's scenario.toml then re-runs that very point
            sc = sc.model_copy(update={"seed": seed})
        points.append(Point(i, settings, sc))
    if len({p.scenario.seed for p in points}) != 1:  # only --set seed could break this
        raise ScenarioError(f"{scenario_path}: seed: the points must share one root seed")
    return points


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep wrote and whether every point held its thresholds."""

    folder: Path
    report: Path | None  # None: --report none wrote no page
    compare_report: Path | None
    rows: list[dict[str, Any]]
    """Per point: point, folder, settings, label, exit_code, breached (the failed
    checks), thresholds (every verdict, as in metrics.json), metrics."""

    @property
    def breached(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["breached"]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _sweep_json(folder: Path, ledger: str = "sweep.json") -> Path:
    return folder / ledger


def _set_point(entry: dict[str, Any], run: RunFolder) -> None:
    """A point's line in sweep.json, as its own manifest says."""
    entry["status"] = run.status
    entry["phase"] = run.manifest.get("phase")
    entry["replications_done"] = len(run.replications())


def _refresh_points(folder: Path, doc: dict[str, Any]) -> None:
    for entry in doc["points"]:
        with contextlib.suppress(RunError):
            _set_point(entry, RunFolder.load(folder / entry["folder"]))


def _close_points(folder: Path, doc: dict[str, Any], e: BaseException) -> None:
    """Points this process left ``running`` (their tables written, their report not, or
    cut short in a worker) become ``incomplete`` in phase ``report``: not ``failed``,
    for what stopped the sweep happened elsewhere (Ctrl-C, another point)."""
    why = interruption(e) if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
    for entry in doc["points"]:
        with contextlib.suppress(RunError, OSError):
            run = RunFolder.load(folder / entry["folder"])
            if run.status == "running" and run.manifest.get("pid") == os.getpid():
                run.update(
                    status="incomplete",
                    error=f"report: not written, the sweep stopped ({why})",
                    finished_at=_now(),
                )


@contextlib.contextmanager
def keep_honest(
    folder: Path, doc: dict[str, Any], *, whole: bool = True, ledger: str = "sweep.json"
) -> Iterator[None]:
    """Write ``ledger`` (sweep.json; a search's search.json) as ``running``; on exit
    ``complete``, ``failed`` or ``incomplete``, with each point's status re-read from its
    own manifest. ``whole=False`` (a partial report of a sweep that did not finish)
    leaves the sweep's status as it was."""
    path = _sweep_json(folder, ledger)

    def close(**fields: Any) -> None:
        _refresh_points(folder, doc)
        doc.update(fields)
        write_json_atomic(path, doc)

    before = {k: doc.get(k) for k in ("status", "error", "finished_at")}
    if whole:
        doc.update(status="running", error=None, pid=os.getpid(), host=socket.gethostname())
    write_json_atomic(path, doc)
    try:
        yield
    except BaseException as e:
        remove_partials(folder)
        _close_points(folder, doc, e)
        with contextlib.suppress(OSError):
            if not whole:
                close(**before)
            elif isinstance(e, KeyboardInterrupt):
                close(status="incomplete", error=interruption(e), finished_at=_now())
            else:
                close(status="failed", error=f"{type(e).__name__}: {e}", finished_at=_now())
        raise
    close(**(before if not whole else {"status": "complete", "finished_at": _now()}))


def _finish_quietly(path: Path, level: str = "full") -> int:
    """finish_run without the per-point summary (a top-level function: pool workers run it)."""
    return finish_run(RunFolder.load(path), echo=lambda _: None, level=level)


def run_points(
    points: Sequence[Point],
    folder: Path,
    doc: dict[str, Any],
    seed: int,
    replications: int,
    workers: int,
    executor: Executor | None,
    on_job: Callable[[], None],
    argv: list[str],
    ledger: str = "sweep.json",
) -> None:
    """Every (point, replication) through one pool; a point's run folder has its tables
    closed as soon as its last replication lands (``ledger``, whose ``points`` entry
    ``point.index`` is the point's, says so at once), the rest follow the error."""
    stacks = [contextlib.ExitStack() for _ in points]
    runs = [
        stack.enter_context(
            open_run(
                p.scenario,
                "sim",
                out=folder / p.folder,
                seed=seed,
                replications=replications,
                argv=argv,
                extra={
                    Path(ledger).stem: {
                        "folder": str(folder),
                        "point": p.index,
                        "overrides": p.overrides,
                    }
                },
                report_follows=True,
            )
        )
        for p, stack in zip(points, stacks, strict=True)
    ]
    left = [replications] * len(points)

    def done(job: int, outcome: Outcome) -> None:
        i, r = divmod(job, replications)
        runs[i].save_replication(r, outcome)
        left[i] -= 1
        if not left[i]:
            stacks[i].close()
        _set_point(doc["points"][points[i].index], runs[i])
        write_json_atomic(_sweep_json(folder, ledger), doc)
        on_job()

    jobs = [(p.scenario, seed, r) for p in points for r in range(replications)]
    try:
        run_jobs(jobs, workers, done, executor)
    except BaseException as e:
        for stack in stacks:  # open_run marks each unfinished point failed or incomplete
            stack.__exit__(type(e), e, e.__traceback__)
        raise


def finish_points(
    folder: Path,
    doc: dict[str, Any],
    indices: Sequence[int],
    workers: int,
    on_point: Callable[[], None],
    ledger: str = "sweep.json",
    level: str = "full",
) -> list[int]:
    """metrics.json, charts and report of the points at ``indices`` (as much as ``level``
    says: flashsale.postrun.REPORT_LEVELS), quietly, on local processes (the files land
    in this machine's sweep folder whatever executor ran the jobs); sweep.json records
    each point as its report lands."""
    paths = [folder / doc["points"][i]["folder"] for i in indices]

    def landed(i: int, path: Path) -> None:
        with contextlib.suppress(RunError):
            _set_point(doc["points"][i], RunFolder.load(path))
        write_json_atomic(_sweep_json(folder, ledger), doc)
        on_point()

    codes = []
    if workers == 1 or len(paths) == 1:
        for i, path in zip(indices, paths, strict=True):
            codes.append(_finish_quietly(path, level))
            landed(i, path)
        return codes
    with worker_pool(min(workers, len(paths))) as pool:
        futures = [pool.submit(_finish_quietly, path, level) for path in paths]
        for i, path, fut in zip(indices, paths, futures, strict=True):
            codes.append(fut.result())
            landed(i, path)
    return codes


def _write_sweep_pages(
    folder: Path,
    doc: dict[str, Any],
    points: Sequence[Point],
    codes: Sequence[int],
    level: str = "full",
) -> SweepResult:
    """The sweep chart, the comparison of ``points`` and the sweep report (rewritten in
    place: an earlier comparison is replaced only once the new one is written).
    ``level`` ``summary``: no comparison (its charts take most of a sweep's report
    time); ``none``: no page at all (the points have no metrics)."""
    if level == "none":
        doc.update(results=[], report=None, compare=None, report_level=level)
        return SweepResult(folder, None, None, [])
    metrics = [json.loads((folder / p.folder / "metrics.json").read_text()) for p in points]
    rows = [_row(p, d, c) for p, d, c in zip(points, metrics, codes, strict=True)]
    compare = None
    if level != "full":
        pass  # an earlier comparison (a full report before) stays as it was
    elif len(points) == 1:  # nothing to compare: no comparison of an earlier report either
        shutil.rmtree(folder / "compare", ignore_errors=True)
    else:
        staging = folder / ".compare.partial"
        shutil.rmtree(staging, ignore_errors=True)
        compare_runs([folder / p.folder for p in points], staging)
        shutil.rmtree(folder / "compare", ignore_errors=True)
        staging.rename(folder / "compare")
        compare = folder / "compare" / "report.html"
    charts = draw_sweep_charts(doc, rows, folder / "charts")
    report = write_sweep_report(doc, rows, charts, compare, folder / "report.html")
    doc.update(
        results=rows,
        report=str(report.relative_to(folder)),
        compare=None if compare is None else str(compare.relative_to(folder)),
        report_level=level,
    )
    return SweepResult(folder, report, compare, rows)


def run_sweep(
    scenario_path: Path,
    points: Sequence[Point],
    axes: Sequence[Axis],
    *,
    replications: int,
    workers: int,
    folder: Path | None = None,
    executor: Executor | None = None,
    on_job: Callable[[], None] = lambda: None,
    on_point: Callable[[], None] = lambda: None,
    argv: list[str] | None = None,
    level: str = "full",
) -> SweepResult:
    """Run every point, finish each run folder, draw the sweep charts and reports.

    ``level`` (flashsale.postrun.REPORT_LEVELS) is each point's report: ``summary``
    (metrics.json) and the sweep's chart and report; ``full``, each point's charts and
    report.html too and the comparison of all points; ``none``, the tables only (no
    page; ``flashsale report`` on the folder writes them all).

    Raises RunError for a bad output folder (before anything is written); a
    failing or interrupted job propagates after sweep.json and every unfinished
    point's manifest say so.
    """
    if replications < 1 or workers < 1 or not points:
        raise ValueError(f"replications(={replications}), workers(={workers}) must be >= 1")
    seed = points[0].scenario.seed
    folder = prepare_output_dir(
        folder if folder is not None else new_results_dir(f"{points[0].scenario.name}-sweep")
    )
    argv = argv if argv is not None else sys.argv
    doc: dict[str, Any] = {
        "schema": SWEEP_SCHEMA,
        "scenario_name": points[0].scenario.name,
        "scenario_file": str(scenario_path),
        "command": redact_command(argv),
        "seed": seed,
        "replications": replications,
        "grid": [{"path": a.path, "values": [literal(v) for v in a.values]} for a in axes],
        "points": [
            {
                "point": p.index,
                "folder": p.folder,
                "overrides": p.overrides,
                "settings": p.values(),
                "status": "pending",
                "phase": None,
                "replications_done": 0,
            }
            for p in points
        ],
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "error": None,
    }
    with keep_honest(folder, doc):
        run_points(points, folder, doc, seed, replications, workers, executor, on_job, argv)
        codes = finish_points(folder, doc, range(len(points)), workers, on_point, level=level)
        result = _write_sweep_pages(folder, doc, points, codes, level)
    return result


def is_sweep_folder(path: Path, ledger: str = "sweep.json") -> bool:
    """A folder written by ``flashsale sweep`` (sweep.json, no manifest.json); with
    ``ledger`` search.json, by ``flashsale search``."""
    return _sweep_json(path, ledger).is_file() and not (path / "manifest.json").exists()


def load_ledger(
    folder: Path, ledger: str = "sweep.json", schema: str = SWEEP_SCHEMA
) -> dict[str, Any]:
    """A stored sweep.json (or a search's search.json, ``schema`` its own); RunError
    naming the file when it cannot be read, is not that schema or has no point."""
    path = _sweep_json(folder, ledger)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise RunError(f"{path}: schema {found!r}, this build reads {schema!r}")
    if not isinstance(doc.get("points"), list) or not doc["points"]:
        raise RunError(f"{path}: points: missing or empty")
    return doc


def ledger_state(doc: dict[str, Any]) -> str:
    """How a stored sweep.json (or search.json) stands, in words: ``status incomplete``;
    one still ``running`` whose process is gone (killed outright) is ``status running,
    but its process (pid N) is gone: killed``, and ``doc`` then says ``incomplete``."""
    state = f"status {doc.get('status')}"
    gone = process_gone(doc)
    if gone is None:
        return state
    doc.update(status="incomplete", error=f"killed: its process (pid {gone}) is gone")
    return f"{state}, but its process (pid {gone}) is gone: killed"


def _stored_point(folder: Path, entry: dict[str, Any]) -> Point:
    """A point of a stored sweep, from sweep.json and its run folder."""
    run = RunFolder.load(folder / entry["folder"])
    try:
        scenario = run.scenario
    except ScenarioError as e:
        raise RunError(str(e)) from None
    settings = tuple(
        (path, raw) for path, _, raw in (str(o).partition("=") for o in entry.get("overrides", []))
    )
    return Point(int(entry["point"]), settings, scenario)


def sweep_note(folder: Path) -> str:
    """What a stopped sweep left in ``folder`` and the command that reports on it."""
    try:
        doc = load_ledger(folder)
    except RunError as e:
        return str(e)
    done = sum(p.get("status") == "complete" for p in doc["points"])
    tables = sum(
        p.get("phase") == "report" and p.get("status") != "complete" for p in doc["points"]
    )
    return (
        f"{folder}: sweep {doc.get('status')}; of {len(doc['points'])} points {done} complete, "
        f"{tables} more with every table written; `flashsale report "
        f"{'' if tables + done == len(doc['points']) else '--partial '}{folder}` "
        "writes the reports of every point whose tables are all written"
    )


def _mark_partial_page(page: Path, text: str) -> None:
    """Put a warning under the page's title: the sweep report module draws whole sweeps."""
    html = page.read_text(encoding="utf-8")
    at = html.index("</h1>") + len("</h1>")
    write_text_atomic(page, f'{html[:at]}<p class="warn">{text}</p>{html[at:]}')


def report_sweep(
    folder: Path,
    *,
    partial: bool = False,
    workers: int | None = None,
    echo: Callable[[str], None] = typer.echo,
) -> int:
    """Rebuild a sweep folder's reports: every whole point's, then the sweep's.

    A sweep that stopped (Ctrl-C, a failure, killed outright) has points that are
    not whole; without ``partial`` that is IncompleteRun (exit 1), with it the
    sweep report covers the whole points and says which are missing. Returns 1 when
    a reported point breached its thresholds, else 0.
    """
    doc = load_ledger(folder)
    _refresh_points(folder, doc)
    runs: list[RunFolder | None] = []
    for entry in doc["points"]:
        try:
            runs.append(RunFolder.load(folder / entry["folder"]))
        except RunError:
            runs.append(None)
    whole = [i for i, run in enumerate(runs) if run is not None and run.whole]
    missing = [doc["points"][i]["folder"] for i in range(len(runs)) if i not in whole]
    state = ledger_state(doc)  # a killed sweep is incomplete from here on
    if missing and not partial:
        raise IncompleteRun(
            f"{folder}: {len(missing)} of {len(runs)} points are not whole ({state}): "
            f"{', '.join(missing)}; `flashsale report --partial {folder}` reports on the others"
        )
    if not whole:
        raise RunError(f"{folder}: no point is whole ({state}); nothing to report on")
    points = [_stored_point(folder, doc["points"][i]) for i in whole]
    n = workers or os.cpu_count() or 1
    with keep_honest(folder, doc, whole=not missing):
        codes = finish_points(folder, doc, whole, n, lambda: None)
        result = _write_sweep_pages(folder, doc, points, codes)
        assert result.report is not None  # a full report: every page
        if missing:
            _mark_partial_page(
                result.report,
                f"<b>Partial report</b>: this sweep is <b>{escape(doc.get('status'))}</b>; "
                f"{len(missing)} of {len(runs)} points are not whole and left out: "
                f"{escape(', '.join(missing))}.",
            )
            doc["partial"] = {"left_out": missing}
        else:
            doc.pop("partial", None)
    echo(f"{doc['scenario_name']}: {len(whole)} of {len(runs)} points reported")
    for line in summary_lines(result):
        echo(line)
    return 1 if result.breached else 0


def summary_lines(result: SweepResult) -> list[str]:
    """One line per point (its settings and the key metrics' means), then the paths;
    with ``--report none`` no table (no metric was computed), a line saying so."""
    if result.report is None:
        return [
            f"sweep:   {result.folder}",
            "metrics: not computed (--report none), so no table and no report; "
            f"`flashsale report {result.folder}` computes them and writes every point's "
            "report and the sweep's",
        ]
    head = ["point", "settings", *(label for _, label in SWEEP_COLUMNS), "thresholds"]
    table = [
        [
            r["folder"],
            r["label"],
            *(fmt_metric(name, r["metrics"][name]["mean"]) for name, _ in SWEEP_COLUMNS),
            f"FAIL: {'; '.join(r['breached'])}" if r["breached"] else "ok",
        ]
        for r in result.rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *table)
    ]
    lines.append(f"sweep:   {result.folder}")
    lines.append(f"report:  {result.report}")
    if result.compare_report is not None:
        lines.append(f"compare: {result.compare_report}")
    return lines


def _row(point: Point, metrics: dict[str, Any], code: int) -> dict[str, Any]:
    """A point's line in sweep.json and the report: key metrics, verdicts, exit code."""
    return {
        "point": point.index,
        "folder": point.folder,
        "settings": point.values(),
        "label": point.label,
        "exit_code": code,
        "breached": [t["check"] for t in metrics.get("thresholds", []) if not t["passed"]],
        "thresholds": metrics.get("thresholds", []),
        "metrics": {name: metric_block(metrics, name) for name, _ in SWEEP_COLUMNS},
    }
