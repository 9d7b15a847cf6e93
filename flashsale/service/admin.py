"""Admin endpoints: reset, switch defenses, review, re-sale, audit. Bearer token only.

They run outside the worker pool (an operator must reach a saturated service)
and compare the token in constant time.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flashsale.scenario import ScenarioError, parse_scenario
from flashsale.service.bodies import ApiError, ResaleIn, ReviewIn, read_body, read_json
from flashsale.service.routes import Handler, runtime
from flashsale.service.store import unstorable_channel

__all__ = ["ADMIN_BODY_TIMEOUT_S", "MAX_ADMIN_BODY_BYTES", "admin_routes"]

MAX_ADMIN_BODY_BYTES = 8 * 1024 * 1024
"""A review body lists bot accounts (up to a million ids)."""

ADMIN_BODY_TIMEOUT_S = 60.0
"""An admin body (up to 8 MiB) must arrive within this long, else 408: 1.1 Mbit/s
at the largest. Only the token's holder can be that slow, and admin requests hold
no worker anyway."""


def guarded(handler: Handler) -> Handler:
    """401 unless ``Authorization: Bearer <admin token>``."""

    async def wrapped(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {runtime(request).admin_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse(
                {"error": "unauthorized", "detail": "admin token required", "field": None},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _query_float(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(422, "invalid_query", f"{name}={raw!r}: not a number", name) from None
    if not low <= value <= high:
        raise ApiError(422, "invalid_query", f"{name}={raw!r}: must be in [{low}, {high}]", name)
    return value


async def reset(request: Request) -> Response:
    """Start a sale afresh from a resolved scenario (Scenario.to_toml_dict())."""
    rt = runtime(request)
    data = await read_json(request, MAX_ADMIN_BODY_BYTES, ADMIN_BODY_TIMEOUT_S)
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_scenario", "body must be a scenario as a JSON object")
    try:
        scenario = parse_scenario(data, "scenario")
    except ScenarioError as e:
        raise ApiError(422, "invalid_scenario", str(e)) from None
    bad = unstorable_channel(c.name for c in scenario.sale.channels)
    if bad is not None:
        raise ApiError(
            422,
            "invalid_scenario",
            f"scenario: sale.channels: name {bad!r} holds a NUL character (no database keeps it)",
            "sale.channels",
        )
    opens_in_s = _query_float(request, "opens_in_s", 0.0, 0.0, 30 * 86400)
    replication = int(_query_float(request, "replication", 0, 0, 10**6))
    await rt.reset(scenario, opens_in_s, replication)
    return JSONResponse(await rt.status(rt.clock()))


async def defenses(request: Request) -> Response:
    """Switch defenses: a partial [defenses] table merged over the current one."""
    rt = runtime(request)
    patch = await read_json(request)
    if not isinstance(patch, dict):
        raise ApiError(422, "invalid_defenses", "body must be a [defenses] table as JSON")
    delay = patch.pop("captcha_delay_s", None)
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 60
    ):
        raise ApiError(
            422, "invalid_defenses", "captcha_delay_s must be in [0, 60]", "captcha_delay_s"
        )
    data = rt.scenario.to_toml_dict()
    data["defenses"] = _merge(data["defenses"], patch)
    try:
        scenario = parse_scenario(data, "defenses")
    except ScenarioError as e:
        raise ApiError(422, "invalid_defenses", str(e)) from None
    await rt.switch_defenses(scenario, None if delay is None else float(delay))
    return JSONResponse(
        {**scenario.defenses.model_dump(mode="json"), "captcha_delay_s": rt.guards.captcha_delay_s}
    )


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


async def resale(request: Request) -> Response:
    """Open a re-sale (the cancelled units, or a number more)."""
    rt = runtime(request)
    body = await read_body(request, ResaleIn)
    added = await rt.open_resale(body.opens_in_s, body.units, body.window_s)
    return JSONResponse({**await rt.status(rt.clock()), "units_added": added})


async def review(request: Request) -> Response:
    """The post-hoc review: the body names the accounts known to be bots (the truth
    the simulated detector guesses at, from the replay); flagged orders are cancelled."""
    rt = runtime(request)
    body = await read_body(request, ReviewIn, MAX_ADMIN_BODY_BYTES, ADMIN_BODY_TIMEOUT_S)
    if not rt.scenario.defenses.review.enabled:
        raise ApiError(
            409,
            "review_off",
            "defenses.review is off: enable it with POST /admin/defenses first",
        )
    result = await rt.review(frozenset(body.bot_accounts))
    levels = await rt.store.levels()
    return JSONResponse({**result, "stock_left": sum(left for _, left in levels.values())})


async def audit(request: Request) -> Response:
    """Every reservation and order, with totals recomputed from the rows."""
    rt = runtime(request)
    return JSONResponse(await rt.store.audit(rt.clock()))


def admin_routes() -> list[Route]:
    return [
        Route("/admin/reset", guarded(reset), methods=["POST"]),
        Route("/admin/defenses", guarded(defenses), methods=["POST"]),
        Route("/admin/review", guarded(review), methods=["POST"]),
        Route("/admin/resale", guarded(resale), methods=["POST"]),
        Route("/admin/audit", guarded(audit), methods=["GET"]),
    ]
