"""Locust glue: options, the open-model shape, the pacer, the buyer users, the merge.

Import this only inside a Locust process (it brings gevent). The package's
locustfile, :mod:`flashsale.replay.locustfile` (what ``flashsale replay`` runs),
re-exports the classes below, which is all Locust needs; ``locustfiles/flashsale.py``
re-exports them from there.

Open model. Locust's users are a closed model: a fixed number of users, each
waiting for its response before the next request, so arrivals slow down when
the service slows down. Here Locust runs one :class:`SalePacer` per process
(the shape asks for one per worker); each pacer starts every journey of its
share at the journey's scheduled wall-clock time in its own greenlet, as a
short-lived :class:`HumanBuyer` or :class:`ScalperBot` (FastHttpUser), whatever
the service does. A journey that starts late (the load generator itself was
busy) keeps its scheduled ``arrived`` and its actual ``started``; every request
keeps its ``intended`` and actual ``sent`` time, so latency can be measured
from either (no coordinated omission).

Distributed. With ``--processes N`` or a master and workers, the master plans
the replay (the opening's wall-clock instant, each worker's part) and sends each
worker its plan in a ``flashsale:plan`` message; each worker checks the plan's
target with its own ``--allow-remote`` (refused: ``flashsale:refused`` to the
master, which ends the replay, and the worker quits), then records its own
journeys and requests (``events.request``) and sends them back in
``flashsale:part`` messages, then ``flashsale:done``. The shape ends the test
when every part is done (or at the hard deadline); the master merges the parts
into one Outcome, refusing duplicates and gaps.

Stopped early. When the test stops before every journey has ended (``--run-time``,
Ctrl-C, SIGTERM, the web UI's stop, or a part that sent nothing by the hard
deadline), what was recorded is kept. Before Locust stops its users
(``test_stopping``), each part's share is *cut*: a process's own at once, a
worker's on ``flashsale:cut`` from the master (which waits, up to one request
timeout and ``_FLUSH_S``, for the workers still answering heartbeats; a worker
stopped by other means, its own Ctrl-C or the master's ``quit``, cuts its share
before it goes). Cutting a share starts no further journey and sends no further
request; a request in flight gets its answer first (what the target did is
recorded, so its audit agrees), then every journey in progress ends where it
is and is recorded as far as it got (result ``timed_out``, or ``cart_failed``
holding a cart; ``finished`` at the stop); the rows go with ``flashsale:done``
marked ``cut``. The master then merges the parts that reported (a partial merge:
gaps accepted, duplicates still refused), writes them, leaves the run
``incomplete`` with the reason, writes a report marked partial and exits 1.

Progress and the web UI. Each process counts its journeys started and ended, the
units they bought and their requests, answered and failed (workers send theirs with
their stats reports, and their final figures with their shares);
:meth:`_Controller.progress` adds them up, with Locust's requests per second. ``flashsale
replay``'s Locust writes it to ``progress.json`` in its staging folder every second
(the command's progress bar); the web UI's user count is the journeys in flight
(``/stats/requests``). Every Start in the web UI is a new replay (the shape's first
tick, in state ``init``, resets the controller and this process's share; a worker
resets on its next plan): the last replay's run folder is written first, the new one
goes to a new folder (with ``--out``, refused: that folder holds the last replay).

The contract for what is not in the tables: journeys never started (scheduled
after the stop) have no row, so no metric counts them as buyers who failed; the
manifest's ``replay`` entry counts them (``scheduled = journeys + unstarted +
lost``, with ``cut_short`` and the ``parts_missing`` that sent nothing, whose
``lost`` journeys' fate is unknown: :func:`flashsale.replay.session.replay_counts`).
A journey ended at a request it was about to send counts that request in
``requests`` (as when the request budget runs out), without a row. ``flashsale
replay`` takes only a whole replay from its Locust: there a stopped Locust writes
no tables (the command marks its run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gevent
import numpy as np
from gevent.event import AsyncResult, Event
from gevent.pool import Group
from locust import LoadTestShape, User, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import (
    STATE_CLEANUP,
    STATE_INIT,
    STATE_MISSING,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
    WorkerRunner,
)

from flashsale.arrivals import HUMAN
from flashsale.outcome import Outcome
from flashsale.protocol import Reply
from flashsale.replay.audit import AuditError
from flashsale.replay.journey import Buyer, Halt, Journey, Judge, Request, parse_cookies
from flashsale.replay.preflight import Unreachable
from flashsale.replay.recorder import MergeError, Recorder, decode_part, encode_part
from flashsale.replay.scale import ScaleError, scale_scenario
from flashsale.replay.session import (
    Plan,
    assemble,
    conclude,
    opening_epoch,
    plan_target,
    record_results,
    replay_counts,
    write_staging,
)
from flashsale.replay.target import (
    TargetError,
    check_protocol,
    check_target,
    load_accounts,
    load_custom,
    replayed_accounts,
    resolve_target,
    scenario_overrides,
)
from flashsale.replay.watchdog import Tally, problem
from flashsale.runs import (
    RunError,
    RunFolder,
    Terminated,
    interruption,
    open_run,
    write_json_atomic,
)
from flashsale.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["HumanBuyer", "SalePacer", "ScalperBot", "ScenarioReplay"]

_PLAN, _PART, _DONE = "flashsale:plan", "flashsale:part", "flashsale:done"
_REFUSED = "flashsale:refused"  # a worker refused the plan's target (it sends nothing)
_CUT = "flashsale:cut"  # master to worker: the test stops, send what your share recorded
_PROGRESS = "flashsale_progress"  # a worker's progress, in its stats report to the master
_PROGRESS_S = 1.0  # how often flashsale replay's Locust writes progress.json
_GRACE_S = 30.0  # after the last request may be sent, before the master gives up on a part
_FLUSH_S = 30.0  # a stopping master waits this, and one request timeout, for cut shares
_KILL_S = 10.0  # how long ending a share's journeys in progress may take
_STOPPING = (STATE_STOPPING, STATE_CLEANUP, STATE_STOPPED)


# ----------------------------------------------------------------------------- options


def _options(parser: Any, **_: Any) -> None:
    g = parser  # Locust's own parser: include_in_web_ui works only there
    g.add_argument("--scenario", help="Scenario TOML file to replay (required on the master).")
    g.add_argument(
        "--set",
        dest="flashsale_set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="Override a scenario field (repeatable), e.g. --set humans.count=1000.",
    )
    g.add_argument("--scale", type=float, default=1.0, help="Replay this share of the people.")
    g.add_argument("--replication", type=int, default=0, help="Replication index (seed stream).")
    g.add_argument("--target-config", help="TOML file with a [target] table (staging).")
    g.add_argument(
        "--allow-remote",
        action="store_true",
        default=False,
        help="Allow a non-loopback target named by the scenario or --target-config.",
    )
    g.add_argument(
        "--admin-token",
        env_var="FLASHSALE_ADMIN_TOKEN",
        default=None,
        include_in_web_ui=False,
        help="Target's admin token: reset it to the scenario before, audit it after.",
    )
    g.add_argument("--out", default=None, help="Results folder (default results/<stamp>-...).")
    g.add_argument("--flashsale-staging", default=None, include_in_web_ui=False, help="(internal)")
    g.add_argument(
        "--flashsale-opens-at", type=float, default=None, include_in_web_ui=False, help="(internal)"
    )


# ------------------------------------------------------------------------ per process


class _Process:
    """What one Locust process holds: its plan and recorder (workers), the controller (master)."""

    def __init__(self) -> None:
        self.env: Environment | None = None
        self.controller: _Controller | None = None
        self.allow_remote = False  # a worker's own --allow-remote, read before the master speaks
        self.interrupted: str | None = None  # "interrupted (Ctrl-C)" or "... (SIGTERM)"
        self.new_replay()

    def new_replay(self) -> None:
        """Forget the last replay's share (the web UI's Start, pressed again)."""
        self.plan: AsyncResult = AsyncResult()
        self.recorder: Recorder | None = None
        self.share: _Share | None = None  # this process's journeys, once its plan came
        self.share_started = False
        self.journeys: list[Journey] = []  # this process's, started (the watchdog reads them)
        self.ended = 0  # journeys of this process that have ended
        self.units = 0  # units those journeys bought
        self.requests = 0  # requests its journeys sent and got an answer (or none) to
        self.failed = 0  # of which Locust counted failed (judged: journey.Judge)
        self.stopped: str | None = None  # why the watchdog stopped this share early

    def progress(self) -> dict[str, int]:
        """This process's journeys started and ended, the units they bought and their
        requests, answered and failed, so far."""
        return {
            "started": len(self.journeys),
            "ended": self.ended,
            "units": self.units,
            "requests": self.requests,
            "failed": self.failed,
        }


_proc = _Process()


def _on_init(environment: Environment, **_: Any) -> None:
    _proc.env = environment
    _listen(environment.events.request, _on_request)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The master's options overwrite a worker's with its first spawn message; the
        # target check below must use what this worker was started with.
        _proc.allow_remote = bool(getattr(environment.parsed_options, "allow_remote", False))
        runner.register_message(_PLAN, _on_plan)
        runner.register_message(_CUT, _on_cut)
        _listen(environment.events.report_to_master, _on_report_to_master)
        # Registered after the runner's own listener, so it runs first (quitting fires in
        # reverse): the share reaches the master before the worker's "quit" does.
        _listen(environment.events.quitting, _on_worker_quitting)
        return
    try:
        _proc.controller = _Controller(environment)
    except (ScenarioError, TargetError, ScaleError, RunError) as e:
        for line in str(e).splitlines():
            sys.stderr.write(f"error: {line}\n")
        sys.exit(2)
    _listen(environment.events.worker_report, _proc.controller.on_worker_report)
    if environment.web_ui is not None and environment.web_ui.app is not None:
        environment.web_ui.app.after_request(_journeys_as_users)
    if isinstance(runner, MasterRunner):
        runner.register_message(_PART, _proc.controller.on_part)
        runner.register_message(_DONE, _proc.controller.on_done)
        runner.register_message(_REFUSED, _proc.controller.on_refused)
    if _proc.controller.staging is None:
        _name_interruptions(environment)


def _name_interruptions(environment: Environment) -> None:
    """Ctrl-C (and, headless, SIGTERM) stop the test, and the run's reason names which.

    Headless, Locust installs its SIGTERM handler only once the test has ended, so a
    SIGTERM (``kill``, a cancelled CI job) during the test would kill the process on
    the spot, the run folder left ``running``: until then it stops the test as
    Ctrl-C does. Not in ``flashsale replay``'s Locust, which that command stops with
    SIGINT and whose run it keeps itself."""
    main = gevent.getcurrent()
    runner = environment.runner

    def stop(kind: type[KeyboardInterrupt]) -> None:
        if kind is Terminated and runner is not None and runner.state in _STOPPING:
            return  # the test has ended: Locust's own handler shuts down
        e = kind()
        _proc.interrupted = _proc.interrupted or interruption(e)
        gevent.kill(main, e)  # where Ctrl-C lands: Locust stops the test and quits

    gevent.signal_handler(signal.SIGINT, stop, KeyboardInterrupt)
    if environment.parsed_options is not None and environment.parsed_options.headless:
        gevent.signal_handler(signal.SIGTERM, stop, Terminated)


def _on_plan(environment: Environment, msg: Any, **_: Any) -> None:
    """A worker's plan from the master. The worker checks the plan's target itself,
    with its own --allow-remote (:func:`plan_target`); refused, it says so on one
    ``error:`` line, tells the master and quits without sending a request (its pacer
    waits for a plan that never comes)."""
    plan = Plan.from_json(msg.data)
    if _proc.share_started:  # a new replay (the web UI's Start again): a new share
        _proc.new_replay()
    try:
        url = plan_target(plan, _proc.allow_remote)
    except TargetError as e:
        _refuse(environment, str(e))
        return
    _proc.plan.set(dataclasses.replace(plan, base_url=url))


def _refuse(environment: Environment, why: str) -> None:
    """Stop this worker for good: one ``error:`` line, the reason to the master, exit 2."""
    sys.stderr.write(f"error: {' '.join(why.splitlines())}\n")
    environment.process_exit_code = 2
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    with contextlib.suppress(Exception):  # the master may be gone: quit all the same
        runner.send_message(_REFUSED, {"error": why})
    # quit() kills the runner's greenlets, among them the one delivering this message:
    # from a greenlet of its own, so it runs to the end. Locust's main then shuts down.
    gevent.spawn(runner.quit)


def _on_cut(environment: Environment, msg: Any, **_: Any) -> None:
    """The master stops the replay early: send what this worker's share recorded (from
    a greenlet of its own: ending the journeys in progress must not hold up messages)."""
    gevent.spawn(_cut_share, environment)


def _on_worker_quitting(environment: Environment, **_: Any) -> None:
    """A worker stopped by its own Ctrl-C or SIGTERM sends its share before it goes."""
    _cut_share(environment)


def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    """A worker's progress rides on its stats report to the master (every few seconds)."""
    data[_PROGRESS] = _proc.progress()


def _journeys_as_users(response: Any) -> Any:
    """The web UI's user count is the journeys in flight, not the pacers (one per process):
    a Flask ``after_request`` hook rewrites ``user_count`` in ``/stats/requests``."""
    from flask import request  # Locust's web UI is a Flask app

    ctl = _proc.controller
    if ctl is None or not request.path.endswith("/stats/requests") or not response.is_json:
        return response
    doc = response.get_json()
    doc["user_count"] = ctl.progress()["in_flight"]
    response.set_data(json.dumps(doc))
    return response


def _on_request(
    name: str,
    start_time: float,
    response_time: float,
    response: Any,
    context: dict[str, Any],
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    """STYLE rule 7: raw timings, one row per request, straight from Locust's event,
    with the target's own ``Server-Timing`` (the parts of the latency), if it sent one."""
    rec = _proc.recorder
    if rec is None or "journey" not in context:
        return
    _proc.requests += 1
    _proc.failed += exception is not None
    headers = getattr(response, "headers", None)
    rec.request(
        journey=context["journey"],
        account=context["account"],
        step=context["step"],
        intended=context["intended"],
        sent_epoch=start_time,
        latency_s=response_time / 1000.0,
        status=int(getattr(response, "status_code", 0) or 0),
        server_timing=", ".join(headers.getlist("server-timing")) if headers else "",
    )


# ------------------------------------------------------------------------- controller


class _Controller:
    """Master (or single process): plans the replay, gathers the parts, writes the results."""

    def __init__(self, env: Environment) -> None:
        opts = env.parsed_options
        if opts is None or not opts.scenario:
            raise ScenarioError("--scenario: required (the scenario TOML file to replay)")
        config = Path(opts.target_config) if opts.target_config else None
        sc = load_scenario(Path(opts.scenario), scenario_overrides(opts.flashsale_set, config))
        sc, source, self.base_url = resolve_target(
            sc, opts.scenario, config, list(opts.flashsale_set), env.host, bool(opts.allow_remote)
        )
        self.full = sc
        self.scale = float(opts.scale)
        self.scaled = scale_scenario(sc, self.scale)
        check_protocol(self.scaled, replayed_accounts(self.scaled), source)
        self.replication = int(opts.replication)
        self.allow_remote = bool(opts.allow_remote)
        self.source = source
        self.admin_token: str | None = opts.admin_token
        self.staging = Path(opts.flashsale_staging) if opts.flashsale_staging else None
        self.opens_at: float | None = opts.flashsale_opens_at
        self.out = Path(opts.out) if opts.out else None
        self.env = env
        if self.base_url is None and opts.headless:
            raise TargetError(
                f"{source}: target.base_url: no target; pass --host http://127.0.0.1:PORT "
                "(e.g. a `flashsale serve`), set target.base_url, or run `flashsale replay`, "
                "which starts the reference service"
            )
        self._reset()

    def _reset(self) -> None:
        """The state of one replay, before it starts."""
        self.plan: Plan | None = None
        self.scheduled = 0  # journeys in the plan (once it is made)
        self.workers_progress: dict[str, dict[str, int]] = {}  # each worker's, last reported
        self._progress_writer: gevent.Greenlet | None = None
        self.parts: dict[str, int] = {}
        self.chunks: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {}
        self.done: dict[str, bool] = {}  # whole parts: budget spent
        self.cut: dict[str, tuple[bool, int]] = {}  # parts cut short: budget spent, cut short
        self.tally = Tally()  # the reported parts' tallies, added up
        self.gathered = False
        self.finalized = False
        self.failed: str | None = None
        self.refused: str | None = None
        self.stop_reason: str | None = None
        self._run_cm: Any = None
        self.run: RunFolder | None = None

    def new_replay(self) -> None:
        """The web UI's Start, pressed again: finish the last replay's run folder (a replay
        stopped early is written as such) and replay anew into a new one. With ``--out``
        that folder holds the last replay: this replay fails, saying so."""
        if self.plan is None and self.failed is None:
            return  # nothing ran yet
        self.finalize()
        out, first = self.out, self.run
        self._reset()
        _proc.new_replay()
        if out is not None and first is not None:
            self.failed = (
                f"--out {out}: holds the last replay; restart Locust without --out (each "
                "Start then writes a new results/<stamp> folder) or with another --out"
            )
            sys.stderr.write(f"error: cannot replay again: {self.failed}\n")

    # -- planning (test_start)
    def start(self) -> None:
        env = self.env
        if self.failed is not None or self.plan is not None:
            return
        try:
            self.base_url = check_target(
                env.host or self.base_url or "", self.full, self.allow_remote, self.source
            )
            self.plan = self._make_plan()
        except (TargetError, AuditError, Unreachable) as e:
            self.failed = str(e)
            env.process_exit_code = 1 if isinstance(e, Unreachable) else 2
            sys.stderr.write(f"error: {e}\n")
            return
        self.scheduled = len(self.plan.for_part(0, 1).schedule()[1])
        if self.staging is None:
            cm = open_run(
                self.scaled,
                "replay",
                out=self.out,
                seed=self.full.seed,
                replications=1,
                extra={"scale": self.scale},
                report_follows=True,  # complete once conclude() has written the report
            )
            self.run = cm.__enter__()
            self._run_cm = cm
        runner = env.runner
        if isinstance(runner, MasterRunner):
            ids = sorted(c.id for c in runner.clients.all)
            self.parts = {cid: i for i, cid in enumerate(ids)}
            for cid, i in self.parts.items():
                runner.send_message(_PLAN, self.plan.for_part(i, len(ids)).to_json(), cid)
        else:
            self.parts = {"local": 0}
            _proc.plan.set(self.plan)
        if self.staging is not None:  # flashsale replay shows it as it goes
            self._progress_writer = gevent.spawn(self._write_progress, self.staging)

    def progress(self) -> dict[str, Any]:
        """The replay so far: journeys scheduled, started, ended and in flight, the units
        they bought, and Locust's requests, failed requests (a protocol error, no answer,
        an overloaded target) and requests per second; workers' figures as of their last
        stats report (every few seconds)."""
        parts = [_proc.progress(), *self.workers_progress.values()]
        n = {k: sum(p.get(k, 0) for p in parts) for k in _proc.progress()}
        return {
            "scheduled": self.scheduled,
            "started": n["started"],
            "ended": n["ended"],
            "in_flight": max(0, n["started"] - n["ended"]),
            "units": n["units"],
            "requests": n["requests"],
            "errors": n["failed"],
            "rps": round(self.env.stats.total.current_rps, 1),
        }

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if isinstance(data.get(_PROGRESS), dict):
            self.workers_progress[client_id] = data[_PROGRESS]

    def _write_progress(self, staging: Path) -> None:
        """progress.json in the staging folder, every ``_PROGRESS_S``, for flashsale replay."""
        staging.mkdir(parents=True, exist_ok=True)
        while True:
            write_json_atomic(staging / "progress.json", self.progress())
            gevent.sleep(_PROGRESS_S)

    def _stop_progress(self) -> None:
        """Stop writing progress.json, once more with the parts' final figures."""
        if self._progress_writer is None:
            return
        self._progress_writer.kill()
        if self.staging is not None:
            write_json_atomic(self.staging / "progress.json", self.progress())

    def _make_plan(self) -> Plan:
        assert self.base_url is not None
        t0 = self.opens_at
        if t0 is None:
            t0 = opening_epoch(
                self.base_url, self.scaled, self.admin_token, self.replication, self.source
            )
        return Plan(
            scenario=self.full.to_toml_dict(),
            scale=self.scale,
            replication=self.replication,
            t0=t0,
            part=0,
            parts=1,
            key=secrets.token_hex(6),
            base_url=self.base_url,
        )

    # -- gathering
    def lanes(self) -> int:
        runner = self.env.runner
        return max(1, runner.worker_count) if isinstance(runner, MasterRunner) else 1

    def on_part(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.add_part(msg.node_id, msg.data)

    def on_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        data = msg.data
        cut_short = int(data.get("cut_short", 0)) if data.get("cut") else None
        if isinstance(data.get(_PROGRESS), dict):  # the part's final figures
            self.workers_progress[msg.node_id] = data[_PROGRESS]
        self.mark_done(msg.node_id, bool(data.get("budget_spent")), data.get("tally"), cut_short)

    def on_refused(self, environment: Environment, msg: Any, **_: Any) -> None:
        """A worker refused its plan's target: the replay cannot be whole; stop it."""
        if self.refused is None:
            self.refused = f"worker {msg.node_id} refused the target: {msg.data.get('error')}"

    def add_part(self, who: str, payload: dict[str, Any]) -> None:
        if who not in self.parts or who in self.reported():
            return
        self.chunks.setdefault(who, []).append(decode_part(payload))

    def mark_done(
        self,
        who: str,
        budget_spent: bool,
        tally: dict[str, Any] | None,
        cut_short: int | None = None,
    ) -> None:
        """``who`` has sent its whole share, or (``cut_short`` given) what it recorded
        before the test stopped, ``cut_short`` of those journeys ended by the stop."""
        if who not in self.parts or who in self.reported():
            return
        if cut_short is None:
            self.done[who] = budget_spent
        else:
            self.cut[who] = (budget_spent, cut_short)
        self.tally.merge(tally or {})

    def reported(self) -> set[str]:
        """Parts that sent their share, whole or cut short."""
        return set(self.done) | set(self.cut)

    def missing(self) -> list[int]:
        """Parts that sent nothing (yet)."""
        reported = self.reported()
        return sorted(i for cid, i in self.parts.items() if cid not in reported)

    def all_done(self) -> bool:
        return bool(self.parts) and set(self.done) == set(self.parts)

    def gather(self) -> None:
        """Before the test stops early: have every part that has not reported send what
        it recorded so far (:meth:`_Share.send`). This process's own share is cut at
        once; each worker is sent ``flashsale:cut`` and waited for, up to ``_FLUSH_S``,
        as long as it still answers heartbeats. Once; not for a whole or refused replay,
        nor for ``flashsale replay``'s Locust (which writes only a whole replay)."""
        if self.gathered or self.plan is None or self.staging is not None:
            return
        if self.refused is not None or self.all_done():
            return
        self.gathered = True
        runner = self.env.runner
        if not isinstance(runner, MasterRunner):
            _cut_share(self.env)
            return
        waiting = [cid for cid in self.parts if cid not in self.reported()]
        for cid in waiting:
            with contextlib.suppress(Exception):  # a worker gone: nothing to ask
                runner.send_message(_CUT, None, cid)

        def answering(cid: str) -> bool:
            node = runner.clients.get(cid)
            return cid not in self.reported() and node is not None and node.state != STATE_MISSING

        until = time.monotonic() + self.scaled.target.request_timeout_s + _FLUSH_S
        while time.monotonic() < until and any(answering(cid) for cid in waiting):
            gevent.sleep(0.1)

    def deadline(self) -> float:
        if self.plan is None:
            return float("inf")
        scaled = self.scaled
        return self.plan.t0 + self.plan.end_s(scaled) + scaled.target.request_timeout_s + _GRACE_S

    # -- results (test_stop / quitting)
    def finalize(self) -> None:
        if self.finalized or self.plan is None:
            return
        self.gather()  # a stop that did not pass test_stopping first (SIGTERM)
        self.finalized = True
        self._stop_progress()
        env = self.env
        if self.refused is not None:  # bad input on a worker's side: exit 2
            self._abandon(self.refused, failed=True)
            env.process_exit_code = 2
            return
        if not self.all_done():
            env.process_exit_code = 1
            self._finalize_stopped()
            return
        try:
            chunks = [c for cid in self.parts for c in self.chunks.get(cid, [])]
            outcome = assemble(self.scaled, chunks, self.scheduled)
        except MergeError as e:
            self._abandon(f"merge failed: {e}", failed=True)
            env.process_exit_code = 1
            return
        counts = replay_counts(outcome, len(self.parts), any(self.done.values()))
        counts["protocol"] = self.tally.to_json()
        if self.staging is not None:
            write_staging(self.staging, outcome, counts)
            return
        env.process_exit_code = self._write_run(outcome, counts)

    def _finalize_stopped(self) -> None:
        """The test stopped before every journey ended: write what the parts that
        reported recorded, the run left ``incomplete`` with why (exit 1 either way)."""
        assert self.plan is not None
        why = self.stop_reason or f"{_proc.interrupted or 'stopped'} before every journey ended"
        reported = [cid for cid in self.parts if cid in self.reported()]
        if self.staging is not None or not reported:
            self._abandon(why if reported else f"{why}; no part sent results")
            return
        try:
            chunks = [c for cid in reported for c in self.chunks.get(cid, [])]
            outcome = assemble(self.scaled, chunks, self.scheduled, partial=True)
        except MergeError as e:
            self._abandon(f"merge failed: {e}", failed=True)
            return
        budget_spent = any(self.done.values()) or any(b for b, _ in self.cut.values())
        counts = replay_counts(
            outcome,
            len(self.parts),
            budget_spent,
            scheduled=self.scheduled,
            parts_missing=self.missing(),
            cut_short=sum(n for _, n in self.cut.values()),
        )
        counts["protocol"] = self.tally.to_json()
        self._write_run(outcome, counts, stopped=_stopped(why, counts))

    def _write_run(
        self, outcome: Outcome, counts: dict[str, Any], stopped: str | None = None
    ) -> int:
        """Tables, counts and audit; then the report. Closing the run only puts it in
        phase ``report``: it is ``complete`` once :func:`conclude` has written the
        report, so a process killed in between leaves a run `flashsale report` finishes.

        A replay ``stopped`` early (the reason) is left ``incomplete`` instead, as
        an interrupted run is, and reported on as partial (``flashsale report
        --partial`` does the same again; without ``--partial`` it refuses): 1."""
        assert self.run is not None and self.base_url is not None
        try:
            problems = record_results(
                self.run, outcome, counts, self.scale, self.base_url, self.admin_token
            )
        except BaseException as e:
            self._run_cm.__exit__(type(e), e, e.__traceback__)
            raise
        if stopped is None:
            self._run_cm.__exit__(None, None, None)
            return conclude(self.run, problems)
        from flashsale.postrun import finish_run  # as conclude(): the chart stack only here

        self._abandon(stopped)
        finish_run(self.run, partial=True)
        for p in problems:  # as conclude() prints them
            sys.stderr.write(f"error: {self.run.path}: {p}\n")
        return 1

    def _abandon(self, why: str, failed: bool = False) -> None:
        """Leave the results folder marked incomplete (cut short) or failed (bad merge)."""
        sys.stderr.write(f"error: replay {why}\n")
        if self._run_cm is None or self.run is None:
            return
        exc: BaseException = RuntimeError(why) if failed else KeyboardInterrupt()
        with contextlib.suppress(BaseException):
            self._run_cm.__exit__(type(exc), exc, None)
        if not failed:
            self.run.update(error=why)


def _stopped(why: str, counts: dict[str, Any]) -> str:
    """The manifest's error for a replay stopped early: why, and what its tables hold."""
    text = (
        f"{why}: {counts['journeys']} of {counts['scheduled']} journeys recorded "
        f"({counts['cut_short']} cut short), {counts['unstarted']} never started"
    )
    if counts["parts_missing"]:
        text += (
            f"; parts {counts['parts_missing']} sent no results "
            f"({counts['lost']} journeys unaccounted for)"
        )
    return text


def _on_test_start(environment: Environment, **_: Any) -> None:
    if _proc.controller is not None:
        _proc.controller.start()


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    """Locust is about to stop its users: parts cut short send what they recorded."""
    if _proc.controller is not None:
        _proc.controller.gather()


def _on_test_stop(environment: Environment, **_: Any) -> None:
    if _proc.controller is not None and _proc.controller.all_done():
        _proc.controller.finalize()


def _on_quitting(environment: Environment, **_: Any) -> None:
    if _proc.controller is not None:
        _proc.controller.finalize()


# ------------------------------------------------------------------------------ shape


class ScenarioReplay(LoadTestShape):
    """One pacer per Locust process until every part has reported.

    Bounded twice: by the plan (the sale window, one request timeout and a grace
    period) and by Locust's ``--run-time`` if given, which this shape reads itself
    (Locust leaves the run time of a shape to the shape).
    """

    use_common_options = True

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        ctl = _proc.controller
        if ctl is not None and self.runner is not None and self.runner.state == STATE_INIT:
            ctl.new_replay()  # a test starts (the web UI's Start): forget the last replay
        if ctl is None or ctl.failed or ctl.refused or ctl.all_done():
            return None
        if time.time() > ctl.deadline():
            ctl.stop_reason = "stopped at the replay's deadline before every part sent its results"
            return None
        run_time = getattr(ctl.env.parsed_options, "run_time", None)
        if run_time and time.perf_counter() - self.start_time > run_time:
            ctl.stop_reason = f"stopped by --run-time {run_time}s before every journey ended"
            return None
        lanes = ctl.lanes()
        return lanes, float(lanes), [SalePacer]


# ------------------------------------------------------------------------------ users


class _Budget:
    """This process's share of ``target.max_requests``; none at all once the test stops
    (a journey then ends at its next request, which is not sent)."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.spent = False
        self.stopped = False

    def take(self) -> None:
        if self.stopped:
            raise Halt("timed_out", "the replay was stopped")
        if self.left <= 0:
            self.spent = True
            raise Halt("error", "target.max_requests reached")
        self.left -= 1


class _Buyer(FastHttpUser):
    """A short-lived user: one journey, started by the pacer at its scheduled time."""

    abstract = True

    def __init__(self, environment: Environment, host: str, timeout: float) -> None:
        self.host = host
        self.network_timeout = self.connection_timeout = timeout
        super().__init__(environment)

    def journey_client(
        self, who: Buyer, t0: float, end_s: float, budget: _Budget
    ) -> _JourneyClient:
        self.client.client.cookiejar = None  # the journey keeps its own jar (the protocol's)
        return _JourneyClient(self, who, t0, end_s, budget)


class HumanBuyer(_Buyer):
    """A human buyer: views, waits, thinks, carts, pays (flashsale.replay.journey)."""

    abstract = True


class ScalperBot(_Buyer):
    """One scalper bot account: fires at its request rate at the cart, pays at once."""

    abstract = True


class _JourneyClient:
    """flashsale.replay.journey.Client over a FastHttpSession and gevent's clock."""

    def __init__(self, user: _Buyer, who: Buyer, t0: float, end_s: float, budget: _Budget) -> None:
        self.user, self.who, self.t0, self.end_s = user, who, t0, end_s
        self.budget = budget

    def now(self) -> float:
        return time.time() - self.t0

    def wait_until(self, t: float) -> None:
        if t > self.end_s:
            raise Halt("timed_out", "the replay window ended")
        delay = self.t0 + t - time.time()
        if delay > 0:
            gevent.sleep(delay)

    def call(self, step: str, request: Request, intended: float, judge: Judge) -> Reply:
        """Send ``request``; Locust counts it failed when ``judge`` says why (a protocol
        error, no answer, an overloaded target), so its own summary shows them too."""
        self.budget.take()
        ctx = {
            "journey": self.who.journey,
            "account": self.who.account,
            "step": step,
            "intended": intended,
        }
        headers = dict(request.headers)
        data = None
        if request.form is not None:
            data = urlencode(request.form)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        with self.user.client.request(
            request.method,
            request.path,
            name=step,
            data=data,
            json=request.json,
            headers=headers,
            context=ctx,
            catch_response=True,
        ) as resp:
            reply = _reply(resp)
            why = judge(reply)
            if why is None:
                resp.success()
            else:
                resp.failure(why)
        return reply


def _reply(resp: Any) -> Reply:
    """A Locust response as the journey reads it (status 0: no answer came)."""
    status = int(resp.status_code or 0)
    if not status:
        return Reply(0)
    text = resp.text or ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    raw = resp.headers
    headers = {k.lower(): v for k, v in raw.items()} if raw else {}
    cookies = parse_cookies(raw.getlist("set-cookie")) if raw else {}
    return Reply(status, body, text, headers, cookies)


class SalePacer(User):
    """Starts every journey of this process's share at its scheduled time (the open model).

    Stopped before the share has ended (Locust kills its users: ``--run-time``,
    Ctrl-C, the master's stop), it cuts the share: what was recorded is sent.
    """

    @task
    def replay_share(self) -> None:
        if _proc.share_started:  # a restarted pacer must not replay the share twice
            gevent.sleep(3600)
            return
        _proc.share_started = True
        try:
            plan: Plan = _proc.plan.get()
            share = _run_share(self.environment, plan)
        except gevent.GreenletExit:
            _cut_share(self.environment)
            raise
        share.send(self.environment, cut=False)
        while True:
            gevent.sleep(3600)


class _Share:
    """This process's share while it runs: its plan, recorder, request budget and the
    greenlets of its journeys. It is sent once (:meth:`send`): whole once every
    journey has ended, or cut short when the test stops first."""

    def __init__(self, plan: Plan, recorder: Recorder, budget: _Budget, timeout: float) -> None:
        self.plan, self.recorder, self.budget = plan, recorder, budget
        self.group = Group()
        self.answer_s = timeout + 1.0  # a request in flight is answered within this
        self.stopping = False  # set: no further journey starts
        self.all_started = False  # every journey of the share has been started
        self._sent: Event | None = None

    def send(self, env: Environment, *, cut: bool) -> None:
        """Send the share, once. ``cut``: the test stops; unless every journey has
        already ended, end those in progress (:meth:`_end_journeys`) and send what was
        recorded, marked cut short (the journeys not started never will be). A second
        caller waits for the first, so a worker does not quit before its share is out."""
        if self._sent is not None:
            self._sent.wait(timeout=self.answer_s + 2 * _KILL_S)
            return
        self._sent = Event()
        self.stopping = True
        try:
            cut_short = None
            if cut and not (self.all_started and not self.group):
                before = len(self.recorder.journeys)
                self._end_journeys()
                cut_short = len(self.recorder.journeys) - before
            _send_share(env, self, cut_short)
        finally:
            self._sent.set()

    def _end_journeys(self) -> None:
        """End the journeys in progress without losing an answer. No request is sent
        any more (the budget refuses it: the journey ends ``timed_out``, or
        ``cart_failed`` holding a cart). A journey with a request in flight gets its
        answer first, so what the target did is recorded (and its audit agrees);
        the others wait for their next request: they end at once (``timed_out``,
        finished now). Journeys spawned but not running yet never start."""
        self.budget.stopped = True
        plan, started = self.plan, {j.who.journey: j for j in _proc.journeys}
        answered = np.bincount(  # requests answered, by journey id
            self.recorder.requests.columns()["journey"], minlength=max(started, default=0) + 1
        )
        in_flight = []
        for g in list(self.group):
            j = started.get(plan.part + int(g.args[0]) * plan.parts)
            if j is not None and j.log.requests > answered[j.who.journey]:
                in_flight.append(g)
            else:
                g.kill(block=False)
        gevent.joinall(in_flight, timeout=self.answer_s)
        self.group.kill(block=True, timeout=_KILL_S)


def _cut_share(env: Environment) -> None:
    """The test stops: send this process's share as far as it got (if it has one)."""
    if _proc.share is not None:
        _proc.share.send(env, cut=True)


def _run_share(env: Environment, plan: Plan) -> _Share:
    """Run this process's journeys until each has ended or the share is cut short
    (:meth:`_Share.send`); returns the share, to be sent."""
    scaled, sched, seeds = plan.schedule()
    rec = Recorder(plan.t0)
    _proc.recorder = rec
    end_s = plan.end_s(scaled)
    budget = _Budget(plan.max_requests(scaled))
    share = _proc.share = _Share(plan, rec, budget, scaled.target.request_timeout_s)
    accounts = load_accounts(scaled.target)
    custom = load_custom(scaled.target)
    timeout = scaled.target.request_timeout_s
    group = share.group

    def one(i: int) -> None:
        who = Buyer(
            journey=int(plan.part + i * plan.parts),
            kind=int(sched.kind[i]),
            account=int(sched.account[i]),
            person=int(sched.person[i]),
            channel=int(sched.channel[i]),
            arrived=float(sched.t[i]),
        )
        cls = HumanBuyer if who.kind == HUMAN else ScalperBot
        user = cls(env, plan.base_url, timeout)
        client = user.journey_client(who, plan.t0, end_s, budget)
        rng = np.random.default_rng(int(seeds[i]))
        row = accounts.get(who.account)
        journey = Journey(scaled, who, client, rng, plan.key, row, custom)
        if _proc.stopped is not None:  # never started: the replay was stopped
            journey.log.notes.append(f"not started: {_proc.stopped}")
            rec.journey(who, journey.log)
            return
        _proc.journeys.append(journey)
        try:
            journey.run()
        except gevent.GreenletExit:
            journey.log.result = "timed_out"
            journey.log.finished = client.now()
            raise
        finally:
            rec.journey(who, journey.log)
            _proc.ended += 1
            _proc.units += journey.log.units if journey.log.result == "purchased" else 0

    watchdog = gevent.spawn(_watch, plan, scaled, budget)
    try:
        for i in range(len(sched)):
            delay = plan.t0 + float(sched.t[i]) - time.time()
            if _proc.stopped is not None:
                pass  # record the rest as never started, at once
            elif delay > 0:
                gevent.sleep(delay)
            elif i % 64 == 0:
                gevent.sleep(0)  # let started journeys run during a burst
            if share.stopping:  # cut short meanwhile: this journey and the rest never start
                return share
            group.spawn(one, i)
        share.all_started = True
        group.join(timeout=max(0.0, plan.t0 + end_s + timeout + 5.0 - time.time()))
        group.kill(block=True, timeout=_KILL_S)
    finally:
        watchdog.kill()
    return share


def _watch(plan: Plan, scaled: Scenario, budget: _Budget) -> None:
    """Stop this share when the target does not speak the protocol (too many protocol
    errors) or nothing progresses (flashsale.replay.watchdog): checked every second.
    No further request is sent (each journey ends at its next one, a request in
    flight gets its answer and is recorded) and no further journey starts."""
    while _proc.stopped is None:
        gevent.sleep(1.0)
        tally = Tally.of(j.log for j in _proc.journeys)
        why = problem(tally, scaled.target, time.time() - plan.t0, final=False)
        if why is not None:
            _proc.stopped = why
            budget.stopped = True
            sys.stderr.write(f"error: stopping the replay: {why}\n")


def _tally() -> dict[str, Any]:
    """This process's tally of its journeys, for the master (plain JSON)."""
    tally = Tally.of(j.log for j in _proc.journeys)
    tally.stopped = _proc.stopped
    return tally.to_json()


def _send_share(env: Environment, share: _Share, cut_short: int | None) -> None:
    """The share's rows and tally to the master (a worker) or to this process's
    controller, then ``flashsale:done``: whole (``cut_short`` None) or cut short by a stop."""
    rec, budget_spent = share.recorder, share.budget.spent
    runner = env.runner
    if isinstance(runner, WorkerRunner):
        for payload in encode_part(rec):
            runner.send_message(_PART, payload)
        done = {
            "part": share.plan.part,
            "budget_spent": budget_spent,
            "tally": _tally(),
            _PROGRESS: _proc.progress(),
        }
        if cut_short is not None:
            done |= {"cut": True, "cut_short": cut_short}
        runner.send_message(_DONE, done)
        return
    ctl = _proc.controller
    assert ctl is not None
    for payload in encode_part(rec):
        ctl.add_part("local", payload)
    ctl.mark_done("local", budget_spent, _tally(), cut_short)


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    """Locust's EventHook.add_listener is untyped; this keeps the call sites typed."""
    hook.add_listener(listener)


_listen(events.init_command_line_parser, _options)
_listen(events.init, _on_init)
_listen(events.test_start, _on_test_start)
_listen(events.test_stopping, _on_test_stopping)
_listen(events.test_stop, _on_test_stop)
_listen(events.quitting, _on_quitting)
