"""Request bodies, path ids, and the errors that bad input gets.

Validation happens here, before any handler logic: a body that is not JSON, too
large, too deeply nested, of the wrong shape or with a bad value becomes an
:class:`ApiError` naming the field, never a 500 and never a stock change. Models
are strict: ``"1"`` or ``true`` is not a number of units.

A body is received whole (:func:`receive_body`) before its request queues for a
worker, within :data:`BODY_TIMEOUT_S`: a client that declares a body and sends
only part of it holds a connection, never a worker (issue 13: 16 such clients, as
many as the workers, made every other request wait and get 503 for as long as
they stayed open).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from flashsale.checkout import retry_after_header
from flashsale.scenario import MAX_SKU_CHARS

__all__ = [
    "BODY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "AccountIn",
    "ApiError",
    "CaptchaSolveIn",
    "CartIn",
    "CheckoutIn",
    "ResaleIn",
    "ReviewIn",
    "error_response",
    "parse_id",
    "read_body",
    "read_json",
    "receive_body",
]

MAX_BODY_BYTES = 16 * 1024
"""Larger bodies get 413: no legitimate request here is more than a few hundred bytes."""

BODY_TIMEOUT_S = 5.0
"""A body must arrive whole within this long of its request's head, else 408
``body_timeout``. Public bodies are under 16 KiB (on any working link they take
milliseconds); the body is read before the request queues for a worker, so a slow
client keeps a connection, not a worker, for at most this long."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in a body (a cart needs 1, a scenario 4);
deeper gets 400 ``malformed_json`` (``[`` x 8,000 was a RecursionError, 500)."""

MAX_ID = 2**63 - 1
"""Largest id in a path (an order, a challenge, an account): a 64-bit signed integer."""

_ID = re.compile(r"[0-9]{1,19}")

AccountId = Annotated[int, Field(ge=0, le=2**63 - 1, description="account id")]
Token = Annotated[str, Field(min_length=1, max_length=200)]


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error", "detail", "field"}``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        retry_after_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.extra = extra or {}
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after_s = retry_after_s


def error_response(e: ApiError) -> JSONResponse:
    headers: dict[str, str] = {}
    if e.retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_header(e.retry_after_s))
    if e.status == 408:  # the rest of a late body may still come: no next request here
        headers["Connection"] = "close"
    body: dict[str, Any] = {"error": e.code, "detail": e.detail, "field": e.field, **e.extra}
    if e.retry_after_s is not None:
        body["retry_after_s"] = round(e.retry_after_s, 3)
    return JSONResponse(body, status_code=e.status, headers=headers)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CartIn(_Body):
    """Add to cart: reserve ``units`` of ``sku`` on ``channel`` (default: the first)."""

    account: AccountId
    sku: str = Field(min_length=1, max_length=MAX_SKU_CHARS)
    units: int = Field(ge=1, le=1000)
    channel: str | None = Field(default=None, min_length=1, max_length=MAX_SKU_CHARS)
    captcha_token: Token | None = None
    admission_token: Token | None = None


class CheckoutIn(_Body):
    """Pay for a reservation (with header ``Idempotency-Key``)."""

    reservation_id: int = Field(ge=1, le=2**63 - 1)
    account: AccountId


class AccountIn(_Body):
    """A request made on behalf of one account."""

    account: AccountId


class CaptchaSolveIn(_Body):
    """An answer to a CAPTCHA challenge."""

    account: AccountId
    answer: str = Field(max_length=64)


class ReviewIn(_Body):
    """The post-hoc review's ground truth: which accounts are bots (from the replay)."""

    bot_accounts: list[AccountId] = Field(default_factory=list, max_length=1_000_000)


class ResaleIn(_Body):
    """Open a re-sale: ``units`` more (default: the scenario's rule), from ``opens_in_s``."""

    opens_in_s: float = Field(default=0.0, ge=0, le=30 * 86400)
    units: int | None = Field(default=None, ge=1, le=10**9)
    window_s: float | None = Field(default=None, gt=0, le=30 * 86400)


M = TypeVar("M", bound=BaseModel)


def parse_id(raw: str) -> int | None:
    """A path id: 1-19 ASCII digits up to :data:`MAX_ID`, else None. Not ``int()``,
    which reads ``"\u0661"`` (Arabic-Indic one) as 1, and not ``str.isdigit()``, which
    passes ``"\u00b2"`` (superscript two) that ``int()`` then refuses."""
    if not _ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


async def _receive(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not _ID.fullmatch(declared) or int(declared) > max_bytes):
        raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():  # chunked or not: count as it comes
            body += chunk
            if len(body) > max_bytes:
                raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    except ClientDisconnect:
        raise ApiError(
            400, "incomplete_body", "the connection closed before the body arrived"
        ) from None
    return bytes(body)


async def receive_body(
    request: Request, max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S
) -> bytes:
    """The whole body, received at most once per request: 413 over ``max_bytes``
    (declared or counted), 408 if it has not all arrived within ``timeout_s``."""
    kept: bytes | None = getattr(request.state, "body", None)
    if kept is not None:
        return kept
    try:
        async with asyncio.timeout(timeout_s):  # no task of its own, unlike wait_for
            body = await _receive(request, max_bytes)
    except TimeoutError:
        raise ApiError(
            408,
            "body_timeout",
            f"the request body did not arrive within {timeout_s:g} s",
        ) from None
    request.state.body = body
    return body


def _too_deep(data: Any) -> bool:
    """True if arrays and objects nest more than MAX_JSON_DEPTH levels in ``data``
    (``[]`` is one level). Walked level by level without recursion, containers only:
    a million account ids in one list are one step."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        level = [
            v
            for node in level
            for v in (node.values() if isinstance(node, dict) else node)
            if isinstance(v, dict | list)
        ]
        if not level:
            return False
    return True


async def read_json(
    request: Request, max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S
) -> Any:
    """The body as JSON, refusing oversized (413), late (408), malformed and too deeply
    nested (400) bodies."""
    body = await receive_body(request, max_bytes, timeout_s)
    try:
        data = json.loads(body)
    except RecursionError:  # the parser's own limit, near 1,000 levels
        raise ApiError(400, "malformed_json", _DEEP) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {e}") from None
    if _too_deep(data):
        raise ApiError(400, "malformed_json", _DEEP)
    return data


_DEEP = f"body nested more than {MAX_JSON_DEPTH} levels deep"


async def read_body(
    request: Request,
    model: type[M],
    max_bytes: int = MAX_BODY_BYTES,
    timeout_s: float = BODY_TIMEOUT_S,
) -> M:
    """Parse and validate the body as ``model``; an ApiError names the first bad field."""
    data = await read_json(request, max_bytes, timeout_s)
    if not isinstance(data, dict):
        raise ApiError(
            422, "invalid_body", f"body must be a JSON object, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        shown = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        raise ApiError(422, "invalid_body", f"{field}: {err['msg']}{shown}", field) from None
