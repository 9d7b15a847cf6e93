"""The target protocol: how a replay speaks a checkout's API, declared in TOML.

A replay reaches every target through one mechanism. The ``[target]`` table
says, for each step of a journey, the request to send (method, path template,
headers, a JSON or form body template) and the *answer map*: rules, tried in
order, that turn an answer (status, optional JSON fields, optional body regex)
into a meaning the buyer policy understands (:class:`flashsale.policy.Answer`:
``ok``, ``sold_out``, ``not_open``, ``rate_limited``, ``limit_reached``, ...),
and what to capture from it (a JSON path, a header, a cookie) for later
requests. An answer no rule matches is a *protocol error*: counted per step,
never a success. A lost answer (no response: timeout, reset) is always
``ambiguous``: it may have taken effect, so only steps the policy deems safe
are sent again.

The reference service's API is one such protocol, shipped as
``flashsale/protocols/reference.toml``; a ``[target]`` without ``steps`` uses
it (:func:`reference_target`). Steps (request names; the requests table records
each under the journey step in :data:`RECORDED_AS`)::

    view               the sale page: ok (open, stock left) | sold_out | not_open
    login              optional, once at the start of a journey: ok
    waiting_room       enter: ok (admitted) | not_open (queued: poll)
    waiting_room_poll  ok (admitted) | not_open (poll again)
    lottery            enter: ok
    lottery_poll       ok (won) | rejected (lost) | not_open (not drawn yet)
    captcha            a challenge: ok (capture ``prompt``)
    captcha_answer     the answer (``{captcha_answer}``): ok | captcha_failed
    cart               ok (the hold is taken) | sold_out | limit_reached | ...
    pay                ok (paid) | payment_declined | hold_expired | ...
    order              optional, once after a paid answer: ok

Templates are strings with ``{name}`` placeholders (``{{``/``}}`` for braces):
the journey's variables (:data:`VARIABLES`), values captured earlier in the
journey, ``{user.FIELD}`` (the account's row of ``accounts_file``),
``{env.NAME}`` (an environment variable: a secret; unset is a configuration
error) and ``{cookie.NAME}`` (the journey's cookie jar: a CSRF token into a
header). A JSON body value that is exactly one placeholder keeps the variable's
type (``"{units}"`` sends 2, not "2"); with a ``?`` (``"{captcha_token?}"``) the
key is left out while the variable is unset. Captures named in
:data:`CAPTURE_ROLES` mean something to the journey.

Errors: a bad table raises pydantic's ValidationError, turned into a
ScenarioError naming the field by flashsale.scenario; a template that cannot be
filled at run time raises :class:`ProtocolError`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flashsale._schema import _MAX_HEADERS, _MAX_TEXT, MAX_COUNT, _Model
from flashsale.distributions import MAX_DURATION_S
from flashsale.policy import Answer

__all__ = [
    "AUDIT_FIELDS",
    "CAPTURE_ROLES",
    "HOOK_VARIABLES",
    "MEANINGS",
    "RECORDED_AS",
    "STEPS",
    "VARIABLES",
    "AnswerRule",
    "Audit",
    "Hook",
    "Match",
    "ProtocolError",
    "Reply",
    "Step",
    "Target",
    "as_number",
    "capture",
    "json_at",
    "lookup",
    "match",
    "placeholders",
    "reference_target",
    "render",
    "render_body",
    "step_names",
    "url_problem",
]

STEPS = (
    "view",
    "login",
    "waiting_room",
    "waiting_room_poll",
    "lottery",
    "lottery_poll",
    "captcha",
    "captcha_answer",
    "cart",
    "pay",
    "order",
)
"""The steps a protocol may declare, in journey order."""

RECORDED_AS = {
    **{s: s for s in STEPS},
    "waiting_room_poll": "waiting_room",
    "lottery_poll": "lottery",
    "captcha_answer": "captcha",
}
"""The requests table's step (flashsale.outcome.STEP) for each protocol step."""

VARIABLES = {
    "account": "the account's id (humans 0..H-1, then the bot accounts)",
    "person": "the person (a human, or the bot operator) behind the account",
    "kind": "human | bot",
    "journey": "the journey's index in the schedule",
    "units": "units asked for (the limit's allowed units after a limit_reached)",
    "sku": "sale.sku",
    "channel": "the channel's name (sale.channels)",
    "idempotency_key": "unique per payment attempt; the same when a lost answer is re-sent",
    "captcha_answer": "the CAPTCHA answer the buyer gives (right or wrong by its draw)",
}
"""Variables every journey template may use, besides captures, user., env., cookie."""

CAPTURE_ROLES = {
    "allowed_units": "limit_reached: the units the account may still buy",
    "units_bought": "pay ok: the units bought (default: the units asked for)",
    "captcha_token": "kept for one hold: forgotten once a cart succeeds or the hold is gone",
    "draw_in_s": "lottery ok: seconds until the draw",
    "retry_after_s": "seconds the target asks the buyer to wait (else Retry-After)",
    "prompt": "captcha ok: the challenge, solved into {captcha_answer}",
    "opens_in_s": "view not_open, before the replay: seconds to the opening (no reset)",
}
"""Captures the journey reads, by name; any other name is only for templates."""

HOOK_VARIABLES = {
    "units": "the units on sale (scaled)",
    "sku": "sale.sku",
    "opens_in_s": "seconds from now to the opening (reset)",
    "replication": "the replication index (reset)",
    "admin_token": "--admin-token / FLASHSALE_ADMIN_TOKEN; a hook that needs it is "
    "skipped when none is given",
    "scenario": "the resolved scenario, as a JSON body (reset; a whole value only)",
    "python": "the Python running flashsale (for a command: a script of yours)",
}
"""Variables the reset and audit hooks may use, besides env."""

MEANINGS = tuple(a.name.lower() for a in Answer)
"""Meanings an answer rule may give (flashsale.policy.Answer, lower case)."""

_FIELD = re.compile(r"^(?:(?:env|user|cookie)\.[A-Za-z_][A-Za-z0-9_.-]{0,99}|[A-Za-z_]\w{0,63})$")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CAPTURE = re.compile(r"^(json|header|cookie):([^\s?]{1,200})(\?)?$|^status$")


class ProtocolError(ValueError):
    """A request cannot be built (a placeholder with no value) or an answer cannot be
    read as the protocol says (a required capture missing)."""


# ------------------------------------------------------------------------ templates


def placeholders(template: str) -> list[tuple[str, bool]]:
    """The ``(name, optional)`` placeholders of ``template``, in order.

    Raises ValueError for a malformed template (an unmatched brace, a format spec,
    a conversion, a name that is not a variable's)."""
    out = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conv:
            raise ValueError(f"{{{name}}}: no format spec or conversion in a template")
        optional = name.endswith("?")
        name = name.removesuffix("?")
        if not _FIELD.match(name):
            raise ValueError(
                f"{{{name}}} is not a variable: use a name, env.NAME, user.FIELD or cookie.NAME"
            )
        out.append((name, optional))
    return out


def _template(v: str) -> str:
    placeholders(v)
    return v


Template = Annotated[str, Field(max_length=_MAX_TEXT), AfterValidator(_template)]


def _header_value(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("a header value holds no line breaks or control characters")
    return v


HeaderValue = Annotated[Template, AfterValidator(_header_value)]


def _header_name(v: str) -> str:
    if not _HEADER_NAME.fullmatch(v):
        raise ValueError(f"{v[:40]!r} is not an HTTP header name (letters, digits, -)")
    return v


HeaderName = Annotated[str, AfterValidator(_header_name)]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=_MAX_HEADERS)]


def _path(v: str) -> str:
    if not re.fullmatch(r"/[^\s\x00-\x1f\x7f]*", v):
        raise ValueError("a path starts with '/' and holds no spaces or control characters")
    return v


PathTemplate = Annotated[Template, AfterValidator(_path)]


def _json_template(v: Any, depth: int = 0) -> Any:
    if depth > 16:
        raise ValueError("a body template nests at most 16 levels")
    if isinstance(v, str):
        return _template(v)
    if isinstance(v, dict):
        return {str(k): _json_template(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_template(x, depth + 1) for x in v]
    if isinstance(v, bool | int | float):
        return v
    raise ValueError(f"a JSON body holds tables, arrays, strings, numbers, booleans; got {v!r}")


JsonTemplate = Annotated[Any, AfterValidator(_json_template)]


def lookup(name: str, values: Mapping[str, Any], optional: bool = False) -> Any:
    """``values[name]``, or ProtocolError saying which variable has no value."""
    if name in values and values[name] is not None:
        return values[name]
    if optional:
        return None
    raise ProtocolError(f"{{{name}}} has no value here (not captured yet, or not set)")


def render(template: str, values: Mapping[str, Any], quote_values: bool = False) -> str:
    """``template`` with each placeholder replaced by its value (URL-quoted in a path).

    An unset optional placeholder renders as an empty string. Raises ProtocolError."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        v = lookup(name.removesuffix("?"), values, name.endswith("?"))
        text = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        out.append(quote(text, safe="") if quote_values else text)
    return "".join(out)


def render_body(template: Any, values: Mapping[str, Any]) -> Any:
    """A JSON body template filled in: a string that is one placeholder keeps the value's
    type; an object's key whose value is an unset ``{name?}`` is left out."""
    if isinstance(template, str):
        ph = placeholders(template)
        if len(ph) == 1 and template == "{" + ph[0][0] + ("?" if ph[0][1] else "") + "}":
            return lookup(ph[0][0], values, ph[0][1])
        return render(template, values)
    if isinstance(template, dict):
        out = {k: render_body(v, values) for k, v in template.items()}
        return {k: v for k, v in out.items() if not (v is None and _is_optional(template[k]))}
    if isinstance(template, list):
        return [render_body(v, values) for v in template]
    return template


def _is_optional(template: Any) -> bool:
    return isinstance(template, str) and template.endswith("?}")


# --------------------------------------------------------------------------- answers


class Reply(NamedTuple):
    """An answer as a journey sees it: status (0 = no answer: timeout, reset), the parsed
    JSON body (None if not JSON), the text, headers (lower-case names) and the cookies
    it set."""

    status: int
    body: Any = None
    text: str = ""
    headers: Mapping[str, str] = {}
    cookies: Mapping[str, str] = {}

    @property
    def retry_after(self) -> float | None:
        """The standard Retry-After header in seconds (RFC 9110 10.2.3), if numeric."""
        try:
            v = float(self.headers.get("retry-after", ""))
        except ValueError:
            return None
        return v if v >= 0 else None


class Match(_Model):
    """A comparison of a JSON field: ``{gt = 0}``, ``{exists = false}``, ``{in = [..]}``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    ne: str | int | float | bool | None = None
    in_: list[str | int | float | bool] | None = Field(default=None, alias="in")
    exists: bool | None = None

    def describe(self) -> str:
        """``> 0``, ``exists``, ``in ["a", "b"]``: the comparison as a person writes it."""
        ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "ne": "!="}
        parts = [
            f"{ops[k]} {json.dumps(getattr(self, k))}" for k in ops if getattr(self, k) is not None
        ]
        if self.in_ is not None:
            parts.append(f"in {json.dumps(self.in_)}")
        if self.exists is not None:
            parts.append("exists" if self.exists else "absent")
        return " and ".join(parts)

    def holds(self, present: bool, v: Any) -> bool:
        if self.exists is not None and present != self.exists:
            return False
        if not present:
            return self.exists is False
        num = v if isinstance(v, int | float) and not isinstance(v, bool) else None
        for bound, ok in ((self.gt, "gt"), (self.ge, "ge"), (self.lt, "lt"), (self.le, "le")):
            if bound is None:
                continue
            if num is None or not _compare(ok, num, bound):
                return False
        if self.ne is not None and _same(v, self.ne):
            return False
        return self.in_ is None or any(_same(v, x) for x in self.in_)


def _shown(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v)


def _compare(op: str, a: float, b: float) -> bool:
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]


def _same(v: Any, want: Any) -> bool:
    """JSON equality, with booleans never equal to numbers (true is not 1)."""
    return isinstance(v, bool) == isinstance(want, bool) and v == want


def _want(v: Any) -> Any:
    """A JSON condition's value, with one error message for a bad one."""
    if isinstance(v, dict):
        unknown = sorted(set(v) - {"gt", "ge", "lt", "le", "ne", "in", "exists"})
        if unknown:
            raise ValueError(
                f"unknown comparison {unknown[0]!r} (allowed: gt, ge, lt, le, ne, in, exists)"
            )
        try:
            return Match.model_validate(v)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
    if isinstance(v, str | int | float | bool):
        return v
    raise ValueError("a value to equal (text, number, true/false) or a comparison like {gt = 0}")


def json_at(body: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted ``path`` (``lines.0.id``) of a JSON body."""
    v = body
    for part in path.split("."):
        if isinstance(v, dict) and part in v:
            v = v[part]
        elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
            v = v[int(part)]
        else:
            return False, None
    return True, v


def _status(v: Any) -> Any:
    """A status (100-599), a non-empty list of them, or a class such as '4xx'."""
    codes = v if isinstance(v, list) else [v]
    ok = bool(codes) and all(type(c) is int and 100 <= c <= 599 for c in codes)
    if v is None or ok or (isinstance(v, str) and re.fullmatch(r"[1-5]xx", v)):
        return v
    raise ValueError("a status is a code from 100 to 599, a list of codes, or a class ('4xx')")


def _capture(v: str) -> str:
    if not _CAPTURE.match(v):
        raise ValueError(
            "a capture is 'json:PATH', 'header:NAME', 'cookie:NAME' or 'status', "
            "with '?' at the end when it may be missing"
        )
    return v


Capture = Annotated[str, AfterValidator(_capture)]
CaptureName = Annotated[str, Field(pattern=r"^[A-Za-z_]\w{0,63}$")]


class AnswerRule(_Model):
    """One rule of an answer map: when it matches, what the answer means and what to keep.

    Every condition given must hold: ``status`` (a code, a list, or a class such as
    ``"4xx"``; absent = any answer that came), ``json`` (dotted path -> value, or a
    :class:`Match`), ``body`` (a regular expression searched in the body text)."""

    status: Annotated[int | list[int] | str | None, BeforeValidator(_status)] = None
    json_: dict[str, Annotated[str | int | float | bool | Match, BeforeValidator(_want)]] = Field(
        default_factory=dict, alias="json", max_length=_MAX_HEADERS
    )
    body: Annotated[str, Field(max_length=_MAX_TEXT)] | None = None
    meaning: Literal[MEANINGS]  # type: ignore[valid-type]
    capture: dict[CaptureName, Capture] = Field(default_factory=dict, max_length=_MAX_HEADERS)

    @field_validator("body")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v

    @property
    def answer(self) -> Answer:
        return Answer[self.meaning.upper()]

    def matches(self, reply: Reply) -> bool:
        s = self.status
        if isinstance(s, int) and reply.status != s:
            return False
        if isinstance(s, list) and reply.status not in s:
            return False
        if isinstance(s, str) and str(reply.status)[0] != s[0]:
            return False
        for path, want in self.json_.items():
            present, v = json_at(reply.body, path)
            if isinstance(want, Match):
                if not want.holds(present, v):
                    return False
            elif not (present and _same(v, want)):
                return False
        return self.body is None or re.search(self.body, reply.text) is not None

    def describe(self) -> str:
        conds = [f"status {self.status}" if self.status is not None else "any status"]
        conds += [
            f"{k} {v.describe()}" if isinstance(v, Match) else f"{k}={json.dumps(v)}"
            for k, v in self.json_.items()
        ]
        if self.body is not None:
            conds.append(f"body ~ {self.body!r}")
        return f"{', '.join(conds)} -> {self.meaning}"


def match(rules: list[AnswerRule], reply: Reply) -> tuple[Answer, AnswerRule | None] | None:
    """The meaning of ``reply`` by the first matching rule, or None (a protocol error).

    No answer at all (status 0) is AMBIGUOUS whatever the rules say."""
    if reply.status == 0:
        return Answer.AMBIGUOUS, None
    for rule in rules:
        if rule.matches(reply):
            return rule.answer, rule
    return None


def as_number(v: Any) -> float | None:
    """A captured value as a finite number (a JSON number, or a numeric string as a
    header gives it), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        x = float(v)
    else:
        try:
            x = float(v) if isinstance(v, str) else math.nan
        except ValueError:
            return None
    return x if math.isfinite(x) else None


def capture(rule: AnswerRule, reply: Reply) -> dict[str, Any]:
    """The values ``rule`` keeps from ``reply``; ProtocolError if a required one is missing."""
    out: dict[str, Any] = {}
    for name, source in rule.capture.items():
        if source == "status":
            out[name] = reply.status
            continue
        where, key = source.split(":", 1)
        optional = key.endswith("?")
        key = key.removesuffix("?")
        if where == "json":
            found, v = json_at(reply.body, key)
        elif where == "header":
            v = reply.headers.get(key.lower())
            found = v is not None
        else:
            v = reply.cookies.get(key)
            found = v is not None
        if found:
            out[name] = v
        elif not optional:
            raise ProtocolError(f"the answer matched {rule.describe()} but lacks {source}")
    return out


# ----------------------------------------------------------------------------- steps


class Step(_Model):
    """One request of a journey and its answer map."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: PathTemplate
    headers: Headers = Field(default_factory=dict)
    json_: JsonTemplate | None = Field(default=None, alias="json")
    form: dict[str, Template] | None = Field(default=None, max_length=_MAX_HEADERS)
    answers: list[AnswerRule] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _one_body(self) -> Step:
        if self.json_ is not None and self.form is not None:
            raise ValueError("a step sends a json body or a form body, not both")
        return self


class Hook(_Model):
    """A reset or an audit: an HTTP request to the target, or a local command (argv)
    whose standard output is one JSON object. Variables: :data:`HOOK_VARIABLES`, env."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: PathTemplate | None = None
    headers: Headers = Field(default_factory=dict)
    json_: JsonTemplate | None = Field(default=None, alias="json")
    form: dict[str, Template] | None = Field(default=None, max_length=_MAX_HEADERS)
    command: Annotated[list[Template], Field(min_length=1, max_length=_MAX_HEADERS)] | None = None
    cwd: Annotated[str, Field(min_length=1, max_length=_MAX_TEXT)] | None = Field(
        default=None, description="folder the command runs in; default: the declaring file's"
    )
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @model_validator(mode="after")
    def _one_way(self) -> Hook:
        if (self.path is None) == (self.command is None):
            raise ValueError("a hook has a path (an HTTP request) or a command, exactly one")
        return self

    def names(self) -> set[str]:
        """Every placeholder name the hook uses."""
        texts = [self.path or "", *self.headers.values(), *(self.command or [])]
        texts += list((self.form or {}).values()) + _strings(self.json_)
        return {n for t in texts for n, _ in placeholders(t)}


AUDIT_FIELDS = ("units_sold", "oversold_units", "stock_left", "units_reserved", "orders")


class Audit(Hook):
    """The target's own books after the run: ``fields`` maps each figure to a JSON path
    of the answer. ``units_sold`` is required; ``oversold_units`` missing is taken as
    units sold beyond the units on sale."""

    fields: dict[Literal[AUDIT_FIELDS], Annotated[str, Field(max_length=200)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"units_sold": "units_sold"}
    )

    @field_validator("fields")
    @classmethod
    def _sold(cls, v: dict[str, str]) -> dict[str, str]:
        if "units_sold" not in v:
            raise ValueError("an audit maps at least units_sold")
        return v


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


# ---------------------------------------------------------------------------- target


def _python_class(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
        raise ValueError("a class is named 'package.module:ClassName'")
    return v


class Target(_Model):
    """Where and how the replay sends traffic, and the protocol it speaks.

    ``protocol = "reference"`` (the default) starts from the reference service's
    protocol (:func:`reference_target`) and merges this table over it, table by
    table (``--set target.steps.cart.path=/api/cart`` changes one path); ``"none"``
    starts from nothing: a protocol for another shop declares every step it uses."""

    protocol: Literal["reference", "none"] = Field(
        default="reference", description="the built-in protocol this table extends"
    )
    base_url: Annotated[str, Field(max_length=_MAX_TEXT)] | None = Field(
        default=None, description="none = start the reference service on 127.0.0.1"
    )
    steps: dict[Literal[STEPS], Step] = Field(default_factory=dict)  # type: ignore[valid-type]
    answers: list[AnswerRule] = Field(
        default_factory=list, max_length=200, description="rules tried after every step's own"
    )
    headers: Headers = Field(default_factory=dict, description="sent with every request")
    python_class: Annotated[str, AfterValidator(_python_class)] | None = Field(
        default=None, description="'module:Class' with one method per step (flashsale.steps)"
    )
    forwarded_for: bool = Field(
        default=False, description="send X-Forwarded-For: one fake address per person"
    )
    patience_header: HeaderName | None = Field(
        default=None, description="header carrying a human's patience in seconds"
    )
    accounts_file: Annotated[str, Field(min_length=1, max_length=_MAX_TEXT)] | None = Field(
        default=None, description="CSV with an 'account' column; {user.FIELD} reads a row"
    )
    reset: Hook | None = None
    audit: Audit | None = None
    expect_sold_out: bool = Field(
        default=False, description="the sale may be closed or sold out when the replay starts"
    )
    progress_timeout_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] = Field(
        default=60.0,
        description="fail when no cart succeeds and none is sold out this long after opening",
    )
    max_protocol_error_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.01, description="fail when more requests than this get an unmapped answer"
    )
    request_timeout_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] = 10.0
    max_requests: Annotated[int, Field(gt=0, le=MAX_COUNT)] = Field(
        default=1_000_000, description="hard cap on requests in a replay"
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("protocol", "reference") == "reference":
            return _merge(reference_target(), data)
        return data

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        problem = None if v is None else url_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _complete(self) -> Target:
        if self.python_class is None:
            missing = [s for s in ("cart", "pay") if s not in self.steps]
            if missing:
                raise _at(
                    "steps",
                    f"a protocol declares at least cart and pay; missing {', '.join(missing)}",
                )
            for name, step in self.steps.items():
                if not step.answers and not self.answers:
                    raise _at(f"steps.{name}.answers", "empty (an answer map is required)")
        captured = {n for s in self.steps.values() for r in s.answers for n in r.capture}
        captured |= {n for r in self.answers for n in r.capture}
        known = set(VARIABLES) | captured
        for name, step in self.steps.items():
            for var in step_names(step, self.headers):
                # a python_class may capture any name (flashsale.replay.custom.Answered)
                if "." not in var and var not in known and self.python_class is None:
                    raise _at(
                        f"steps.{name}",
                        f"{{{var}}} is neither a variable ({', '.join(VARIABLES)}) nor "
                        "captured by any answer rule",
                    )
        for hook_name, hook in (("reset", self.reset), ("audit", self.audit)):
            for var in hook.names() if hook else ():
                if not var.startswith("env.") and var not in HOOK_VARIABLES:
                    raise _at(
                        hook_name,
                        f"{{{var}}} is not a hook variable ({', '.join(HOOK_VARIABLES)}, env.NAME)",
                    )
        return self

    def rules(self, step: str) -> list[AnswerRule]:
        """The step's answer map: its own rules, then the target's common ones."""
        return [*self.steps[step].answers, *self.answers]

    def env_names(self) -> set[str]:
        """Every environment variable the protocol reads (``{env.NAME}``)."""
        names = {n for s in self.steps.values() for n in step_names(s, self.headers)}
        for hook in (self.reset, self.audit):
            names |= hook.names() if hook else set()
        return {n.removeprefix("env.") for n in names if n.startswith("env.")}


def _at(field: str, message: str) -> PydanticCustomError:
    """An error the scenario's message puts at ``target.<field>``."""
    return PydanticCustomError(
        "at_field", "{field}: {message}", {"field": field, "message": message}
    )


def step_names(step: Step, common: Mapping[str, str]) -> set[str]:
    """Every placeholder name a step's request uses (with the common headers)."""
    texts = [step.path, *step.headers.values(), *common.values()]
    texts += list((step.form or {}).values()) + _strings(step.json_)
    return {n for t in texts for n, _ in placeholders(t)}


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a base URL a replay can use, or None: an http(s) URL with a
    host, a valid port, an optional path prefix, and no spaces, query or fragment."""
    usage = "expected an http(s) URL like http://127.0.0.1:8000 (optionally with a path)"
    if not url.startswith(("http://", "https://")) or not _host(url):
        return usage
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        return f"{usage}; no spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as e:
        return f"{usage}; {e}"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return f"{usage}; no query or fragment"
    return None


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # "http://[::1"
        return None


@functools.cache
def _reference_text() -> str:
    return (Path(__file__).parent / "protocols" / "reference.toml").read_text("utf-8")


_WHOLE = frozenset({"reset", "audit"})
"""Tables a ``[target]`` replaces rather than merges (a command audit is not an HTTP one)."""


def _merge(base: dict[str, Any], over: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """``over`` merged into ``base``: tables key by key (but :data:`_WHOLE` ones at the
    top replaced), anything else replaced."""
    out = dict(base)
    for k, v in over.items():
        deep = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _merge(out[k], v, depth + 1) if deep and not (depth == 0 and k in _WHOLE) else v
    return out


def reference_target() -> dict[str, Any]:
    """The reference service's protocol as a ``[target]`` table (a fresh copy)."""
    return tomllib.loads(_reference_text())
