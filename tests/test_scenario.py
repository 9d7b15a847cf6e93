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
    MAX_CHANNELS,
    MAX_COUNT,
    MAX_DEPTH,
    MAX_DURATION_S,
    MAX_FILE_BYTES,
    MAX_JOURNEYS,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_RETRIES,
    MAX_TIMELINE_ROWS,
    MAX_UNITS,
    MAX_WORKERS,
    MIN_RATE_PER_S,
    Payment,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    run_size,
    scenario_hash,
)

from .conftest import ROOT, SCENARIOS

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


# ------------------------------------------------------------- hardening (issue 13)
# Each quoted failure: exit 2, one `error:` line naming the file, the field and what
# is allowed, no traceback. Validation runs before anything else, so none can hang.


def _one_error(r: Any, source: str, field: str, allowed: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output + r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {source}: {field}"), lines[0]
    assert allowed in lines[0], lines[0]


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("service.cart_hold_s=inf", "service.cart_hold_s", "finite number"),
        ("sale.window_s=inf", "sale.window_s", "finite number"),
        ("bots.start_offset_s=nan", "bots.start_offset_s", "finite number"),
        ("bots.start_offset_s=-inf", "bots.start_offset_s", "finite number"),
        ("bots.start_offset_s=-1e12", "bots.start_offset_s", "greater than or equal to -2592000"),
        ('humans.think_s={dist="exponential",mean=inf}', "humans.think_s.mean", "finite number"),
        ("humans.think_s=inf", "humans.think_s", "finite number"),
        ("humans.patience_s=inf", "humans.patience_s", "finite number"),
        ("service.queue_timeout_s=inf", "service.queue_timeout_s", "finite number"),
        ("defenses.resale.at_s=inf", "defenses.resale.at_s", "finite number"),
        ("sale.unit_price=nan", "sale.unit_price", "finite number"),
        ("humans.count=1000000000", "humans.count", "less than or equal to 5000000"),
        ("service.workers=1e9", "service.workers", "valid integer"),
        ("service.workers=1000000000", "service.workers", "less than or equal to 100000"),
        ("outputs.timeline_interval_s=1e-9", "outputs.timeline_interval_s", "0.001"),
        ("sale.units=100000000000000000000", "sale.units", "less than or equal to 1000000000"),
        ("humans.count=true", "humans.count", "valid integer"),
        ('defenses.captcha.enabled="yes"', "defenses.captcha.enabled", "valid boolean"),
        ("schema_version=1.0", "schema_version", "schema_version = 1 (an integer)"),
        ("schema_version=true", "schema_version", "schema_version = 1 (an integer)"),
        ('schema_version="1"', "schema_version", "schema_version = 1 (an integer)"),
        ("sale.units=12.0", "sale.units", "valid integer"),
        ('sale.window_s="60"', "sale.window_s", "valid number"),
        ("defenses.resale.units=true", "defenses.resale.units", "'cancelled' or a whole number"),
    ],
)
def test_quoted_bad_values_exit_2_naming_field_and_rule(
    smoke_path: Path, override: str, field: str, allowed: str
) -> None:
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", override])
    _one_error(r, str(smoke_path), field, allowed)


@pytest.mark.parametrize(
    "override",
    [
        "bots.start_offset_s=nan",
        "bots.start_offset_s=-inf",
        "bots.start_offset_s=-1e12",
        'humans.think_s={dist="exponential",mean=inf}',
        "humans.count=1000000000",
        "outputs.timeline_interval_s=1e-9",
    ],
)
def test_simulate_refuses_before_running(smoke_path: Path, tmp_path: Path, override: str) -> None:
    """These hung at 0/1 replications, gave meaningless figures or ran out of memory."""
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", str(smoke_path), "--set", override, "--out", str(out)])
    field = override.split("=")[0]
    _one_error(r, str(smoke_path), field, "")
    assert not out.exists()


@pytest.mark.parametrize("n", ["100000000", "0", "1001"])
def test_simulate_replications_are_bounded(smoke_path: Path, tmp_path: Path, n: str) -> None:
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", str(smoke_path), "--replications", n, "--out", str(out)])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"error: --replications: must be from 1 to 1,000, got {int(n):,}"
    ]
    assert not out.exists()


def test_simulate_replications_must_fit_in_memory(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashsale.commands import simulate

    monkeypatch.setattr(simulate, "_memory_bytes", lambda: 50 * 2**20)  # 50 MiB
    args = ["simulate", str(smoke_path), "--set", "humans.count=500000", "--out"]
    r = runner.invoke(app, [*args, str(tmp_path / "a"), "--replications", "2"])
    assert r.exit_code == 2
    (line,) = r.stderr.splitlines()
    # 500,050 journeys x 120 B x 2 = 114 MiB at least; one replication (57 MiB) does not fit
    assert line.startswith("error: --replications: 2 replications of smoke need at least 0.1 GiB")
    assert line.endswith("this machine has 0.0 GiB; run at most 1")
    assert not (tmp_path / "a").exists()


def _nested(kind: str, n: int) -> str:
    head = 'schema_version = 1\nname = "t"\n'
    if kind == "arrays":
        return head + "x = " + "[" * n + "]" * n + "\n"
    if kind == "inline tables":
        return head + "x = " + "{a = " * n + "1" + "}" * n + "\n"
    return head + "[" + ".".join(["a"] * n) + "]\nb = 1\n"


@pytest.mark.parametrize("kind", ["arrays", "inline tables", "dotted tables"])
@pytest.mark.parametrize("n", [40, 5_000])
def test_deeply_nested_file_is_refused(tmp_path: Path, kind: str, n: int) -> None:
    p = _write(tmp_path, _nested(kind, n))
    r = runner.invoke(app, ["validate", str(p)])
    _one_error(r, str(p), "", "nested more than 32 levels deep")


def test_endless_or_huge_file_is_refused(tmp_path: Path) -> None:
    r = runner.invoke(app, ["validate", "/dev/zero"])
    _one_error(r, "/dev/zero", "larger than 1,048,576 bytes", "")
    big = _write(tmp_path, GOOD + "#" * (1 << 20))
    _one_error(runner.invoke(app, ["validate", str(big)]), str(big), "larger than", "")


def test_unusable_literals_are_refused(tmp_path: Path, smoke_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace("units = 10", "units = " + "9" * 5000))
    _one_error(runner.invoke(app, ["validate", str(p)]), str(p), "invalid TOML", "4,300 digits")
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", "x=" + "[" * 5000 + "]" * 5000])
    _one_error(r, str(smoke_path), "--set x", "nested more than 32 levels deep")
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", "sale.units=" + "9" * 5000])
    _one_error(r, str(smoke_path), "--set sale.units", "4,300 digits")


def test_a_long_bad_value_is_shown_cut_short(smoke_path: Path) -> None:
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", f'name="{"x y" * 10_000}"'])
    _one_error(r, str(smoke_path), "name", "(30,002 characters)")
    assert len(r.stderr) < 300


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("oversold_units = '< 1e999'", "the value must be a finite number"),
        ("oversold_units = '< 1.2.3'", "the value must be a finite number"),
        ("oversold_units = 0", "expected an operator"),
    ],
)
def test_threshold_values_are_finite_numbers(tmp_path: Path, table: str, expected: str) -> None:
    p = _write(tmp_path, GOOD + "[thresholds]\n" + table + "\n")
    _one_error(runner.invoke(app, ["validate", str(p)]), str(p), "thresholds", expected)


def test_thresholds_as_a_list_cannot_skip_the_metric_check(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD + "[[thresholds]]\nmetric = 'nonsense'\nop = '<'\nvalue = 1\n")
    _one_error(runner.invoke(app, ["validate", str(p)]), str(p), "thresholds", "must be a table")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ('target.headers={"X-A"="b\\r\\nEvil: 1"}', "no line breaks"),
        ('target.headers={"bad name"="x"}', "not an HTTP header name"),
        ('target.steps.cart.path="/v1/cart now"', "no spaces"),
        ('target.steps.cart.path="/v1/cart/{nope}"', "nor captured by any answer rule"),
        ('target.steps.cart.answers=[{meaning="great"}]', "'ok'"),
        ('target.headers={"Authorization"="Bearer {env.1X}"}', "is not a variable"),
        ('target.base_url="http://"', "http(s) URL"),
    ],
)
def test_target_text_is_checked(smoke_path: Path, override: str, expected: str) -> None:
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", override])
    _one_error(r, str(smoke_path), "target.", expected)


# ------------------------------------------------------------------ --set target.base_url


def test_remote_url_by_set_is_refused_even_with_allow_remote(
    smoke_path: Path, tmp_path: Path
) -> None:
    """README: a URL given on the command line alone is refused; --set is the command line."""
    url = "https://staging.example.com"
    args = ["--set", f"target.base_url={url}", "--allow-remote", "--out", str(tmp_path / "r")]
    r = runner.invoke(app, ["replay", str(smoke_path), *args])
    _one_error(r, str(smoke_path), "--set target.base_url", "name it as base_url in the")
    assert not (tmp_path / "r").exists()
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", f'target={{base_url="{url}"}}'])
    _one_error(r, str(smoke_path), "--set target.base_url", "is not loopback")


def test_loopback_or_file_named_url_by_set_is_accepted(smoke_path: Path, tmp_path: Path) -> None:
    sc = load_scenario(smoke_path, ["target.base_url=http://127.0.0.1:8000"])
    assert sc.target.base_url == "http://127.0.0.1:8000"
    named = _write(tmp_path, GOOD + '[target]\nbase_url = "https://staging.example.com"\n')
    same = load_scenario(named, ["target.base_url=https://staging.example.com"])
    assert same.target.base_url == "https://staging.example.com"
    with pytest.raises(ScenarioError, match="is not loopback"):
        load_scenario(named, ["target.base_url=https://elsewhere.example.com"])


# -------------------------------------------------------------------------- run size


def test_run_size_bounds_what_a_simulation_holds(smoke_path: Path) -> None:
    """The estimate is an upper bound: journeys exact, requests and timeline rows above
    what the engine produced, for the smoke sale and for slow, heavy-tailed thinkers."""
    from flashsale.sim.engine import simulate

    for extra in ([], ['humans.think_s={dist="lognormal",median=30,sigma=1.5}']):
        sc = load_scenario(smoke_path, extra)
        size = run_size(sc)
        out = simulate(sc, replication=0).outcome
        assert size.journeys == len(out.journeys["journey"]) == 1050
        assert len(out.requests["journey"]) <= size.requests
        assert len(out.timeline["t"]) <= size.timeline_rows


def test_poco_m3_fits_with_room_to_spare() -> None:
    size = run_size(load_scenario(SCENARIOS / "poco_m3.toml"))
    assert size.journeys * 10 < MAX_JOURNEYS
    assert size.requests * 10 < MAX_REQUESTS
    assert size.timeline_rows * 1000 < MAX_TIMELINE_ROWS
    resale = run_size(load_scenario(SCENARIOS / "poco_m3_resale.toml"))
    assert resale.timeline_rows * 10 < MAX_TIMELINE_ROWS


@pytest.mark.parametrize(
    ("overrides", "field", "figure"),
    [
        (
            ["humans.count=4000000", "bots.operators=2000", "bots.accounts_per_operator=1000"],
            "humans.count",
            "6,000,000 journeys",
        ),
        (
            ["bots.operators=5000", "bots.accounts_per_operator=1000"],
            "bots.accounts_per_operator",
            "5,001,000 journeys",
        ),
        (["bots.start_offset_s=-2000000"], "bots.start_offset_s", "requests per replication"),
        (
            ["humans.count=4000000", "humans.retries_on_error=100"],
            "humans.retries_on_error",
            "requests per replication",
        ),
        (
            ['humans.arrivals={profile="poisson",rate_per_s=1e-6}'],
            "humans.arrivals.rate_per_s",
            "timeline rows",
        ),
        (
            [
                "outputs.timeline_interval_s=0.001",
                "defenses.review.enabled=true",
                "defenses.review.at_s=2000000",
            ],
            "outputs.timeline_interval_s",
            "timeline rows",
        ),
        (
            ['humans.think_s={dist="lognormal",median=100000,sigma=3}'],
            "humans.think_s",
            "timeline rows",
        ),
        (
            ["defenses.waiting_room.enabled=true", "defenses.waiting_room.new_users_per_min=0.001"],
            "defenses.waiting_room.new_users_per_min",
            "timeline rows",
        ),
    ],
)
def test_runs_that_cannot_fit_are_refused_naming_the_driver(
    smoke_path: Path, overrides: list[str], field: str, figure: str
) -> None:
    args = [x for o in overrides for x in ("--set", o)]
    r = runner.invoke(app, ["validate", str(smoke_path), *args])
    _one_error(r, str(smoke_path), field, figure)
    assert "at most" in r.stderr


def test_readme_states_every_limit() -> None:
    from flashsale.commands.simulate import MAX_REPLICATIONS

    readme = (ROOT / "README.md").read_text()
    reference = readme[readme.index("## Scenario reference") : readme.index("## Outcome tables")]
    for limit in (
        MAX_JOURNEYS,
        MAX_REQUESTS,
        MAX_TIMELINE_ROWS,
        MAX_UNITS,
        MAX_COUNT,
        MAX_WORKERS,
        MAX_RETRIES,
        MAX_DURATION_S,
        MAX_FILE_BYTES // 2**20,
        MAX_REPLICATIONS,
    ):
        assert f"{limit:,}" in reference, limit
    assert f"{MAX_CHANNELS} channels" in reference and f"{MAX_DEPTH} levels" in reference
    assert (MIN_RATE_PER_S, MAX_RATE_PER_S) == (1e-6, 1e6)
    assert "1e-6 to 1e6 per second" in reference


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # a field named like a union tag ("burst" is also an arrivals profile) keeps its name
        ("defenses.rate_limit.burst=false", "defenses.rate_limit.burst: Input should be a valid"),
        (
            'humans.arrivals={profile="poisson",rate_per_s=1,bogus=1}',
            "humans.arrivals.bogus: unknown field; allowed here: profile, rate_per_s",
        ),
        (
            'humans.think_s={dist="gamma",mean=1,cv=0.5,k=2}',
            "humans.think_s.k: unknown field; allowed here: cv, dist, mean",
        ),
        ("sale.opens_at=36000", "sale.opens_at: must be a TOML local time like 10:00:00"),
        ("sale.date=0", "sale.date: must be a TOML date like 2021-01-26"),
        ("sale.date=2021-01-26T10:00:00", "sale.date: must be a TOML date"),
    ],
)
def test_errors_name_the_field_as_written(smoke_path: Path, override: str, expected: str) -> None:
    r = runner.invoke(app, ["validate", str(smoke_path), "--set", override])
    _one_error(r, str(smoke_path), expected, "")


def test_dates_and_times_still_load_from_toml_and_round_trip(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / "poco_m3.toml", ["sale.opens_at=09:30:00"])
    assert str(sc.sale.date) == "2021-01-26" and str(sc.sale.opens_at) == "09:30:00"
    again = _write(tmp_path, sc.to_toml())
    assert load_scenario(again) == sc
