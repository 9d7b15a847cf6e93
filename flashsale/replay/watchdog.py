"""What the journeys met, tallied, and when a replay must stop: nothing reported unobserved.

A replay whose requests the target does not understand measures nothing: a
cart path that 404s made every journey end ``error`` while the run said PASS.
:class:`Tally` counts, per protocol step, the answers' meanings and the protocol
errors (answers no rule matches, requests that cannot be built), with a few
examples. :func:`problem` says why a replay must fail (exit 1), naming the step
and the answers seen:

- no journey reached a successful cart or a sold-out answer within
  ``target.progress_timeout_s`` of the opening (checked during the run, so a
  replay that cannot work stops early instead of hammering the target);
- protocol errors are more than ``target.max_protocol_error_share`` of the
  requests (checked during the run once :data:`MIN_REQUESTS` were sent, and at
  the end).

Tallies are plain JSON: each Locust process sends its own with its share, and
the master adds them up (:meth:`Tally.merge`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flashsale.protocol import Target
from flashsale.replay.journey import JourneyLog

__all__ = [
    "EXAMPLES",
    "MIN_REQUESTS",
    "Tally",
    "problem",
    "progress_problem",
    "protocol_problem",
    "verdict",
]

EXAMPLES = 3
"""Protocol errors kept as examples, per step."""

MIN_REQUESTS = 100
"""Requests sent before the protocol-error share is judged during a run."""


@dataclass
class Tally:
    """Requests, meanings seen (``"step:meaning"`` -> n), protocol errors per step with
    examples, and whether any journey progressed (carted, or was told sold out)."""

    requests: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    protocol_errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    progressed: bool = False
    stopped: str | None = None  # why this process stopped its share early

    @classmethod
    def of(cls, logs: Iterable[JourneyLog]) -> Tally:
        """The tally of journeys' logs (finished or still running)."""
        t = cls()
        for log in logs:
            t.requests += log.requests
            for key, n in log.seen.items():
                t.seen[key] = t.seen.get(key, 0) + n
            for step, what in log.protocol_errors:
                t.protocol_errors[step] = t.protocol_errors.get(step, 0) + 1
                kept = t.examples.setdefault(step, [])
                if len(kept) < EXAMPLES and what not in kept:
                    kept.append(what)
            t.progressed = t.progressed or not math.isnan(log.carted)
        t.progressed = t.progressed or any(k.endswith(":sold_out") for k in t.seen)
        return t

    def merge(self, other: Mapping[str, Any]) -> None:
        """Add another process's tally (:meth:`to_json`)."""
        self.requests += int(other.get("requests", 0))
        for name in ("seen", "protocol_errors"):
            mine = getattr(self, name)
            for k, n in dict(other.get(name, {})).items():
                mine[k] = mine.get(k, 0) + int(n)
        for step, kept in dict(other.get("examples", {})).items():
            mine_ex = self.examples.setdefault(step, [])
            mine_ex.extend(e for e in kept if e not in mine_ex and len(mine_ex) < EXAMPLES)
        self.progressed = self.progressed or bool(other.get("progressed"))
        self.stopped = self.stopped or other.get("stopped")

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seen": dict(sorted(self.seen.items())),
            "protocol_errors": dict(sorted(self.protocol_errors.items())),
            "examples": self.examples,
            "progressed": self.progressed,
            "stopped": self.stopped,
        }

    def errors(self) -> int:
        return sum(self.protocol_errors.values())

    def describe(self) -> str:
        """Protocol errors by step with an example, and the answers seen, most first."""
        parts = []
        for step, n in sorted(self.protocol_errors.items(), key=lambda kv: -kv[1]):
            parts.append(f"{step}: {n:,} protocol error(s), e.g. {self.examples[step][0]}")
        seen = sorted(self.seen.items(), key=lambda kv: -kv[1])[:6]
        if seen:
            parts.append("answers seen: " + ", ".join(f"{k} x{n:,}" for k, n in seen))
        return "; ".join(parts) or "no answer at all"


def protocol_problem(tally: Tally, target: Target, final: bool) -> str | None:
    """Too many protocol errors, or None; ``final``: the replay has ended (the share is
    judged whatever the number of requests; before, from :data:`MIN_REQUESTS`)."""
    errors = tally.errors()
    judged = final or tally.requests >= MIN_REQUESTS
    if judged and tally.requests and errors / tally.requests > target.max_protocol_error_share:
        return (
            f"{errors:,} of {tally.requests:,} requests got an answer the target protocol "
            f"does not know (more than target.max_protocol_error_share = "
            f"{target.max_protocol_error_share:g}): {tally.describe()}"
        )
    return None


def progress_problem(tally: Tally, target: Target, since_open_s: float) -> str | None:
    """No journey carted or was told sold out ``target.progress_timeout_s`` after the
    opening (``since_open_s`` infinite: during the whole replay), or None."""
    if tally.progressed or since_open_s < target.progress_timeout_s:
        return None
    when = (
        "during the whole replay"
        if math.isinf(since_open_s)
        else f"in the {target.progress_timeout_s:g} s after the opening (target.progress_timeout_s)"
    )
    return f"no journey reached a successful cart or a sold-out answer {when}: {tally.describe()}"


def problem(tally: Tally, target: Target, since_open_s: float, final: bool) -> str | None:
    """Why the replay fails, or None: a process stopped its share (``tally.stopped``),
    :func:`protocol_problem` or :func:`progress_problem`. ``since_open_s``: sale seconds
    elapsed; ``final``: the replay has ended."""
    return (
        tally.stopped
        or protocol_problem(tally, target, final)
        or progress_problem(tally, target, since_open_s)
    )


def verdict(tally: Mapping[str, Any] | None, target: Target) -> str | None:
    """The whole replay's :func:`problem`, from the manifest's ``replay.protocol`` tally
    (None: a run recorded before tallies, judged fine)."""
    if tally is None:
        return None
    t = Tally()
    t.merge(tally)
    return problem(t, target, math.inf, final=True)
