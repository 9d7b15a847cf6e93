"""The Scenario contract: what the sale is, parsed from TOML and validated.

Everything both engines need is here: stock and channels, timing, humans, bots,
the checkout service model, defenses, the replay target, thresholds and the seed.
Units are in the field names: ``_s`` seconds, ``_per_s`` per second, ``units``.
Times are seconds relative to the opening (``sale.opens_at`` is t = 0); negative
times are before the opening.

Bad input never gets past :func:`load_scenario`: a :class:`ScenarioError` names
the file, the dotted field path, the bad value and what is allowed. Unknown
fields are errors, so a typo can never pass silently.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flashsale import _toml
from flashsale.distributions import (
    Constant,
    Distribution,
    Exponential,
    Lognormal,
)

__all__ = [
    "SCHEMA_VERSION",
    "THRESHOLD_METRICS",
    "Scenario",
    "ScenarioError",
    "Threshold",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
    "scenario_hash",
]

SCHEMA_VERSION = 1
"""Bump when a scenario file written for the old schema would mean something else."""

THRESHOLD_METRICS = (
    "units_sold",
    "oversold_units",
    "sellout_time_s",
    "throughput_peak_orders_per_s",
    "bot_unit_share",
    "human_success_share",
    "units_per_person_gini",
    "units_per_person_jain",
    "yellow_cart_rate",
    "error_rate",
    "timeout_rate",
    "cancelled_units",
    "review_precision",
    "review_recall",
    "resale_units_to_humans",
    "late_start_share",
    "audit_mismatch_units",
)
"""Scalar metrics a ``[thresholds]`` entry may name (see flashsale.metrics)."""

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    """Strict base: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- sale


class Channel(_Model):
    """An online storefront selling from its own slice of the stock."""

    name: str = Field(min_length=1)
    stock_share: Probability = Field(description="share of sale.units allotted to this channel")
    demand_share: Probability = Field(description="share of humans who shop on this channel")


class Sale(_Model):
    """The stock and the clock."""

    sku: str = Field(default="SKU-1", min_length=1)
    units: PosInt = Field(description="units of stock on sale")
    date: dt.date | None = Field(default=None, description="calendar day of the sale")
    opens_at: dt.time = Field(default=dt.time(10, 0, 0), description="local opening time; t = 0")
    window_s: PosFloat = Field(
        default=900.0, description="seconds after the opening that the sale runs"
    )
    unit_price: NonNegFloat = Field(default=0.0, description="flash price per unit")
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel(name="web", stock_share=1.0, demand_share=1.0)],
        min_length=1,
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> Sale:
        for share in ("stock_share", "demand_share"):
            total = sum(getattr(c, share) for c in self.channels)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(
                    f"channels[*].{share} must sum to 1, got {total:g} "
                    f"({', '.join(f'{c.name}={getattr(c, share):g}' for c in self.channels)})"
                )
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        return self

    def split(self, units: int) -> list[int]:
        """Split ``units`` over the channels by stock share (largest remainder), so the
        parts always sum to ``units``: both engines allot stock this one way."""
        raw = [units * c.stock_share for c in self.channels]
        parts = [int(r) for r in raw]
        order = sorted(range(len(raw)), key=lambda i: (parts[i] - raw[i], i))
        for i in order[: units - sum(parts)]:
            parts[i] += 1
        return parts


# ------------------------------------------------------------------------- humans


class BurstArrivals(_Model):
    """The flash-sale shape: early refreshers, a peak at the opening, a decaying tail.

    A share ``early_share`` arrives uniformly in the ``early_window_s`` before the
    opening; a share ``tail_share`` uniformly over the whole sale window; the rest
    arrive after the opening with exponentially distributed delays of mean ``decay_s``.
    """

    profile: Literal["burst"] = "burst"
    early_share: Probability = 0.2
    early_window_s: PosFloat = 60.0
    decay_s: PosFloat = 30.0
    tail_share: Probability = 0.1

    @model_validator(mode="after")
    def _shares(self) -> BurstArrivals:
        if self.early_share + self.tail_share > 1:
            raise ValueError(
                f"early_share + tail_share must be <= 1, got "
                f"{self.early_share:g} + {self.tail_share:g}"
            )
        return self


class PoissonArrivals(_Model):
    """A constant-rate Poisson stream from the opening: the queueing-theory check case."""

    profile: Literal["poisson"]
    rate_per_s: PosFloat


Arrivals = Annotated[BurstArrivals | PoissonArrivals, Field(discriminator="profile")]


class Humans(_Model):
    """Real people, one account each."""

    count: NonNegInt = Field(description="humans who try to buy")
    arrivals: Arrivals = Field(default_factory=BurstArrivals)
    units_per_order: PosInt = 1
    think_s: Distribution = Field(
        default=Lognormal(dist="lognormal", median=2.0, sigma=0.5),
        description="pause between a response and the next step",
    )
    refresh_s: PosFloat = Field(
        default=2.0, description="early arrivals refresh this often until the sale opens"
    )
    patience_s: Distribution | None = Field(
        default=None, description="longest wait in a queue before giving up; none = infinite"
    )
    retries_on_error: NonNegInt = Field(
        default=3, description="retries after an error, timeout or failed payment"
    )
    captcha_pass_prob: Probability = 0.95
    captcha_solve_s: Distribution = Field(
        default=Lognormal(dist="lognormal", median=6.0, sigma=0.4)
    )


# --------------------------------------------------------------------------- bots


class Bots(_Model):
    """Scalpers: operators each running many accounts at machine speed."""

    operators: NonNegInt = 0
    accounts_per_operator: PosInt = 1
    start_offset_s: float = Field(
        default=-1.0, description="when accounts start firing, relative to the opening"
    )
    start_jitter_s: NonNegFloat = Field(default=0.5, description="accounts start spread over this")
    request_rate_per_s: PosFloat = Field(default=5.0, description="requests per second per account")
    units_per_order: PosInt = 1
    max_retries: NonNegInt = Field(default=100, description="retries per account before giving up")
    captcha_solve_prob: Probability = 0.3
    captcha_solve_s: Distribution = Field(
        default=Lognormal(dist="lognormal", median=10.0, sigma=0.5),
        description="time to solve a CAPTCHA (a solving farm)",
    )

    @property
    def accounts(self) -> int:
        return self.operators * self.accounts_per_operator


# ------------------------------------------------------------------------ service


class StepTimes(_Model):
    """Service time of each step on a checkout worker."""

    view: Distribution = Field(default=Exponential(dist="exponential", mean=0.01))
    cart: Distribution = Field(default=Exponential(dist="exponential", mean=0.05))
    pay: Distribution = Field(default=Exponential(dist="exponential", mean=0.1))


class Payment(_Model):
    """The payment gateway behind the pay step: where the yellow cart happens.

    Failure probability at occupancy ``load`` (requests in the service / workers)::

        p = min(1, failure_prob + failure_growth * max(0, load - load_knee))
    """

    failure_prob: Probability = 0.0
    failure_growth: NonNegFloat = 0.0
    load_knee: NonNegFloat = 1.0
    gateway_s: Distribution = Field(default=Constant(value=0.0))
    timeout_s: PosFloat = Field(default=30.0, description="a gateway slower than this times out")

    def failure_probability(self, load: float) -> float:
        """The formula above; the simulator and the reference service both call this."""
        extra = self.failure_growth * max(0.0, load - self.load_knee)
        return min(1.0, self.failure_prob + extra)


class Service(_Model):
    """The checkout service model: finite workers, a bounded queue, a cart hold."""

    workers: PosInt = 64
    queue_limit: NonNegInt = Field(
        default=10_000, description="waiting requests beyond this are rejected (503)"
    )
    queue_timeout_s: PosFloat = Field(default=10.0, description="a client waits this long at most")
    cart_hold_s: PosFloat = Field(default=600.0, description="a reservation expires after this")
    step_s: StepTimes = Field(default_factory=StepTimes)
    payment: Payment = Field(default_factory=Payment)


# ----------------------------------------------------------------------- defenses


class AccountLimit(_Model):
    """At most ``max_units`` per account over the sale."""

    enabled: bool = False
    max_units: PosInt = 1


class RateLimit(_Model):
    """Token buckets per account and per operator (one IP per operator; each human has its own)."""

    enabled: bool = False
    per_account_per_s: PosFloat = 1.0
    per_operator_per_s: PosFloat = 20.0
    burst: PosInt = 5


class Captcha(_Model):
    """A challenge before adding to the cart."""

    enabled: bool = False


class WaitingRoom(_Model):
    """A virtual waiting room, in the vocabulary of the products people deploy.

    Arrivals up to ``prequeue_s`` before the opening are shuffled into a random
    order at the opening (pre-queue); later arrivals join in ``order``. The room
    lets ``new_users_per_min`` through, never more than ``max_active`` at once;
    an admitted user stays active for ``session_s``.
    """

    enabled: bool = False
    prequeue_s: NonNegFloat = 900.0
    order: Literal["fifo", "random"] = "fifo"
    new_users_per_min: PosFloat = 6000.0
    max_active: PosInt = 5000
    session_s: PosFloat = 300.0


class Lottery(_Model):
    """Entries during a window, then a random draw: arrival speed stops mattering."""

    enabled: bool = False
    entry_window_s: PosFloat = 600.0
    winners: PosInt | None = Field(
        default=None, description="default: stock units / humans.units_per_order"
    )
    claim_window_s: PosFloat = 3600.0


class Review(_Model):
    """Post-hoc review: orders flagged as unusual activity are cancelled."""

    enabled: bool = False
    at_s: NonNegFloat = Field(default=3600.0, description="when the review runs")
    bot_detection_prob: Probability = 0.8
    human_false_positive_prob: Probability = 0.01


class Resale(_Model):
    """An extra sale of the cancelled units (Poco M3: 29 Jan 2021, 10:00)."""

    enabled: bool = False
    at_s: NonNegFloat = Field(default=259_200.0, description="opening of the re-sale")
    units: Literal["cancelled"] | PosInt = "cancelled"
    window_s: PosFloat = 900.0
    returning_human_share: Probability = Field(
        default=1.0, description="share of cancelled humans who come back to the re-sale"
    )


class Defenses(_Model):
    """Each defense is off unless enabled."""

    account_limit: AccountLimit = Field(default_factory=AccountLimit)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    captcha: Captcha = Field(default_factory=Captcha)
    waiting_room: WaitingRoom = Field(default_factory=WaitingRoom)
    lottery: Lottery = Field(default_factory=Lottery)
    review: Review = Field(default_factory=Review)
    resale: Resale = Field(default_factory=Resale)


# ------------------------------------------------------------------------- target


class Paths(_Model):
    """Endpoint paths of the target checkout API."""

    status: str = "/v1/sale"
    cart: str = "/v1/cart"
    pay: str = "/v1/checkout"
    order: str = "/v1/orders/{order_id}"
    captcha: str = "/v1/captcha"
    waiting_room: str = "/v1/waiting-room"
    lottery: str = "/v1/lottery"

    @field_validator("*")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"a path must start with '/', got {v!r}")
        return v


class Auth(_Model):
    """How the replay authenticates to the target; secrets come from the environment."""

    kind: Literal["none", "bearer"] = "none"
    token_env: str | None = Field(default=None, description="environment variable holding it")

    @model_validator(mode="after")
    def _token_for_bearer(self) -> Auth:
        if self.kind == "bearer" and not self.token_env:
            raise ValueError("kind = 'bearer' needs token_env (the variable holding the token)")
        return self


class Target(_Model):
    """Where the Locust replay sends traffic. Default: the bundled service on loopback."""

    base_url: str | None = Field(
        default=None, description="none = start the reference service on 127.0.0.1"
    )
    paths: Paths = Field(default_factory=Paths)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth = Field(default_factory=Auth)
    request_timeout_s: PosFloat = 10.0
    max_requests: PosInt = Field(default=1_000_000, description="hard cap on requests in a replay")

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL like 'http://127.0.0.1:8000', got {v!r}")
        return v


# --------------------------------------------------------------------- thresholds

_THRESHOLD = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


class Threshold(BaseModel):
    """One pass/fail check: ``metric op value`` (e.g. ``human_success_share >= 0.5``)."""

    model_config = ConfigDict(frozen=True)

    metric: str
    op: Literal["<", "<=", "==", "!=", ">=", ">"]
    value: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def _parse_thresholds(raw: Any) -> list[Threshold]:
    if not isinstance(raw, dict):
        raise ValueError('must be a table of metric = "op value", e.g. oversold_units = "== 0"')
    checks = []
    for metric, expr in raw.items():
        if metric not in THRESHOLD_METRICS:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(THRESHOLD_METRICS)}")
        m = _THRESHOLD.match(str(expr))
        if not m:
            raise ValueError(
                f"{metric} = {expr!r}: expected an operator (<, <=, ==, !=, >=, >) and a "
                'number, e.g. ">= 0.5"'
            )
        checks.append(Threshold(metric=metric, op=m.group(1), value=float(m.group(2))))
    return checks


# ----------------------------------------------------------------------- scenario


class Outputs(_Model):
    """How finely engines record the timeline."""

    timeline_interval_s: PosFloat = 1.0


class Scenario(_Model):
    """One flash sale, complete: the input both engines read."""

    schema_version: Literal[1] = Field(description="scenario schema version; this build reads 1")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, v: Any) -> Any:
        if v != SCHEMA_VERSION:
            raise ValueError(f"this build reads schema_version = {SCHEMA_VERSION}")
        return v

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="short id used in run folder names")
    description: str = ""
    seed: NonNegInt = 0
    sale: Sale
    humans: Humans
    bots: Bots = Field(default_factory=Bots)
    service: Service = Field(default_factory=Service)
    defenses: Defenses = Field(default_factory=Defenses)
    target: Target = Field(default_factory=Target)
    thresholds: list[Threshold] = Field(default_factory=list)
    outputs: Outputs = Field(default_factory=Outputs)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, v: Any) -> Any:
        return v if isinstance(v, list) else _parse_thresholds(v)

    @model_validator(mode="after")
    def _defenses_fit(self) -> Scenario:
        if self.defenses.lottery.enabled and self.defenses.waiting_room.enabled:
            raise ValueError(
                "defenses.lottery and defenses.waiting_room cannot both be enabled "
                "(a lottery replaces the queue)"
            )
        if (
            self.defenses.resale.enabled
            and not self.defenses.review.enabled
            and (self.defenses.resale.units == "cancelled")
        ):
            raise ValueError(
                "defenses.resale.units = 'cancelled' needs defenses.review.enabled = true "
                "(nothing is cancelled without a review)"
            )
        return self

    def to_toml(self) -> str:
        """The resolved scenario as TOML text that loads back to an equal Scenario."""
        return _toml.dumps(self.to_toml_dict())

    def to_toml_dict(self) -> dict[str, Any]:
        """The resolved scenario, every default filled in, as plain data."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["thresholds"] = {t.metric: f"{t.op} {t.value:g}" for t in self.thresholds}
        return data


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names file, field, value and what is allowed."""


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    """``('sale', 'channels', 0, 'name')`` -> ``sale.channels[0].name``, without the union
    tags pydantic adds to the path (the user never wrote them)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out


_UNION_TAGS = frozenset(
    {"burst", "poisson", "constant", "exponential", "lognormal", "uniform", "gamma"}
)


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Names a user may write at the table holding ``loc[-1]``."""
    model: Any = Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return []
        ann = fields[part].annotation
        model = _model_of(ann)
        if model is None:
            return []
    return sorted((f.alias or name) for name, f in getattr(model, "model_fields", {}).items())


def _model_of(ann: Any) -> Any:
    """The BaseModel inside an annotation like ``list[Channel]`` or ``Humans``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _describe(err: Any) -> str:
    loc = _fmt_loc(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(tuple(err["loc"]))
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{loc}: unknown field{hint}"
    if kind == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        return f"{loc}: {msg}"
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    return f"{loc or '<top>'}: {msg}{shown}"


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate plain data into a Scenario; ``source`` names the file in errors."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise ScenarioError(f"{source}: " + f"\n{source}: ".join(lines)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides; values are TOML literals (bare words = strings)."""
    out = copy.deepcopy(data)
    for item in overrides:
        path, sep, raw = item.partition("=")
        path = path.strip()
        if not sep or not path or not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*$", path):
            raise ScenarioError(
                f"{source}: --set {item!r}: expected dotted.path=value, e.g. humans.count=1000"
            )
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError(f"{source}: --set {item!r}: {part} is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def _jsonable_toml(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _jsonable_toml(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_jsonable_toml(v) for v in data]
    if isinstance(data, dt.date | dt.time | dt.datetime):
        return data.isoformat()
    return data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate one scenario file. Raises ScenarioError on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: invalid TOML: {e}") from None
    data = _jsonable_toml(data)
    if overrides:
        data = apply_overrides(data, overrides, str(p))
    return parse_scenario(data, str(p))


def scenario_hash(scenario: Scenario) -> str:
    """Content hash of the resolved scenario: two runs with equal hashes ran the same sale."""
    blob = json.dumps(scenario.to_toml_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
