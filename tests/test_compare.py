"""`flashsale compare`: every difference named, confounding noted, paired differences in
points, files, bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.compare import (
    chart_labels,
    compare_runs,
    compare_summary,
    paired_differences,
    run_changes,
    run_differences,
    run_labels,
)
from flashsale.metric_registry import KEY_FIGURES
from flashsale.metrics import compute_metrics, fmt_signed
from flashsale.runs import open_run
from flashsale.scenario import Scenario, load_scenario

from .conftest import SCENARIOS
from .test_chart_readability import _keep_figures, _legend_clear_of_axes
from .test_metrics_data import make_outcome, make_run, scenario, synthetic_outcome


def _sc(**defenses: object) -> Scenario:
    return scenario(
        sale={"units": 150, "window_s": 30},
        humans={"count": 300},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
        defenses=defenses,
    )


def _manifest(sc: Scenario, **extra: object) -> dict[str, object]:
    return {
        "scenario": sc.to_toml_dict(),
        "scenario_name": sc.name,
        "engine": "sim",
        "seed": sc.seed,
        **extra,
    }


def test_labels_name_what_differs() -> None:
    base = _sc()
    wr = _sc(waiting_room={"enabled": True})
    assert run_labels([_manifest(base), _manifest(wr)]) == [
        "defenses.waiting_room.enabled=false",
        "defenses.waiting_room.enabled=true",
    ]
    # Same scenario, simulated and replayed: the engine (and replay scale) tell them apart.
    labels = run_labels([_manifest(base), _manifest(base, engine="replay", scale=0.01)])
    assert labels == ["engine=sim, scale=none", "engine=replay, scale=0.01"]
    # Identical runs fall back to the scenario name.
    assert run_labels([_manifest(base), _manifest(base)]) == ["hand", "hand"]


def test_labels_ignore_description_and_thresholds() -> None:
    a = scenario(description="one")
    b = scenario(
        description="two",
        thresholds={"oversold_units": "== 0"},
        humans={"count": 5, "arrivals": {"profile": "burst", "early_window_s": 10}},
    )
    assert run_labels([_manifest(a), _manifest(b)]) == ["humans.count=4", "humans.count=5"]


def _file(name: str) -> dict[str, object]:
    return _manifest(load_scenario(SCENARIOS / name))


def test_every_difference_is_named_in_full() -> None:
    """waiting_room.toml against poco_m3.toml, read from the files and checked by hand
    (`flashsale show` of both, diffed): seven fields differ besides the description
    and the thresholds, which do not change a sale. None is left out as "+N more"."""
    runs = [_file("poco_m3.toml"), _file("waiting_room.toml")]
    assert run_differences(runs) == [
        {"setting": "name", "values": ["poco_m3", "waiting_room"]},
        {"setting": "sale.date", "values": ["2021-01-26", None]},
        {
            "setting": "humans.patience_s",
            "values": ["exponential(mean=300.0)", "exponential(mean=600.0)"],
        },
        {"setting": "defenses.account_limit.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.new_users_per_min", "values": [6000.0, 12000.0]},
        {"setting": "defenses.waiting_room.max_active", "values": [5000, 6000]},
    ]
    assert run_labels(runs)[1] == (
        "sale.date=none, humans.patience_s=exponential(mean=600.0), "
        "defenses.account_limit.enabled=true, "
        "defenses.waiting_room.enabled=true, defenses.waiting_room.new_users_per_min=12000.0, "
        "defenses.waiting_room.max_active=6000"
    )
    assert all("more" not in label for label in run_labels(runs))


def test_runs_that_change_several_settings_say_so() -> None:
    """A defense switched on counts once with its parameters; the name is no setting."""
    runs = [_file("poco_m3.toml"), _file("waiting_room.toml")]
    [change] = run_changes(run_differences(runs), 2)
    assert change["settings"] == [
        "sale.date",
        "humans.patience_s",
        "defenses.account_limit",
        "defenses.waiting_room",
    ]
    assert change["note"] == (
        "These runs differ in 4 settings (sale.date, humans.patience_s, "
        "defenses.account_limit, defenses.waiting_room): an effect cannot be attributed "
        "to one of them."
    )
    # The scenario shipped to measure the waiting room alone changes just that.
    alone = [_file("poco_m3.toml"), _file("poco_m3_waiting_room.toml")]
    assert run_changes(run_differences(alone), 2) == [
        {"run": 1, "settings": ["defenses.waiting_room"], "note": None}
    ]


def _crowd(count: int, patience: dict[str, object]) -> Scenario:
    return scenario(
        sale={"units": 150, "window_s": 30},
        humans={"count": count, "patience_s": patience},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
    )


def test_a_distribution_is_one_setting_shown_with_its_parameters() -> None:
    """Patience changed from exponential to lognormal: one difference, each run's
    distribution whole, not a ``none`` for every parameter the other one lacks; with
    the crowd changed too, the note counts two settings, not five."""
    a = _crowd(300, {"dist": "exponential", "mean": 300.0})
    b = _crowd(350, {"dist": "lognormal", "median": 240.0, "sigma": 0.5})
    differences = run_differences([_manifest(a), _manifest(b)])
    assert differences == [
        {"setting": "humans.count", "values": [300, 350]},
        {
            "setting": "humans.patience_s",
            "values": ["exponential(mean=300.0)", "lognormal(median=240.0, sigma=0.5)"],
        },
    ]
    assert run_labels([_manifest(a), _manifest(b)]) == [
        "humans.count=300, humans.patience_s=exponential(mean=300.0)",
        "humans.count=350, humans.patience_s=lognormal(median=240.0, sigma=0.5)",
    ]
    assert run_changes(differences, 2) == [
        {
            "run": 1,
            "settings": ["humans.count", "humans.patience_s"],
            "note": "These runs differ in 2 settings (humans.count, humans.patience_s): an "
            "effect cannot be attributed to one of them.",
        }
    ]
    # A parameter changed within one kind of distribution is that one setting too.
    c = _crowd(300, {"dist": "exponential", "mean": 600.0})
    assert run_differences([_manifest(a), _manifest(c)]) == [
        {
            "setting": "humans.patience_s",
            "values": ["exponential(mean=300.0)", "exponential(mean=600.0)"],
        }
    ]


def test_long_labels_give_way_to_folder_engine_and_replications_in_charts() -> None:
    long = ["x" * 71, "short"]
    paths = [Path("/r/poco-sim"), Path("/r/poco-01")]
    manifests: list[dict[str, object]] = [{"engine": "sim"}, {"engine": "replay", "scale": 0.01}]
    assert chart_labels(long, paths, manifests, [30, 1]) == [
        "poco-sim (sim, 30 replications)",
        "poco-01 (replay, scale 0.01)",
    ]
    # labels that fit stay: they say what differs
    assert chart_labels(["x" * 70, "y"], paths, manifests, [30, 1]) == ["x" * 70, "y"]
    # folders of one name are told apart by their path
    same = [Path("/a/run"), Path("/b/run")]
    assert chart_labels(long, same, manifests, [2, 2]) == [
        "/a/run (sim, 2 replications)",
        "/b/run (replay, scale 0.01, 2 replications)",
    ]


def test_changes_are_counted_against_run_1_run_by_run() -> None:
    base = _sc()
    more = scenario(
        sale={"units": 150, "window_s": 30},
        humans={"count": 400},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
    )
    runs = [
        _manifest(base),
        _manifest(base, engine="replay", scale=0.01),  # one change: the engine, at a scale
        _manifest(more, seed=9),  # two: the crowd and the seed
        _manifest(base, engine="replay", scale=0.01, seed=9),
    ]
    changes = run_changes(run_differences(runs), len(runs))
    assert [c["settings"] for c in changes] == [
        ["engine"],
        ["seed", "humans.count"],  # in the scenario's order: its seed comes first
        ["seed", "engine"],
    ]
    assert changes[0]["note"] is None
    assert changes[1]["note"] == (
        "Run 3 differs from run 1 in 2 settings (seed, humans.count): an effect cannot be "
        "attributed to one of them."
    )
    # Both runs with the defense on: each parameter is a setting of its own.
    a = _sc(waiting_room={"enabled": True})
    b = _sc(waiting_room={"enabled": True, "max_active": 7, "session_s": 60})
    [change] = run_changes(run_differences([_manifest(a), _manifest(b)]), 2)
    assert change["settings"] == [
        "defenses.waiting_room.max_active",
        "defenses.waiting_room.session_s",
    ]
    assert run_changes([], 2) == [{"run": 1, "settings": [], "note": None}]


def test_share_differences_are_in_percentage_points() -> None:
    assert fmt_signed("bot_unit_share", 0.0216) == "+2.16 pp"
    assert fmt_signed("human_success_share", -0.0081) == "-0.81 pp"
    assert fmt_signed("outcome_rates.human.purchased", 0.5) == "+50.00 pp"
    assert fmt_signed("units_sold", -1200.0) == "-1,200"  # other units as before
    assert fmt_signed("sellout_time_s", 12.5) == "+12.5 s"


def _docs(values_a: list[int], values_b: list[int]) -> list[dict[str, object]]:
    def doc(values: list[int]) -> dict[str, object]:
        outs = [
            make_outcome([{"result": "purchased", "units": 1, "person": p} for p in range(v)])
            for v in values
        ]
        return compute_metrics(scenario(sale={"units": 10}), outs)

    return [doc(values_a), doc(values_b)]


def test_paired_differences_need_a_shared_seed_and_replications() -> None:
    docs = _docs([3, 5, 4], [4, 7, 5])
    pairs, why = paired_differences(docs, [1, 1])
    d = pairs[0]["metrics"]["units_sold"]
    assert d["values"] == [1.0, 2.0, 1.0]
    assert d["mean"] == pytest.approx(4 / 3)
    assert "common random numbers" in why
    assert paired_differences(docs, [1, 2])[0] == []
    assert "different seeds" in paired_differences(docs, [1, 2])[1]
    short = _docs([3, 5], [4, 7, 5])
    assert "different replications" in paired_differences(short, [1, 1])[1]


@pytest.mark.slow
def test_compare_command_writes_its_own_report(tmp_path: Path) -> None:
    rng = np.random.default_rng
    a, b = _sc(), _sc(waiting_room={"enabled": True})
    make_run(tmp_path / "a", a, [synthetic_outcome(a, rng(i)) for i in range(2)])
    make_run(tmp_path / "b", b, [synthetic_outcome(b, rng(i + 5)) for i in range(2)])
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert "defenses.waiting_room.enabled=true" in page
    assert page.count('src="data:image/png;base64,') == len(list((out / "charts").glob("*.png")))
    assert {p.stem for p in (out / "charts").glob("*.png")} >= {
        "compare_metrics",
        "compare_paired",
        "compare_stock_left",
        "compare_lorenz",
        "compare_success_by_arrival",
    }
    data = json.loads((out / "compare.json").read_text())
    assert data["paired"]["differences"][0]["metrics"]["units_sold"]["n"] == 2
    assert data["differences"] == [
        {"setting": "defenses.waiting_room.enabled", "values": [False, True]}
    ]
    assert data["changes"] == [{"run": 1, "settings": ["defenses.waiting_room"], "note": None}]
    assert "<h2>What differs</h2>" in page and 'class="warn"' not in page
    # the terminal shows the same figures as compare.json: each run, then the metrics
    assert "run 2: defenses.waiting_room.enabled=true" in res.output
    sold = data["key_metrics"]["units_sold"]
    line = next(x for x in res.output.splitlines() if x.strip().startswith("units sold (kept)"))
    assert f"{sold[0]['mean']:,.0f} | {sold[1]['mean']:,.0f} (" in line
    # The output folder is now taken: a second compare into it is refused.
    res = CliRunner().invoke(
        app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    )
    assert res.exit_code == 2 and "not empty" in res.output


@pytest.mark.slow
def test_compare_json_report_and_console_name_three_changes(tmp_path: Path) -> None:
    """Three settings changed at once (the crowd, the account limit switched on, the
    room switched on with its rate): every one in compare.json, the page and the
    console, with the note that the effect cannot be attributed; the label in full."""
    rng = np.random.default_rng
    a = _sc()
    b = scenario(
        sale={"units": 150, "window_s": 30},
        humans={"count": 350},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
        defenses={
            "account_limit": {"enabled": True},
            "waiting_room": {"enabled": True, "new_users_per_min": 600},
        },
    )
    make_run(tmp_path / "a", a, [synthetic_outcome(a, rng(i)) for i in range(2)])
    make_run(tmp_path / "b", b, [synthetic_outcome(b, rng(i)) for i in range(2)])
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "compare.json").read_text())
    assert data["differences"] == [
        {"setting": "humans.count", "values": [300, 350]},
        {"setting": "defenses.account_limit.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.new_users_per_min", "values": [6000.0, 600.0]},
    ]
    note = (
        "These runs differ in 3 settings (humans.count, defenses.account_limit, "
        "defenses.waiting_room): an effect cannot be attributed to one of them."
    )
    assert data["changes"] == [
        {
            "run": 1,
            "settings": ["humans.count", "defenses.account_limit", "defenses.waiting_room"],
            "note": note,
        }
    ]
    label = (
        "humans.count=350, defenses.account_limit.enabled=true, "
        "defenses.waiting_room.enabled=true, defenses.waiting_room.new_users_per_min=600.0"
    )
    assert data["runs"][1]["label"] == label
    page = (out / "report.html").read_text()
    assert f'<p class="warn">{note}</p>' in page
    assert page.count("<code>defenses.waiting_room.new_users_per_min</code>") == 1
    assert f"run 2: {label}" in res.output and note in res.output
    bot = next(x for x in res.output.splitlines() if x.strip().startswith("bot share of units"))
    assert " pp, CI " in bot and "%," not in bot


def _legends(fig: Figure) -> list[str]:
    """A chart's legend entries, the runs' only (not the equality line)."""
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    return [t for t in texts if t.startswith("run ")]


@pytest.mark.slow
def test_charts_of_runs_differing_in_many_settings_name_runs_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The calibration workflow's comparison (issue 14): the scenario's own service
    model simulated, the calibrated one simulated, the sale replayed. Every run's label
    (every difference) runs past 70 characters, so every chart's legend names the runs
    by folder, engine and replications, clear of the axes, and no warning (such as
    matplotlib's "constrained_layout not applied") reaches the user; compare.json keeps
    the labels in full."""
    rng = np.random.default_rng
    own = _crowd(300, {"dist": "exponential", "mean": 300.0})
    calibrated = scenario(
        sale={"units": 150, "window_s": 30},
        humans={"count": 300, "patience_s": {"dist": "lognormal", "median": 240.0, "sigma": 0.5}},
        bots={"operators": 2, "accounts_per_operator": 10, "units_per_order": 2},
        service={
            "step_s": {
                "view": {"dist": "lognormal", "median": 0.0002395, "sigma": 0.3564},
                "cart": {"dist": "lognormal", "median": 0.000388, "sigma": 0.42},
                "pay": {"dist": "lognormal", "median": 0.0005918, "sigma": 0.4748},
            },
            "payment": {"failure_prob": 0.01316},
        },
    )
    own_outs = [synthetic_outcome(own, rng(i)) for i in range(2)]
    paths = [
        make_run(tmp_path / "own-sim", own, own_outs, engine="sim").path,
        make_run(
            tmp_path / "calibrated-sim",
            calibrated,
            [synthetic_outcome(calibrated, rng(i)) for i in range(2)],
            engine="sim",
        ).path,
        make_run(tmp_path / "replay", own, own_outs, engine="replay", extra={"scale": 0.01}).path,
    ]
    figures = _keep_figures(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = compare_runs(paths, tmp_path / "cmp")
    assert [str(w.message) for w in caught] == []
    short = [
        "own-sim (sim, 2 replications)",
        "calibrated-sim (sim, 2 replications)",
        "replay (replay, scale 0.01, 2 replications)",
    ]
    assert set(figures) == {
        "compare_metrics",
        "compare_paired",
        "compare_stock_left",
        "compare_human_sales",
        "compare_bot_sales",
        "compare_success_by_arrival",
        "compare_lorenz",
    }
    for name, fig in figures.items():
        baseline = " (baseline)" if name == "compare_paired" else ""
        expected = [f"run 1{baseline}: {short[0]}", f"run 2: {short[1]}", f"run 3: {short[2]}"]
        assert _legends(fig) == expected, name
        _legend_clear_of_axes(fig)
    doc = json.loads((report.parent / "compare.json").read_text())
    assert [len(r["label"]) > 70 for r in doc["runs"]] == [True, True, True]
    assert doc["runs"][1]["label"].startswith(
        "humans.patience_s=lognormal(median=240.0, sigma=0.5), "
        "service.step_s.view=lognormal(median=0.0002395, sigma=0.3564), "
    )


@pytest.mark.slow
def test_charts_of_runs_differing_in_one_setting_keep_it_in_the_legend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng
    a = _crowd(300, {"dist": "exponential", "mean": 300.0})
    b = _crowd(300, {"dist": "exponential", "mean": 600.0})
    paths = [
        make_run(tmp_path / n, sc, [synthetic_outcome(sc, rng(i)) for i in range(2)]).path
        for n, sc in (("a", a), ("b", b))
    ]
    figures = _keep_figures(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare_runs(paths, tmp_path / "cmp")
    assert [str(w.message) for w in caught] == []
    assert _legends(figures["compare_stock_left"]) == [
        "run 1: humans.patience_s=exponential(mean=300.0)",
        "run 2: humans.patience_s=exponential(mean=600.0)",
    ]
    assert _legends(figures["compare_paired"]) == [
        "run 1 (baseline): humans.patience_s=exponential(mean=300.0)",
        "run 2: humans.patience_s=exponential(mean=600.0)",
    ]


def test_compare_refuses_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "at least two run folders" in res.output
    res = runner.invoke(app, ["compare", str(tmp_path / "x"), str(tmp_path / "y")])
    assert res.exit_code == 2 and "not a run folder" in res.output


def _block(
    mean: float | None, lo: float | None = None, hi: float | None = None
) -> dict[str, object]:
    return {"values": [], "mean": mean, "ci_low": lo, "ci_high": hi, "n": 2}


def test_compare_summary_prints_means_and_paired_differences_with_their_interval() -> None:
    doc = {
        "runs": [{"label": "base", "path": "a"}, {"label": "limit on", "path": "b"}],
        "key_metrics": {n: [_block(1.0), _block(2.0)] for n, _ in KEY_FIGURES},
        "paired": {
            "reason": "shared seed",
            "differences": [
                {"run": 1, "metrics": {n: _block(1.0, 0.5, 1.5) for n, _ in KEY_FIGURES}}
            ],
        },
    }
    doc["key_metrics"]["bot_unit_share"] = [_block(0.4975), _block(0.2425)]
    doc["paired"]["differences"][0]["metrics"]["bot_unit_share"] = _block(-0.255, -0.2663, -0.2437)
    lines = compare_summary(doc)
    assert lines[:2] == ["run 1 (baseline): base  [a]", "run 2: limit on  [b]"]
    bot = next(line for line in lines if "bot share of units" in line)
    # a difference of shares is in percentage points, never "%" (relative or points?)
    assert bot.split("units")[1].strip() == "49.75% | 24.25% (-25.50 pp, CI -26.63 pp to -24.37 pp)"
    assert "difference from run 1" in lines[2]
    doc["paired"] = {"reason": "No paired differences: different seeds.", "differences": []}
    lines = compare_summary(doc)
    assert lines[-1] == "No paired differences: different seeds."
    assert "(" not in next(line for line in lines if "bot share of units" in line)


def _two_runs(tmp_path: Path) -> list[str]:
    sc = scenario()
    sold = make_outcome([{"result": "purchased", "units": 1, "person": 0}])
    return [str(make_run(tmp_path / name, sc, [sold]).path) for name in ("a", "b")]


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("a_file", "exists and is not a folder; choose another --out"),
        ("a_file/sub", "cannot create the output folder: Not a directory"),
        ("a", "output folder exists and is not empty; choose another --out"),
    ],
)
def test_a_bad_out_is_one_error_line_and_exit_2(tmp_path: Path, out: str, why: str) -> None:
    """--out goes through the check every output folder does (flashsale.runs), so a
    file or a path under one is bad input (2), not a failed run (1)."""
    runs = _two_runs(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    res = CliRunner().invoke(app, ["compare", *runs, "--out", str(tmp_path / out)])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == [f"error: {tmp_path / out}: {why}"]
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_comparison_that_fails_leaves_no_folder_behind(tmp_path: Path) -> None:
    runs = _two_runs(tmp_path)
    with open_run(scenario(), "test", out=tmp_path / "empty", seed=3, replications=1):
        pass  # a run folder with no replication: nothing to compare
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", runs[0], str(tmp_path / "empty"), "--out", str(out)])
    assert res.exit_code == 2 and "no finished replication" in res.output
    assert not out.exists()
    # an empty folder the user made stays, and is fine for the next attempt
    out.mkdir()
    res = CliRunner().invoke(app, ["compare", runs[0], str(tmp_path / "empty"), "--out", str(out)])
    assert res.exit_code == 2 and out.is_dir() and not any(out.iterdir())


def test_a_run_folder_moved_since_its_report_is_named_where_it_is_now(tmp_path: Path) -> None:
    """metrics.json keeps the folder's path at the time it was written; compare names
    the folder it was given."""
    a, b = _two_runs(tmp_path)
    assert CliRunner().invoke(app, ["report", a]).exit_code == 0  # writes metrics.json
    moved = tmp_path / "moved"
    shutil.move(a, moved)
    res = CliRunner().invoke(app, ["compare", str(moved), b, "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert f"[{moved}]" in res.output and f"[{a}]" not in res.output
