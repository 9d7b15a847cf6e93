"""The strict base every input model shares (scenario, target protocol), and its limits.

A separate module so that flashsale.scenario and flashsale.protocol can both build
on it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["MAX_COUNT", "_MAX_HEADERS", "_MAX_NAME", "_MAX_TEXT", "_Model"]

MAX_COUNT = 10**9
"""Most of any other count: queue places, bucket size, active users, winners, requests."""

_MAX_NAME = 100  # a name or path: fits a folder name, a header, a URL
_MAX_TEXT = 2_000  # a description, a header value
_MAX_HEADERS = 100


class _Model(BaseModel):
    """Strict base: unknown keys are errors, values are immutable once loaded, types are
    strict and real numbers finite (``inf`` would reach the engines as an overflow, a
    hang or a 500)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        strict=True,
        allow_inf_nan=False,
    )
