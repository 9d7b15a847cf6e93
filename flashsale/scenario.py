"""The Scenario contract: what the sale is, parsed from TOML and validated.

Everything both engines need is here: stock and channels, timing, humans, bots,
the checkout service model, defenses, the replay target, thresholds and the seed.
Units are in the field names: ``_s`` seconds, ``_per_s`` per second, ``units``.
Times are seconds relative to the opening (``sale.opens_at`` is t = 0); negative
times are before the opening.

Bad input never gets past :func:`load_scenario`: a :class:`ScenarioError` names
the file, the dotted field path, the bad value and what is allowed. Unknown
fields are errors, so a typo can never pass silently.

Three rules hold for every field, so no field can forget them:

- types are strict (``true`` is not 1, ``"yes"`` is not true, ``1.0`` is not an
  integer; a whole number is accepted where a real one is expected);
- every real number is finite (``inf`` and ``nan`` are refused everywhere);
- every number has a lower and an upper bound, from the named limits below
  (``MAX_*``), and the whole run must fit: :func:`run_size` estimates the
  journeys, requests and timeline rows one replication holds, and a scenario
  beyond :data:`MAX_JOURNEYS`, :data:`MAX_REQUESTS` or :data:`MAX_TIMELINE_ROWS`
  is refused naming the field that drives it. The file itself is read only up to
  :data:`MAX_FILE_BYTES` and :data:`MAX_DEPTH` levels of nesting.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flashsale import _toml
from flashsale._schema import _MAX_NAME, _MAX_TEXT, MAX_COUNT, _Model
from flashsale.distributions import (
    MAX_DURATION_S,
    Constant,
    Distribution,
    Exponential,
    Lognormal,
)
from flashsale.metric_registry import Bound, parse_threshold_key
from flashsale.protocol import Target

__all__ = [
    "MAX_CHANNELS",
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_DURATION_S",
    "MAX_FILE_BYTES",
    "MAX_JOURNEYS",
    "MAX_RATE_PER_S",
    "MAX_REQUESTS",
    "MAX_RETRIES",
    "MAX_SKU_CHARS",
    "MAX_TIMELINE_ROWS",
    "MAX_UNITS",
    "MAX_WORKERS",
    "MIN_RATE_PER_S",
    "SCHEMA_VERSION",
    "SERVICE_STEPS",
    "PoolSettings",
    "RunSize",
    "Scenario",
    "ScenarioError",
    "Threshold",
    "apply_overrides",
    "files_from",
    "load_scenario",
    "parse_scenario",
    "run_size",
    "scenario_hash",
]

SCHEMA_VERSION = 1
"""Bump when a scenario file written for the old schema would mean something else."""

# ------------------------------------------------------------------------- limits
# Generous for real sales (poco_m3: 250,000 humans, 5,000 bot accounts, 48 workers),
# small enough that a run fits a large machine and no number overflows int64.

MAX_UNITS = 10**9
"""Most units of stock, per order, per account or in a re-sale (the reference service's cap)."""

MAX_JOURNEYS = 5_000_000
"""Most journeys (humans + bot accounts) in one sale: about 2 KB each while simulating."""

MAX_WORKERS = 100_000
"""Most checkout workers (the simulator keeps, and scans, one slot per worker)."""

MAX_RETRIES = 1_000_000
"""Most retries per journey."""

MIN_RATE_PER_S = 1e-6
"""Slowest rate (per second; 6e-05 per minute): one event per 11.6 days at the most."""

MAX_RATE_PER_S = 1e6
"""Fastest rate per second (6e7 per minute)."""

MAX_CHANNELS = 256
"""Most storefronts: engines keep a journey's channel in one byte."""

MAX_REQUESTS = 100_000_000
"""Most requests one replication may need, by :func:`run_size`'s estimate."""

MAX_TIMELINE_ROWS = 10_000_000
"""Most timeline rows (run span / ``outputs.timeline_interval_s``) by the estimate."""

MAX_FILE_BYTES = 1 << 20
"""Largest scenario file (1 MiB; the built-ins are a few KB)."""

MAX_DEPTH = 32
"""Deepest nesting of tables and arrays in a scenario (the schema needs 4)."""

MAX_SKU_CHARS = 64
"""Longest ``sale.sku`` and channel name: a cart names both, and the reference
service's cart body takes up to this many characters (issue 13: a longer one
validated, then every cart was refused 422)."""

_MAX_PRICE = 1e12  # any currency's flash price; units x price stays well inside a float
_MAX_FACTOR = 1e6  # payment.failure_growth, payment.load_knee
_MAX_SEED = 2**63 - 1  # TOML integers are 64-bit

NonNegInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PosInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
Units = Annotated[int, Field(gt=0, le=MAX_UNITS)]
People = Annotated[int, Field(ge=0, le=MAX_JOURNEYS)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
PosSeconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
Rate = Annotated[float, Field(ge=MIN_RATE_PER_S, le=MAX_RATE_PER_S)]
Probability = Annotated[float, Field(ge=0, le=1)]
Factor = Annotated[float, Field(ge=0, le=_MAX_FACTOR)]
Name = Annotated[str, Field(min_length=1, max_length=_MAX_NAME)]


def _fits_a_cart(v: Any) -> Any:
    if isinstance(v, str) and len(v) > MAX_SKU_CHARS:
        raise ValueError(
            f"at most {MAX_SKU_CHARS} characters, the longest SKU or channel name a cart "
            f"request may carry; this one has {len(v)}"
        )
    return v


CartName = Annotated[
    str, Field(min_length=1, max_length=MAX_SKU_CHARS), BeforeValidator(_fits_a_cart)
]
"""A SKU or channel name: the cart request carries it (:data:`MAX_SKU_CHARS`)."""


# --------------------------------------------------------------------------- sale


class Channel(_Model):
    """An online storefront selling from its own slice of the stock."""

    name: CartName
    stock_share: Probability = Field(description="share of sale.units allotted to this channel")
    demand_share: Probability = Field(description="share of humans who shop on this channel")


_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"


class Sale(_Model):
    """The stock and the clock."""

    sku: CartName = "SKU-1"
    units: Units = Field(description="units of stock on sale")
    # TOML dates arrive as ISO text (see load_scenario): parsed, not strict
    date: dt.date | None = Field(default=None, strict=False, description="calendar day of the sale")
    opens_at: dt.time = Field(
        default=dt.time(10, 0, 0), strict=False, description="local opening time; t = 0"
    )
    window_s: PosSeconds = Field(
        default=900.0, description="seconds after the opening that the sale runs"
    )
    unit_price: Annotated[float, Field(ge=0, le=_MAX_PRICE)] = Field(
        default=0.0, description="flash price per unit"
    )
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel(name="web", stock_share=1.0, demand_share=1.0)],
        min_length=1,
        max_length=MAX_CHANNELS,
    )

    @field_validator("date", "opens_at", mode="before")
    @classmethod
    def _iso(cls, v: Any, info: ValidationInfo) -> Any:
        """A TOML date or local time (or its ISO text), never a number of seconds."""
        if info.field_name == "date":
            ok = type(v) is dt.date or (isinstance(v, str) and re.fullmatch(_ISO_DATE, v))
            if not ok:
                raise ValueError("must be a TOML date like 2021-01-26")
        elif not (isinstance(v, dt.time) or (isinstance(v, str) and re.fullmatch(_ISO_TIME, v))):
            raise ValueError("must be a TOML local time like 10:00:00")
        return v

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
    early_window_s: PosSeconds = 60.0
    decay_s: PosSeconds = 30.0
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
    rate_per_s: Rate


Arrivals = Annotated[BurstArrivals | PoissonArrivals, Field(discriminator="profile")]


class Humans(_Model):
    """Real people, one account each."""

    count: People = Field(description="humans who try to buy")
    arrivals: Arrivals = Field(default_factory=BurstArrivals)
    units_per_order: Units = 1
    think_s: Distribution = Field(
        default=Lognormal(dist="lognormal", median=2.0, sigma=0.5),
        description="pause between a response and the next step",
    )
    refresh_s: Annotated[float, Field(ge=0.001, le=MAX_DURATION_S)] = Field(
        default=2.0, description="early arrivals refresh this often until the sale opens"
    )
    patience_s: Distribution | None = Field(
        default=None, description="longest wait in a queue before giving up; none = infinite"
    )
    retries_on_error: Retries = Field(
        default=3, description="retries after an error, timeout or failed payment"
    )
    captcha_pass_prob: Probability = 0.95
    captcha_solve_s: Distribution = Field(
        default=Lognormal(dist="lognormal", median=6.0, sigma=0.4)
    )


# --------------------------------------------------------------------------- bots


class Bots(_Model):
    """Scalpers: operators each running many accounts at machine speed."""

    operators: People = 0
    accounts_per_operator: Annotated[int, Field(gt=0, le=MAX_JOURNEYS)] = 1
    start_offset_s: Annotated[float, Field(ge=-MAX_DURATION_S, le=MAX_DURATION_S)] = Field(
        default=-1.0, description="when accounts start firing, relative to the opening"
    )
    start_jitter_s: Seconds = Field(default=0.5, description="accounts start spread over this")
    request_rate_per_s: Rate = Field(default=5.0, description="requests per second per account")
    units_per_order: Units = 1
    max_retries: Retries = Field(default=100, description="retries per account before giving up")
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
    failure_growth: Factor = 0.0
    load_knee: Factor = 1.0
    gateway_s: Distribution = Field(default=Constant(value=0.0))
    timeout_s: PosSeconds = Field(default=30.0, description="a gateway slower than this times out")

    def failure_probability(self, load: float) -> float:
        """The formula above; the simulator and the reference service both call this."""
        extra = self.failure_growth * max(0.0, load - self.load_knee)
        return min(1.0, self.failure_prob + extra)


SERVICE_STEPS = ("view", "cart", "pay")
"""Steps a pool may serve. CAPTCHA challenges and lottery entries are served as views
(with the view step's service time and pool), as are the reference service's order
reads and cancellations."""

Workers = Annotated[int, Field(gt=0, le=MAX_WORKERS)]


@dataclass(frozen=True)
class PoolSettings:
    """The queue one step meets: ``workers`` servers, at most ``queue_limit`` waiting,
    none longer than ``queue_timeout_s``; ``name`` is the pool's (``"default"``: the
    ``[service]`` table's own pool)."""

    name: str
    workers: int
    queue_limit: int
    queue_timeout_s: float


class Pool(_Model):
    """A pool of workers with its own FIFO queue, serving the steps it names. A field
    left out takes the ``[service]`` table's value."""

    steps: list[str] = Field(min_length=1, max_length=len(SERVICE_STEPS))
    workers: Workers | None = None
    queue_limit: NonNegInt | None = None
    queue_timeout_s: PosSeconds | None = None

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: list[str]) -> list[str]:
        for step in v:
            if step not in SERVICE_STEPS:
                raise ValueError(
                    f"unknown step {step!r}; allowed: {', '.join(SERVICE_STEPS)} (CAPTCHA "
                    "and lottery requests go with view)"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"a step is named twice: {v}")
        return v


_POOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class Service(_Model):
    """The checkout service model: finite workers, a bounded queue, a cart hold.

    By default one FIFO pool of ``workers`` serves every step. ``pools`` gives steps
    pools of their own (``[service.pools.NAME]``: ``steps``, ``workers``,
    ``queue_limit``, ``queue_timeout_s``); a step no pool names stays in the default
    pool, and a step may be in one pool at most.

    ``step_s`` is the simulator's service time per step. The reference service's own
    work takes well under a millisecond; with ``emulate_step_s`` it also holds each
    request's worker for a ``step_s`` draw (from the ``service`` stream), so that it
    has the scenario's service demand: a stand-in for a real shop's work, and a
    service whose demands are known (what ``flashsale calibrate`` is tested against).
    """

    workers: Workers = 64
    queue_limit: NonNegInt = Field(
        default=10_000, description="waiting requests beyond this are rejected (503)"
    )
    queue_timeout_s: PosSeconds = Field(
        default=10.0, description="a client waits this long at most"
    )
    cart_hold_s: PosSeconds = Field(default=600.0, description="a reservation expires after this")
    step_s: StepTimes = Field(default_factory=StepTimes)
    emulate_step_s: bool = Field(
        default=False,
        description="the reference service holds each worker for a step_s draw",
    )
    payment: Payment = Field(default_factory=Payment)
    pools: dict[str, Pool] = Field(
        default_factory=dict, max_length=len(SERVICE_STEPS), description="pools per step"
    )

    @model_validator(mode="after")
    def _one_pool_per_step(self) -> Service:
        owner: dict[str, str] = {}
        for name, pool in self.pools.items():
            if not _POOL_NAME.match(name) or len(name) > _MAX_NAME or name == "default":
                raise _at(
                    f"pools.{name}",
                    f"a pool name is up to {_MAX_NAME} letters, digits, _ and -, starting "
                    "with a letter or _, and not 'default' (the [service] table's own pool)",
                )
            for step in pool.steps:
                if step in owner:
                    raise _at(
                        f"pools.{name}.steps",
                        f"step {step!r} is already in pool {owner[step]!r}; a step is served "
                        "by one pool",
                    )
                owner[step] = name
        return self

    def pool_of(self, step: str) -> PoolSettings:
        """The pool serving ``step`` (one of :data:`SERVICE_STEPS`), its unset fields
        taken from ``[service]``. Raises KeyError for any other step."""
        if step not in SERVICE_STEPS:
            raise KeyError(f"{step!r} is not one of {SERVICE_STEPS}")
        for name, pool in self.pools.items():
            if step in pool.steps:
                return PoolSettings(
                    name,
                    pool.workers if pool.workers is not None else self.workers,
                    pool.queue_limit if pool.queue_limit is not None else self.queue_limit,
                    pool.queue_timeout_s
                    if pool.queue_timeout_s is not None
                    else self.queue_timeout_s,
                )
        return PoolSettings("default", self.workers, self.queue_limit, self.queue_timeout_s)


def _at(field: str, message: str) -> PydanticCustomError:
    """An error the message puts at ``<the model's path>.<field>``."""
    return PydanticCustomError(
        "at_field", "{field}: {message}", {"field": field, "message": message}
    )


# ----------------------------------------------------------------------- defenses


class AccountLimit(_Model):
    """At most ``max_units`` per account over the sale."""

    enabled: bool = False
    max_units: Units = 1


class RateLimit(_Model):
    """Token buckets per account and per operator (one IP per operator; each human has its own)."""

    enabled: bool = False
    per_account_per_s: Rate = 1.0
    per_operator_per_s: Rate = 20.0
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
    prequeue_s: Seconds = 900.0
    order: Literal["fifo", "random"] = "fifo"
    # the rate limits per minute: 60 x MIN_RATE_PER_S and 60 x MAX_RATE_PER_S
    new_users_per_min: Annotated[float, Field(ge=6e-5, le=6e7)] = 6000.0
    max_active: PosInt = 5000
    session_s: PosSeconds = 300.0


class Lottery(_Model):
    """Entries during a window, then a random draw: arrival speed stops mattering."""

    enabled: bool = False
    entry_window_s: PosSeconds = 600.0
    winners: PosInt | None = Field(
        default=None, description="default: stock units / humans.units_per_order"
    )
    claim_window_s: PosSeconds = 3600.0


class Review(_Model):
    """Post-hoc review: orders flagged as unusual activity are cancelled."""

    enabled: bool = False
    at_s: Seconds = Field(default=3600.0, description="when the review runs")
    bot_detection_prob: Probability = 0.8
    human_false_positive_prob: Probability = 0.01


class Resale(_Model):
    """An extra sale of the cancelled units (Poco M3: 29 Jan 2021, 10:00)."""

    enabled: bool = False
    at_s: Seconds = Field(default=259_200.0, description="opening of the re-sale")
    units: Literal["cancelled"] | Units = "cancelled"
    window_s: PosSeconds = 900.0
    returning_human_share: Probability = Field(
        default=1.0, description="share of cancelled humans who come back to the re-sale"
    )

    @field_validator("units", mode="wrap")
    @classmethod
    def _one_message(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One line for the union, not one per branch."""
        try:
            return handler(v)
        except ValidationError:
            raise ValueError(
                f"must be 'cancelled' or a whole number of units from 1 to {MAX_UNITS:,}"
            ) from None


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


# --------------------------------------------------------------------- thresholds

_THRESHOLD = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


class Threshold(BaseModel):
    """One pass/fail check: ``metric op value`` on the metric's mean across replications
    (``human_success_share >= 0.5``) or on a bound of its 95% interval
    (``latency_p95_s.pay.ci_high <= 2``). ``metric`` is a full metric name, per step
    where the metric is (:mod:`flashsale.metric_registry`)."""

    model_config = ConfigDict(frozen=True)

    metric: str
    op: Literal["<", "<=", "==", "!=", ">=", ">"]
    value: float
    bound: Bound = "mean"

    @property
    def key(self) -> str:
        """The ``[thresholds]`` key: the metric, then the bound unless it is the mean."""
        return self.metric if self.bound == "mean" else f"{self.metric}.{self.bound}"

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


def _flat_keys(raw: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """One dotted key per check: TOML reads an unquoted ``latency_p95_s.pay = ...`` as
    nested tables (``--set thresholds.KEY=...`` keeps KEY whole: see apply_overrides)."""
    for k, v in raw.items():
        if isinstance(v, dict) and v:  # an empty table is a check with no value: an error
            yield from _flat_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _parse_thresholds(raw: Any) -> list[Threshold]:
    if not isinstance(raw, dict):
        raise ValueError(
            'must be a table of metric = "op value", e.g. oversold_units = "== 0" or '
            '"latency_p95_s.pay.ci_high" = "<= 2"'
        )
    checks = []
    for key, expr in dict(_flat_keys(raw)).items():
        try:
            metric, bound = parse_threshold_key(key)
        except ValueError as e:
            raise _at_key(key, str(e)) from None
        m = _THRESHOLD.match(str(expr))
        if not m:
            raise _at_key(
                key,
                f"{expr!r}: expected an operator (<, <=, ==, !=, >=, >) and a number, "
                'e.g. ">= 0.5"',
            )
        try:
            value = float(m.group(2))
        except ValueError:  # "1.2.3" matches the pattern
            value = math.nan
        if not math.isfinite(value):
            raise _at_key(key, f"{expr!r}: the value must be a finite number")
        checks.append(Threshold(metric=metric, op=m.group(1), value=value, bound=bound))
    return checks


def _at_key(key: str, message: str) -> PydanticCustomError:
    """An error the scenario's message puts at ``thresholds.<key>``."""
    return PydanticCustomError("at_field", "{field}: {message}", {"field": key, "message": message})


# ----------------------------------------------------------------------- scenario


class Outputs(_Model):
    """How finely engines record the timeline."""

    timeline_interval_s: Annotated[float, Field(ge=0.001, le=MAX_DURATION_S)] = 1.0


class Scenario(_Model):
    """One flash sale, complete: the input both engines read."""

    schema_version: Literal[1] = Field(description="scenario schema version; this build reads 1")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, v: Any) -> Any:
        if type(v) is not int or v != SCHEMA_VERSION:  # not 1.0, not true
            raise ValueError(f"this build reads schema_version = {SCHEMA_VERSION} (an integer)")
        return v

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=_MAX_NAME,
        description="short id used in run folder names",
    )
    description: str = Field(default="", max_length=_MAX_TEXT)
    seed: Annotated[int, Field(ge=0, le=_MAX_SEED)] = 0
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
        if isinstance(v, list) and all(isinstance(t, Threshold) for t in v):
            return v  # already parsed (a copy of a Scenario)
        return _parse_thresholds(v)

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

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        """The whole run must fit, not only each number: see :func:`run_size`."""
        problem = run_size(self).problem()
        if problem is not None:
            field, message = problem
            raise PydanticCustomError(
                "too_large", "{field}: {message}", {"field": field, "message": message}
            )
        return self

    def to_toml(self) -> str:
        """The resolved scenario as TOML text that loads back to an equal Scenario."""
        return _toml.dumps(self.to_toml_dict())

    def to_toml_dict(self) -> dict[str, Any]:
        """The resolved scenario, every default filled in, as plain data."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        # the defaults added since: written as before they existed (same hash)
        if not data["service"]["pools"]:
            del data["service"]["pools"]
        if not data["service"]["emulate_step_s"]:
            del data["service"]["emulate_step_s"]
        data["thresholds"] = {t.key: f"{t.op} {t.value:g}" for t in self.thresholds}
        return data


# ----------------------------------------------------------------------- run size

_TAIL_Q = 1 - 1e-9
"""A delay this far in its distribution's tail comes once in a billion draws: the longest
the last journeys can still take, for the span estimate."""


@dataclass(frozen=True)
class RunSize:
    """What one replication holds, estimated from the scenario alone: upper bounds, not
    predictions (poco_m3: 255,000 journeys; about 5 million requests estimated, 622,000
    made; about 2,000 timeline rows estimated, 960 written).

    ``span_s`` runs from the earliest arrival to the last thing that can still happen:
    the end of the last phase (sale window, late bots, Poisson arrivals, waiting-room
    admissions, lottery claims, review, re-sale), plus one journey's tail after it: the
    cart hold, two queue timeouts, the payment timeout and four far-tail delays
    (think, solve, service and refresh times, a bot's or a rate limit's interval).
    Requests: every journey's steps and retries, plus the refreshes before the
    opening (bots from ``start_offset_s``, early humans every ``refresh_s``), for a
    second sale again when a re-sale is on. Each figure carries the field that drives it.
    """

    journeys: int
    requests: int
    span_s: float
    timeline_rows: int
    journeys_by: str
    requests_by: str
    span_by: str

    def problem(self) -> tuple[str, str] | None:
        """``(field, message)`` for the first figure beyond its limit, or None."""
        if self.journeys > MAX_JOURNEYS:
            return self.journeys_by, (
                f"{self.journeys:,} journeys (humans.count + bots.operators x "
                f"bots.accounts_per_operator); at most {MAX_JOURNEYS:,}"
            )
        if self.requests > MAX_REQUESTS:
            return self.requests_by, (
                f"about {self.requests:,} requests per replication by the estimate "
                f"(mostly from {self.requests_by}); at most {MAX_REQUESTS:,}"
            )
        if self.timeline_rows > MAX_TIMELINE_ROWS:
            # blame the interval unless even one row per second would not fit
            field = "outputs.timeline_interval_s"
            if self.span_s > MAX_TIMELINE_ROWS:
                field = self.span_by
            return field, (
                f"about {self.timeline_rows:,} timeline rows: the run spans about "
                f"{self.span_s:,.0f} s (mostly {self.span_by}), one row per "
                f"outputs.timeline_interval_s; at most {MAX_TIMELINE_ROWS:,} rows"
            )
        return None


def _largest(terms: list[tuple[str, float]]) -> tuple[str, float]:
    return max(terms, key=lambda t: t[1])


def _cap(x: float) -> float:
    """``x`` kept far beyond any limit but finite: an estimate never overflows an int."""
    return 1e30 if math.isnan(x) else max(-1e30, min(x, 1e30))


def _bot_lever(b: Bots, per_bot: float) -> str:
    """The field to name for bots' requests after the opening: their retries when those
    bound them and are many, their pace when it does, else their number."""
    if per_bot < 5 + 2 * b.max_retries:
        return "bots.request_rate_per_s"
    return "bots.max_retries" if b.max_retries > 1000 else "bots.accounts_per_operator"


def run_size(sc: Scenario) -> RunSize:
    """Estimate one replication's journeys, requests and timeline (see :class:`RunSize`)."""
    h, b, svc, d = sc.humans, sc.bots, sc.service, sc.defenses
    arr = h.arrivals
    accounts = b.accounts
    journeys = h.count + accounts

    # the span: earliest arrival, end of the last phase, one journey's tail
    start = [("sale.opens_at", 0.0)]
    if accounts:
        start.append(("bots.start_offset_s", -b.start_offset_s))
    if h.count and isinstance(arr, BurstArrivals):
        start.append(("humans.arrivals.early_window_s", arr.early_window_s))
    end = [("sale.window_s", sc.sale.window_s)]
    if accounts:
        end.append(("bots.start_offset_s", b.start_offset_s + b.start_jitter_s))
    if h.count and isinstance(arr, PoissonArrivals):
        end.append(
            ("humans.arrivals.rate_per_s", (h.count + 6 * h.count**0.5 + 6) / arr.rate_per_s)
        )
    if d.waiting_room.enabled and journeys:
        wr = d.waiting_room
        flow, cap = wr.new_users_per_min / 60, wr.max_active / wr.session_s
        by = (
            "defenses.waiting_room.new_users_per_min"
            if flow <= cap
            else "defenses.waiting_room.max_active"
        )
        end.append((by, journeys / min(flow, cap)))
    if d.lottery.enabled:
        end.append(
            ("defenses.lottery.claim_window_s", d.lottery.entry_window_s + d.lottery.claim_window_s)
        )
    if d.review.enabled:
        end.append(("defenses.review.at_s", d.review.at_s))
    if d.resale.enabled:
        end.append(("defenses.resale.at_s", d.resale.at_s + d.resale.window_s))
    delays = [
        ("humans.think_s", h.think_s.quantile(_TAIL_Q)),
        ("humans.refresh_s", h.refresh_s),
        ("service.step_s.view", svc.step_s.view.quantile(_TAIL_Q)),
        ("service.step_s.cart", svc.step_s.cart.quantile(_TAIL_Q)),
        ("service.step_s.pay", svc.step_s.pay.quantile(_TAIL_Q)),
        (
            "service.payment.gateway_s",
            min(svc.payment.gateway_s.quantile(_TAIL_Q), svc.payment.timeout_s),
        ),
    ]
    if d.captcha.enabled:
        delays.append(("humans.captcha_solve_s", h.captcha_solve_s.quantile(_TAIL_Q)))
        delays.append(("bots.captcha_solve_s", b.captcha_solve_s.quantile(_TAIL_Q)))
    if accounts:
        delays.append(("bots.request_rate_per_s", 1 / b.request_rate_per_s))
    if d.rate_limit.enabled:
        rl = d.rate_limit
        delays.append(("defenses.rate_limit.per_account_per_s", 1 / rl.per_account_per_s))
        delays.append(("defenses.rate_limit.per_operator_per_s", 1 / rl.per_operator_per_s))
    delay_by, delay = _largest(delays)
    terms = [
        _largest(start),
        _largest(end),
        (delay_by, 4 * delay),
        ("service.cart_hold_s", svc.cart_hold_s),
        max(
            [("service.queue_timeout_s", 2 * svc.queue_timeout_s)]
            + [
                (f"service.pools.{name}.queue_timeout_s", 2 * pool.queue_timeout_s)
                for name, pool in svc.pools.items()
                if pool.queue_timeout_s is not None
            ],
            key=lambda t: t[1],
        ),
        ("service.payment.timeout_s", svc.payment.timeout_s),
    ]
    first = -_largest(start)[1]
    last = sum(t for _, t in terms[1:])
    span_s = last - first
    step = sc.outputs.timeline_interval_s
    rows = math.floor(_cap(last / step)) - math.floor(_cap(first / step)) + 1

    # requests: steps and retries of every journey, refreshes before the opening
    sale_s = last  # a bot keeps its cadence at most until the end
    per_human = 5 + 2 * h.retries_on_error
    early = 0.0
    if isinstance(arr, BurstArrivals):
        early = round(h.count * arr.early_share) * (arr.early_window_s / h.refresh_s + 1)
    per_bot_after = min(5 + 2 * b.max_retries, b.request_rate_per_s * sale_s + 1)
    parts = [
        (
            "humans.retries_on_error" if h.retries_on_error > 10 else "humans.count",
            h.count * per_human,
        ),
        ("humans.refresh_s", early),
        ("bots.start_offset_s", accounts * max(0.0, -b.start_offset_s) * b.request_rate_per_s),
        (_bot_lever(b, per_bot_after), accounts * per_bot_after),
    ]
    requests = sum(n for _, n in parts) * (2 if d.resale.enabled else 1)
    return RunSize(
        journeys=journeys,
        requests=math.ceil(_cap(requests)),
        span_s=span_s,
        timeline_rows=rows,
        journeys_by="humans.count" if h.count >= accounts else "bots.accounts_per_operator",
        requests_by=_largest(parts)[0],
        span_by=_largest(terms)[0],
    )


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names file, field, value and what is allowed."""


def _walk(loc: tuple[int | str, ...]) -> tuple[str, list[type[BaseModel]]]:
    """The dotted path a user wrote for ``loc`` (``sale.channels[0].name``), without the
    union tags pydantic adds (the user never wrote them), and the models that can hold
    the last part's value."""
    out = ""
    models: list[type[BaseModel]] = [Scenario]
    keyed = False  # the part is a key of a table of models (service.pools.NAME)
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if keyed:
            out += f".{part}"
            keyed = False
        elif fields:
            out += f".{part}" if out else part
            models = list(_models_in(fields[0].annotation))
            keyed = get_origin(fields[0].annotation) is dict and bool(models)
        elif part in _UNION_TAGS or "[" in part:  # defenses.rate_limit.burst keeps "burst"
            tagged = [m for m in models if _has_tag(m, part)]
            models = tagged or models
        else:
            out += f".{part}" if out else part
            models = []
    return out, models


def _has_tag(model: type[BaseModel], tag: str) -> bool:
    return any(get_args(f.annotation) == (tag,) for f in model.model_fields.values())


def _models_in(ann: Any) -> Iterator[type[BaseModel]]:
    """Every BaseModel an annotation can hold (each member of a union)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        yield ann
    for arg in getattr(ann, "__args__", ()):
        yield from _models_in(arg)


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    return _walk(loc)[0]


_UNION_TAGS = frozenset(
    {"burst", "poisson", "constant", "exponential", "lognormal", "uniform", "gamma"}
)


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Names a user may write at the table holding ``loc[-1]``."""
    models = _walk(loc[:-1])[1]
    if len(models) != 1:
        return []
    return sorted((f.alias or name) for name, f in models[0].model_fields.items())


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
    if kind in ("union_tag_invalid", "too_large"):  # too_large: the message names the field
        return f"{loc}: {msg}" if loc else msg
    if kind == "at_field":  # a model's check naming the field inside it that is wrong
        return f"{loc}.{msg}" if loc else msg
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) or "(got " in msg else f" (got {_shown(value)})"
    return f"{loc or '<top>'}: {msg}{shown}"


def _shown(value: Any) -> str:
    """A bad value as the user wrote it, cut short: an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text):,} characters)"


def _check_depth(data: Any, source: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ScenarioError(
                f"{source}: tables and arrays are nested more than {MAX_DEPTH} levels deep"
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate plain data into a Scenario; ``source`` names the file in errors."""
    _check_depth(data, source)
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
            value = _toml_value(raw.strip())
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        except (ValueError, RecursionError) as e:  # 5,000 digits, [[[[...]]]]
            raise ScenarioError(
                f"{source}: --set {path}: not a usable value: {_reason(e)}"
            ) from None
        node = out
        parts = path.split(".")
        if parts[0] == "thresholds" and len(parts) > 2:  # a key is a dotted metric name
            parts = [parts[0], ".".join(parts[1:])]  # thresholds.latency_p95_s.pay.ci_high
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError(f"{source}: --set {item!r}: {part} is a value, not a table")
            node = child
        node[parts[-1]] = value
    _check_depth(out, source)
    named = _dig(data, ("target", "base_url"))
    url = _dig(out, ("target", "base_url"))
    if url != named and isinstance(url, str):
        # the replay's safety rule: a remote target is named in a file, never on the command line
        from flashsale.replay.target import refuse_command_line_url

        refuse_command_line_url(url, source)
    return out


def _toml_value(raw: str) -> Any:
    return tomllib.loads(f"v = {raw}")["v"]


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _reason(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return f"nested more than {MAX_DEPTH} levels deep"
    if "integer string conversion" in str(e):
        return "an integer of more than 4,300 digits"
    return str(e).split("\n")[0]


def _jsonable_toml(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _jsonable_toml(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_jsonable_toml(v) for v in data]
    if isinstance(data, dt.date | dt.time | dt.datetime):
        return data.isoformat()
    return data


def _read_text(p: Path) -> str:
    """The file's text, read no further than MAX_FILE_BYTES (``/dev/zero`` never ends)."""
    try:
        with p.open("rb") as f:
            blob = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    if len(blob) > MAX_FILE_BYTES:
        raise ScenarioError(
            f"{p}: larger than {MAX_FILE_BYTES:,} bytes; a scenario file is a few KB"
        )
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(
            f"{p}: cannot read: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None


def _read_json(p: Path, text: str) -> dict[str, Any]:
    """A scenario written as JSON (what ``flashsale show --json`` prints): one object,
    no key twice in an object (as in TOML: else the last would win silently)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"the key {key!r} appears twice in one object")
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{p}: invalid JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # an integer of 5,000 digits, [[[[...]]]]
        raise ScenarioError(f"{p}: invalid JSON: {_reason(e)}") from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{p}: invalid JSON: the top level is {type(data).__name__}, not an object"
        )
    return data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate one scenario file: TOML, or the same tables as JSON
    (``flashsale show --json``), with the same limits. Raises ScenarioError on any problem."""
    p = Path(path)
    text = _read_text(p)
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):  # never TOML
        data = _read_json(p, text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"{p}: invalid TOML: {e}") from None
        except (ValueError, RecursionError) as e:  # an integer of 5,000 digits, [[[[...]]]]
            raise ScenarioError(f"{p}: invalid TOML: {_reason(e)}") from None
    _check_depth(data, str(p))
    data = _jsonable_toml(data)
    if overrides:
        data = apply_overrides(data, overrides, str(p))
    return files_from(parse_scenario(data, str(p)), p.parent)


def files_from(scenario: Scenario, folder: Path) -> Scenario:
    """``scenario`` with the target's files read from ``folder`` (the folder of the file
    that names them): a relative ``accounts_file`` made absolute, and each hook's
    ``cwd`` (default: ``folder`` itself)."""
    t = scenario.target
    update: dict[str, Any] = {}
    if t.accounts_file is not None:
        update["accounts_file"] = str((folder / t.accounts_file).resolve())
    for name in ("reset", "audit"):
        hook = getattr(t, name)
        if hook is not None and hook.command is not None:
            cwd = (folder / hook.cwd) if hook.cwd else folder
            update[name] = hook.model_copy(update={"cwd": str(cwd.resolve())})
    if not update:
        return scenario
    return scenario.model_copy(update={"target": t.model_copy(update=update)})


def scenario_hash(scenario: Scenario) -> str:
    """Content hash of the resolved scenario: two runs with equal hashes ran the same sale."""
    blob = json.dumps(scenario.to_toml_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
