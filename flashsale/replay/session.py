"""One replay, from plan to results folder: what the Locust processes and the command share.

The *plan* is everything a Locust process needs to run its share of the sale:
the resolved scenario, the scale, the replication, the wall-clock instant of the
opening (sale t = 0) and its part of the schedule. It is plain JSON, so the
master can hand it to workers in a Locust message. Each process rebuilds the
same schedule from it (flashsale.replay.scale is deterministic) and runs the
journeys whose index ``i`` has ``i % parts == part``. A worker checks the plan's
target itself, with its own ``--allow-remote`` (:func:`plan_target`).

After the run, :func:`assemble` merges the shares into one Outcome and
:func:`record_results` writes it, the replay's own counts and the target's
audit into the run folder; :func:`conclude` runs the post-run pipeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from flashsale.arrivals import HUMAN, Schedule
from flashsale.outcome import Outcome, load_outcome, save_outcome
from flashsale.policy import Answer
from flashsale.replay.audit import cross_check, fetch_audit, reset_target
from flashsale.replay.preflight import preflight
from flashsale.replay.recorder import lateness, merge_parts
from flashsale.replay.scale import ScaleError, replay_schedule, scale_scenario
from flashsale.replay.target import TargetError, check_protocol, check_target, replayed_accounts
from flashsale.replay.timeline import build_timeline
from flashsale.replay.watchdog import verdict
from flashsale.runs import RunFolder, write_json_atomic
from flashsale.scenario import Scenario, ScenarioError, parse_scenario
from flashsale.streams import Streams

__all__ = [
    "DRAIN_S",
    "LEAD_IN_S",
    "Plan",
    "ReplayError",
    "assemble",
    "behaviour_seeds",
    "conclude",
    "first_arrival",
    "load_staging",
    "opening_epoch",
    "plan_target",
    "record_results",
    "replay_counts",
    "write_staging",
]

LEAD_IN_S = 5.0
"""Seconds between planning and the first scheduled arrival: time for workers to get ready."""

DRAIN_S = 5.0
"""Seconds after the window (plus one request timeout) before unfinished journeys are cut."""


class ReplayError(RuntimeError):
    """The replay itself failed: Locust died or hung, the target refused its reset or
    its audit. A failed run (exit 1), not bad input."""


@dataclass(frozen=True)
class Plan:
    """A share of one replay (JSON-safe: it travels from master to workers)."""

    scenario: dict[str, Any]  # the full-scale resolved scenario, target applied
    scale: float
    replication: int
    t0: float  # wall-clock epoch of the opening (sale t = 0)
    part: int
    parts: int
    key: str  # makes idempotency keys unique to this replay
    base_url: str  # the target, already checked by flashsale.replay.target

    def full(self) -> Scenario:
        return parse_scenario(self.scenario, "plan")

    def schedule(self) -> tuple[Scenario, Schedule, np.ndarray]:
        """(scaled scenario, this part's journeys, their behaviour seeds)."""
        full = self.full()
        scaled, sched = replay_schedule(full, self.scale, self.replication)
        seeds = behaviour_seeds(sched, full.seed, self.replication)
        mine = np.arange(len(sched)) % self.parts == self.part
        return scaled, sched.subset(mine), seeds[mine]

    def end_s(self, scaled: Scenario) -> float:
        """Sale time after which no request is sent: the window, one timeout, a margin."""
        return scaled.sale.window_s + scaled.target.request_timeout_s + DRAIN_S

    def max_requests(self, scaled: Scenario) -> int:
        """This part's share of ``target.max_requests`` (the shares sum to it)."""
        total = scaled.target.max_requests
        return total // self.parts + (1 if self.part < total % self.parts else 0)

    def for_part(self, part: int, parts: int) -> Plan:
        return Plan(**{**asdict(self), "part": part, "parts": parts})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(**dict(data))


_PLAN_SOURCE = "Locust worker (plan from the master)"
"""Where a worker's target comes from, for its error message."""


def plan_target(plan: Plan, allow_remote: bool) -> str:
    """The URL a worker may send its share to: the plan's ``base_url``, checked here
    with this process's own ``--allow-remote`` against the plan's scenario, by the
    rule the master applied (:func:`flashsale.replay.target.check_target`).

    A worker does not take the master's word for it: a host that is not loopback
    gets traffic from a machine only when its operator allowed it there too.
    Its secrets and accounts file are checked here too (this machine's
    environment and files: :func:`flashsale.replay.target.check_protocol`).
    Raises TargetError (a refused URL, a plan whose scenario does not parse, a
    protocol this process cannot speak).
    """
    try:
        scenario = plan.full()
        scaled = scale_scenario(scenario, plan.scale)
    except (ScenarioError, ScaleError) as e:
        raise TargetError(f"{_PLAN_SOURCE}: {e}") from None
    url = check_target(plan.base_url, scenario, allow_remote, _PLAN_SOURCE)
    check_protocol(scaled, replayed_accounts(scaled), _PLAN_SOURCE)
    return url


def first_arrival(scenario: Scenario) -> float:
    """The earliest scheduled arrival possible (sale seconds, <= 0): early refreshers or bots."""
    early = scenario.humans.arrivals
    humans = -getattr(early, "early_window_s", 0.0) if scenario.humans.count else 0.0
    bots = scenario.bots.start_offset_s if scenario.bots.operators else 0.0
    return min(0.0, humans, bots)


def opening_epoch(
    base_url: str,
    scaled: Scenario,
    admin_token: str | None,
    replication: int,
    source: str,
    lead_in_s: float = LEAD_IN_S,
) -> float:
    """The wall-clock instant of the opening (sale t = 0) that target and replay share.

    When the protocol's reset can run (the reference service's needs the admin
    token), the target is reset to ``scaled`` and told to open so that the earliest
    arrival comes ``lead_in_s`` from now. Either way the preflight then reads the
    sale page as a buyer would (:func:`flashsale.replay.preflight.preflight`:
    TargetError for an answer the protocol does not know, or a sale already over).
    Without a reset, the target's own ``opens_in_s`` decides when the protocol
    captures it, else the schedule starts ``lead_in_s`` from now.
    """
    opens_in = lead_in_s - first_arrival(scaled)
    if reset_target(base_url, scaled, opens_in, replication, admin_token):
        t0 = time.time() + opens_in
        preflight(base_url, scaled, source)
        return t0
    state = preflight(base_url, scaled, source)
    told = state.opens_in_s if state is not None and state.answer is Answer.NOT_OPEN else None
    return time.time() + (told if told is not None and told > 0 else opens_in)


def behaviour_seeds(schedule: Schedule, seed: int, replication: int) -> np.ndarray:
    """One seed per journey for its own Generator: humans from the ``humans`` stream,
    bots from ``bots``, in schedule order, so a journey draws the same think times
    and CAPTCHA luck whichever process runs it."""
    streams = Streams.for_replication(seed, replication)
    is_h = schedule.kind == HUMAN
    seeds = np.empty(len(schedule), dtype=np.uint64)
    seeds[is_h] = streams["humans"].integers(0, 2**63, size=int(is_h.sum()), dtype=np.uint64)
    seeds[~is_h] = streams["bots"].integers(0, 2**63, size=int((~is_h).sum()), dtype=np.uint64)
    return seeds


def assemble(
    scaled: Scenario,
    chunks: Iterable[tuple[str, dict[str, np.ndarray]]],
    expected_journeys: int,
    *,
    partial: bool = False,
) -> Outcome:
    """One Outcome from every process's shares (raises MergeError if they do not add up;
    with ``partial``, journeys missing are accepted: see :func:`merge_parts`)."""
    journeys, requests = merge_parts(chunks, expected_journeys, partial=partial)
    timeline = build_timeline(scaled, journeys, requests)
    return Outcome.from_columns(
        journeys, requests, timeline, tuple(c.name for c in scaled.sale.channels)
    )


def replay_counts(
    outcome: Outcome,
    parts: int,
    budget_spent: bool,
    *,
    scheduled: int | None = None,
    parts_missing: Sequence[int] = (),
    cut_short: int = 0,
) -> dict[str, Any]:
    """The replay's own facts for the manifest: lateness, requests, processes.

    For a replay stopped before every journey ended (``scheduled`` given: how many
    journeys the plan had), also what its tables do not hold, so the scheduled
    journeys add up: ``scheduled = journeys + unstarted + lost``. ``unstarted``:
    journeys of the parts that reported, scheduled after the stop; they never
    started and have no row (they are not buyers who failed). ``lost``: the
    journeys of ``parts_missing``, parts that sent no results (whether those ran
    is unknown). ``cut_short``: journeys in progress at the stop, recorded as far
    as they got (result ``timed_out``, finished at the stop).
    """
    counts: dict[str, Any] = {
        **lateness(outcome.journeys),
        "requests": int(outcome.requests["journey"].size),
        "processes": parts,
        "request_budget_spent": budget_spent,
    }
    if scheduled is not None:
        ids = np.arange(scheduled)
        lost = int(np.isin(ids % parts, list(parts_missing)).sum())
        counts |= {
            "scheduled": scheduled,
            "unstarted": scheduled - int(outcome.journeys["journey"].size) - lost,
            "cut_short": cut_short,
            "parts_missing": sorted(parts_missing),
            "lost": lost,
        }
    return counts


def write_staging(folder: Path, outcome: Outcome, counts: Mapping[str, Any]) -> None:
    """Hand the merged Outcome from the Locust process to ``flashsale replay``."""
    save_outcome(outcome, folder)
    write_json_atomic(folder / "replay.json", dict(counts))


def load_staging(folder: Path) -> tuple[Outcome, dict[str, Any]]:
    counts: dict[str, Any] = json.loads((folder / "replay.json").read_text())
    return load_outcome(folder), counts


def record_results(
    run: RunFolder,
    outcome: Outcome,
    counts: Mapping[str, Any],
    scale: float,
    base_url: str,
    admin_token: str | None,
) -> list[str]:
    """Write replication 0, the replay counts, the scale and the audit; return problems.

    Problems are a target that did not speak its protocol (flashsale.replay.watchdog),
    and disagreements between the client's count and the target's audit (and
    oversold units). Without an audit the manifest's entry says so
    (``{"source": null}``): units oversold are then unknown, never 0.
    """
    run.save_replication(0, outcome)
    run.update(scale=scale, replay=dict(counts), target=base_url)
    scenario = run.scenario
    spoke = verdict(counts.get("protocol"), scenario.target)
    record = fetch_audit(base_url, scenario, admin_token)
    run.update(audit=[record if record is not None else {"source": None}])
    problems = [] if spoke is None else [f"the target protocol: {spoke}"]
    return problems + ([] if record is None else cross_check(outcome.journeys, record))


def conclude(run: RunFolder, problems: list[str]) -> int:
    """Metrics, charts and report for the finished run; 1 if the audit disagreed."""
    from flashsale.postrun import finish_run

    code = finish_run(run)
    for p in problems:
        typer.echo(f"error: {run.path}: {p}", err=True)
    return 1 if problems else code
