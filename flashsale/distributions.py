"""Named, parameterised probability distributions used throughout a Scenario.

One documented way to write a random quantity in a scenario file::

    think_s = {dist = "lognormal", median = 2.0, sigma = 0.5}
    patience_s = {dist = "exponential", mean = 60}
    hold_s = 600            # a bare number means {dist = "constant", value = 600}

Every distribution knows its analytic mean (tests check samples against it) and
draws from a ``numpy.random.Generator`` that the caller passes in: no globals.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "Constant",
    "Distribution",
    "Exponential",
    "Gamma",
    "Lognormal",
    "Uniform",
    "bare_number_is_constant",
]


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws from ``rng``."""

    @abstractmethod
    def mean(self) -> float:
        """The analytic mean, against which tests check samples."""


class Constant(_Dist):
    """Always ``value``: deterministic service times, fixed hold times."""

    dist: Literal["constant"] = "constant"
    value: float = Field(ge=0)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)

    def mean(self) -> float:
        return self.value


class Exponential(_Dist):
    """Memoryless: M/M/c service, Erlang-A patience."""

    dist: Literal["exponential"]
    mean_: float = Field(alias="mean", gt=0)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(self.mean_, size)

    def mean(self) -> float:
        return self.mean_


class Lognormal(_Dist):
    """Right-skewed human delays. ``median`` is the typical value, ``sigma`` the log-spread."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.lognormal(math.log(self.median), self.sigma, size)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class Uniform(_Dist):
    """Flat between ``low`` and ``high``."""

    dist: Literal["uniform"]
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high(={self.high}) must be >= low(={self.low})")
        return self

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)

    def mean(self) -> float:
        return (self.low + self.high) / 2


class Gamma(_Dist):
    """Service times less variable than exponential (``cv`` < 1) or more (``cv`` > 1)."""

    dist: Literal["gamma"]
    mean_: float = Field(alias="mean", gt=0)
    cv: float = Field(gt=0, description="coefficient of variation, std/mean")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, self.mean_ / shape, size)

    def mean(self) -> float:
        return self.mean_


def bare_number_is_constant(value: Any) -> Any:
    """A bare number in a scenario means a constant: ``hold_s = 600``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


_Tagged = Annotated[
    Constant | Exponential | Lognormal | Uniform | Gamma, Field(discriminator="dist")
]
Distribution = Annotated[_Tagged, BeforeValidator(bare_number_is_constant)]
"""Any of the named distributions, chosen by its ``dist`` key; a bare number is a constant."""
