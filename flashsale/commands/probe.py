"""``flashsale probe``: one human and one bot journey against the target, every exchange shown.

The way to debug a target protocol in seconds: each request (method, path,
headers, body), its answer (status, the start of the body), the rule of the
answer map that matched, the meaning and what was captured, or the protocol
error. Secrets the protocol reads from the environment are shown as ``<secret>``.
The target is reset first when the protocol's reset can run (the sale opening
now); with no target, the reference service is started on loopback as for a
replay. Bounded: each journey stops after ``--max-requests`` requests or
``--timeout`` seconds.

Exit 0 when both journeys spoke the protocol throughout, 1 when an answer was a
protocol error (the mapping needs work), 2 for bad input or a refused target.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from flashsale._cli_utils import RUN_FAILED, SetOption, fail, load_or_exit
from flashsale.arrivals import BOT, HUMAN
from flashsale.outcome import KIND
from flashsale.policy import Answer
from flashsale.protocol import AnswerRule, Reply
from flashsale.replay.journey import Journey, Request
from flashsale.replay.target import (
    TargetError,
    check_protocol,
    load_accounts,
    load_custom,
    resolve_target,
    scenario_overrides,
)
from flashsale.scenario import Scenario

__all__ = ["probe"]

_BODY_CHARS = 300  # of a request or answer body shown


def probe(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    target: Annotated[
        str | None,
        typer.Option(help="Base URL of the target; default: start the reference service."),
    ] = None,
    target_config: Annotated[
        Path | None, typer.Option(help="TOML file with a [target] table (the protocol).")
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a non-loopback target that the configuration names.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each journey may take.")] = 60.0,
    max_requests: Annotated[int, typer.Option(help="Requests each journey may send.")] = 50,
    set_: SetOption = None,
) -> None:
    """Run one human and one bot journey against the target and print every exchange."""
    from flashsale.replay.preflight import probe_buyer  # httpx: not at the CLI's start

    sc = load_or_exit(scenario, scenario_overrides(set_, target_config))
    if not (0 < timeout <= 3600) or not (0 < max_requests <= 10_000):
        fail("--timeout: 0 < seconds <= 3600; --max-requests: 1 to 10,000")
    try:
        sc, source, url = resolve_target(sc, scenario, target_config, set_, target, allow_remote)
        kinds = [k for k, n in ((HUMAN, sc.humans.count), (BOT, sc.bots.accounts)) if n]
        buyers = [probe_buyer(int(k), sc) for k in kinds]
        check_protocol(sc, [b.account for b in buyers], source)
    except TargetError as e:
        fail(str(e))
    admin = os.environ.get("FLASHSALE_ADMIN_TOKEN")
    with contextlib.ExitStack() as stack:
        if url is None:
            from flashsale.service.server import run_in_background

            service = stack.enter_context(run_in_background(sc))
            url, admin = str(service), service.admin_token
        errors = _probe(sc, url, admin, buyers, timeout, max_requests)
    raise typer.Exit(RUN_FAILED if errors else 0)


def _probe(
    sc: Scenario,
    url: str,
    admin: str | None,
    buyers: list[Any],
    timeout: float,
    max_requests: int,
) -> int:
    """Reset (if the protocol can), play each buyer's journey; the protocol errors met."""
    from flashsale.replay.audit import AuditError, reset_target
    from flashsale.replay.preflight import HttpClient

    try:
        if reset_target(url, sc, 0.0, 0, admin):
            typer.echo(f"reset: {url}: the sale opens now ({sc.sale.units:,} units)")
        else:
            typer.echo(f"reset: none (the protocol has no reset this probe can run): {url}")
    except AuditError as e:
        fail(f"{e}", RUN_FAILED)
    secrets = {os.environ[n] for n in sc.target.env_names() if os.environ.get(n)}
    accounts = load_accounts(sc.target)
    custom = load_custom(sc.target)
    errors = unanswered = 0
    for buyer in buyers:
        t0 = time.time()
        client = HttpClient(url, t0, sc.target.request_timeout_s, t0 + timeout, max_requests)
        journey = Journey(
            sc,
            buyer,
            client,
            np.random.default_rng(buyer.account),
            f"probe{int(t0)}",
            accounts.get(buyer.account),
            custom,
        )
        journey.trace = _printer(secrets)
        typer.echo(f"\n{KIND[buyer.kind]} journey (account {buyer.account})")
        log = journey.run()
        errors += len(log.protocol_errors)
        lost = [e for e in client.exchanges if e.reply.status == 0]
        if lost:  # nothing to debug in a mapping: the target did not answer
            why = client.failures[-1] if client.failures else "no answer"
            first = lost[0].request
            typer.echo(
                f"error: {url}: no answer to {len(lost)} request(s), first {first.method} "
                f"{first.path}: {why}",
                err=True,
            )
            unanswered += len(lost)
        typer.echo(
            f"  => {log.result}: {log.requests} requests, {log.units} units bought"
            + (f"; {'; '.join(log.notes)}" if log.notes else "")
        )
    typer.echo(
        f"\nprotocol errors: {errors}"
        + ("" if errors else " (every answer matched a rule of the answer maps)")
        + (f"; requests with no answer: {unanswered}" if unanswered else "")
    )
    return errors + unanswered


def _printer(secrets: set[str]) -> Any:
    def show(
        step: str,
        req: Request | None,
        reply: Reply | None,
        got: tuple[Answer, dict[str, Any]] | str | None,
        rule: AnswerRule | None,
    ) -> None:
        if req is not None and reply is not None:
            headers = ", ".join(f"{k}: {_hide(v, secrets)}" for k, v in req.headers.items())
            body = req.json if req.json is not None else req.form
            typer.echo(f"  {step}: {req.method} {_hide(req.path, secrets)}")
            if headers:
                typer.echo(f"    headers  {headers}")
            if body is not None:
                typer.echo(f"    body     {_short(_hide(json.dumps(body), secrets))}")
            answer = " ".join(reply.text.split())
            typer.echo(f"    answer   {reply.status or 'none (no answer)'} {_short(answer)}")
        elif got is not None:
            typer.echo(f"  {step}: read by target.python_class")
        if got is None:
            return
        if isinstance(got, str):
            typer.echo(f"    PROTOCOL ERROR: {got}")
            return
        meaning, captured = got
        if rule is not None:
            typer.echo(f"    rule     {rule.describe()}")
        typer.echo(f"    meaning  {meaning.name.lower()}")
        if captured:
            typer.echo(f"    captured {_short(_hide(json.dumps(captured, default=str), secrets))}")

    return show


def _hide(text: str, secrets: set[str]) -> str:
    for s in secrets:
        text = text.replace(s, "<secret>")
    return text


def _short(text: str) -> str:
    return text if len(text) <= _BODY_CHARS else f"{text[:_BODY_CHARS]}... ({len(text):,} chars)"
