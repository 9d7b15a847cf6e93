"""The Scenario contract: built-ins load, bad input is named by file, field and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.distributions import Gamma, Lognormal, Uniform
from flashsale.scenario import (
    Payment,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_hash,
)

from .conftest import SCENARIOS

BUILT_INS = sorted(SCENARIOS.glob("*.toml"))
runner = CliRunner()


def test_all_six_built_in_scenarios_exist() -> None:
    names = {p.stem for p in BUILT_INS}
    assert {"poco_m3", "poco_m3_resale", "yellow_cart", "waiting_room", "lottery", "smoke"} <= names


@pytest.mark.parametrize("path", BUILT_INS, ids=lambda p: p.stem)
def test_built_in_scenario_loads_and_names_itself(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.sale.units > 0
    text = path.read_text()
    assert text.startswith("#"), "each built-in starts with a header comment"
    assert "Fact" in text and "Assumption" in text


def test_poco_m3_carries_the_facts_of_the_real_sale() -> None:
    sc = load_scenario(SCENARIOS / "poco_m3.toml")
    assert sc.sale.units == 50_000
    assert str(sc.sale.opens_at) == "10:00:00"
    assert [c.name for c in sc.sale.channels] == ["Lazada", "Akulaku", "Mi.com"]
    assert sc.humans.count >= 250_000
    assert sc.bots.accounts >= 5_000


def test_resale_opens_on_29_january_at_ten() -> None:
    sc = load_scenario(SCENARIOS / "poco_m3_resale.toml")
    assert sc.defenses.review.enabled and sc.defenses.resale.enabled
    assert sc.defenses.resale.at_s == 3 * 24 * 3600


def test_defaults_fill_every_section(minimal_data: dict[str, Any]) -> None:
    sc = parse_scenario(minimal_data)
    assert sc.bots.operators == 0
    assert sc.service.workers == 64
    assert not sc.defenses.waiting_room.enabled
    assert sc.sale.channels[0].stock_share == 1.0
    assert sc.target.base_url is None


def test_bare_number_is_a_constant_distribution(minimal_data: dict[str, Any]) -> None:
    minimal_data["humans"]["think_s"] = 2.5
    minimal_data["humans"]["patience_s"] = 30
    sc = parse_scenario(minimal_data)
    rng = np.random.default_rng(0)
    assert list(sc.humans.think_s.sample(rng, 3)) == [2.5, 2.5, 2.5]
    assert sc.humans.patience_s is not None and sc.humans.patience_s.mean() == 30


@pytest.mark.parametrize(
    "dist",
    [
        Lognormal(dist="lognormal", median=2.0, sigma=0.5),
        Gamma(dist="gamma", mean=3.0, cv=0.5),
        Uniform(dist="uniform", low=1.0, high=5.0),
    ],
    ids=lambda d: d.dist,
)
def test_distribution_samples_match_analytic_mean(dist: Any) -> None:
    x = dist.sample(np.random.default_rng(1), 200_000)
    assert x.mean() == pytest.approx(dist.mean(), rel=0.01)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


GOOD = """
schema_version = 1
name = "t"
[sale]
units = 10
[humans]
count = 5
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "[bots]\naccounts_per_operator = -3\n",
            "bots.accounts_per_operator: Input should be greater than 0 (got -3)",
        ),
        ('[bots]\noperators = "many"\n', "bots.operators: Input should be a valid integer"),
        (
            "[bots]\naccounts_per_operatr = 3\n",
            "bots.accounts_per_operatr: unknown field; allowed here: accounts_per_operator",
        ),
        (
            "[[sale.channels]]\nname='a'\nstock_share=0.5\ndemand_share=1.0\n",
            "channels[*].stock_share must sum to 1, got 0.5",
        ),
        (
            "[service.step_s]\npay = {dist = 'weibull', k = 2}\n",
            "service.step_s.pay: Input tag 'weibull'",
        ),
        ("[thresholds]\nhuman_sucess_share = '>= 0.5'\n", "unknown metric 'human_sucess_share'"),
        ("[thresholds]\noversold_units = 'zero'\n", "expected an operator"),
    ],
)
def test_bad_field_is_named_with_value_and_rule(tmp_path: Path, extra: str, expected: str) -> None:
    p = _write(tmp_path, GOOD + extra)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(e.value).startswith(f"{p}: ")
    assert expected in str(e.value)


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "schema_version = 1\n[sale\nunits = 3\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: invalid TOML: .*line 2"):
        load_scenario(p)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="nope.toml: no such file"):
        load_scenario(tmp_path / "nope.toml")


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace("schema_version = 1", "schema_version = 2"))
    with pytest.raises(ScenarioError, match="schema_version: this build reads schema_version = 1"):
        load_scenario(p)


def test_overrides_are_validated_like_the_file(smoke_path: Path) -> None:
    sc = load_scenario(
        smoke_path, ["humans.count=42", "defenses.captcha.enabled=true", "humans.think_s=1.5"]
    )
    assert sc.humans.count == 42 and sc.defenses.captcha.enabled
    assert sc.humans.think_s.mean() == 1.5
    with pytest.raises(ScenarioError, match="humans.count: Input should be greater than or"):
        load_scenario(smoke_path, ["humans.count=-1"])
    with pytest.raises(ScenarioError, match="humans.cont: unknown field"):
        load_scenario(smoke_path, ["humans.cont=1"])
    with pytest.raises(ScenarioError, match="expected dotted.path=value"):
        load_scenario(smoke_path, ["humans.count"])


def test_hash_changes_with_content_not_with_formatting(smoke_path: Path) -> None:
    a = load_scenario(smoke_path)
    b = load_scenario(smoke_path, ["humans.count=1000"])  # same value as the file
    c = load_scenario(smoke_path, ["humans.count=999"])
    assert scenario_hash(a) == scenario_hash(b) != scenario_hash(c)


# ---------------------------------------------------------------- command line


def test_validate_passes_all_built_ins() -> None:
    r = runner.invoke(app, ["validate", *map(str, BUILT_INS)])
    assert r.exit_code == 0, r.output
    assert r.output.count("ok: ") == len(BUILT_INS)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "bots.operators=-1"], "bots.operators: Input should be greater than or equal"),
        (["--set", "sale.units=lots"], "sale.units: Input should be a valid integer"),
        (["--set", "nonsense"], "expected dotted.path=value"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(
    smoke_path: Path, args: list[str], expected: str
) -> None:
    r = runner.invoke(app, ["validate", str(smoke_path), *args])
    assert r.exit_code == 2
    assert expected in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["show", str(tmp_path / "gone.toml")])
    assert r.exit_code == 2
    assert "gone.toml: no such file" in r.stderr


def test_show_prints_every_default_and_round_trips(smoke_path: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["show", str(smoke_path), "--set", "humans.count=77"])
    assert r.exit_code == 0, r.output
    data = tomllib.loads(r.stdout)
    assert data["humans"]["count"] == 77
    assert data["defenses"]["waiting_room"]["new_users_per_min"] == 6000.0  # a default
    again = tmp_path / "again.toml"
    again.write_text(r.stdout)
    assert load_scenario(again) == load_scenario(smoke_path, ["humans.count=77"])


def test_help_lists_only_real_commands() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("validate", "show"):
        assert name in r.stdout


def test_scenario_is_immutable(smoke_path: Path) -> None:
    sc: Scenario = load_scenario(smoke_path)
    with pytest.raises(Exception, match="frozen"):
        sc.sale.units = 5  # type: ignore[misc]


def test_payment_failure_grows_past_the_knee_and_caps_at_one() -> None:
    p = Payment(failure_prob=0.05, failure_growth=0.6, load_knee=0.8)
    assert p.failure_probability(0.5) == pytest.approx(0.05)
    assert p.failure_probability(1.3) == pytest.approx(0.05 + 0.6 * 0.5)
    assert p.failure_probability(10.0) == 1.0


@pytest.mark.parametrize("units", [0, 1, 7, 200, 50_000, 50_001])
def test_stock_split_over_channels_sums_to_the_units(units: int) -> None:
    sale = load_scenario(SCENARIOS / "poco_m3.toml").sale
    parts = sale.split(units)
    assert sum(parts) == units
    for part, channel in zip(parts, sale.channels, strict=True):
        assert abs(part - units * channel.stock_share) < 1  # largest remainder
