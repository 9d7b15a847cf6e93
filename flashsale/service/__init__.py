"""The reference checkout service: a real HTTP service with a real database.

It is the default target of ``flashsale replay`` and a fair baseline for what a
well-built checkout does under a flash sale: atomic stock (a conditional UPDATE in
a transaction), holds that expire, idempotent payment, a bounded queue in front of
finite workers, and the scenario's defenses switchable at run time. Start it with
``flashsale serve`` or, from Python, :func:`run_in_background`.

Times are seconds; sale time ``t`` is seconds from the opening (negative before).
Accounts are integers >= 0 (the Outcome contract's account ids). Every error is
JSON ``{"error": "<code>", "detail": "<what is wrong>", "field": "<name>"|null}``;
bad input never reaches the stock and never gives a 500. Bodies over 16 KiB: 413.

Public API (paths are the scenario's ``[target.paths]`` defaults; OpenAPI 3.1 at
``GET /openapi.json``; ``GET /healthz`` -> ``{"ok": true}`` bypasses the queue)::

    GET  /v1/sale                -> 200 {"sku", "open": bool, "opens_in_s" (0 once open),
                                         "closes_in_s", "units", "stock_left", "phase":
                                         "main"|"resale", "channels": {name: left}}
    POST /v1/cart                {"account", "sku", "units", "channel"?, "captcha_token"?,
                                  "admission_token"?}; header X-Forwarded-For = client IP
                                 -> 201 {"reservation_id", "units", "expires_in_s"}
                                 |  409 sold_out | sale_closed
                                 |  425 not_open (Retry-After)
                                 |  429 rate_limited (Retry-After)
                                 |  403 limit_reached | captcha_required | not_admitted
                                 |  503 overloaded (Retry-After) | 422 bad input
    POST /v1/checkout            {"reservation_id", "account"} + header Idempotency-Key
                                 -> 201 {"order_id", "reservation_id", "units"}
                                 |  402 payment_failed | 504 payment_timeout
                                 |  410 hold_expired | 404 unknown_reservation
                                 |  409 already_paid | idempotency_key_reused
                                 |      | request_in_progress (Retry-After)
                                 |  400 missing Idempotency-Key | 429 | 503 | 422
                                 The response to a key is stored: the same key and body
                                 always get the same answer and never take stock twice;
                                 retry a failed payment with a *new* key.
    GET  /v1/orders/{order_id}   -> 200 {"order_id", "reservation_id", "account", "sku",
                                         "channel", "units", "status": "paid"|"cancelled"}
    POST /v1/orders/{order_id}/cancel  {"account"} -> 200 order (units back to the stock)
    POST /v1/captcha             {"account"} -> 201 {"challenge_id", "prompt"}
    POST /v1/captcha/{id}        {"account", "answer"} -> 200 {"captcha_token",
                                 "expires_in_s"} | 403 wrong_answer | 404
    POST /v1/waiting-room        {"account"} -> 201 {"ticket", "admitted": bool,
                                 "admission_token"?, "session_ends_in_s"?, "waiting"?,
                                 "opens_in_s"?, "retry_after_s"} | 409 waiting_room_off
                                 | sale_closed. One ticket per account while it waits or
                                 is in session; joined before the opening = the pre-queue,
                                 shuffled at the opening
    GET  /v1/waiting-room/{ticket} -> 200 the same shape | 404 unknown_ticket;
                                 "waiting" = visitors not yet admitted (the room has no
                                 per-visitor position); poll again after retry_after_s
    POST /v1/lottery             {"account"} -> 201 {"account", "draw_in_s"}
                                 | 409 already_entered (with "draw_in_s") | lottery_off
                                 | 425 not_open (Retry-After) | 410 entries_closed
    GET  /v1/lottery/{account}   -> 200 {"account", "entered", "drawn": bool, "won": bool,
                                 "draw_in_s" (before the draw) | "claim_closes_in_s"}

Admission (scenario ``[defenses]``, rules from :mod:`flashsale.defenses`): with the
waiting room on, the cart needs ``admission_token``, the account's own, during its
session (``session_s``; paying ends it and frees the slot): else 403
``not_admitted``. The room admits ``new_users_per_min`` as a steady flow, at most
``max_active`` in session, pre-queue shuffled from the ``defense.waiting_room``
stream. With the lottery on, entries run from the opening for ``entry_window_s``;
the draw (``winners``, default units / humans.units_per_order, from the
``defense.lottery`` stream) happens at its end; then for ``claim_window_s`` only
winners may add to the cart (403 ``not_admitted`` for others, 425 before the draw,
409 after); the sale stays open at least that long. A re-sale phase is open to
all. Room and lottery state is in memory: a restart or a defense switch empties it.

Admin API (header ``Authorization: Bearer <admin token>``, else 401)::

    POST /admin/reset[?opens_in_s=0&replication=0]  body: a resolved scenario
                                 (Scenario.to_toml_dict()) -> 200 sale status;
                                 wipes orders, reservations and defense state
    POST /admin/defenses         body: a partial [defenses] table, merged and validated
                                 like the scenario; optional "captcha_delay_s" -> 200
    POST /admin/review           {"bot_accounts": [int]} -> 200 {"reviewed_orders",
                                 "bot_orders", "cancelled_orders", "cancelled_units",
                                 "flagged_bot_orders", "flagged_human_orders",
                                 "stock_left"} | 409 review_off
                                 Every paid order gets one draw of the shared review
                                 rule (defense.review stream, oldest order first);
                                 bot_accounts is the truth the detector guesses at (the
                                 replay knows it). Flagged orders are cancelled and their
                                 units go back to the stock: a re-sale offers them.
    POST /admin/resale           {"opens_in_s"?, "units"?, "window_s"?} -> 200 sale status
    GET  /admin/audit            -> 200 {"units", "units_sold", "units_reserved",
                                 "stock_left", "oversold_units", "orders",
                                 "reservations": [...], "order_rows": [...]}

Capacity (scenario ``[service]``): at most ``workers`` requests are served at once,
at most ``queue_limit`` wait, none longer than ``queue_timeout_s`` (then 503 with
Retry-After). The payment gateway waits ``payment.gateway_s`` outside the workers
(``timeout_s`` caps it: 504) and fails with the scenario's load-dependent
probability, drawn from the ``payment`` random stream of the scenario's seed.
"""

from __future__ import annotations

from flashsale.service.app import create_app
from flashsale.service.runtime import Runtime
from flashsale.service.server import ServiceURL, run_in_background

__all__ = ["Runtime", "ServiceURL", "create_app", "run_in_background"]
