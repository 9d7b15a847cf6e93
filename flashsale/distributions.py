"""Named, parameterised probability distributions used throughout a Scenario.

One documented way to write a random quantity in a scenario file::

    think_s = {dist = "lognormal", median = 2.0, sigma = 0.5}
    patience_s = {dist = "exponential", mean = 60}
    hold_s = 600            # a bare number means {dist = "constant", value = 600}

Every distribution knows its analytic mean (tests check samples against it) and
its quantiles (the scenario's size estimate reads a far tail), and draws from a
``numpy.random.Generator`` that the caller passes in: no globals.

Every parameter is a finite number of seconds up to :data:`MAX_DURATION_S` (a
delay longer than the longest sale a scenario may describe means nothing), and
the shape parameters are bounded where sampling stays meaningful: ``sigma`` up
to 5, ``cv`` from 0.001 to 10. Types are strict: ``true`` is not a number.
"""

from __future__ import annotations

import math
import statistics
from abc import abstractmethod
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MAX_DURATION_S",
    "Constant",
    "Distribution",
    "Exponential",
    "Gamma",
    "Lognormal",
    "Uniform",
    "bare_number_is_constant",
]


MAX_DURATION_S = 30 * 86_400
"""Longest time a scenario may name, in seconds (30 days): any duration, any delay's
parameter, any time from the opening. The reference service caps its admin times alike."""


class _Dist(BaseModel):
    # strict: a boolean or a string is not a number; finite: inf and nan mean nothing here
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws from ``rng``."""

    @abstractmethod
    def mean(self) -> float:
        """The analytic mean, against which tests check samples."""

    @abstractmethod
    def quantile(self, q: float) -> float:
        """The value below which a share ``q`` (0 < q < 1) of draws falls."""


class Constant(_Dist):
    """Always ``value``: deterministic service times, fixed hold times.

    In code, and only there, ``value`` may be ``math.inf``: the engines' "never" (a
    buyer with no patience limit). A scenario's constant is finite (:data:`Distribution`).
    """

    dist: Literal["constant"] = "constant"
    value: float = Field(ge=0, allow_inf_nan=True)

    @field_validator("value")
    @classmethod
    def _at_most(cls, v: float) -> float:
        if MAX_DURATION_S < v < math.inf:
            raise ValueError(f"Input should be less than or equal to {MAX_DURATION_S}")
        return v

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)

    def mean(self) -> float:
        return self.value

    def quantile(self, q: float) -> float:
        return self.value


class Exponential(_Dist):
    """Memoryless: M/M/c service, Erlang-A patience."""

    dist: Literal["exponential"]
    mean_: float = Field(alias="mean", gt=0, le=MAX_DURATION_S)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(self.mean_, size)

    def mean(self) -> float:
        return self.mean_

    def quantile(self, q: float) -> float:
        return -self.mean_ * math.log1p(-q)


class Lognormal(_Dist):
    """Right-skewed human delays. ``median`` is the typical value, ``sigma`` the log-spread."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0, le=MAX_DURATION_S)
    sigma: float = Field(ge=0, le=5, description="beyond 5 the mean is 268,000 medians")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.lognormal(math.log(self.median), self.sigma, size)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def quantile(self, q: float) -> float:
        return self.median * math.exp(self.sigma * statistics.NormalDist().inv_cdf(q))


class Uniform(_Dist):
    """Flat between ``low`` and ``high``."""

    dist: Literal["uniform"]
    low: float = Field(ge=0, le=MAX_DURATION_S)
    high: float = Field(ge=0, le=MAX_DURATION_S)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high(={self.high}) must be >= low(={self.low})")
        return self

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def quantile(self, q: float) -> float:
        return self.low + q * (self.high - self.low)


class Gamma(_Dist):
    """Service times less variable than exponential (``cv`` < 1) or more (``cv`` > 1)."""

    dist: Literal["gamma"]
    mean_: float = Field(alias="mean", gt=0, le=MAX_DURATION_S)
    cv: float = Field(
        ge=0.001, le=10, description="coefficient of variation, std/mean (shape 1/cv**2)"
    )

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, self.mean_ / shape, size)

    def mean(self) -> float:
        return self.mean_

    def quantile(self, q: float) -> float:
        from scipy.special import gammaincinv  # only the size estimate needs it

        shape = 1.0 / self.cv**2
        return float(gammaincinv(shape, q)) * self.mean_ / shape


def bare_number_is_constant(value: Any) -> Any:
    """A bare number in a scenario means a constant: ``hold_s = 600``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


def _as_written(value: Any) -> Any:
    """A scenario's distribution: a bare number is a constant, and a constant is finite
    (``math.inf`` is for code only, see :class:`Constant`)."""
    value = bare_number_is_constant(value)
    if isinstance(value, dict) and value.get("dist") == "constant":
        x = value.get("value")
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"a constant's value must be a finite number (got {x})")
    return value


_Tagged = Annotated[
    Constant | Exponential | Lognormal | Uniform | Gamma, Field(discriminator="dist")
]
Distribution = Annotated[_Tagged, BeforeValidator(_as_written)]
"""Any of the named distributions, chosen by its ``dist`` key; a bare number is a constant.
Every parameter is finite."""
