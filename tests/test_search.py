"""``flashsale search``: the bracketing logic against known answers, the command end to
end on the smoke sale (its answer re-checked by simulating the answer and the value
below it), bad input and an interrupted search."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.outcome import Outcome
from flashsale.scenario import Scenario, ScenarioError
from flashsale.search import (
    MAX_VALUES,
    Contradiction,
    Grid,
    Number,
    bracket,
    contradictions,
    parse_range,
)
from flashsale.sim import runner as sim_runner

cli = CliRunner()

# ------------------------------------------------------------------ bracketing


def _judge(holds: Callable[[Number], bool], calls: list[list[Number]]) -> Any:
    def judge(values: Sequence[Number]) -> list[bool]:
        calls.append(list(values))
        return [holds(v) for v in values]

    return judge


def test_integers_smallest_answer_and_its_failing_neighbour() -> None:
    grid = parse_range("service.workers=1..1024", "t", integer=True)
    calls: list[list[Number]] = []
    answer = bracket(grid, _judge(lambda v: v >= 640, calls))
    assert (answer.value, answer.failing) == (640, 639)
    assert calls[0] == [1, 1024]  # both ends first, as one batch (they run side by side)
    assert all(len(c) == 1 for c in calls[1:])  # then one midpoint at a time
    tried = [t.value for t in answer.tried]
    assert len(tried) == len(set(tried)) <= grid.max_values == 2 + math.ceil(math.log2(1023))
    assert all(isinstance(v, int) for v in tried)
    assert [t.passed for t in answer.tried] == [v >= 640 for v in tried]


@pytest.mark.parametrize("largest", [False, True])
def test_every_limit_in_a_small_range_is_found(largest: bool) -> None:
    """Exhaustively: whatever the true limit, the search returns it (or says none holds,
    or that the whole range does), never trying more than max_values values."""
    grid = parse_range("x=3..20", "t", integer=True)
    for limit in range(2, 22):

        def holds(v: Number, limit: int = limit) -> bool:
            return v <= limit if largest else v >= limit

        answer = bracket(grid, _judge(holds, []), largest=largest)
        ok = [v for v in range(3, 21) if holds(v)]
        expected = (max(ok) if largest else min(ok)) if ok else None
        assert answer.value == expected, limit
        assert answer.whole_range == (len(ok) == 18)
        assert len(answer.tried) <= grid.max_values
        if expected is not None and not answer.whole_range:
            assert answer.failing == expected + (1 if largest else -1)


def test_floats_to_the_tolerance() -> None:
    grid = parse_range("defenses.x=0..1", "t", tolerance=0.01)
    answer = bracket(grid, _judge(lambda v: v >= 0.3712, []))
    assert answer.value is not None and answer.failing is not None
    assert 0.3712 <= answer.value <= 0.3712 + 0.01
    assert answer.failing < 0.3712 and answer.value - answer.failing == pytest.approx(0.01)
    assert answer.value == round(answer.value, 10)  # no 0.38000000000000006 in a --set


def test_float_default_tolerance_is_a_hundredth_of_the_range() -> None:
    grid = parse_range("x=10..20", "t")
    assert (grid.step, grid.cells, grid.max_values) == (0.1, 100, 9)
    answer = bracket(grid, _judge(lambda v: v >= 12.345, []))
    assert answer.value == pytest.approx(12.4) and answer.failing == pytest.approx(12.3)


def test_largest() -> None:
    grid = parse_range("humans.count=100..5000", "t", integer=True, tolerance=100)
    answer = bracket(grid, _judge(lambda v: v <= 2750, []), largest=True)
    assert (answer.value, answer.failing) == (2700, 2800)


def test_no_value_in_range_holds() -> None:
    calls: list[list[Number]] = []
    answer = bracket(parse_range("x=1..8", "t", integer=True), _judge(lambda v: v >= 9, calls))
    assert answer.value is None and answer.failing == 8 and calls == [[1, 8]]
    answer = bracket(
        parse_range("x=1..8", "t", integer=True), _judge(lambda v: v <= 0, []), largest=True
    )
    assert answer.value is None and answer.failing == 1


def test_low_already_holds() -> None:
    calls: list[list[Number]] = []
    answer = bracket(parse_range("x=1..8", "t", integer=True), _judge(lambda v: True, calls))
    assert answer.value == 1 and answer.failing is None and answer.whole_range
    assert calls == [[1, 8]]  # nothing more to try


def test_last_cell_may_be_short() -> None:
    grid = parse_range("x=0..10", "t", integer=True, tolerance=4)
    assert [grid.value(k) for k in range(grid.cells + 1)] == [0, 4, 8, 10]
    assert bracket(grid, _judge(lambda v: v >= 9, [])).value == 10


def test_contradictions_name_the_threshold_and_the_widest_pair() -> None:
    tried: list[tuple[Number, dict[str, bool]]] = [
        (64, {"a": False, "b": True}),
        (1024, {"a": True, "b": False}),
        (544, {"a": True, "b": True}),
        (304, {"a": False, "b": False}),
    ]
    # smallest: "b" holds at 64 but not at 304 nor 1024: the widest pair is 64 vs 1024
    assert contradictions(tried) == [Contradiction("b", 64, 1024)]
    # largest: "a" holds at 1024 but not at 64 nor 304; "b" at 544 but not at 304
    assert contradictions(tried, largest=True) == [
        Contradiction("a", 1024, 64),
        Contradiction("b", 544, 304),
    ]
    assert contradictions([(1, {"a": False}), (2, {"a": True})]) == []


@pytest.mark.parametrize(
    ("item", "kw", "says"),
    [
        ("service.workers=64-1024", {}, "expected dotted.path=LOW..HIGH"),
        ("service.workers", {}, "expected dotted.path=LOW..HIGH"),
        ("service..workers=1..2", {}, "expected dotted.path=LOW..HIGH"),
        ("service.workers=1..x", {}, "expected dotted.path=LOW..HIGH"),
        ("service.workers=64..32", {"integer": True}, "LOW must be less than HIGH"),
        ("service.workers=8..8", {"integer": True}, "LOW must be less than HIGH"),
        ("service.workers=1.5..8", {"integer": True}, "--integer needs whole numbers"),
        ("service.workers=1..8", {"integer": True, "tolerance": 1.5}, "whole number"),
        ("x=0..1", {"tolerance": 0.0}, "--tolerance 0: must be a number > 0"),
        ("x=0..1", {"tolerance": -1.0}, "must be a number > 0"),
        ("x=0..1", {"tolerance": 1e-9}, f"at most {MAX_VALUES}"),
        ("seed=1..9", {"integer": True}, "seed: cannot be searched"),
        ("thresholds.sellout_time_s=1..9", {}, "cannot be searched"),
    ],
)
def test_bad_ranges_are_refused_naming_the_option(item: str, kw: Any, says: str) -> None:
    with pytest.raises(ScenarioError, match="^s.toml: ") as e:
        parse_range(item, "s.toml", **kw)
    assert says in str(e.value)


def test_grid_values_are_exact_and_literals_are_toml() -> None:
    grid = Grid("x", 0.1, 0.5, 0.1, integer=False)
    assert [grid.value(k) for k in range(grid.cells + 1)] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [grid.literal(v) for v in (0.3, 1e-05)] == ["0.3", "1e-05"]
    assert Grid("x", 1, 9, 2, integer=True).literal(5) == "5"


# ------------------------------------------------------------- the command


def _search(args: list[str]) -> Any:
    return cli.invoke(app, ["search", *args])


def _one_error_line(res: Any) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return str(lines[0])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--vary", "service.workers=64-1024", "--integer"], "--vary"),
        (["--vary", "service.workers=64..32", "--integer"], "LOW must be less than HIGH"),
        (["--vary", "service.wrokers=1..8", "--integer"], "service.wrokers"),
        (["--vary", "service.workers=1..8"], "search it with --integer"),
        (["--vary", "service.workers=0..8", "--integer"], "service.workers"),
        (["--vary", "service.workers=1..8", "--integer", "--set", "thresholds={}"], "none to"),
        (["--vary", "service.workers=1..8", "--integer", "--report", "none"], "--report"),
        (
            ["--vary", "service.workers=1..8", "--vary", "humans.count=10..20", "--integer"],
            "a search varies one parameter, got 2",
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    smoke_path: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    out = tmp_path / "s"
    line = _one_error_line(_search([str(smoke_path), *args, "--out", str(out)]))
    assert says in line
    assert not out.exists()  # nothing ran, nothing was written


def test_an_output_folder_in_use_is_refused(smoke_path: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    res = _search(
        [str(smoke_path), "--vary", "service.workers=1..8", "--integer", "--out", str(tmp_path)]
    )
    assert "not empty" in _one_error_line(res)


def _simulate_verdicts(smoke: Path, out: Path, workers: int, extra: list[str]) -> list[Any]:
    """Simulate the smoke sale at ``workers`` with the search's seed and replications:
    the thresholds' verdicts as flashsale simulate judges them."""
    res = cli.invoke(
        app,
        [
            "simulate",
            str(smoke),
            "--set",
            f"service.workers={workers}",
            *extra,
            "--report",
            "summary",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code in (0, 1), res.output
    verdicts: list[Any] = json.loads((out / "metrics.json").read_text())["thresholds"]
    return verdicts


@pytest.mark.slow
def test_smallest_workers_for_a_sellout_time_on_the_smoke_sale(
    smoke_path: Path, tmp_path: Path
) -> None:
    limit = ["--set", "thresholds.sellout_time_s=<= 30", "--replications", "2", "--seed", "7"]
    out = tmp_path / "search"
    res = _search(
        [
            str(smoke_path),
            *("--vary", "service.workers=1..8", "--integer", "--workers", "2"),
            *limit,
            *("--out", str(out)),
        ]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "search.json").read_text())
    assert doc["status"] == "complete" and doc["schema"] == "flashsale.search/1"
    answer = doc["answer"]["value"]
    assert isinstance(answer, int) and 1 < answer <= 8 and doc["answer"]["failing"] == answer - 1
    line = next(ln for ln in res.output.splitlines() if ln.startswith("smallest"))
    assert line.startswith(f"smallest service.workers at which every threshold holds: {answer} (")
    assert f"{answer - 1} fails: sellout_time_s " in line
    # progress: one line per tried value, every check on it, however narrow the terminal
    progress = [ln for ln in res.output.splitlines() if ln.startswith("  service.workers=")]
    assert len(progress) == len(json.loads((out / "search.json").read_text())["points"])
    assert all("oversold_units 0 == 0; sellout_time_s " in ln for ln in progress), progress
    # the bar is gone once done: off a terminal nothing of it is printed, and the
    # line before the answer is the last tried value's verdict line
    lines = res.output.splitlines()
    assert lines[lines.index(line) - 1] == progress[-1], res.output
    assert "━" not in res.output and "/2" not in res.output, res.output

    # The evidence: every tried value is a run folder with its verdicts and intervals,
    # the ends first, then bisection; the verdicts are monotone in the workers.
    values = [p["value"] for p in doc["points"]]
    assert values[:2] == [1, 8] and len(values) == len(set(values)) <= 2 + 3
    for p in doc["points"]:
        assert p["status"] == "complete" and (out / p["folder"] / "metrics.json").is_file()
        assert p["passed"] == (p["value"] >= answer)
        block = p["metrics"]["sellout_time_s"]
        assert set(block) >= {"mean", "ci_low", "ci_high", "values"}
        assert [v["check"] for v in p["verdicts"]] == [
            "oversold_units == 0",
            "sellout_time_s <= 30",
        ]
    assert doc["warnings"] == []
    charts = sorted(p.name for p in (out / "charts").glob("*.png"))
    assert charts == ["threshold-0-oversold_units.png", "threshold-1-sellout_time_s.png"]
    page = (out / "report.html").read_text()
    assert doc["answer"]["line"].split(" (")[0] in page and "point-000" in page

    # Independently: simulate the answer and the value below it with the same seed and
    # replications: the answer holds every threshold, the value below does not.
    at = _simulate_verdicts(smoke_path, tmp_path / "at", answer, limit)
    below = _simulate_verdicts(smoke_path, tmp_path / "below", answer - 1, limit)
    assert all(v["passed"] for v in at), at
    assert not all(v["passed"] for v in below), below


@pytest.mark.slow
def test_no_value_in_range_exits_1_naming_the_end_that_fails(
    smoke_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "search"
    res = _search(
        [
            str(smoke_path),
            *("--vary", "service.workers=1..3", "--integer", "--replications", "1"),
            *("--set", "thresholds.sellout_time_s=<= 30", "--out", str(out)),
        ]
    )
    assert res.exit_code == 1, res.output
    assert "no service.workers in 1..3 satisfies every threshold (tried 2 values; 3 fails: " in (
        res.output
    )
    doc = json.loads((out / "search.json").read_text())
    assert doc["status"] == "complete" and doc["answer"]["value"] is None
    assert [p["passed"] for p in doc["points"]] == [False, False]


def test_report_rebuilds_a_search_page_and_charts_as_the_search_drew_them(
    smoke_path: Path, tmp_path: Path
) -> None:
    """`flashsale report SEARCH_DIR` draws the charts and page again from search.json:
    the same bytes the search wrote, the answer on the page, the search still complete."""
    out = tmp_path / "search"
    res = _search(
        [
            str(smoke_path),
            *("--vary", "service.workers=2..8", "--integer", "--replications", "1"),
            *("--workers", "1", "--set", "thresholds.sellout_time_s=<= 30", "--out", str(out)),
        ]
    )
    assert res.exit_code == 0, res.output
    before = json.loads((out / "search.json").read_text())
    charts = {c: (out / c).read_bytes() for c in before["charts"]}
    page = (out / "report.html").read_bytes()
    assert charts and before["answer"]["value"] is not None
    (out / "report.html").unlink()
    for c in charts:
        (out / c).unlink()

    res = cli.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert before["answer"]["line"] in res.output.splitlines()
    assert f"report:  {out / 'report.html'}" in res.output.splitlines()
    assert (out / "report.html").read_bytes() == page
    assert {c: (out / c).read_bytes() for c in charts} == charts
    assert before["answer"]["line"].split(" (")[0] in page.decode()
    after = json.loads((out / "search.json").read_text())
    assert after["status"] == "complete" and after["charts"] == before["charts"]
    assert after["points"] == before["points"] and after["answer"] == before["answer"]


def _ctrl_c_after(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the first ``n`` replications as usual, then press Ctrl-C."""
    real = sim_runner.replication_outcome
    calls: list[int] = []

    def interrupted(scenario: Scenario, seed: int, replication: int) -> Outcome:
        calls.append(replication)
        if len(calls) > n:
            raise KeyboardInterrupt
        outcome: Outcome = real(scenario, seed, replication)
        return outcome

    monkeypatch.setattr(sim_runner, "replication_outcome", interrupted)


def test_report_on_an_interrupted_search_needs_partial_and_keeps_it_incomplete(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ctrl_c_after(2, monkeypatch)  # LOW and HIGH are judged, then Ctrl-C in the bisection
    out = tmp_path / "search"
    res = _search(
        [
            str(smoke_path),
            *("--vary", "service.workers=2..8", "--integer", "--replications", "1"),
            *("--workers", "1", "--set", "thresholds.sellout_time_s=<= 30", "--out", str(out)),
        ]
    )
    assert res.exit_code == 130, res.output
    assert not (out / "report.html").exists()
    stopped = json.loads((out / "search.json").read_text())
    assert [p["passed"] for p in stopped["points"]] == [False, True, None]

    res = cli.invoke(app, ["report", str(out)])
    assert res.exit_code == 1, res.output
    assert "did not finish (status incomplete: interrupted (Ctrl-C)); 2 value(s) judged" in (
        res.output
    )
    assert f"flashsale report --partial {out}" in res.output
    assert not (out / "report.html").exists()

    res = cli.invoke(app, ["report", "--partial", str(out)])
    assert res.exit_code == 1, res.output  # no answer
    assert f"report:  {out / 'report.html'}" in res.output
    page = (out / "report.html").read_text()
    assert "Partial report" in page and "did not finish" in page
    assert "point-000" in page and "point-001" in page
    assert len(list((out / "charts").glob("*.png"))) == 2  # oversold_units, sellout_time_s
    doc = json.loads((out / "search.json").read_text())
    assert (doc["status"], doc["error"], doc["answer"]) == ("incomplete", stopped["error"], None)


def test_ctrl_c_marks_the_search_incomplete_and_exits_130(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ctrl_c_after(3, monkeypatch)  # LOW's two replications and HIGH's first; then Ctrl-C
    out = tmp_path / "search"
    res = _search(
        [
            str(smoke_path),
            *("--vary", "service.workers=1..8", "--integer", "--workers", "1"),
            *("--replications", "2", "--out", str(out)),
        ]
    )
    assert res.exit_code == 130, res.output
    assert "interrupted (Ctrl-C)" in res.output and "search.json marked incomplete" in res.output
    doc = json.loads((out / "search.json").read_text())
    assert doc["status"] == "incomplete" and "Ctrl-C" in doc["error"]
    assert [(p["status"], p["replications_done"]) for p in doc["points"]] == [
        ("incomplete", 2),
        ("incomplete", 1),
    ]


def test_a_verdict_in_a_few_words_names_the_bound_it_judged(smoke_path: Path) -> None:
    """Pay p95 of 1.8, 2.0 and 1.9 s: the mean (1.9) holds <= 2, the interval's top
    (1.9 + t(0.975, 2) x 0.1 / sqrt(3) = 2.148) does not; a sell-out time undefined in
    one replication fails for want of a value."""
    from flashsale.scenario import load_scenario
    from flashsale.search_run import verdict_text
    from flashsale.stats import summarize
    from flashsale.thresholds import check_thresholds

    sc = load_scenario(
        smoke_path,
        [
            "thresholds={}",
            "thresholds.latency_p95_s.pay=<= 2",
            "thresholds.latency_p95_s.pay.ci_high=<= 2",
            "thresholds.sellout_time_s=<= 300",
        ],
    )
    metrics = {
        "latency_p95_s": {"pay": summarize([1.8, 2.0, 1.9], bounds=(0.0, None))},
        "sellout_time_s": summarize([250.0, None, 280.0], bounds=(0.0, None)),
    }
    texts = [verdict_text(v) for v in check_thresholds(sc.thresholds, metrics)]
    top = 1.9 + 4.302652729911275 * 0.1 / math.sqrt(3)
    assert texts == [
        "latency_p95_s.pay 1.9 <= 2",
        f"latency_p95_s.pay.ci_high {top:.4g} > 2",
        "sellout_time_s undefined in 1 of 3 replications",
    ]


def test_values_are_shown_as_people_write_them() -> None:
    from flashsale.search import show

    assert [show(1_000_000), show(0.1 + 0.2), show(2.5e-7)] == ["1000000", "0.3", "2.5e-07"]


def test_answer_lines_and_warnings_say_what_the_tried_values_show(smoke_path: Path) -> None:
    """Two thresholds pulling in opposite directions (a sell-out time that wants more
    workers, a bot share that wants fewer): the search's answer line and its warning."""
    from flashsale.search import Answer, Trial
    from flashsale.search_run import SearchResult, Tried, answer_line, plan_search, warning_lines
    from flashsale.stats import summarize
    from flashsale.thresholds import check_thresholds

    grid = parse_range("service.workers=1..8", str(smoke_path), integer=True)
    checks = [
        "thresholds={}",
        "thresholds.sellout_time_s=<= 30",
        "thresholds.bot_unit_share=<= 0.4",
    ]
    plan = plan_search(smoke_path, grid, checks, None)

    def tried(point: int, value: int, sellout: float, bots: float) -> Tried:
        metrics = {"sellout_time_s": summarize([sellout]), "bot_unit_share": summarize([bots])}
        return Tried(
            point, f"point-{point:03d}", value, tuple(check_thresholds(plan.thresholds, metrics))
        )

    low, high = tried(0, 1, 44.5, 0.3), tried(1, 8, 6.0, 0.5)
    trials = (Trial(1, low.passed), Trial(8, high.passed))
    found = contradictions(
        [(t.value, {str(v.threshold): v.passed for v in t.verdicts}) for t in (low, high)]
    )
    result = SearchResult(
        plan, Path("s"), Path("s/report.html"), Answer(None, 8, trials), (low, high), tuple(found)
    )
    assert answer_line(result) == (
        "no service.workers in 1..8 satisfies every threshold "
        "(tried 2 values; 8 fails: bot_unit_share 0.5 > 0.4)"
    )
    [warning] = warning_lines(result)
    assert warning.startswith(
        "bot_unit_share <= 0.4 holds at service.workers=1 but not at 8: not monotone in "
        "service.workers (the search assumes each threshold, once it holds, holds at every "
        "larger value)"
    )
    both = tried(0, 1, 20.0, 0.3)
    whole = SearchResult(
        plan,
        Path("s"),
        Path("s/report.html"),
        Answer(1, None, (Trial(1, True), Trial(8, True))),
        (both, tried(1, 8, 6.0, 0.3)),
        (),
    )
    assert answer_line(whole) == (
        "smallest service.workers at which every threshold holds: 1 "
        "(tried 2 values; the whole range holds: a smaller value may hold too)"
    )


def test_the_chart_marks_a_ci_high_threshold_at_the_interval_top(smoke_path: Path) -> None:
    """Sell-out times of 20, 22 and 30 s: mean 24 holds <= 30, but the interval's top
    (24 + t(0.975, 2) x sqrt(28) / sqrt(3) = 37.14) fails; 10, 11 and 12 s: top
    11 + t(0.975, 2) / sqrt(3) = 13.48 holds. The chart's markers for the .ci_high
    threshold sit at those tops (so a cross is above the limit), the mean's at the means."""
    from flashsale.scenario import load_scenario
    from flashsale.search_charts import judged_markers
    from flashsale.stats import summarize
    from flashsale.thresholds import check_thresholds

    sc = load_scenario(
        smoke_path,
        [
            "thresholds={}",
            "thresholds.sellout_time_s=<= 30",
            "thresholds.sellout_time_s.ci_high=<= 30",
        ],
    )
    points = []
    for value, times in ((4, [20.0, 22.0, 30.0]), (8, [10.0, 11.0, 12.0])):
        metrics = {"sellout_time_s": summarize(times, bounds=(0.0, None))}
        verdicts = [v.as_json() for v in check_thresholds(sc.thresholds, metrics)]
        points.append({"value": value, "metrics": metrics, "verdicts": verdicts})
    t = 4.302652729911275
    drawn = {bound: (list(y), list(holds)) for bound, y, holds in judged_markers(points, [0, 1])}
    assert list(drawn) == ["mean", "ci_high"]
    assert drawn["mean"] == (pytest.approx([24.0, 11.0]), [True, True])
    tops = [24 + t * math.sqrt(28) / math.sqrt(3), 11 + t / math.sqrt(3)]
    assert drawn["ci_high"] == (pytest.approx(tops), [False, True])
    assert drawn["ci_high"][0][0] > 30  # the failing cross is above the limit line
