"""The escape hatch: a target protocol step written in Python, in Locust's style.

For what templates cannot express (GraphQL, signed requests, a token computed
from the body), name a class in the target configuration::

    [target]
    protocol = "none"
    python_class = "myshop_protocol:MyShop"   # importable from the current folder

and give it one method per step it handles (``view``, ``login``, ``cart``,
``pay``, ...: flashsale.protocol.STEPS); a step it has no method for is the
``[target.steps]`` table's. Each method receives a :class:`StepContext` and
returns the answer's meaning (a flashsale.policy.Answer or its lower-case name,
as an answer map gives) and, optionally, values to capture::

    from flashsale.replay.custom import Answered, StepContext, Steps

    class MyShop(Steps):
        def cart(self, ctx: StepContext) -> Answered:
            r = ctx.send("POST", "/graphql", json={"query": ADD, "variables":
                         {"sku": ctx.values["sku"], "qty": ctx.values["units"]}})
            errors = (r.body or {}).get("errors") or []
            if r.status == 200 and not errors:
                return Answered("ok", {"cart_id": r.body["data"]["addToCart"]["id"]})
            if any(e.get("code") == "OUT_OF_STOCK" for e in errors):
                return Answered("sold_out")
            return Answered("rejected")

One instance per journey (``self.buyer`` says whose). Requests go through the
journey's transport: recorded under the step, with the target's headers, the
journey's cookies and, for humans, the patience header. A meaning that is not
one, or an exception raised in a method, is a protocol error of that step. A
lost answer (status 0) should be returned as ``"ambiguous"``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flashsale.policy import Answer
from flashsale.protocol import STEPS, Reply

__all__ = ["Answered", "StepContext", "Steps", "handles", "load_steps", "meaning_of"]


@dataclass(frozen=True)
class Answered:
    """What a step method returns: the meaning, and values to capture."""

    meaning: Answer | str
    captures: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a step method may use: the journey's variables and a way to send."""

    step: str
    values: Mapping[str, Any]
    sender: Callable[..., Reply]

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request (``path`` below the target's base URL); status 0 = no answer."""
        return self.sender(method, path, json=json, form=form, headers=headers or {})


class Steps:
    """Base class of a protocol in Python: subclass it, one method per step."""

    def __init__(self, buyer: Any) -> None:
        self.buyer = buyer


def load_steps(name: str) -> type[Steps]:
    """The class ``package.module:Class``. Raises ValueError saying what is wrong: a
    module that cannot be imported, no such class, not a Steps subclass, a method
    named like no step (a typo would silently fall back to the tables)."""
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError(f"cannot import {module_name}: {type(e).__name__}: {e}") from None
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Steps)):
        raise ValueError(f"{name} is not a class derived from flashsale.replay.custom.Steps")
    own = {
        n
        for klass in cls.__mro__
        if klass not in (Steps, object)
        for n, v in vars(klass).items()
        if callable(v) and not n.startswith("_")
    }
    unknown = sorted(own - set(STEPS))
    if unknown:
        raise ValueError(
            f"{name}: method {unknown[0]} is not a step (steps: {', '.join(STEPS)}); "
            "helpers' names start with '_'"
        )
    return cls


def handles(cls: type[Steps] | None, step: str) -> bool:
    """True if ``cls`` has a method for ``step``."""
    return cls is not None and callable(getattr(cls, step, None))


def meaning_of(got: Any) -> tuple[Answer, dict[str, Any]] | str:
    """A step method's return value read, or why it is a protocol error."""
    if not isinstance(got, Answered):
        got = Answered(got)
    m = got.meaning
    if isinstance(m, str) and m.upper() in Answer.__members__:
        m = Answer[m.upper()]
    if not isinstance(m, Answer):
        return f"the method returned {got.meaning!r}, not a meaning (ok, sold_out, ...)"
    if not isinstance(got.captures, dict):
        return "the method's captures are not a dict"
    return m, dict(got.captures)
