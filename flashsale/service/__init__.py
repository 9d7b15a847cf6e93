"""The reference checkout service: a real HTTP service with a real database.

It is the default target of ``flashsale replay`` and a fair baseline for what a
well-built checkout does under a flash sale: atomic stock (a conditional UPDATE in
a transaction), holds that expire, idempotent payment, a bounded queue in front of
finite workers, and the scenario's defenses switchable at run time. Start it with
``flashsale serve`` or, from Python, :func:`run_in_background`.

Times are seconds; sale time ``t`` is seconds from the opening (negative before).
Accounts are integers >= 0 (the Outcome contract's account ids); there is no user
authentication: the account a request names is who asks (an order answers only to
it). Every error is JSON ``{"error": "<code>", "detail": "<what is wrong>", "field":
"<name>"|null}``; bad input never reaches the stock and never gives a 5xx: bodies
over 16 KiB get 413, bodies nested more than 32 levels deep 400, ids in a path are
1-19 ASCII digits (anything else, ``\u00b2`` or ``\u0661`` too, is 404 as an id
that does not exist). A body is received whole before its request queues for a
worker, within 5 s of the request's head (``BODY_TIMEOUT_S``; then 408
``body_timeout``): a client that sends part of a body holds a connection, never a
worker.

Public API (the replay's built-in target protocol, flashsale/protocols/reference.toml,
speaks it; OpenAPI 3.1 at ``GET /openapi.json``; ``GET /healthz`` -> ``{"ok": true}``
bypasses the queue).
Every answer each step can give, and what it means. Any ``/v1`` request may also
get 503 ``overloaded`` (Retry-After): no worker took it within ``queue_timeout_s``
or the queue was full; it changed nothing, send it again. A request may say how
long its client waits for a worker (header ``X-Patience-S``, seconds): still
queued then, it leaves unserved with 499 ``abandoned`` (changed nothing), as the
simulated buyer's patience runs out. The cart and the checkout queue for the
workers of their steps' pools, every other ``/v1`` request for the view's
(``[service.pools.*]``; one pool for all by default). Every answer from a worker
carries ``Server-Timing: queue;dur=<ms>, service;dur=<ms>`` (waited for a worker,
held one), plus ``gateway;dur=<ms>`` for a payment that reached the gateway; a 503
or 499 from the queue carries ``queue`` alone. A bad body gets 400
``malformed_json``, 408 ``body_timeout``, 413 ``body_too_large`` or 422
``invalid_body`` (``field`` names the culprit) and changes nothing::

    GET  /v1/sale                the view
         200 {"sku", "open": bool, "opens_in_s" (0 once open), "closes_in_s", "units",
             "stock_left", "phase": "main"|"resale", "channels": {name: left}}
             always: the buyer reads "open" and "stock_left" (units not held or sold)
    POST /v1/cart                {"account", "sku", "units", "channel"?, "captcha_token"?,
                                  "admission_token"?}; header X-Forwarded-For = client IP
         201 {"reservation_id", "units", "expires_in_s"}  the units left the stock and
             are held for this account for cart_hold_s: pay before then
         409 sold_out            fewer units left on the channel than asked
         409 sale_closed         the sale (lottery on: its claim window) is over
         425 not_open            before the opening (lottery on: before its draw);
                                 Retry-After = until then
         429 rate_limited        the account's or the IP's token bucket is empty
                                 (Retry-After)
         403 limit_reached       the account may hold or buy no more units ("units")
         403 captcha_required    CAPTCHA on: no live captcha_token of this account
                                 (a token is good for one hold)
         403 not_admitted        waiting room on: no admission_token of this account in
                                 session; lottery on: the account did not win
         422 unknown_sku | unknown_channel
    POST /v1/checkout            {"reservation_id", "account"} + header Idempotency-Key
         201 {"order_id", "reservation_id", "units"}  paid: the units are sold to this
             account, however long the gateway took (see the payment rule below)
         402 payment_failed      the gateway declined; the units went back to the
                                 stock: cart again
         504 payment_timeout     the gateway did not answer within payment.timeout_s
                                 (or the service gave the payment up, below); the
                                 units went back to the stock: cart again
         410 hold_expired        the hold is gone: its time was up when a worker took
                                 this request, a failed payment released it, or its
                                 order was cancelled: cart again
         404 unknown_reservation no such reservation of this account
         409 already_paid        the reservation is paid ("order_id" says which order)
         409 idempotency_key_reused  this key came with another body: use a new key
         409 request_in_progress this key, or another payment of this reservation, is
                                 being processed (Retry-After): ask again with the
                                 same key to get its outcome
         429 rate_limited        as for the cart; the hold is untouched
         400 missing_idempotency_key
             201, 402, 504, 410, 404 and 409 already_paid are stored under the key:
             the same key and body always get the same answer and never take stock
             twice. The others are not stored (nothing was decided). Retry a failed
             payment with a *new* key (it gets 410: cart again).
    GET  /v1/orders/{order_id}?account=N  200 {"order_id", "reservation_id", "account",
                                 "channel", "units", "created_at",
                                 "status": "paid"|"cancelled"}
                                 | 404 unknown_order: no such order, or not account N's
                                 (an order answers only to the account that placed it:
                                 order ids are sequential, so to anyone else an order
                                 is as absent as one never placed)
                                 | 422 invalid_query (account missing or not an id)
    POST /v1/orders/{order_id}/cancel  {"account"} -> 200 the order, "cancelled" (units
                                 back to the stock) | 404 unknown_order (or not this
                                 account's)
    POST /v1/captcha             {"account"} -> 201 {"challenge_id", "prompt"} | 429
    POST /v1/captcha/{id}        {"account", "answer"} -> 200 {"captcha_token",
                                 "expires_in_s"} | 403 wrong_answer (ask for a new
                                 challenge) | 404 unknown_challenge | 409 challenge_used
    POST /v1/waiting-room        {"account"} -> 201 {"ticket", "admitted": bool,
                                 "admission_token"?, "session_ends_in_s"?, "waiting"?,
                                 "opens_in_s"?, "retry_after_s"} | 409 waiting_room_off
                                 | sale_closed | 429. One ticket per account while it waits or
                                 is in session; joined before the opening = the pre-queue,
                                 shuffled at the opening
    GET  /v1/waiting-room/{ticket} -> 200 the same shape | 404 unknown_ticket
                                 | 409 waiting_room_off; "waiting" = visitors not yet
                                 admitted (the room has no per-visitor position); poll
                                 again after retry_after_s
    POST /v1/lottery             {"account"} -> 201 {"account", "draw_in_s"}
                                 | 409 already_entered (with "draw_in_s") | lottery_off
                                 | 425 not_open (Retry-After) | 410 entries_closed | 429
    GET  /v1/lottery/{account}   -> 200 {"account", "entered", "drawn": bool, "won": bool,
                                 "draw_in_s" (before the draw) | "claim_closes_in_s"}
                                 | 404 unknown_account | 409 lottery_off

Payment rule (the simulator's too, flashsale.sim.stock): a hold lives while
``now < expires_at`` (``cart_hold_s`` after the cart). It is checked once, when a
worker takes the pay request: 410 if its time is up. From then on it belongs to
the payment, marked ``paying``: the sweeper and other carts cannot take its units
while the gateway decides, so a payment the gateway accepts is never thrown away
because the cart's time ran out meanwhile. This is what shops do: an authorised
payment is captured and the order kept, and the stock reservation of a checkout in
progress is extended rather than released under it. Paid: the order (201).
Declined (402) or timed out (504): the units go back to the stock at once, the
hold is gone (a later pay on it: 410) and the buyer must cart again. A payment
still unfinished ``payment.timeout_s`` + 30 s after it started (the service was
stopped or stalled mid-payment) is given up: its units go back to the stock and a
"paid" arriving later is voided (504). A pay refused before its hold was checked
(429, 503, 400, 422) leaves the hold as it was.

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
Retry-After). With ``emulate_step_s`` each request also holds its worker for a draw
of its step's ``step_s``. The payment gateway waits ``payment.gateway_s`` outside the
workers, and the payment takes no worker again after it (slower than ``timeout_s``:
504 after ``timeout_s``) and declines with the
scenario's probability at the load the payment met when it reached the pay step's
pool (itself not counted, as in the simulator), drawn from the ``payment`` random
stream of the scenario's seed.
"""

from __future__ import annotations

from flashsale.service.app import create_app
from flashsale.service.runtime import Runtime
from flashsale.service.server import ServiceURL, run_in_background

__all__ = ["Runtime", "ServiceURL", "create_app", "run_in_background"]
