"""Threshold verdicts: the scenario's ``[thresholds]`` checked against a run's metrics.

A check judges the metric's mean across replications (the point estimate the report
shows first), or, when its key ends in ``.ci_low`` or ``.ci_high``, that bound of the
metric's 95% Student t interval: ``latency_p95_s.pay.ci_high <= 2`` holds only when the
run is 95% confident the pay step's p95 is at most 2 s, not merely on average. With one
replication there is no interval, so a check on a bound has no value and fails.

A metric that is undefined (null) in any replication fails its check, e.g. the
sell-out time of a sale that never sold out, or the Jain index of a sale that sold
nothing (0/0): a gate that cannot be evaluated on every replication must not let a
run through on the others' mean. The verdict says in how many replications the
metric was undefined. A per-step metric of a step no request reached (no
``latency_p95_s.captcha`` without a CAPTCHA) has no block at all: its check fails too.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flashsale.metric_registry import lookup
from flashsale.scenario import Threshold

__all__ = ["BOUND_NAMES", "BREACHED", "OK", "Verdict", "check_thresholds", "exit_code"]

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


BOUND_NAMES = {"ci_low": "95% CI low", "ci_high": "95% CI high"}
"""What a threshold on an interval bound judges, in words (verdicts, charts)."""


@dataclass(frozen=True)
class Verdict:
    """One threshold, what it saw and whether it held.

    ``value`` is the metric's mean across replications and ``ci_low``/``ci_high`` its
    95% interval, whichever of them the check judged (``threshold.bound``); ``judged``
    is the one it compared.
    """

    threshold: Threshold
    value: float | None
    ci_low: float | None
    ci_high: float | None
    passed: bool
    undefined: int = 0
    """Replications in which the metric had no value (null)."""
    replications: int = 0
    """Replications the metric block covers (defined or not)."""
    absent: bool = False
    """The run's metrics hold no such block (a step no request reached)."""

    @property
    def judged(self) -> float | None:
        """The value the check compared: the mean, or the interval bound it names."""
        bound = self.threshold.bound
        return self.value if bound == "mean" else self.ci_low if bound == "ci_low" else self.ci_high

    @property
    def why_undefined(self) -> str | None:
        """Why the check could not hold for want of a value ("undefined in k of N
        replications", "not measured in this run", "no 95% interval with 1
        replication"), or None when it had its value in every replication."""
        if self.absent:
            return "not measured in this run (no such metric block, e.g. a step no request reached)"
        n = self.replications
        if self.value is not None and not self.undefined:
            if self.judged is None:
                return f"no 95% interval with {n - self.undefined} replication" + (
                    "s" if n - self.undefined != 1 else ""
                )
            return None
        if not n:
            return "undefined"
        return f"undefined in {self.undefined} of {n} replication{'s' if n != 1 else ''}"

    def _ci(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            return ""
        return f", 95% CI {self.ci_low:.4g} to {self.ci_high:.4g}"

    def __str__(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.threshold}:"
        why = self.why_undefined
        if self.value is None:
            return f"{head} {why}, no value to check"
        defined = self.replications - self.undefined
        bound = self.threshold.bound
        if bound == "mean":
            if why is not None:
                return f"{head} {why} (mean of the other {defined}: {self.value:.4g}{self._ci()})"
            return f"{head} got {self.value:.4g}{self._ci()}"
        seen = f"mean {self.value:.4g}{self._ci()}"
        if self.judged is None:  # one (defined) replication: no interval
            return f"{head} {why}, no value to check ({seen})"
        judged = f"{BOUND_NAMES[bound]} {self.judged:.4g}"
        if why is not None:
            return f"{head} {why} (of the other {defined}: {judged}, {seen})"
        return f"{head} got {judged} ({seen})"

    def as_json(self) -> dict[str, Any]:
        """The verdict in metrics.json, sweep.json and compare.json: ``metric`` the full
        metric name, ``bound`` what was judged (mean, ci_low, ci_high), ``judged`` its value."""
        return {
            "check": str(self.threshold),
            "key": self.threshold.key,
            "metric": self.threshold.metric,
            "bound": self.threshold.bound,
            "op": self.threshold.op,
            "limit": self.threshold.value,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "judged": self.judged,
            "passed": self.passed,
            "undefined_in": self.undefined,
            "reason": self.why_undefined,
        }


def check_thresholds(thresholds: Sequence[Threshold], metrics: Mapping[str, Any]) -> list[Verdict]:
    """Judge every threshold against ``metrics`` (the ``metrics`` block of metrics.json,
    nested as written: ``metrics["latency_p95_s"]["pay"]``)."""
    verdicts = []
    for th in thresholds:
        m = lookup(metrics, th.metric)
        if m is None:
            verdicts.append(Verdict(th, None, None, None, False, absent=True))
            continue
        values = m.get("values") or []
        value = m["mean"]
        undefined = sum(v is None for v in values) if value is not None else len(values)
        verdict = Verdict(th, value, m["ci_low"], m["ci_high"], False, undefined, len(values))
        judged = verdict.judged
        # Integer-valued metrics averaged over replications are compared as they are;
        # a tiny tolerance keeps "== 0" robust against float round-off in the mean.
        passed = (
            judged is not None
            and not undefined
            and (
                abs(judged - th.value) <= 1e-9 * max(1.0, abs(th.value))
                if th.op == "=="
                else _OPS[th.op](judged, th.value)
            )
        )
        verdicts.append(dataclasses.replace(verdict, passed=bool(passed)))
    return verdicts


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 when every check held, 1 when any was breached."""
    return OK if all(v.passed for v in verdicts) else BREACHED
