"""Bracketing search: the smallest (or largest) value of one parameter at which every
threshold holds.

``flashsale search`` answers the capacity planner's question "how many checkout
workers so that the sale sells out within five minutes and the pay step's p95 stays
under two seconds?" without reading two sweeps by eye. This module is the search
itself, pure: it proposes values, a ``judge`` says which held, and the answer
comes out. Running simulations is :mod:`flashsale.search_run`'s job.

The search assumes the thresholds are *monotone* in the parameter: for the
smallest value, once every threshold holds at some value it holds at every larger
one (more workers never make the pay step slower); with ``largest``, the other way
round. It then needs only a bracket and bisection:

1. both ends first (one batch, so they run side by side): if the *good* end (HIGH
   for the smallest, LOW for the largest) fails, no value in the range satisfies
   the thresholds; if the other end already holds, it is the answer;
2. bisection between the closest value that holds and the closest that fails, on
   the grid LOW, LOW + step, ..., HIGH (step: 1 for integers, else the tolerance),
   until the two are neighbours on the grid: at most ``2 + ceil(log2(cells))``
   values are tried (Knuth, TAOCP vol. 3, 6.2.1: binary search).

Whether the assumption held can be seen only where the search looked:
:func:`contradictions` names each threshold that held at a value on the failing
side of one where it failed (evidence of non-monotone behaviour, e.g. noise near
the limit with too few replications).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flashsale.scenario import ScenarioError

__all__ = [
    "MAX_VALUES",
    "Answer",
    "Contradiction",
    "Grid",
    "Trial",
    "bracket",
    "contradictions",
    "parse_range",
    "show",
]

MAX_VALUES = 20
"""Most values one search may try: the ends and 18 bisection steps (a grid of up to
2**18 cells). Beyond it a tolerance typo costs hours; a coarser one answers sooner."""

_DEFAULT_CELLS = 100
"""A real-valued range is searched to 1/100 of its width unless --tolerance says."""

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*$")

Number = int | float


def show(value: Number) -> str:
    """A parameter value as people write it: 1000000, not 1e+06; 0.35, not 0.35000000000000003."""
    return str(value) if isinstance(value, int) else f"{value:.12g}"


@dataclass(frozen=True)
class Grid:
    """The values a search may try: ``low``, ``low + step``, ... and ``high`` itself
    (the last cell may be shorter), integers when ``integer``."""

    path: str
    low: Number
    high: Number
    step: Number
    integer: bool

    @property
    def cells(self) -> int:
        """Cells between LOW and HIGH: value(cells) is HIGH."""
        # A step that divides the width up to float round-off must not add a sliver cell.
        return max(1, math.ceil((self.high - self.low) / self.step - 1e-9))

    @property
    def max_values(self) -> int:
        """The most values a search on this grid tries: both ends, then bisection."""
        return 2 + math.ceil(math.log2(self.cells))

    def value(self, k: int) -> Number:
        """The ``k``-th value, 0 <= k <= cells; round-off trimmed (0.1 + 3 x 0.1 is 0.4)."""
        if k >= self.cells:
            return self.high
        v = self.low + k * self.step
        return int(v) if self.integer else float(f"{v:.12g}")

    def literal(self, value: Number) -> str:
        """``value`` as the TOML literal --set applies (640, 0.35, 1e-05)."""
        return str(value) if self.integer else repr(float(value))


def parse_range(
    item: str, source: str, *, integer: bool = False, tolerance: float | None = None
) -> Grid:
    """``"service.workers=64..1024"`` -> a Grid; ScenarioError naming --vary or
    --tolerance and what is allowed.

    With ``integer``, LOW, HIGH and the tolerance must be whole numbers (default
    tolerance 1); otherwise the default tolerance is 1/100 of HIGH - LOW. The grid
    may hold at most 2**(MAX_VALUES - 2) cells.
    """
    path, sep, raw = item.partition("=")
    path = path.strip()
    m = _RANGE.match(raw)
    if not sep or not _PATH.match(path) or not m:
        raise ScenarioError(
            f"{source}: --vary {item!r}: expected dotted.path=LOW..HIGH, "
            "e.g. service.workers=64..1024"
        )
    if path == "seed":
        raise ScenarioError(
            f"{source}: seed: cannot be searched: every value shares one root seed "
            "(common random numbers); use --replications for more seeds"
        )
    if path == "thresholds" or path.startswith("thresholds."):
        raise ScenarioError(
            f"{source}: {path}: cannot be searched: the thresholds are what every value "
            "is judged by; search a setting of the sale, e.g. service.workers"
        )
    low_raw, high_raw = m.group(1), m.group(2)
    if integer:
        try:
            low: Number = int(low_raw)
            high: Number = int(high_raw)
        except ValueError:
            raise ScenarioError(
                f"{source}: --vary {item!r}: --integer needs whole numbers LOW..HIGH, "
                "e.g. service.workers=64..1024"
            ) from None
    else:
        low, high = float(low_raw), float(high_raw)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ScenarioError(f"{source}: --vary {item!r}: LOW and HIGH must be finite numbers")
    if low >= high:
        raise ScenarioError(
            f"{source}: --vary {item!r}: LOW must be less than HIGH (got {low_raw}..{high_raw})"
        )
    step: Number
    if tolerance is None:
        step = 1 if integer else (high - low) / _DEFAULT_CELLS
    elif not math.isfinite(tolerance) or tolerance <= 0:
        raise ScenarioError(f"{source}: --tolerance {tolerance:g}: must be a number > 0")
    elif integer and not float(tolerance).is_integer():
        raise ScenarioError(
            f"{source}: --tolerance {tolerance:g}: with --integer it must be a whole number >= 1"
        )
    else:
        step = int(tolerance) if integer else tolerance
    grid = Grid(path, low, high, step, integer)
    if grid.max_values > MAX_VALUES:
        raise ScenarioError(
            f"{source}: --tolerance {show(step)}: {low_raw}..{high_raw} in steps of {show(step)} "
            f"needs up to {grid.max_values} values; at most {MAX_VALUES}: give a larger "
            "--tolerance or a narrower range"
        )
    return grid


@dataclass(frozen=True)
class Trial:
    """One tried value and whether every threshold held there."""

    value: Number
    passed: bool


@dataclass(frozen=True)
class Answer:
    """How a search ended.

    ``value`` is the answer, None when even the good end failed (no value in the range
    satisfies the thresholds). ``failing`` is the tried value next to the answer on the
    failing side (its grid neighbour when bisection ran; None when the whole range
    holds); with no answer, the good end that failed. ``tried`` lists every value in
    the order tried.
    """

    value: Number | None
    failing: Number | None
    tried: tuple[Trial, ...]

    @property
    def whole_range(self) -> bool:
        """The other end held too: the answer is an end of the range, and the true
        limit may lie beyond it."""
        return self.value is not None and self.failing is None


def bracket(
    grid: Grid, judge: Callable[[Sequence[Number]], Sequence[bool]], *, largest: bool = False
) -> Answer:
    """Search ``grid`` for the smallest (``largest``: the largest) value that ``judge``
    passes, assuming monotone verdicts (see the module docstring).

    ``judge`` gets a batch of values (both ends first, then one midpoint at a time)
    and returns, for each, whether every threshold held. At most
    ``grid.max_values`` values are judged, none twice.
    """
    tried: list[Trial] = []

    def holds(ks: Sequence[int]) -> list[bool]:
        values = [grid.value(k) for k in ks]
        verdicts = [bool(v) for v in judge(values)]
        if len(verdicts) != len(values):
            raise ValueError(f"judge gave {len(verdicts)} verdicts for {len(values)} values")
        tried.extend(Trial(v, ok) for v, ok in zip(values, verdicts, strict=True))
        return verdicts

    good, bad = (0, grid.cells) if largest else (grid.cells, 0)
    low_ok, high_ok = holds([0, grid.cells])
    good_ok, bad_ok = (low_ok, high_ok) if largest else (high_ok, low_ok)
    if not good_ok:
        return Answer(None, grid.value(good), tuple(tried))
    if bad_ok:
        return Answer(grid.value(bad), None, tuple(tried))
    while abs(good - bad) > 1:
        mid = (good + bad) // 2
        if holds([mid])[0]:
            good = mid
        else:
            bad = mid
    return Answer(grid.value(good), grid.value(bad), tuple(tried))


@dataclass(frozen=True)
class Contradiction:
    """Evidence against monotonicity: ``check`` held at ``held`` but failed at
    ``failed``, a value on the side where it should hold if it ever does."""

    check: str
    held: Number
    failed: Number


def contradictions(
    checks: Sequence[tuple[Number, Mapping[str, bool]]], *, largest: bool = False
) -> list[Contradiction]:
    """Each check (threshold) whose verdicts over the tried values are not monotone in
    the search's direction: for the smallest value, one that held at a value below
    one where it failed (the widest such pair); mirrored for ``largest``.

    ``checks``: (value, {check: held}) per tried value, in any order.
    """
    names = list(dict.fromkeys(name for _, verdicts in checks for name in verdicts))
    found = []
    for name in names:
        held = [v for v, verdicts in checks if verdicts.get(name) is True]
        failed = [v for v, verdicts in checks if verdicts.get(name) is False]
        if not held or not failed:
            continue
        if largest and max(held) > min(failed):
            found.append(Contradiction(name, max(held), min(failed)))
        elif not largest and min(held) < max(failed):
            found.append(Contradiction(name, min(held), max(failed)))
    return found
