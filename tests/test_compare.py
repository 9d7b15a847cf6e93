"""`flashsale compare`: every difference named, confounding noted, paired differences in
points, files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.compare import (
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
        {"setting": "humans.patience_s.mean", "values": [300.0, 600.0]},
        {"setting": "defenses.account_limit.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.enabled", "values": [False, True]},
        {"setting": "defenses.waiting_room.new_users_per_min", "values": [6000.0, 12000.0]},
        {"setting": "defenses.waiting_room.max_active", "values": [5000, 6000]},
    ]
    assert run_labels(runs)[1] == (
        "sale.date=none, humans.patience_s.mean=600.0, defenses.account_limit.enabled=true, "
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
        "humans.patience_s.mean",
        "defenses.account_limit",
        "defenses.waiting_room",
    ]
    assert change["note"] == (
        "These runs differ in 4 settings (sale.date, humans.patience_s.mean, "
        "defenses.account_limit, defenses.waiting_room): an effect cannot be attributed "
        "to one of them."
    )
    # The scenario shipped to measure the waiting room alone changes just that.
    alone = [_file("poco_m3.toml"), _file("poco_m3_waiting_room.toml")]
    assert run_changes(run_differences(alone), 2) == [
        {"run": 1, "settings": ["defenses.waiting_room"], "note": None}
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
