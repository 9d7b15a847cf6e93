"""The replay's target: loopback by default, remote only when configured and allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashsale.replay.session import Plan, plan_target
from flashsale.replay.target import TargetError, apply_target_config, check_target, is_loopback
from flashsale.scenario import Scenario, load_scenario

from .conftest import SCENARIOS


@pytest.mark.parametrize(
    ("url", "loop"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.1", True),
        ("http://localhost:1", True),
        ("http://[::1]:80", True),
        ("https://staging.example.com", False),
        ("http://[2001:db8::1]:8000", False),  # a non-loopback IP literal (documentation range)
        ("http://checkout.shop.invalid:8000", False),
    ],
)
def test_is_loopback(url: str, loop: bool) -> None:
    assert is_loopback(url) is loop


def test_loopback_needs_nothing() -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml")
    assert check_target("http://127.0.0.1:9/", sc, False, "x") == "http://127.0.0.1:9"


def test_remote_url_on_the_command_line_alone_is_refused() -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml")
    with pytest.raises(TargetError, match="does not name it"):
        check_target("https://staging.example.com", sc, True, "smoke.toml")


def test_remote_named_by_config_needs_allow_remote(tmp_path: Path) -> None:
    cfg = tmp_path / "staging.toml"
    cfg.write_text('[target]\nbase_url = "https://staging.example.com"\n')
    sc = apply_target_config(load_scenario(SCENARIOS / "smoke.toml"), cfg)
    with pytest.raises(TargetError, match="pass --allow-remote"):
        check_target("https://staging.example.com", sc, False, str(cfg))
    assert check_target("https://staging.example.com", sc, True, str(cfg)).endswith(".com")


def test_bad_target_configs(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml")
    missing = tmp_path / "none.toml"
    with pytest.raises(TargetError, match="no such file"):
        apply_target_config(sc, missing)
    extra = tmp_path / "extra.toml"
    extra.write_text('[target]\nbase_url = "http://127.0.0.1:1"\n[sale]\nunits = 3\n')
    with pytest.raises(TargetError, match="unexpected: sale"):
        apply_target_config(sc, extra)
    bad = tmp_path / "bad.toml"
    bad.write_text('[target]\nbase_url = "ftp://x"\n')
    with pytest.raises(TargetError, match=r"bad.toml: target.base_url: expected an http\(s\) URL"):
        apply_target_config(sc, bad)


def _plan(sc: Scenario, base_url: str) -> Plan:
    return Plan(sc.to_toml_dict(), 1.0, 0, 0.0, 0, 2, "k", base_url)


def test_a_worker_checks_the_plans_target_itself(tmp_path: Path) -> None:
    """A Locust worker runs the master's URL through the same rule, with its own
    --allow-remote: a master started with it cannot send a worker elsewhere."""
    smoke = load_scenario(SCENARIOS / "smoke.toml")
    assert plan_target(_plan(smoke, "http://127.0.0.1:8000"), False) == "http://127.0.0.1:8000"
    cfg = tmp_path / "staging.toml"
    cfg.write_text('[target]\nbase_url = "https://staging.example.com"\n')
    staging = apply_target_config(smoke, cfg)
    with pytest.raises(
        TargetError,
        match=r"^Locust worker .*: https://staging\S+ is not loopback; pass --allow-remote",
    ):
        plan_target(_plan(staging, "https://staging.example.com"), False)
    assert plan_target(_plan(staging, "https://staging.example.com/"), True) == (
        "https://staging.example.com"
    )
    # a URL the plan's own configuration does not name is refused, allowed or not
    with pytest.raises(TargetError, match="does not name it"):
        plan_target(_plan(staging, "https://elsewhere.example.com"), True)
    bad = _plan(smoke, "http://127.0.0.1:8000")
    bad.scenario["sale"]["units"] = 0
    with pytest.raises(TargetError, match=r"^Locust worker .*: plan: sale.units"):
        plan_target(bad, False)
