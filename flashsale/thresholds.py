"""Threshold verdicts: the scenario's ``[thresholds]`` checked against a run's metrics.

A check compares the metric's mean across replications (the point estimate the
report shows first) with the threshold. A metric that is undefined (null) in any
replication fails its check, e.g. the sell-out time of a sale that never sold out,
or the Jain index of a sale that sold nothing (0/0): a gate that cannot be
evaluated on every replication must not let a run through on the others' mean.
The verdict says in how many replications the metric was undefined.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flashsale.scenario import Threshold

__all__ = ["BREACHED", "OK", "Verdict", "check_thresholds", "exit_code"]

OK = 0
BREACHED = 1
"""Exit code of a run whose thresholds were breached (a CI gate)."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Verdict:
    """One threshold, the value it saw (mean across replications) and whether it held."""

    threshold: Threshold
    value: float | None
    ci_low: float | None
    ci_high: float | None
    passed: bool
    undefined: int = 0
    """Replications in which the metric had no value (null)."""
    replications: int = 0
    """Replications the metric block covers (defined or not)."""

    @property
    def why_undefined(self) -> str | None:
        """Why the check could not hold for want of a value ("undefined in k of N
        replications"), or None when the metric had a value in every replication."""
        if self.value is not None and not self.undefined:
            return None
        n = self.replications
        if not n:
            return "undefined"
        return f"undefined in {self.undefined} of {n} replication{'s' if n != 1 else ''}"

    def __str__(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        undefined = self.why_undefined
        if self.value is None:
            return f"{word} {self.threshold}: {undefined}, no value to check"
        ci = (
            f", 95% CI {self.ci_low:.4g} to {self.ci_high:.4g}"
            if self.ci_low is not None and self.ci_high is not None
            else ""
        )
        if undefined is not None:
            defined = self.replications - self.undefined
            return (
                f"{word} {self.threshold}: {undefined} (mean of the other {defined}: "
                f"{self.value:.4g}{ci})"
            )
        return f"{word} {self.threshold}: got {self.value:.4g}{ci}"

    def as_json(self) -> dict[str, Any]:
        return {
            "check": str(self.threshold),
            "metric": self.threshold.metric,
            "op": self.threshold.op,
            "limit": self.threshold.value,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "passed": self.passed,
            "undefined_in": self.undefined,
            "reason": self.why_undefined,
        }


def check_thresholds(thresholds: Sequence[Threshold], metrics: Mapping[str, Any]) -> list[Verdict]:
    """Judge every threshold against ``metrics`` (the ``metrics`` block of metrics.json)."""
    verdicts = []
    for th in thresholds:
        if th.metric not in metrics:
            raise KeyError(f"threshold {th}: metric {th.metric!r} not in the metrics")
        m = metrics[th.metric]
        value = m["mean"]
        values = m.get("values") or []
        undefined = sum(v is None for v in values) if value is not None else len(values)
        # Integer-valued metrics averaged over replications are compared as they are;
        # a tiny tolerance keeps "== 0" robust against float round-off in the mean.
        passed = (
            value is not None
            and not undefined
            and (
                abs(value - th.value) <= 1e-9 * max(1.0, abs(th.value))
                if th.op == "=="
                else _OPS[th.op](value, th.value)
            )
        )
        verdicts.append(
            Verdict(th, value, m["ci_low"], m["ci_high"], bool(passed), undefined, len(values))
        )
    return verdicts


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 when every check held, 1 when any was breached."""
    return OK if all(v.passed for v in verdicts) else BREACHED
