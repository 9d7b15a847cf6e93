"""``[service.pools.NAME]`` in the scenario: each step's pool, defaults from
``[service]``, and every bad pool as one error line naming the field, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.scenario import PoolSettings, load_scenario, scenario_hash

from .conftest import SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
POOLS = """
[service.pools.payments]
steps = ["pay"]
workers = 2
queue_timeout_s = 30.0

[service.pools.front]
steps = ["view", "cart"]
workers = 100
queue_limit = 0
"""


def _with_pools(tmp_path: Path, text: str = POOLS) -> Path:
    path = tmp_path / "pools.toml"
    path.write_text(SMOKE.read_text() + text)
    return path


def test_each_step_meets_its_pool_and_unset_fields_come_from_service(tmp_path: Path) -> None:
    svc = load_scenario(_with_pools(tmp_path)).service  # smoke: 8 workers, 500, 5 s
    assert svc.pool_of("pay") == PoolSettings("payments", 2, 500, 30.0)
    assert svc.pool_of("view") == svc.pool_of("cart") == PoolSettings("front", 100, 0, 5.0)
    single = load_scenario(SMOKE).service
    assert {single.pool_of(s) for s in ("view", "cart", "pay")} == {
        PoolSettings("default", 8, 500, 5.0)
    }
    with pytest.raises(KeyError):
        svc.pool_of("captcha")  # served as a view: callers ask for "view"


def test_a_scenario_with_pools_round_trips_and_one_without_keeps_its_hash(
    tmp_path: Path,
) -> None:
    sc = load_scenario(_with_pools(tmp_path))
    again = tmp_path / "again.toml"
    again.write_text(sc.to_toml())
    assert load_scenario(again) == sc
    plain = load_scenario(SMOKE)
    assert "pools" not in plain.to_toml_dict()["service"]  # written as before pools existed
    assert scenario_hash(plain) != scenario_hash(sc)


def test_validate_show_and_set_take_pools(tmp_path: Path) -> None:
    path = str(_with_pools(tmp_path))
    cli = CliRunner()
    assert cli.invoke(app, ["validate", path]).exit_code == 0
    shown = cli.invoke(app, ["show", path, "--set", "service.pools.payments.workers=7"])
    assert shown.exit_code == 0, shown.output
    assert '[service.pools.payments]\nsteps = ["pay"]\nworkers = 7' in shown.output
    added = cli.invoke(
        app, ["show", str(SMOKE), "--set", 'service.pools.carts.steps=["cart"]', "--json"]
    )
    assert '"carts": {' in added.output and '"cart"' in added.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("service.pools.payments.workers=0", "service.pools.payments.workers: Input should be greater than 0 (got 0)"),  # noqa: E501
        ("service.pools.payments.workers=100001", "service.pools.payments.workers: Input should be less than or equal to 100000"),  # noqa: E501
        ("service.pools.payments.queue_limit=-1", "service.pools.payments.queue_limit: Input should be greater than or equal to 0"),  # noqa: E501
        ("service.pools.payments.queue_timeout_s=0", "service.pools.payments.queue_timeout_s: Input should be greater than 0"),  # noqa: E501
        ("service.pools.payments.queue_timeout_s=nan", "service.pools.payments.queue_timeout_s: "),
        ("service.pools.payments.workers=2.5", "service.pools.payments.workers: "),
        ('service.pools.payments.steps=["checkout"]', "service.pools.payments.steps: unknown step 'checkout'; allowed: view, cart, pay"),  # noqa: E501
        ('service.pools.payments.steps=["pay", "pay"]', "service.pools.payments.steps: a step is named twice"),  # noqa: E501
        ("service.pools.payments.steps=[]", "service.pools.payments.steps: List should have at least 1 item"),  # noqa: E501
        ('service.pools.more.steps=["pay"]', "service.pools.more.steps: step 'pay' is already in pool 'payments'"),  # noqa: E501
        ("service.pools.payments.wrkers=3", "service.pools.payments.wrkers: unknown field; allowed here: queue_limit, queue_timeout_s, steps, workers"),  # noqa: E501
        ("service.pools.idle.workers=3", "service.pools.idle.steps: required field is missing"),
        ('service.pools.default.steps=["cart"]', "service.pools.default: a pool name is"),
        ("service.pools.payments=3", "service.pools.payments: Input should be a valid dictionary"),
    ],
)  # fmt: skip
def test_a_bad_pool_is_one_error_line_naming_its_field(
    tmp_path: Path, setting: str, message: str
) -> None:
    path = _with_pools(tmp_path, POOLS.split("[service.pools.front]")[0])
    res = CliRunner().invoke(app, ["validate", str(path), "--set", setting])
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.output.count("error: ") == 1, res.output
    assert res.output.startswith(f"error: {path}: {message}"), res.output
