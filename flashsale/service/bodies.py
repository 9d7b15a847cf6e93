"""Request bodies and the errors that bad input gets.

Validation happens here, before any handler logic: a body that is not JSON, too
large, of the wrong shape or with a bad value becomes an :class:`ApiError` naming
the field, never a 500 and never a stock change. Models are strict: ``"1"`` or
``true`` is not a number of units.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from flashsale.checkout import retry_after_header

__all__ = [
    "MAX_BODY_BYTES",
    "AccountIn",
    "ApiError",
    "CaptchaSolveIn",
    "CartIn",
    "CheckoutIn",
    "ResaleIn",
    "ReviewIn",
    "error_response",
    "read_body",
    "read_json",
]

MAX_BODY_BYTES = 16 * 1024
"""Larger bodies get 413: no legitimate request here is more than a few hundred bytes."""

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
    body: dict[str, Any] = {"error": e.code, "detail": e.detail, "field": e.field, **e.extra}
    if e.retry_after_s is not None:
        body["retry_after_s"] = round(e.retry_after_s, 3)
    return JSONResponse(body, status_code=e.status, headers=headers)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CartIn(_Body):
    """Add to cart: reserve ``units`` of ``sku`` on ``channel`` (default: the first)."""

    account: AccountId
    sku: str = Field(min_length=1, max_length=64)
    units: int = Field(ge=1, le=1000)
    channel: str | None = Field(default=None, min_length=1, max_length=64)
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


async def read_json(request: Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON, refusing oversized (413) and malformed (400) bodies."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    if declared is not None:  # the server frames the body by its length: read it at once
        body: bytes | bytearray = await request.body()
    else:  # chunked: count as it comes
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {e}") from None


async def read_body(request: Request, model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    """Parse and validate the body as ``model``; an ApiError names the first bad field."""
    data = await read_json(request, max_bytes)
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
