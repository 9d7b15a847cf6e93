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
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashsale.compare import compare_runs
from flashsale.outcome import Outcome
from flashsale.postrun import finish_run
from flashsale.runs import (
    RunError,
    RunFolder,
    interruption,
    new_results_dir,
    open_run,
    write_json_atomic,
)
from flashsale.scenario import Scenario, ScenarioError, load_scenario
from flashsale.sim.engine import UnsupportedScenario, check_supported
from flashsale.sim.runner import run_jobs
from flashsale.sweep_charts import (
    SWEEP_METRICS,
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
    "literal",
    "parse_vary",
    "plan_sweep",
    "run_sweep",
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
    report: Path
    compare_report: Path | None
    rows: list[dict[str, Any]]
    """Per point: point, folder, settings, label, exit_code, breached, metrics."""

    @property
    def breached(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["breached"]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _open_sweep(folder: Path, doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Write sweep.json as ``running``; on exit ``complete``, ``failed`` or ``incomplete``,
    with each point's status re-read from its own manifest."""
    path = folder / "sweep.json"

    def close(**fields: Any) -> None:
        for p in doc["points"]:
            with contextlib.suppress(RunError):
                p["status"] = RunFolder.load(folder / p["folder"]).status
        doc.update(fields, finished_at=_now())
        write_json_atomic(path, doc)

    write_json_atomic(path, doc)
    try:
        yield doc
    except KeyboardInterrupt as e:
        close(status="incomplete", error=interruption(e))
        raise
    except BaseException as e:
        close(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    close(status="complete")


def _finish_quietly(path: Path) -> int:
    """finish_run without the per-point summary (a top-level function: pool workers run it)."""
    return finish_run(RunFolder.load(path), echo=lambda _: None)


def _run_points(
    points: Sequence[Point],
    folder: Path,
    seed: int,
    replications: int,
    workers: int,
    executor: Executor | None,
    on_job: Callable[[], None],
    argv: list[str],
) -> None:
    """Every (point, replication) through one pool; a point's run folder is closed
    ``complete`` as soon as its last replication lands, the rest follow the error."""
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
                    "sweep": {"folder": str(folder), "point": p.index, "overrides": p.overrides}
                },
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
        on_job()

    jobs = [(p.scenario, seed, r) for p in points for r in range(replications)]
    try:
        run_jobs(jobs, workers, done, executor)
    except BaseException as e:
        for stack in stacks:  # open_run marks each unfinished point failed or incomplete
            stack.__exit__(type(e), e, e.__traceback__)
        raise


def _finish_points(
    folder: Path, points: Sequence[Point], workers: int, on_point: Callable[[], None]
) -> list[int]:
    """metrics.json, charts and report per point, quietly, on local processes: the
    files land in this machine's sweep folder whatever executor ran the jobs."""
    paths = [folder / p.folder for p in points]
    if workers == 1:
        codes = []
        for path in paths:
            codes.append(_finish_quietly(path))
            on_point()
        return codes
    with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
        futures = [pool.submit(_finish_quietly, path) for path in paths]
        out = []
        for fut in futures:
            out.append(fut.result())
            on_point()
        return out


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
) -> SweepResult:
    """Run every point, finish each run folder, draw the sweep charts and reports.

    Raises RunError for a non-empty output folder (before anything is written);
    a failing or interrupted job propagates after sweep.json and every unfinished
    point's manifest say so.
    """
    if replications < 1 or workers < 1 or not points:
        raise ValueError(f"replications(={replications}), workers(={workers}) must be >= 1")
    seed = points[0].scenario.seed
    folder = folder if folder is not None else new_results_dir(f"{points[0].scenario.name}-sweep")
    if folder.exists() and any(folder.iterdir()):
        raise RunError(f"{folder}: output folder exists and is not empty; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    argv = argv if argv is not None else sys.argv
    doc: dict[str, Any] = {
        "schema": SWEEP_SCHEMA,
        "scenario_name": points[0].scenario.name,
        "scenario_file": str(scenario_path),
        "command": argv,
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
            }
            for p in points
        ],
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "error": None,
    }
    with _open_sweep(folder, doc):
        _run_points(points, folder, seed, replications, workers, executor, on_job, argv)
        codes = _finish_points(folder, points, workers, on_point)
        metrics = [json.loads((folder / p.folder / "metrics.json").read_text()) for p in points]
        rows = [_row(p, d, c) for p, d, c in zip(points, metrics, codes, strict=True)]
        compare = (
            compare_runs([folder / p.folder for p in points], folder / "compare")
            if len(points) > 1
            else None
        )
        charts = draw_sweep_charts(doc, rows, folder / "charts")
        report = write_sweep_report(doc, rows, charts, compare, folder / "report.html")
        doc.update(
            results=rows,
            report=str(report.relative_to(folder)),
            compare=None if compare is None else str(compare.relative_to(folder)),
        )
    return SweepResult(folder, report, compare, rows)


def _row(point: Point, metrics: dict[str, Any], code: int) -> dict[str, Any]:
    """A point's line in sweep.json and the report: key metrics, verdicts, exit code."""
    return {
        "point": point.index,
        "folder": point.folder,
        "settings": point.values(),
        "label": point.label,
        "exit_code": code,
        "breached": [t["check"] for t in metrics.get("thresholds", []) if not t["passed"]],
        "metrics": {name: metric_block(metrics, name) for name, _ in SWEEP_METRICS},
    }
