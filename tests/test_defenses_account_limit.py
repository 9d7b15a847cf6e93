"""Per-account limit: holds and purchases count, releases give back, never over the limit."""

from __future__ import annotations

import pytest

from flashsale.defenses.account_limit import AccountLimit


def test_limit_counts_units_across_orders() -> None:
    lim = AccountLimit(2)
    assert lim.allows(1, 2)
    assert not lim.allows(1, 3)
    lim.record(1, 1)
    assert lim.allows(1, 1)
    assert not lim.allows(1, 2)
    lim.record(1, 1)
    assert not lim.allows(1, 1)
    assert lim.allows(2, 2)  # another account is untouched


def test_release_gives_units_back() -> None:
    lim = AccountLimit(1)
    lim.record("a", 1)
    assert not lim.allows("a", 1)
    lim.release("a", 1)
    assert lim.used("a") == 0
    assert lim.allows("a", 1)


def test_record_over_limit_is_refused() -> None:
    lim = AccountLimit(1)
    lim.record("a", 1)
    with pytest.raises(ValueError, match="exceed max_units=1"):
        lim.record("a", 1)
    assert lim.used("a") == 1


def test_release_more_than_held_is_refused() -> None:
    lim = AccountLimit(3)
    lim.record("a", 2)
    with pytest.raises(ValueError, match="cannot release 3 units, holds 2"):
        lim.release("a", 3)
    with pytest.raises(ValueError, match="cannot release"):
        lim.release("b", 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_units_is_named(bad: int) -> None:
    with pytest.raises(ValueError, match="max_units"):
        AccountLimit(bad)


def test_bad_units_is_named() -> None:
    with pytest.raises(ValueError, match="units"):
        AccountLimit(1).allows("a", 0)
