"""Token buckets: refusals and Retry-After match the arithmetic of a bucket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale.defenses.rate_limit import TokenBuckets


def test_full_bucket_allows_burst_then_refuses() -> None:
    tb = TokenBuckets(rate_per_s=1.0, burst=5)
    assert [tb.take("a", 0.0) for _ in range(6)] == [True] * 5 + [False]


def test_refill_at_rate_and_retry_after() -> None:
    tb = TokenBuckets(rate_per_s=2.0, burst=1)
    assert tb.take("a", 10.0)
    assert not tb.take("a", 10.2)  # 0.4 token
    assert tb.retry_after("a", 10.2) == pytest.approx(0.3)
    assert not tb.take("a", 10.49)
    assert tb.take("a", 10.5)
    assert tb.retry_after("a", 100.0) == 0.0


def test_keys_are_independent() -> None:
    tb = TokenBuckets(rate_per_s=1.0, burst=1)
    assert tb.take("a", 0.0)
    assert not tb.take("a", 0.0)
    assert tb.take("b", 0.0)
    assert tb.take(("op", 3), 0.0)


def test_refill_caps_at_burst() -> None:
    tb = TokenBuckets(rate_per_s=100.0, burst=3)
    tb.take("a", 0.0)
    assert tb.tokens("a", 1_000.0) == 3.0


def test_clock_stepping_back_refills_nothing() -> None:
    tb = TokenBuckets(rate_per_s=1.0, burst=1)
    assert tb.take("a", 5.0)
    assert not tb.take("a", 1.0)
    assert tb.retry_after("a", 1.0) == pytest.approx(1.0)


@settings(deadline=None)  # no wall-clock limit per example: a loaded machine is slow
@given(
    rate=st.floats(0.1, 50.0),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
)
def test_never_grants_more_than_burst_plus_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    tb = TokenBuckets(rate, burst)
    now = granted = 0.0
    for g in gaps:
        now += g
        granted += tb.take("k", now)
    assert granted <= burst + rate * now + 1e-9


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        (0.0, 1, "rate_per_s"),
        (-1.0, 1, "rate_per_s"),
        (float("inf"), 1, "rate_per_s"),
        (1.0, 0, "burst"),
        (1.0, 2.5, "burst"),
        (1.0, True, "burst"),
    ],
)
def test_bad_parameters_are_named(rate: float, burst: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBuckets(rate, burst)
