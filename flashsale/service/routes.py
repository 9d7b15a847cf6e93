"""The public ``/v1`` endpoints (see the package docstring for shapes and statuses).

Every handler runs inside a worker slot of its step's pool (``[service.pools.*]``:
the cart and the checkout their steps' pools, everything else the view's; one pool
for all by default), so a flash sale meets the same finite workers and bounded
queues as in the simulation. Each answer from a worker, and each 503/499 from its
queue, carries ``Server-Timing``: ``queue`` (waited for a worker), ``service`` (on
the worker) and, for a payment that reached it, ``gateway`` (ms). The body is
received before the request queues (:func:`~flashsale.service.bodies.receive_body`):
a worker is never held waiting for a client. Order of checks in add-to-cart: the
body, then rate limits, then the clock, then the defenses, then the stock: a
request refused early costs no database write.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flashsale.service.bodies import (
    AccountIn,
    ApiError,
    CaptchaSolveIn,
    CartIn,
    CheckoutIn,
    error_response,
    parse_id,
    read_body,
    receive_body,
)
from flashsale.service.guards import CAPTCHA_TOKEN_TTL_S
from flashsale.service.limiter import Abandoned, CapacityLimiter, Overloaded, Timing
from flashsale.service.runtime import Runtime
from flashsale.service.store import Charge

__all__ = ["in_worker", "path_id", "public_routes", "runtime"]

Handler = Callable[[Request], Awaitable[Response]]


def _patience(request: Request) -> float:
    """Seconds the client waits for a worker (``X-Patience-S``); unbounded if absent or
    not a finite number >= 0."""
    try:
        p = float(request.headers.get("x-patience-s", "inf"))
    except ValueError:
        return math.inf
    return p if 0 <= p < math.inf else math.inf


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_ip(request: Request) -> str:
    """The client's IP: the first X-Forwarded-For hop (one per bot operator or human in a
    replay), else the socket's peer."""
    fwd = request.headers.get("x-forwarded-for")
    if fwd:
        return fwd.split(",", 1)[0].strip()
    return request.client.host if request.client else "?"


def in_worker(handler: Handler, step: str = "view") -> Handler:
    """Run ``handler`` holding a worker of ``step``'s pool (a SERVICE_STEPS name); 503
    if none comes in time, 499 if the client's patience (``X-Patience-S``) ran out
    first. Every answer carries ``Server-Timing`` (its :class:`Timing`; the queue wait
    alone when no worker came). The body is received first, outside the workers (408
    if it does not arrive in time, 413 if too large): a client that sends part of a
    body must not hold a worker."""

    async def wrapped(request: Request) -> Response:
        await receive_body(request)
        limiter = runtime(request).limiters[step]
        request.state.limiter = limiter
        request.state.load = limiter.occupancy  # met on arrival, itself not counted
        try:
            async with limiter.slot(_patience(request)) as timing:
                request.state.timing = timing
                try:
                    await runtime(request).work(step)
                    response = await handler(request)
                except ApiError as e:
                    response = error_response(e)
        except Overloaded as e:
            response = error_response(
                ApiError(
                    503,
                    "overloaded",
                    f"service overloaded ({e.reason})",
                    None,
                    e.retry_after_s,
                    extra={"reason": e.reason.replace(" ", "_")},  # queue_full, queue_timeout
                )
            )
            timing = Timing(queue_s=e.waited_s)
        except Abandoned as e:
            response = error_response(
                ApiError(499, "abandoned", "the client stopped waiting for a worker")
            )
            timing = Timing(queue_s=e.waited_s)
        response.headers["Server-Timing"] = timing.header()
        return response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def sale(request: Request) -> Response:
    """Sale status: is it open, when it opens, stock left."""
    return JSONResponse(await runtime(request).status(runtime(request).clock()))


def _sale_clock(rt: Runtime, now: float) -> None:
    """425 before the opening, 409 after the close (of the current phase)."""
    r = rt.record
    if now < r.opens_at:
        raise ApiError(
            425, "not_open", f"the sale opens in {r.opens_at - now:.3f} s", None, r.opens_at - now
        )
    if now >= rt.closes_at():
        raise ApiError(409, "sale_closed", "the sale is over")


async def cart(request: Request) -> Response:
    """Add to cart: reserve units with a hold that expires."""
    rt = runtime(request)
    body = await read_body(request, CartIn)
    if body.sku != rt.scenario.sale.sku:
        raise ApiError(422, "unknown_sku", f"no product {body.sku!r} on sale", "sku")
    channel = body.channel if body.channel is not None else rt.channels[0]
    if channel not in rt.channels:
        raise ApiError(
            422, "unknown_channel", f"channel {channel!r}; channels: {rt.channels}", "channel"
        )
    now = rt.clock()
    t = rt.t(now)
    g = rt.guards
    g.rate(body.account, client_ip(request), t)
    _sale_clock(rt, now)
    if g.lottery is not None and rt.record.phase == "main":
        g.lottery.check(body.account, t)
    if g.room is not None:
        g.room.check(body.account, body.admission_token, t)
    g.check_captcha(body.account, body.captcha_token, t)
    g.check_limit(body.account, body.units)
    hold_s = rt.scenario.service.cart_hold_s
    got = await rt.store.reserve(body.account, channel, body.units, now, hold_s, g.max_units)
    if got == "sold_out":
        raise ApiError(409, "sold_out", f"no {body.units} units left on {channel}")
    if got == "limit_reached":
        g.check_limit(body.account, body.units)  # the mirror was behind the database
        raise ApiError(403, "limit_reached", "account limit reached", "units")
    g.reserved(body.account, body.units, body.captcha_token)
    return JSONResponse(
        {"reservation_id": got.reservation_id, "units": got.units, "expires_in_s": hold_s},
        status_code=201,
    )


async def checkout(request: Request) -> Response:
    """Pay for a reservation, idempotently.

    The hold is checked when this worker takes the request (410 if it has expired)
    and is then the payment's until the gateway answers: paid sells the units
    (201) even if the cart's hold time ran out during the gateway's wait; declined
    (402) or timed out (504) gives them back to the stock. The gateway's verdict
    is drawn at the load the payment met when it reached its pool (requests in
    service and queued there per worker, itself not counted: as in the simulator).
    The payment gives its worker back for the gateway's wait and does not queue for
    one again: the commit that follows holds none (the simulator's payment: its time
    on a worker, then the gateway)."""
    rt = runtime(request)
    key = request.headers.get("idempotency-key", "")
    if not 1 <= len(key) <= 200:
        raise ApiError(
            400,
            "missing_idempotency_key",
            "send header Idempotency-Key (1-200 characters), one per payment attempt",
            "Idempotency-Key",
        )
    body = await read_body(request, CheckoutIn)
    rt.guards.rate(body.account, client_ip(request), rt.t(rt.clock()))
    limiter: CapacityLimiter = request.state.limiter
    timing: Timing = request.state.timing
    load: float = request.state.load
    gateway = rt.gateway

    async def outside_worker(answer: Awaitable[Charge]) -> Charge:
        async with limiter.leave(timing):
            return await answer

    def charge() -> Charge | Awaitable[Charge]:  # called in the worker, hold claimed
        pending = gateway.start(load)
        if isinstance(pending, str):  # an instant gateway
            timing.gateway_s = 0.0
            return pending
        return outside_worker(pending)

    digest = hashlib.sha256(f"{body.reservation_id}:{body.account}".encode()).hexdigest()
    reply = await rt.store.checkout(
        key,
        digest,
        body.reservation_id,
        body.account,
        rt.clock,
        charge,
        stale_after_s=gateway.give_up_s,
    )
    if timing.away_s:  # the only time a payment spends outside its worker
        timing.gateway_s = timing.away_s
    if reply.released is not None:
        rt.guards.release(*reply.released)
    if reply.status == 201 and rt.guards.room is not None:
        rt.guards.room.leave(body.account, rt.t(rt.clock()))
    headers = {"Retry-After": "1"} if reply.body.get("error") == "request_in_progress" else None
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)


def path_id(request: Request, name: str, error: str) -> int:
    """The path parameter ``name`` as an id (:func:`~flashsale.service.bodies.parse_id`);
    404 ``error`` if it is not one (no such thing can exist)."""
    raw = request.path_params[name]
    found = parse_id(raw)
    if found is None:
        raise ApiError(404, error, f"no {name.removesuffix('_id')} {raw!r:.40}", name)
    return found


def _account_query(request: Request) -> int:
    """``?account=`` (required): the account asking, as in every request's body."""
    raw = request.query_params.get("account")
    found = None if raw is None else parse_id(raw)
    if found is None:
        detail = "required" if raw is None else f"{raw!r:.40} is not an account id"
        raise ApiError(422, "invalid_query", f"account: {detail}", "account")
    return found


async def order(request: Request) -> Response:
    """An order's status, for the account that placed it (``?account=``): anyone else
    gets 404, as for an order that does not exist, so ids reveal nothing."""
    rt = runtime(request)
    oid = path_id(request, "order_id", "unknown_order")
    account = _account_query(request)
    found = await rt.store.order(oid, account)
    if found is None:
        raise ApiError(404, "unknown_order", f"no order {oid} of this account", "order_id")
    return JSONResponse(found)


async def cancel(request: Request) -> Response:
    """Cancel one's own paid order; its units go back to the stock."""
    rt = runtime(request)
    oid = path_id(request, "order_id", "unknown_order")
    body = await read_body(request, AccountIn)
    done = await rt.store.cancel(oid, body.account)
    if done is None:
        raise ApiError(404, "unknown_order", f"no order {oid} of this account", "order_id")
    rt.guards.release(body.account, int(done["units"]))
    return JSONResponse(done)


async def captcha(request: Request) -> Response:
    """A CAPTCHA challenge for an account."""
    rt = runtime(request)
    body = await read_body(request, AccountIn)
    rt.guards.rate(body.account, client_ip(request), rt.t(rt.clock()))
    cid, prompt = rt.guards.challenge(body.account)
    return JSONResponse({"challenge_id": cid, "prompt": prompt}, status_code=201)


async def captcha_solve(request: Request) -> Response:
    """Answer a challenge; a right answer gives a single-use captcha_token."""
    rt = runtime(request)
    cid = path_id(request, "challenge_id", "unknown_challenge")
    body = await read_body(request, CaptchaSolveIn)
    if rt.guards.captcha_delay_s > 0:  # the provider's verification call
        async with request.state.limiter.leave(request.state.timing):
            await asyncio.sleep(rt.guards.captcha_delay_s)
    token = rt.guards.solve(cid, body.account, body.answer, rt.t(rt.clock()))
    return JSONResponse({"captcha_token": token, "expires_in_s": CAPTCHA_TOKEN_TTL_S})


async def waiting_room_join(request: Request) -> Response:
    """Join the waiting room: a ticket, admitted at once or later."""
    rt = runtime(request)
    body = await read_body(request, AccountIn)
    room = rt.guards.room
    if room is None:
        raise ApiError(409, "waiting_room_off", "the waiting room is off")
    now = rt.clock()
    rt.guards.rate(body.account, client_ip(request), rt.t(now))
    if now >= rt.closes_at():
        raise ApiError(409, "sale_closed", "the sale is over")
    return JSONResponse(room.join(body.account, rt.t(now)), status_code=201)


async def waiting_room_poll(request: Request) -> Response:
    """A ticket's state: admitted (with its admission_token) or still waiting."""
    rt = runtime(request)
    room = rt.guards.room
    if room is None:
        raise ApiError(409, "waiting_room_off", "the waiting room is off")
    return JSONResponse(room.poll(request.path_params["ticket"], rt.t(rt.clock())))


async def lottery_enter(request: Request) -> Response:
    """Enter the lottery during its entry window."""
    rt = runtime(request)
    body = await read_body(request, AccountIn)
    lottery = rt.guards.lottery
    if lottery is None:
        raise ApiError(409, "lottery_off", "the lottery is off")
    t = rt.t(rt.clock())
    rt.guards.rate(body.account, client_ip(request), t)
    draw_in_s = round(lottery.entries_close - t, 3)
    if not lottery.enter(body.account, t):
        return JSONResponse(
            {
                "error": "already_entered",
                "detail": f"account {body.account} has entered already",
                "field": "account",
                "account": body.account,
                "draw_in_s": draw_in_s,
            },
            status_code=409,
        )
    return JSONResponse({"account": body.account, "draw_in_s": draw_in_s}, status_code=201)


async def lottery_result(request: Request) -> Response:
    """Whether an account entered, whether the draw happened, whether it won."""
    rt = runtime(request)
    lottery = rt.guards.lottery
    if lottery is None:
        raise ApiError(409, "lottery_off", "the lottery is off")
    account = path_id(request, "account", "unknown_account")
    return JSONResponse(lottery.result(account, rt.t(rt.clock())))


def public_routes() -> list[Route]:
    return [
        Route("/v1/sale", in_worker(sale), methods=["GET"]),
        Route("/v1/cart", in_worker(cart, "cart"), methods=["POST"]),
        Route("/v1/checkout", in_worker(checkout, "pay"), methods=["POST"]),
        Route("/v1/orders/{order_id}", in_worker(order), methods=["GET"]),
        Route("/v1/orders/{order_id}/cancel", in_worker(cancel), methods=["POST"]),
        Route("/v1/captcha", in_worker(captcha), methods=["POST"]),
        Route("/v1/captcha/{challenge_id}", in_worker(captcha_solve), methods=["POST"]),
        # the waiting room stands in front of the checkout (as the products do, at the
        # edge): its visits take no checkout worker, as in the simulation
        Route("/v1/waiting-room", waiting_room_join, methods=["POST"]),
        Route("/v1/waiting-room/{ticket}", waiting_room_poll, methods=["GET"]),
        Route("/v1/lottery", in_worker(lottery_enter), methods=["POST"]),
        Route("/v1/lottery/{account}", in_worker(lottery_result), methods=["GET"]),
    ]
