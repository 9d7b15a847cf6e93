"""The post-run pipeline both engines call: tables -> metrics.json, charts, report.html.

``flashsale simulate`` and ``flashsale replay`` call :func:`finish_run` once the
run's tables are written; ``flashsale report`` calls it again on a stored run. It
reads only the run folder (manifest + Outcome tables + the replay audit in the
manifest, if any), so whichever engine made the run, the same figures come out.

The report is part of the run: a run is ``complete`` only once its metrics.json,
charts and report.html are written. A report that fails (a full disk) or is
interrupted leaves the run ``failed`` or ``incomplete`` in phase ``report``, with
no temporary file behind; ``flashsale report`` writes it again from the tables.
A run that is missing tables or parts (killed after 2 of 4 replications) is
reported on only when asked (``partial=True``), and then the page and
metrics.json say so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import typer

from flashsale.charts import draw_run_charts
from flashsale.metric_registry import SUMMARY_FIGURES, lookup
from flashsale.metrics import compute_metrics, fmt_interval, fmt_metric
from flashsale.outcome import STEP, Outcome, OutcomeError
from flashsale.protocol import Target
from flashsale.replay.watchdog import Tally, progress_problem, protocol_problem
from flashsale.report import write_run_report
from flashsale.runs import (
    IncompleteRun,
    RunError,
    RunFolder,
    mark_stopped,
    remove_partials,
    write_json_atomic,
)
from flashsale.scenario import ScenarioError, parse_scenario
from flashsale.thresholds import Verdict, check_thresholds, exit_code

__all__ = [
    "REPORT_LEVELS",
    "check_report_level",
    "finish_run",
    "load_run_metrics",
    "replay_checks",
    "summary_lines",
]

REPORT_LEVELS = ("none", "summary", "full")
"""What a run's report holds (``--report``): ``none``, only the tables (no metrics, no
thresholds judged); ``summary``, metrics.json and the printed summary and verdicts;
``full``, those and the charts and report.html. Drawing the charts is what takes the
time (a smoke run: about 0.1 s of metrics, several seconds of charts);
``flashsale report RUN_DIR`` draws the full report of a run written with less."""


def _audits(run: RunFolder, reps: Sequence[int]) -> list[Mapping[str, Any]] | None:
    """The replay audit entries matching ``reps``; None for a simulation. A replay whose
    manifest holds no audit (it failed, or the run stopped before it) has unknown books:
    one ``{"source": None}`` entry per replication, as a replay without an audit."""
    audit = run.manifest.get("audit")
    if audit is None:
        return [{"source": None} for _ in reps] if run.manifest.get("engine") == "replay" else None
    if not isinstance(audit, list) or not all(isinstance(a, dict) for a in audit):
        raise RunError(f"{run.path / 'manifest.json'}: audit: must be a list of objects")
    if len(audit) == len(reps):
        return audit
    if reps and max(reps) < len(audit):
        return [audit[r] for r in reps]
    raise RunError(
        f"{run.path / 'manifest.json'}: audit: {len(audit)} entries for replications {list(reps)}"
    )


def load_run_metrics(run: RunFolder) -> dict[str, Any]:
    """Compute the metrics document of a run folder from its stored tables.

    Raises RunError when the folder holds no usable replication or a bad table.
    """
    reps = run.replications()
    if not reps:
        raise RunError(f"{run.path}: no finished replication to report on ({run.describe_state()})")
    try:
        scenario = run.scenario
        outcomes: list[Outcome] = [run.load_replication(r) for r in reps]
    except (OutcomeError, ScenarioError) as e:
        raise RunError(str(e)) from None
    except (pa.ArrowException, OSError) as e:  # a truncated or foreign file
        raise RunError(f"{run.path}: cannot read a table: {e}") from None
    doc = compute_metrics(scenario, outcomes, _audits(run, reps), replications=reps)
    doc["run"] = {
        "path": str(run.path),
        "engine": run.manifest.get("engine"),
        "status": run.status,
        "seed": run.manifest.get("seed"),
        "replications_asked": run.manifest.get("replications"),
        "scale": run.manifest.get("scale"),
        "scenario_hash": run.manifest.get("scenario_hash"),
        "started_at": run.manifest.get("started_at"),
        "finished_at": run.manifest.get("finished_at"),
    }
    return doc


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The key figures, one line each: mean and, with replications, its 95% CI."""
    lines = []
    for name, label in SUMMARY_FIGURES:
        m = metrics[name]
        text = fmt_metric(name, m["mean"])
        if m["mean"] is None and name == "sellout_time_s":
            text = "not sold out"
        ci = fmt_interval(name, m)
        if ci is not None and m["ci_low"] != m["ci_high"]:
            text += f"  (95% CI {ci})"
        lines.append(f"  {label:<22}{text}")
    return lines


def replay_checks(manifest: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[list[Any]]:
    """A replay's honesty checks as ``[label, text, level]`` (level ``pass``, ``warn`` or
    ``fail``; a ``fail`` makes the run's exit code 1): the target's audit (none: oversold
    units are unknown; oversold or disagreeing with the journeys: fail), the protocol
    (flashsale.replay.watchdog.verdict), and requests whose answer was lost. Empty for
    a simulation."""
    if manifest.get("engine") != "replay":
        return []
    checks: list[list[Any]] = []
    audits = manifest.get("audit") or [{"source": None}]
    a = audits[0] if isinstance(audits, list) and audits else {"source": None}
    if a.get("source") is None:
        checks.append(["audit", "none: oversold units unknown (no target.audit could run)", "warn"])
    else:
        mismatch = metrics.get("audit_mismatch_units", {}).get("mean")
        text = f"{a.get('units_sold', 0):,} sold, {a.get('oversold_units', 0):,} oversold"
        if mismatch:
            text += f"; the journeys' count differs by {mismatch:g} units"
        bad = bool(a.get("oversold_units")) or bool(mismatch)
        checks.append(["audit", f"{text} ({a['source']})", "fail" if bad else "pass"])
    tally = (manifest.get("replay") or {}).get("protocol")
    if tally:
        t = Tally()
        t.merge(tally)
        text = f"{t.errors():,} of {t.requests:,} requests"
        target = scenario_target(manifest)
        failed = protocol_problem(t, target, final=True)
        level = "fail" if failed else "warn" if t.errors() else "pass"
        checks.append(
            ["protocol errors", text + (f": {t.describe()}" if t.errors() else ""), level]
        )
        stalled = progress_problem(t, target, math.inf)
        if stalled:
            checks.append(["progress", stalled, "fail"])
    lost = {
        step: b["mean"]
        for step in STEP
        if (b := lookup(metrics, f"ambiguous_requests.{step}")) is not None and b["mean"]
    }
    if lost:
        shown = ", ".join(f"{step} {n:g}" for step, n in lost.items())
        checks.append(["answers lost", f"{shown} (ambiguous: may have taken effect)", "warn"])
    return checks


def scenario_target(manifest: Mapping[str, Any]) -> Target:
    """The replayed scenario's target protocol, from the manifest."""
    return parse_scenario(manifest["scenario"], "manifest.json").target


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check_report_level(level: str) -> str:
    """``level`` if it is one of :data:`REPORT_LEVELS`; else ValueError naming --report."""
    if level not in REPORT_LEVELS:
        raise ValueError(f"--report: must be none, summary or full, got {level!r}")
    return level


@contextlib.contextmanager
def _reporting(run: RunFolder, whole: bool, level: str = "full") -> Iterator[None]:
    """Keep the manifest honest while the report is written. A whole run is
    ``running`` in phase ``report`` meanwhile and ``complete`` after; a report cut
    short marks it ``failed``/``incomplete`` and leaves no temporary file. A partial
    report changes nothing in the manifest: the run stays what it was."""
    if whole:
        run.update(status="running", phase="report", error=None)
    try:
        yield
    except BaseException as e:
        remove_partials(run.path)
        if whole:
            mark_stopped(run, e, phase="report")
        if isinstance(e, OSError) and e.filename is None:  # e.g. matplotlib's failed write
            e.filename = str(run.path)
        raise
    if whole:
        run.update(status="complete", error=None, reported_at=_now(), report=level)


def finish_run(
    run: RunFolder,
    echo: Callable[[str], None] = typer.echo,
    *,
    partial: bool = False,
    level: str = "full",
) -> int:
    """Write metrics.json, the charts and report.html into ``run``; print the summary.

    ``level`` (:data:`REPORT_LEVELS`): ``summary`` writes metrics.json and prints the
    summary without charts or report.html; ``none`` writes nothing, judges no threshold
    and returns 0. Either way the manifest's ``report`` says so and the run is
    ``complete``; ``flashsale report`` (level ``full``) draws the rest later.

    Returns the exit code: 0 when every threshold held, 1 when any was breached.
    Raises RunError when the folder holds no replication or a bad table, and
    IncompleteRun when the run is not whole (replications or parts missing) unless
    ``partial``: then the report covers what there is and says it is partial.
    """
    reps_done = run.replications()
    if not reps_done:
        raise RunError(f"{run.path}: no finished replication to report on ({run.describe_state()})")
    whole = run.whole
    if not whole and not partial:
        raise IncompleteRun(
            f"{run.path}: not a whole run ({run.describe_state()}); "
            f"`flashsale report --partial {run.path}` reports on what it holds"
        )
    later = f"`flashsale report {run.path}` writes the full report"
    if level == "none":
        with _reporting(run, whole, level):
            pass
        echo(f"results: {run.path}")
        echo(f"report:  not written (--report none); {later}")
        return 0
    with _reporting(run, whole, level):
        doc = load_run_metrics(run)
        doc["partial"] = not whole
        doc["run"]["status"] = "complete" if whole else run.status
        if not whole:
            doc["run"]["replications_missing"] = run.missing()
            doc["run"]["error"] = run.manifest.get("error")
            doc["run"]["state"] = run.describe_state()
        scenario = run.scenario
        verdicts: list[Verdict] = check_thresholds(scenario.thresholds, doc["metrics"])
        doc["thresholds"] = [v.as_json() for v in verdicts]
        doc["replay_checks"] = replay_checks(run.manifest, doc["metrics"])
        write_json_atomic(run.path / "metrics.json", doc)
        report = None
        if level == "full":
            charts = draw_run_charts(doc, run.path / "charts")
            report = write_run_report(scenario, doc, charts, verdicts, run.path / "report.html")

    reps = len(doc["replications"])
    if whole:
        echo(
            f"{scenario.name}: {reps} replication{'s' if reps != 1 else ''} "
            f"({run.manifest.get('engine')}, status {run.status})"
        )
    else:
        engine = run.manifest.get("engine")
        echo(f"{scenario.name}: PARTIAL report ({engine}, {doc['run']['state']})")
    for line in summary_lines(doc["metrics"]):
        echo(line)
    for label, text, _ in doc["replay_checks"]:
        echo(f"  {label:<22}{text}")
    if verdicts:
        echo("thresholds:")
        for v in verdicts:
            echo(f"  {v}")
    echo(f"results: {run.path}")
    echo(f"report:  {report}" if report else f"report:  summary only (--report {level}); {later}")
    code = exit_code(verdicts)
    if code:
        echo(f"{sum(not v.passed for v in verdicts)} threshold(s) breached: exit code {code}")
    failed = [c for c in doc["replay_checks"] if c[2] == "fail"]
    if failed:
        echo(
            f"{len(failed)} replay check(s) failed ({', '.join(c[0] for c in failed)}): exit code 1"
        )
    return max(code, 1 if failed else 0)
