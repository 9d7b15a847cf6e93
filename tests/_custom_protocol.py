"""Protocol classes in Python (flashsale.replay.custom) for tests/test_protocol.py.

``ReferenceCart`` speaks the reference service's cart in Python and ``CookieShopCart``
the stand-in cookie shop's (examples/shops/cookie_shop.py), as a user of the escape
hatch would write them; the other classes are the mistakes a user can make.
"""

from __future__ import annotations

from typing import Any

from flashsale.replay.custom import Answered, StepContext, Steps

# the reference service's cart refusals (flashsale/service/__init__.py) by their error code
_CART_ERRORS = {
    "sold_out": "sold_out",
    "sale_closed": "sold_out",
    "not_open": "not_open",
    "rate_limited": "rate_limited",
    "overloaded": "overloaded",
    "abandoned": "abandoned",
}


class ReferenceCart(Steps):
    """The cart step of the reference service, in Python; every other step is the
    reference protocol's table."""

    def cart(self, ctx: StepContext) -> Answered:
        r = ctx.send("POST", "/v1/cart", json=self._body(ctx.values))
        if r.status == 0:
            return Answered("ambiguous")
        if r.status == 201:
            return Answered("ok", {"reservation_id": r.body["reservation_id"]})
        if r.status == 403 and r.body.get("error") == "limit_reached":
            return Answered("limit_reached", {"allowed_units": r.body.get("allowed_units", 0)})
        return Answered(_CART_ERRORS.get((r.body or {}).get("error"), "rejected"))

    def _body(self, values: Any) -> dict[str, Any]:
        """A helper: its name starts with '_', so it is not taken for a step. The account
        is the buyer's this instance was made for (one instance per journey)."""
        return {
            "account": self.buyer.account,
            "sku": values["sku"],
            "units": values["units"],
            "channel": values["channel"],
        }


class BadMeaningCart(Steps):
    """Sends the cart, then answers with a word that is not a meaning."""

    def cart(self, ctx: StepContext) -> str:
        ctx.send(
            "POST",
            "/v1/cart",
            json={"account": ctx.values["account"], "sku": ctx.values["sku"], "units": 1},
        )
        return "great"


class RaisingCart(Steps):
    """Sends the cart, then fails reading the answer."""

    def cart(self, ctx: StepContext) -> Answered:
        r = ctx.send(
            "POST",
            "/v1/cart",
            json={"account": ctx.values["account"], "sku": ctx.values["sku"], "units": 1},
        )
        raise RuntimeError(f"no basket in a {r.status}")


class TypoSteps(Steps):
    """A method named like no step (``crat``): it would silently never run."""

    def crat(self, ctx: StepContext) -> str:
        return "ok"


class NotSteps:
    """Has a cart method but does not derive from Steps."""

    def cart(self, ctx: StepContext) -> str:
        return "ok"


class CookieShopCart(Steps):
    """The cookie shop's add to basket (examples/shops/cookie_shop.py) in one method: the
    product page first (it sets the session and CSRF cookies), then the add, whose CSRF
    header the target's headers fill from the journey's cookie jar."""

    def cart(self, ctx: StepContext) -> Answered:
        page = ctx.send("GET", "/shop/products/1/")
        if page.status != 200:
            return Answered("rejected")
        r = ctx.send("POST", "/shop/basket/add/1/", json={"quantity": ctx.values["units"]})
        if r.status == 200:
            return Answered("ok", {"basket_url": r.body["basket_url"]})
        if r.status == 406 and (r.body or {}).get("reason") == "Unavailable":
            return Answered("sold_out")
        return Answered("rejected", {"refused": r.text})
