"""A capacity search run on the simulator: every tried value a run folder, one search.json.

:func:`flashsale.search.bracket` decides which values to try; this module runs them
with the sweep's machinery (:func:`flashsale.sweep.plan_sweep` validates each value
like ``--set``, :func:`~flashsale.sweep.run_points` sends every (value, replication)
job through one process pool, :func:`~flashsale.sweep.finish_points` writes each run
folder's metrics and report) and judges each value with the scenario's
``[thresholds]`` (:func:`flashsale.thresholds.check_thresholds`). Every value runs
replications 0..N-1 from the same root seed: replication r saw the same arrivals and
buyers at every value (common random numbers), so the verdicts of two neighbouring
values differ by the parameter's doing, not by luck::

    results/<UTC stamp>-<scenario>-search/
        search.json       the range, the thresholds, every tried value (overrides,
                          folder, status, verdicts and the threshold metrics with
                          their 95% intervals), the answer and any warning
        point-000/ ...    a run folder per tried value, in the order tried
                          (point-000 is LOW, point-001 HIGH, then the bisection)
        charts/           per threshold: its metric against the parameter
        report.html       the answer, the evidence table and the charts

search.json is kept honest as sweep.json is: ``running`` while the search runs, then
``complete``, ``failed`` (with the error) or ``incomplete`` (Ctrl-C, SIGTERM), each
value's status read from its own run folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from flashsale.runs import (
    IncompleteRun,
    RunError,
    new_results_dir,
    prepare_output_dir,
    redact_command,
    write_json_atomic,
)
from flashsale.scenario import Scenario, ScenarioError, Threshold
from flashsale.search import (
    Answer,
    Contradiction,
    Grid,
    Number,
    bracket,
    contradictions,
    show,
)
from flashsale.sweep import (
    Axis,
    Point,
    finish_points,
    is_sweep_folder,
    keep_honest,
    ledger_state,
    load_ledger,
    plan_sweep,
    run_points,
)
from flashsale.sweep_charts import metric_block
from flashsale.thresholds import Verdict, check_thresholds

__all__ = [
    "SEARCH_SCHEMA",
    "SearchPlan",
    "SearchResult",
    "Tried",
    "answer_line",
    "is_search_folder",
    "plan_search",
    "report_search",
    "run_search",
    "verdict_text",
    "warning_lines",
    "write_search_pages",
]

SEARCH_SCHEMA = "flashsale.search/1"

_LEDGER = "search.json"

_NEGATED = {"<": ">=", "<=": ">", "==": "!=", "!=": "==", ">=": "<", ">": "<="}


@dataclass(frozen=True)
class SearchPlan:
    """A validated search: the scenario file and overrides, the grid, the direction,
    the root seed every value shares and the thresholds every value is judged by."""

    scenario_path: Path
    grid: Grid
    largest: bool
    overrides: tuple[str, ...]
    seed: int
    scenario: Scenario
    """The scenario at LOW, resolved: its name, seed and thresholds."""

    @property
    def thresholds(self) -> list[Threshold]:
        return self.scenario.thresholds

    @property
    def goal(self) -> str:
        return "largest" if self.largest else "smallest"

    def points(self, values: Sequence[Number], first: int) -> list[Point]:
        """The run of each value, numbered from ``first`` (its folder point-NNN)."""
        axis = Axis(self.grid.path, tuple(self.grid.literal(v) for v in values))
        points = plan_sweep(self.scenario_path, [axis], self.overrides, self.seed)
        return [dataclasses.replace(p, index=first + i) for i, p in enumerate(points)]


def plan_search(
    scenario_path: Path,
    grid: Grid,
    overrides: Sequence[str],
    seed: int | None,
    *,
    largest: bool = False,
) -> SearchPlan:
    """Validate the search before anything runs; ScenarioError naming file and field.

    LOW, HIGH and the grid's second value are applied like ``--set`` (an unknown
    path, a value the field refuses, a defense the simulator does not model); a
    whole-number field searched without ``--integer`` is refused with that hint (the
    grid's second value has a fraction whenever LOW or the step has one). A scenario
    without thresholds has nothing to search for.
    """
    probe = sorted({grid.value(0), grid.value(1), grid.value(grid.cells)})
    axis = Axis(grid.path, tuple(grid.literal(v) for v in probe))
    try:
        points = plan_sweep(scenario_path, [axis], overrides, seed)
    except ScenarioError as e:
        if not grid.integer and "valid integer" in str(e):
            raise ScenarioError(f"{e} (a whole-number field: search it with --integer)") from None
        raise
    scenario = points[0].scenario
    if not scenario.thresholds:
        raise ScenarioError(
            f"{scenario_path}: thresholds: none to search for; add a [thresholds] table or "
            "e.g. --set 'thresholds.sellout_time_s=<= 300'"
        )
    return SearchPlan(scenario_path, grid, largest, tuple(overrides), scenario.seed, scenario)


@dataclass(frozen=True)
class Tried:
    """One tried value: its run folder and every threshold's verdict there."""

    point: int
    folder: str
    value: Number
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


def verdict_text(v: Verdict) -> str:
    """A verdict in a few words: ``latency_p95_s.pay 2.11 > 2`` (the comparison that
    holds between the value and the limit), or why there is no value."""
    th = v.threshold
    if v.judged is None or v.undefined:
        return f"{th.key} {v.why_undefined}"
    op = th.op if v.passed else _NEGATED[th.op]
    return f"{th.key} {v.judged:.4g} {op} {th.value:g}"


@dataclass(frozen=True)
class SearchResult:
    """A finished search: what it found and every value it tried."""

    plan: SearchPlan
    folder: Path
    report: Path
    answer: Answer
    tried: tuple[Tried, ...]
    warnings: tuple[Contradiction, ...]

    def at(self, value: Number | None) -> Tried | None:
        return next((t for t in self.tried if t.value == value), None)


def answer_line(result: SearchResult) -> str:
    """The answer in one line, with the value next to it that fails and why:
    ``smallest service.workers at which every threshold holds: 640 (tried 9 values;
    639 fails: latency_p95_s.pay 2.01 > 2)``."""
    plan, answer = result.plan, result.answer
    grid, n = plan.grid, len(result.tried)
    tried = f"tried {n} value{'s' if n != 1 else ''}"
    failing = result.at(answer.failing)
    if answer.value is not None and failing is None:  # the whole range holds
        beyond = "smaller" if not plan.largest else "larger"
        return (
            f"{plan.goal} {grid.path} at which every threshold holds: {show(answer.value)} "
            f"({tried}; the whole range holds: a {beyond} value may hold too)"
        )
    assert failing is not None  # bracket() names a tried value that failed
    why = f"{show(failing.value)} fails: " + "; ".join(
        verdict_text(v) for v in failing.verdicts if not v.passed
    )
    if answer.value is None:
        span = f"{show(grid.low)}..{show(grid.high)}"
        return f"no {grid.path} in {span} satisfies every threshold ({tried}; {why})"
    within = "" if grid.integer and grid.step == 1 else f"to within {show(grid.step)}; "
    return (
        f"{plan.goal} {grid.path} at which every threshold holds: {show(answer.value)} "
        f"({within}{tried}; {why})"
    )


def warning_lines(result: SearchResult) -> list[str]:
    """Evidence that a threshold is not monotone in the parameter, one line each."""
    path = result.plan.grid.path
    side = "larger" if not result.plan.largest else "smaller"
    return [
        f"{c.check} holds at {path}={show(c.held)} but not at {show(c.failed)}: not monotone in "
        f"{path} (the search assumes each threshold, once it holds, holds at every {side} "
        "value); the answer may be wrong: more replications, or a sweep of the range, tell"
        for c in result.warnings
    ]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _metric_blocks(plan: SearchPlan, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each threshold metric's mean, 95% CI, n and per-replication values at a point."""
    return {th.metric: metric_block(doc, th.metric) for th in plan.thresholds}


def run_search(
    plan: SearchPlan,
    *,
    replications: int,
    workers: int,
    folder: Path | None = None,
    executor: Executor | None = None,
    on_batch: Callable[[Sequence[Number]], None] = lambda _: None,
    on_job: Callable[[], None] = lambda: None,
    on_tried: Callable[[Tried], None] = lambda _: None,
    argv: list[str] | None = None,
    level: str = "summary",
) -> SearchResult:
    """Run the bracketing search, one run folder per tried value; draw its charts and
    page. ``level`` is each value's run report (flashsale.postrun.REPORT_LEVELS but
    ``none``: the verdicts need metrics.json). ``on_batch`` hears the values about to
    run, ``on_job`` each replication done, ``on_tried`` each value judged.

    Raises RunError for a bad output folder (before anything is written); a failing
    or interrupted job propagates after search.json and every unfinished run folder
    say so.
    """
    if replications < 1 or workers < 1 or level not in ("summary", "full"):
        raise ValueError(
            f"replications(={replications}), workers(={workers}) must be >= 1, "
            f"level(={level!r}) summary or full"
        )
    grid = plan.grid
    folder = prepare_output_dir(folder or new_results_dir(f"{plan.scenario.name}-search"))
    doc: dict[str, Any] = {
        "schema": SEARCH_SCHEMA,
        "scenario_name": plan.scenario.name,
        "scenario_file": str(plan.scenario_path),
        "command": redact_command(argv if argv is not None else sys.argv),
        "seed": plan.seed,
        "replications": replications,
        "report_level": level,
        "parameter": {
            "path": grid.path,
            "low": grid.low,
            "high": grid.high,
            "integer": grid.integer,
            "step": grid.step,
            "goal": plan.goal,
            "max_values": grid.max_values,
        },
        "thresholds": [str(th) for th in plan.thresholds],
        "points": [],
        "answer": None,
        "warnings": [],
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "error": None,
    }
    tried: list[Tried] = []

    def judge(values: Sequence[Number]) -> list[bool]:
        on_batch(values)
        points = plan.points(values, len(doc["points"]))
        for p, value in zip(points, values, strict=True):
            doc["points"].append(
                {
                    "point": p.index,
                    "folder": p.folder,
                    "overrides": p.overrides,
                    "value": value,
                    "status": "pending",
                    "phase": None,
                    "replications_done": 0,
                    "passed": None,
                }
            )
        argv_ = doc["command"]
        run_points(
            points, folder, doc, plan.seed, replications, workers, executor, on_job, argv_, _LEDGER
        )
        indices = [p.index for p in points]
        finish_points(folder, doc, indices, workers, lambda: None, _LEDGER, level)
        for p, value in zip(points, values, strict=True):
            metrics = json.loads((folder / p.folder / "metrics.json").read_text(encoding="utf-8"))
            verdicts = check_thresholds(plan.thresholds, metrics["metrics"])
            t = Tried(p.index, p.folder, value, tuple(verdicts))
            doc["points"][p.index].update(
                passed=t.passed,
                verdicts=[v.as_json() for v in verdicts],
                metrics=_metric_blocks(plan, metrics),
            )
            write_json_atomic(folder / _LEDGER, doc)
            tried.append(t)
            on_tried(t)
        return [t.passed for t in tried[-len(values) :]]

    with keep_honest(folder, doc, ledger=_LEDGER):
        answer = bracket(grid, judge, largest=plan.largest)
        found = contradictions(
            [(t.value, {str(v.threshold): v.passed for v in t.verdicts}) for t in tried],
            largest=plan.largest,
        )
        result = SearchResult(
            plan, folder, folder / "report.html", answer, tuple(tried), tuple(found)
        )
        hit, miss = result.at(answer.value), result.at(answer.failing)
        doc["answer"] = {
            "value": answer.value,
            "folder": None if hit is None else hit.folder,
            "failing": answer.failing,
            "failing_folder": None if miss is None else miss.folder,
            "whole_range": answer.whole_range,
            "tried": len(tried),
            "line": answer_line(result),
        }
        doc["warnings"] = warning_lines(result)
        write_search_pages(folder, doc)
    return result


def write_search_pages(folder: Path, doc: dict[str, Any]) -> Path:
    """The charts and report.html of the search in ``folder``, drawn from its
    search.json ``doc`` (which then names them); the page's path."""
    from flashsale.search_charts import draw_search_charts, write_search_report

    charts = draw_search_charts(doc, folder / "charts")
    report = write_search_report(doc, charts, folder / "report.html")
    doc["report"] = report.name
    doc["charts"] = [str(c.path.relative_to(folder)) for c in charts]
    return report


def is_search_folder(path: Path) -> bool:
    """A folder written by ``flashsale search`` (search.json, no manifest.json)."""
    return is_sweep_folder(path, _LEDGER)


def report_search(
    folder: Path, *, partial: bool = False, echo: Callable[[str], None] = typer.echo
) -> int:
    """Rebuild a search folder's charts and report.html from its search.json, as the
    search draws them, each value's status re-read from its run folder; prints any
    warning, the answer and where the page is.

    A search that found its answer but stopped while drawing is completed. One that
    stopped before (Ctrl-C, a failure, killed outright) has no answer: without
    ``partial`` that is IncompleteRun (exit 1); with it the page shows the values it
    judged and says the search did not finish, and search.json keeps its status.
    Returns 0 when the search found a value at which every threshold holds, else 1.
    """
    from flashsale.search_charts import judged_points, unfinished_line

    doc = load_ledger(folder, _LEDGER, SEARCH_SCHEMA)
    ledger_state(doc)  # a killed search is incomplete from here on (unfinished_line says so)
    whole = doc.get("answer") is not None
    if not whole and not partial:
        raise IncompleteRun(
            f"{folder}: {unfinished_line(doc)}; "
            f"`flashsale report --partial {folder}` reports on the values judged"
        )
    if not judged_points(doc):
        raise RunError(f"{folder}: {unfinished_line(doc)}; nothing to report on")
    with keep_honest(folder, doc, whole=whole, ledger=_LEDGER):
        report = write_search_pages(folder, doc)
    for line in doc["warnings"]:
        echo(f"warning: {line}")
    echo(doc["answer"]["line"] if whole else unfinished_line(doc))
    echo(f"search:  {folder}")
    echo(f"report:  {report}")
    return 0 if whole and doc["answer"]["value"] is not None else 1
