"""OpenAPI 3.1 description of the service, served at ``/openapi.json``.

Request schemas come from the pydantic body models, so the document cannot
drift from what the handlers validate; every route must have an entry here
(:func:`openapi_spec` refuses an undocumented one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from flashsale.service.admin import ADMIN_BODY_TIMEOUT_S, MAX_ADMIN_BODY_BYTES
from flashsale.service.bodies import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_ID,
    MAX_JSON_DEPTH,
    AccountIn,
    CaptchaSolveIn,
    CartIn,
    CheckoutIn,
    ResaleIn,
    ReviewIn,
)

__all__ = ["OPERATIONS", "openapi_spec"]

_ERR = "JSON error {error, detail, field}"
_BUSY = {
    "429": "rate_limited (Retry-After)",
    "503": "overloaded: queue full | queue timeout (Retry-After)",
    "499": "abandoned: still queued when the client's X-Patience-S ran out",
}
_BAD = {
    "400": f"malformed_json (not JSON, or nested more than {MAX_JSON_DEPTH} levels)",
    "408": f"body_timeout: the body did not arrive within {BODY_TIMEOUT_S:g} s",
    "413": f"body over {MAX_BODY_BYTES // 1024} KiB",
    "422": "invalid body",
}
_ID_PARAMS = {"order_id", "challenge_id", "account"}
"""Path parameters that are ids: ASCII digits (else 404)."""

_ACCOUNT_QUERY = {
    "name": "account",
    "in": "query",
    "required": True,
    "description": "the account asking: an order answers only to the account that placed it",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
}
_QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/v1/orders/{order_id}"): [_ACCOUNT_QUERY],
    ("POST", "/admin/reset"): [
        {
            "name": "opens_in_s",
            "in": "query",
            "required": False,
            "schema": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
        },
        {
            "name": "replication",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "maximum": 10**6},
        },
    ],
}

OPERATIONS: dict[tuple[str, str], tuple[str, type[BaseModel] | None, dict[str, str]]] = {
    ("GET", "/v1/sale"): (
        "Sale status: sku, open, opens_in_s, closes_in_s, phase, units, stock_left, channels",
        None,
        {"200": "sale status", "503": _BUSY["503"], "499": _BUSY["499"]},
    ),
    ("POST", "/v1/cart"): (
        "Add to cart: reserve units with a hold that expires (header X-Forwarded-For: client IP)",
        CartIn,
        {
            "201": "{reservation_id, units, expires_in_s}",
            "403": "limit_reached | captcha_required | not_admitted",
            "409": "sold_out | sale_closed",
            "425": "not_open (Retry-After)",
            **_BUSY,
            **_BAD,
        },
    ),
    ("POST", "/v1/checkout"): (
        "Pay for a reservation; header Idempotency-Key: same key and body, same answer",
        CheckoutIn,
        {
            "201": "{order_id, reservation_id, units}",
            "402": "payment_failed (hold released)",
            "504": "payment_timeout (hold released)",
            "404": "unknown_reservation",
            "409": "already_paid | idempotency_key_reused | request_in_progress",
            "410": "hold_expired",
            **_BUSY,
            **_BAD,
        },
    ),
    ("GET", "/v1/orders/{order_id}"): (
        "Order status, for the account that placed it (?account=); to any other account "
        "the order does not exist (404)",
        None,
        {
            "200": "{order_id, reservation_id, account, channel, units, status}",
            "404": "unknown_order (or not this account's)",
            "422": "invalid_query: account missing or not an id",
            "503": _BUSY["503"],
            "499": _BUSY["499"],
        },
    ),
    ("POST", "/v1/orders/{order_id}/cancel"): (
        "Cancel one's own order; the units go back to the stock",
        AccountIn,
        {"200": "the cancelled order", "404": "unknown_order (or not this account's)", **_BAD},
    ),
    ("POST", "/v1/captcha"): (
        "A CAPTCHA challenge",
        AccountIn,
        {"201": "{challenge_id, prompt}", **_BUSY, **_BAD},
    ),
    ("POST", "/v1/captcha/{challenge_id}"): (
        "Answer a challenge (one try); a right answer gives a single-use captcha_token",
        CaptchaSolveIn,
        {
            "200": "{captcha_token, expires_in_s}",
            "403": "wrong_answer",
            "404": "unknown_challenge",
            "409": "challenge_used",
            **_BAD,
        },
    ),
    ("POST", "/v1/waiting-room"): (
        "Join the waiting room (one ticket per account; before the opening: the pre-queue, "
        "shuffled at the opening)",
        AccountIn,
        {
            "201": "{ticket, admitted, admission_token?, session_ends_in_s?, waiting?, "
            "opens_in_s?, retry_after_s}",
            "409": "waiting_room_off | sale_closed",
            **_BUSY,
            **_BAD,
        },
    ),
    ("GET", "/v1/waiting-room/{ticket}"): (
        "Poll a ticket: admitted with an admission_token (send it to the cart), or still "
        "waiting (poll again after retry_after_s)",
        None,
        {
            "200": "{ticket, admitted, admission_token?, session_ends_in_s?, waiting?, "
            "opens_in_s?, retry_after_s}",
            "404": "unknown_ticket",
            "409": "waiting_room_off",
        },
    ),
    ("POST", "/v1/lottery"): (
        "Enter the lottery during its entry window (from the opening, entry_window_s long)",
        AccountIn,
        {
            "201": "{account, draw_in_s}",
            "409": "already_entered (body has draw_in_s) | lottery_off",
            "410": "entries_closed",
            "425": "not_open (Retry-After)",
            **_BUSY,
            **_BAD,
        },
    ),
    ("GET", "/v1/lottery/{account}"): (
        "Lottery result for an account; winners may add to the cart until the claim window ends",
        None,
        {
            "200": "{account, entered, drawn, won, draw_in_s? | claim_closes_in_s?}",
            "404": "unknown_account",
            "409": "lottery_off",
        },
    ),
    ("POST", "/admin/reset"): (
        "Start a sale afresh from a resolved scenario (query: opens_in_s, replication)",
        None,
        {
            "200": "sale status",
            "400": _BAD["400"],
            "401": "no admin token",
            "408": f"body_timeout: the body did not arrive within {ADMIN_BODY_TIMEOUT_S:g} s",
            "413": f"body over {MAX_ADMIN_BODY_BYTES // 2**20} MiB",
            "422": "invalid_scenario | invalid_query",
        },
    ),
    ("POST", "/admin/defenses"): (
        "Switch defenses: a partial [defenses] table, plus optional captcha_delay_s",
        None,
        {"200": "the defenses now in force", "401": "no admin token", "422": "invalid"},
    ),
    ("POST", "/admin/review"): (
        "Post-hoc review of every paid order with [defenses.review]'s error rates; "
        "bot_accounts is the truth the detector guesses at. Flagged orders are cancelled, "
        "their units back in the stock (for a re-sale)",
        ReviewIn,
        {
            "200": "{reviewed_orders, bot_orders, cancelled_orders, cancelled_units, "
            "flagged_bot_orders, flagged_human_orders, stock_left}",
            "401": "no admin token",
            "409": "review_off",
            "422": "invalid body",
        },
    ),
    ("POST", "/admin/resale"): (
        "Open a re-sale",
        ResaleIn,
        {"200": "sale status and units_added", "401": "no admin token", "422": "invalid"},
    ),
    ("GET", "/admin/audit"): (
        "Every reservation and order, with totals recomputed from the rows",
        None,
        {
            "200": "{units, units_sold, units_reserved, stock_left, oversold_units, orders, "
            "cancelled_units, channels, reservations, order_rows}",
            "401": "no admin token",
        },
    ),
    ("GET", "/healthz"): ("Liveness (outside the worker pool)", None, {"200": "{ok: true}"}),
}


def _path_param(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name in _ID_PARAMS:
        schema["pattern"] = "^[0-9]{1,19}$"
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(
    method: str,
    path: str,
    summary: str,
    body: type[BaseModel] | None,
    responses: dict[str, str],
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {code: {"description": text} for code, text in sorted(responses.items())},
    }
    params = [_path_param(name) for name in re.findall(r"{(\w+)}", path)]
    params += _QUERY.get((method, path), [])
    if path.startswith("/admin/"):
        op["security"] = [{"adminToken": []}]
    if path == "/v1/checkout":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            }
        )
    if path.startswith("/v1/"):
        params.append(
            {
                "name": "X-Patience-S",
                "in": "header",
                "required": False,
                "description": "seconds this client waits for a worker; 499 if still queued then",
                "schema": {"type": "number", "minimum": 0},
            }
        )
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
    return op


def openapi_spec(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The document for ``routes``; KeyError names a route with no entry in OPERATIONS."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            key = (method, route.path)
            if key not in OPERATIONS:
                raise KeyError(f"{method} {route.path} is not documented in OPERATIONS")
            summary, body, responses = OPERATIONS[key]
            paths.setdefault(route.path, {})[method.lower()] = _operation(
                method, route.path, summary, body, responses
            )
    return {
        "openapi": "3.1.0",
        "info": {"title": "flashsale reference checkout service", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }
