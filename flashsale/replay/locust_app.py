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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gevent
import numpy as np
from gevent.event import AsyncResult
from gevent.pool import Group
from locust import LoadTestShape, User, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

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
    apply_target_config,
    check_protocol,
    check_target,
    load_accounts,
    load_custom,
    replayed_accounts,
    scenario_overrides,
)
from flashsale.replay.watchdog import Tally, problem
from flashsale.runs import RunError, RunFolder, open_run
from flashsale.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["HumanBuyer", "SalePacer", "ScalperBot", "ScenarioReplay"]

_PLAN, _PART, _DONE = "flashsale:plan", "flashsale:part", "flashsale:done"
_REFUSED = "flashsale:refused"  # a worker refused the plan's target (it sends nothing)
_GRACE_S = 30.0  # after the last request may be sent, before the master gives up on a part


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
        self.plan: AsyncResult = AsyncResult()
        self.recorder: Recorder | None = None
        self.controller: _Controller | None = None
        self.share_started = False
        self.journeys: list[Journey] = []  # this process's, started (the watchdog reads them)
        self.stopped: str | None = None  # why the watchdog stopped this share early
        self.allow_remote = False  # a worker's own --allow-remote, read before the master speaks


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
        return
    try:
        _proc.controller = _Controller(environment)
    except (ScenarioError, TargetError, ScaleError, RunError) as e:
        for line in str(e).splitlines():
            sys.stderr.write(f"error: {line}\n")
        sys.exit(2)
    if isinstance(runner, MasterRunner):
        runner.register_message(_PART, _proc.controller.on_part)
        runner.register_message(_DONE, _proc.controller.on_done)
        runner.register_message(_REFUSED, _proc.controller.on_refused)


def _on_plan(environment: Environment, msg: Any, **_: Any) -> None:
    """A worker's plan from the master. The worker checks the plan's target itself,
    with its own --allow-remote (:func:`plan_target`); refused, it says so on one
    ``error:`` line, tells the master and quits without sending a request (its pacer
    waits for a plan that never comes)."""
    plan = Plan.from_json(msg.data)
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


def _on_request(
    name: str,
    start_time: float,
    response_time: float,
    response: Any,
    context: dict[str, Any],
    **_: Any,
) -> None:
    """STYLE rule 7: raw timings, one row per request, straight from Locust's event."""
    rec = _proc.recorder
    if rec is None or "journey" not in context:
        return
    rec.request(
        journey=context["journey"],
        account=context["account"],
        step=context["step"],
        intended=context["intended"],
        sent_epoch=start_time,
        latency_s=response_time / 1000.0,
        status=int(getattr(response, "status_code", 0) or 0),
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
        source = opts.scenario
        if opts.target_config:
            sc = apply_target_config(sc, Path(opts.target_config), list(opts.flashsale_set))
            source = opts.target_config
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
        self.base_url: str | None = None
        if env.host or sc.target.base_url:
            self.base_url = check_target(
                env.host or str(sc.target.base_url), sc, self.allow_remote, source
            )
        elif opts.headless:
            raise TargetError(
                f"{source}: target.base_url: no target; pass --host http://127.0.0.1:PORT "
                "(e.g. a `flashsale serve`), set target.base_url, or run `flashsale replay`, "
                "which starts the reference service"
            )
        self.plan: Plan | None = None
        self.parts: dict[str, int] = {}
        self.chunks: list[tuple[str, dict[str, np.ndarray]]] = []
        self.done: dict[str, bool] = {}
        self.tally = Tally()  # the parts' tallies, added up
        self.finalized = False
        self.failed: str | None = None
        self.refused: str | None = None
        self.stop_reason: str | None = None
        self._run_cm: Any = None
        self.run: RunFolder | None = None

    # -- planning (test_start)
    def start(self) -> None:
        env = self.env
        if self.plan is not None:
            self.failed = "one replay per Locust process: restart Locust to replay again"
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
        self.mark_done(msg.node_id, bool(msg.data.get("budget_spent")), msg.data.get("tally"))

    def on_refused(self, environment: Environment, msg: Any, **_: Any) -> None:
        """A worker refused its plan's target: the replay cannot be whole; stop it."""
        if self.refused is None:
            self.refused = f"worker {msg.node_id} refused the target: {msg.data.get('error')}"

    def add_part(self, who: str, payload: dict[str, Any]) -> None:
        if who not in self.parts:
            return
        self.chunks.append(decode_part(payload))

    def mark_done(self, who: str, budget_spent: bool, tally: dict[str, Any] | None) -> None:
        if who in self.parts and who not in self.done:
            self.done[who] = budget_spent
            self.tally.merge(tally or {})

    def missing(self) -> list[int]:
        return sorted(i for cid, i in self.parts.items() if cid not in self.done)

    def all_done(self) -> bool:
        return bool(self.parts) and set(self.done) == set(self.parts)

    def deadline(self) -> float:
        if self.plan is None:
            return float("inf")
        scaled = self.scaled
        return self.plan.t0 + self.plan.end_s(scaled) + scaled.target.request_timeout_s + _GRACE_S

    # -- results (test_stop / quitting)
    def finalize(self) -> None:
        if self.finalized or self.plan is None:
            return
        self.finalized = True
        env = self.env
        if self.refused is not None:  # bad input on a worker's side: exit 2
            self._abandon(self.refused, failed=True)
            env.process_exit_code = 2
            return
        if not self.all_done():
            self._abandon(self.stop_reason or "interrupted (Ctrl-C)")
            env.process_exit_code = 1
            return
        try:
            _, sched, _ = self.plan.for_part(0, 1).schedule()
            outcome = assemble(self.scaled, self.chunks, len(sched))
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

    def _write_run(self, outcome: Outcome, counts: dict[str, Any]) -> int:
        """Tables, counts and audit; then the report. Closing the run only puts it in
        phase ``report``: it is ``complete`` once :func:`conclude` has written the
        report, so a process killed in between leaves a run `flashsale report` finishes."""
        assert self.run is not None and self.base_url is not None
        try:
            problems = record_results(
                self.run, outcome, counts, self.scale, self.base_url, self.admin_token
            )
        except BaseException as e:
            self._run_cm.__exit__(type(e), e, e.__traceback__)
            raise
        self._run_cm.__exit__(None, None, None)
        return conclude(self.run, problems)

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


def _on_test_start(environment: Environment, **_: Any) -> None:
    if _proc.controller is not None:
        _proc.controller.start()


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
        if ctl is None or ctl.failed or ctl.refused or ctl.all_done():
            return None
        if time.time() > ctl.deadline():
            ctl.stop_reason = f"parts {ctl.missing()} sent no results by the deadline"
            return None
        run_time = getattr(ctl.env.parsed_options, "run_time", None)
        if run_time and time.perf_counter() - self.start_time > run_time:
            ctl.stop_reason = f"stopped by --run-time {run_time}s before every journey ended"
            return None
        lanes = ctl.lanes()
        return lanes, float(lanes), [SalePacer]


# ------------------------------------------------------------------------------ users


class _Budget:
    """This process's share of ``target.max_requests``."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.spent = False

    def take(self) -> None:
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
    """Starts every journey of this process's share at its scheduled time (the open model)."""

    @task
    def replay_share(self) -> None:
        if _proc.share_started:  # a restarted pacer must not replay the share twice
            gevent.sleep(3600)
            return
        _proc.share_started = True
        plan: Plan = _proc.plan.get()
        budget_spent = _run_share(self.environment, plan)
        _send_share(self.environment, plan, budget_spent)
        while True:
            gevent.sleep(3600)


def _run_share(env: Environment, plan: Plan) -> bool:
    """Run this process's journeys; returns whether the request budget ran out."""
    scaled, sched, seeds = plan.schedule()
    rec = Recorder(plan.t0)
    _proc.recorder = rec
    end_s = plan.end_s(scaled)
    budget = _Budget(plan.max_requests(scaled))
    accounts = load_accounts(scaled.target)
    custom = load_custom(scaled.target)
    timeout = scaled.target.request_timeout_s
    group = Group()

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

    watchdog = gevent.spawn(_watch, plan, scaled, group)
    for i in range(len(sched)):
        delay = plan.t0 + float(sched.t[i]) - time.time()
        if _proc.stopped is not None:
            pass  # record the rest as never started, at once
        elif delay > 0:
            gevent.sleep(delay)
        elif i % 64 == 0:
            gevent.sleep(0)  # let started journeys run during a burst
        group.spawn(one, i)
    group.join(timeout=max(0.0, plan.t0 + end_s + timeout + 5.0 - time.time()))
    group.kill(block=True, timeout=10)
    watchdog.kill()
    return budget.spent


def _watch(plan: Plan, scaled: Scenario, group: Group) -> None:
    """Stop this share when the target does not speak the protocol (too many protocol
    errors) or nothing progresses (flashsale.replay.watchdog): checked every second."""
    while _proc.stopped is None:
        gevent.sleep(1.0)
        tally = Tally.of(j.log for j in _proc.journeys)
        why = problem(tally, scaled.target, time.time() - plan.t0, final=False)
        if why is not None:
            _proc.stopped = why
            sys.stderr.write(f"error: stopping the replay: {why}\n")
            group.kill(block=False)


def _tally() -> dict[str, Any]:
    """This process's tally of its journeys, for the master (plain JSON)."""
    tally = Tally.of(j.log for j in _proc.journeys)
    tally.stopped = _proc.stopped
    return tally.to_json()


def _send_share(env: Environment, plan: Plan, budget_spent: bool) -> None:
    rec = _proc.recorder
    assert rec is not None
    runner = env.runner
    if isinstance(runner, WorkerRunner):
        for payload in encode_part(rec):
            runner.send_message(_PART, payload)
        runner.send_message(
            _DONE, {"part": plan.part, "budget_spent": budget_spent, "tally": _tally()}
        )
        return
    ctl = _proc.controller
    assert ctl is not None
    for payload in encode_part(rec):
        ctl.add_part("local", payload)
    ctl.mark_done("local", budget_spent, _tally())


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    """Locust's EventHook.add_listener is untyped; this keeps the call sites typed."""
    hook.add_listener(listener)


_listen(events.init_command_line_parser, _options)
_listen(events.init, _on_init)
_listen(events.test_start, _on_test_start)
_listen(events.test_stop, _on_test_stop)
_listen(events.quitting, _on_quitting)
