"""The simulator's stock books when pools decide out of step (flashsale.sim.stock).

Hand-made cases: one unit, a payment pool that has decided ahead of the cart pool,
and what a cart at a given time may take.
"""

from __future__ import annotations

import pytest

from flashsale.sim.stock import OversellError, Stock

HUMAN = 0


def test_a_declined_payment_gives_its_unit_back_only_when_it_is_declined() -> None:
    """Hold A at 0 s, its payment starts at 1 s and is declined at 11 s (the gateway's
    answer). The payment pool has moved on to 20 s; the cart pool is at 10.9 s."""
    stock = Stock([1], hold_s=60.0)
    a = stock.reserve(0, 1, account=1, now=0.0)
    stock.advance(settled=1.0, pay_from=1.0)
    assert stock.begin_payment(a, 1.0)
    stock.end_payment(a, 11.0, paid=False, kind=HUMAN)
    stock.advance(settled=10.9, pay_from=20.0)  # the cart pool can still decide at 10.9
    assert stock.available_at(0, 10.9) == 0
    with pytest.raises(OversellError):
        stock.reserve(0, 1, account=2, now=10.9)
    assert stock.available_at(0, 11.5) == 1  # certain: the decline is known
    b = stock.reserve(0, 1, account=2, now=11.5)
    assert stock.begin_payment(b, 12.0)
    stock.end_payment(b, 12.5, paid=True, kind=HUMAN)
    stock.settle()
    stock.audit(units_bought=1)


def test_a_hold_expiry_counts_only_once_no_payment_can_begin_before_it() -> None:
    """Hold A at 0 s expires at 5 s. A cart at 6 s may take its unit only if no payment
    can still begin before 5 s: while the payment pool may start one at 4 s, the
    unit is A's."""
    stock = Stock([1], hold_s=5.0)
    a = stock.reserve(0, 1, account=1, now=0.0)
    stock.advance(settled=4.0, pay_from=4.0)
    assert stock.available_at(0, 6.0) == 0
    assert stock.begin_payment(a, 4.0)  # in time: the unit is A's
    stock.end_payment(a, 4.5, paid=True, kind=HUMAN)
    stock.settle()
    assert stock.available == [0] and stock.sold == 1


def test_a_hold_expired_before_any_payment_could_begin_is_stock_again() -> None:
    stock = Stock([1], hold_s=5.0)
    a = stock.reserve(0, 1, account=1, now=0.0)
    stock.advance(settled=4.0, pay_from=5.5)
    assert stock.available_at(0, 6.0) == 1
    assert stock.available_at(0, 4.9) == 0  # not yet expired at 4.9 s
    stock.reserve(0, 1, account=2, now=6.0)
    assert not stock.begin_payment(a, 5.5)  # A's payment came too late
    stock.settle()
    stock.audit(units_bought=0)


def test_with_one_pool_a_decision_sees_exactly_the_releases_up_to_it() -> None:
    """One pool: the settled time is the decision's own; the books are as before."""
    stock = Stock([2], hold_s=5.0)
    stock.reserve(0, 2, account=1, now=0.0)
    stock.advance(settled=4.99)
    assert stock.available_at(0, 4.99) == 0
    stock.advance(settled=5.0)
    assert stock.available == [2] and stock.available_at(0, 5.0) == 2
