"""The target's own books through the protocol's hooks (flashsale.replay.audit): the
reset and the audit as a local command whose JSON output is mapped, or as an HTTP
request to the real reference service (run in a child process, loopback only).

What a user notices: the audit's figures as the manifest records them (mapped
fields, oversold units derived when the target does not say), a hook that needs
the admin token skipped without one, and every way a hook can fail turned into one
AuditError saying which hook and what went wrong.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashsale.protocol import Audit, Hook
from flashsale.replay.audit import AuditError, fetch_audit, reset_target, run_hook, usable
from flashsale.replay.target import apply_target_config
from flashsale.scenario import Scenario, load_scenario, parse_scenario
from flashsale.service.server import ServiceURL, run_in_background

from .conftest import SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
NOWHERE = "http://127.0.0.1:9"  # a command hook never uses the base URL


def sale(target: dict[str, Any] | None = None, units: int = 7) -> Scenario:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "hooks",
        "seed": 1,
        "sale": {"sku": "SKU-H", "units": units, "window_s": 600},
        "humans": {"count": 4},
        "bots": {"operators": 0},
    }
    if target is not None:
        data["target"] = target
    return parse_scenario(data, "hooks.toml")


def with_audit(audit: dict[str, Any], units: int = 10) -> Scenario:
    """A shop (protocol none) whose audit is ``audit``."""
    return sale(
        {
            "protocol": "none",
            "steps": {
                "cart": {"path": "/c", "answers": [{"meaning": "ok"}]},
                "pay": {"path": "/p", "answers": [{"meaning": "ok"}]},
            },
            "audit": audit,
        },
        units=units,
    )


def printing(text: str) -> list[str]:
    """A command printing ``text`` (the audit's answer); braces doubled for the template."""
    source = f"print({text!r})".replace("{", "{{").replace("}", "}}")
    return ["{python}", "-c", source]


# ------------------------------------------------------------------ command hooks


def test_a_command_audit_printing_json_is_mapped() -> None:
    # braces in a template are doubled: the command prints {"units_sold": 3, "orders": 2}
    cmd = ["{python}", "-c", 'print(\'{{"units_sold": 3, "orders": 2}}\')']
    sc = with_audit({"command": cmd, "fields": {"units_sold": "units_sold", "orders": "orders"}})
    record = fetch_audit(NOWHERE, sc, None)
    assert record == {
        "units_sold": 3,
        "orders": 2,
        "oversold_units": 0,  # not mapped: units sold beyond the 10 on sale
        "source": '{python} -c print(\'{{"units_sold": 3, "orders": 2}}\')',
    }


def test_fields_map_json_paths_and_oversold_is_derived_from_the_units_on_sale() -> None:
    answer = {"books": {"sold": 12, "left": 0, "held": [1, 2]}, "n": 4.0}
    cmd = printing(json.dumps(answer))
    fields = {
        "units_sold": "books.sold",
        "stock_left": "books.left",
        "units_reserved": "books.held.1",
        "orders": "n",
    }
    record = fetch_audit(NOWHERE, with_audit({"command": cmd, "fields": fields}, units=10), None)
    assert record is not None
    assert {k: v for k, v in record.items() if k != "source"} == {
        "units_sold": 12,
        "stock_left": 0,
        "units_reserved": 2,
        "orders": 4,  # 4.0 is a whole number
        "oversold_units": 2,  # 12 sold of 10 on sale
    }
    # the target's own oversold figure, when mapped, is taken as it is
    answer["books"]["over"] = 5
    cmd = printing(json.dumps(answer))
    fields["oversold_units"] = "books.over"
    record = fetch_audit(NOWHERE, with_audit({"command": cmd, "fields": fields}, units=10), None)
    assert record is not None and record["oversold_units"] == 5


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('{"sold": 3}', "the answer's 'units_sold' (fields.units_sold) is missing"),
        ("[3]", "the answer's 'units_sold' (fields.units_sold) is missing"),
        (
            '{"units_sold": 2.5}',
            "the answer's 'units_sold' (fields.units_sold) is not a whole number: 2.5",
        ),
        (
            '{"units_sold": "3"}',
            "the answer's 'units_sold' (fields.units_sold) is not a whole number: '3'",
        ),
        (
            '{"units_sold": true}',
            "the answer's 'units_sold' (fields.units_sold) is not a whole number: True",
        ),
        (
            '{"units_sold": null}',
            "the answer's 'units_sold' (fields.units_sold) is not a whole number: None",
        ),
    ],
)
def test_an_audit_answer_without_a_whole_number_is_refused(answer: str, why: str) -> None:
    sc = with_audit({"command": printing(answer)})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    assert str(e.value) == f"target.audit: {why}"


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_an_audit_answer_of_nan_or_infinity_is_refused(bad: str) -> None:
    sc = with_audit({"command": printing(f'{{"units_sold": {bad}}}')})
    with pytest.raises(AuditError, match=r"\(fields\.units_sold\) is not a whole number"):
        fetch_audit(NOWHERE, sc, None)


def test_a_command_that_prints_no_json_is_refused() -> None:
    sc = with_audit({"command": ["{python}", "-c", "print('sold: 3')"]})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    want = f"target.audit: command {sys.executable} -c print('sold: 3') printed no JSON object"
    assert str(e.value) == want  # the whole command: which script it was


def test_a_command_that_fails_is_refused_with_its_last_error_line() -> None:
    code = "import sys; print('{{\"units_sold\": 1}}'); sys.stderr.write('x\\ndb locked\\n'); "
    code += "sys.exit(3)"
    sc = with_audit({"command": ["{python}", "-c", code]})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    text = str(e.value)
    assert text.startswith(f"target.audit: command {sys.executable} -c import sys;"), text
    assert text.endswith(" exited 3: db locked"), text


def test_a_command_that_is_not_there_is_refused() -> None:
    sc = with_audit({"command": ["flashsale-test-no-such-tool", "audit"]})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    assert str(e.value) == (
        "target.audit: command flashsale-test-no-such-tool audit: "
        "flashsale-test-no-such-tool not found"
    )


def test_a_command_that_does_not_answer_in_time_is_refused() -> None:
    cmd = ["{python}", "-c", "import time; time.sleep(30)"]
    sc = with_audit({"command": cmd, "timeout_s": 0.3})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    assert str(e.value) == (
        f"target.audit: command {sys.executable} -c import time; time.sleep(30): no answer in 0.3 s"
    )


def test_a_command_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "audit.sh"
    script.write_text("#!/bin/sh\necho '{\"units_sold\": 1}'\n")
    script.chmod(0o644)
    hook = Audit.model_validate({"command": [str(script)]})
    with pytest.raises(AuditError, match=r"^target\.audit: command .*audit\.sh"):
        run_hook(hook, NOWHERE, {}, "target.audit")


def test_a_cwd_that_does_not_exist_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    hook = Audit.model_validate({"command": ["{python}", "-c", "print(1)"], "cwd": str(gone)})
    with pytest.raises(AuditError, match="gone"):
        run_hook(hook, NOWHERE, {"python": sys.executable}, "target.audit")


def test_a_cwd_that_is_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    hook = Audit.model_validate({"command": ["{python}", "-c", "print(1)"], "cwd": str(a_file)})
    with pytest.raises(AuditError) as e:
        run_hook(hook, NOWHERE, {"python": sys.executable}, "target.audit")
    assert str(e.value) == f"target.audit: cwd {a_file}: no such folder"


def test_a_hook_placeholder_with_no_value_is_an_audit_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLASHSALE_TEST_SHOP_DB", raising=False)
    sc = with_audit({"command": ["{python}", "audit.py", "{env.FLASHSALE_TEST_SHOP_DB}"]})
    with pytest.raises(AuditError) as e:
        fetch_audit(NOWHERE, sc, None)
    assert str(e.value) == (
        "target.audit: {env.FLASHSALE_TEST_SHOP_DB} has no value here "
        "(not captured yet, or not set)"
    )


def _recording_reset(out: Path, *extra: str) -> list[str]:
    """A reset command that writes the arguments it got to ``out`` as JSON."""
    code = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    return ["{python}", "-c", code, str(out), *extra]


def test_a_reset_command_gets_the_hook_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASHSALE_TEST_SHOP_DB", "/tmp/shop.db")
    out = tmp_path / "argv.json"
    args = ("{units}", "{sku}", "{opens_in_s}", "{replication}", "{env.FLASHSALE_TEST_SHOP_DB}")
    sc = sale(
        {
            "protocol": "none",
            "steps": {
                "cart": {"path": "/c", "answers": [{"meaning": "ok"}]},
                "pay": {"path": "/p", "answers": [{"meaning": "ok"}]},
            },
            "reset": {"command": _recording_reset(out, *args)},
        },
        units=12,
    )
    assert reset_target(NOWHERE, sc, opens_in_s=12.5, replication=2, admin_token=None) is True
    assert json.loads(out.read_text()) == ["12", "SKU-H", "12.500", "2", "/tmp/shop.db"]


def test_a_command_hook_that_needs_the_admin_token_is_skipped_without_one(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    cmd = _recording_reset(out, "--token", "{admin_token}")
    audit_cmd = ["{python}", "-c", "import sys; print('{{\"units_sold\": %d}}' % len(sys.argv))"]
    audit_cmd += ["{admin_token}"]
    sc = sale(
        {
            "protocol": "none",
            "steps": {
                "cart": {"path": "/c", "answers": [{"meaning": "ok"}]},
                "pay": {"path": "/p", "answers": [{"meaning": "ok"}]},
            },
            "reset": {"command": cmd},
            "audit": {"command": audit_cmd},
        }
    )
    assert usable(sc.target.reset, None) is False and usable(sc.target.reset, "t") is True
    assert usable(None, "t") is False
    assert reset_target(NOWHERE, sc, 0.0, 0, admin_token=None) is False
    assert fetch_audit(NOWHERE, sc, admin_token=None) is None
    assert not out.exists()  # the command never ran
    assert reset_target(NOWHERE, sc, 0.0, 0, admin_token="s3cret") is True
    assert json.loads(out.read_text()) == ["--token", "s3cret"]
    record = fetch_audit(NOWHERE, sc, admin_token="s3cret")
    assert record is not None and record["units_sold"] == 2  # argv: "-c", the token


AUDIT_PY = """\
import json
from pathlib import Path
books = json.loads(Path("books.json").read_text())  # relative: the folder it runs in
print(json.dumps({"units_sold": books["sold"]}))
"""


def _shop(folder: Path, sold: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.py").write_text(AUDIT_PY)
    (folder / "books.json").write_text(json.dumps({"sold": sold}))


def test_a_command_runs_in_the_folder_of_the_target_config_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not where the script is
    shop = tmp_path / "targets"
    _shop(shop, sold=4)
    _shop(shop / "tools", sold=6)
    steps = (
        '[target.steps.cart]\npath = "/c"\nanswers = [{ meaning = "ok" }]\n'
        '[target.steps.pay]\npath = "/p"\nanswers = [{ meaning = "ok" }]\n'
    )
    cfg = shop / "shop.toml"
    cfg.write_text(
        '[target]\nprotocol = "none"\n[target.audit]\ncommand = ["{python}", "audit.py"]\n' + steps
    )
    sc = apply_target_config(load_scenario(SMOKE), cfg)
    assert sc.target.audit is not None and sc.target.audit.cwd == str(shop.resolve())
    record = fetch_audit(NOWHERE, sc, None)
    assert record is not None and record["units_sold"] == 4
    # a relative cwd is the declaring file's folder's
    cfg.write_text(
        '[target]\nprotocol = "none"\n'
        '[target.audit]\ncommand = ["{python}", "audit.py"]\ncwd = "tools"\n' + steps
    )
    sc = apply_target_config(load_scenario(SMOKE), cfg)
    record = fetch_audit(NOWHERE, sc, None)
    assert record is not None and record["units_sold"] == 6


def test_a_command_in_a_scenario_runs_in_the_scenarios_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "scenarios"
    _shop(here, sold=9)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (here / "s.toml").write_text(
        SMOKE.read_text() + '\n[target]\nprotocol = "none"\n'
        '[target.audit]\ncommand = ["{python}", "audit.py"]\n'
        '[target.steps.cart]\npath = "/c"\nanswers = [{ meaning = "ok" }]\n'
        '[target.steps.pay]\npath = "/p"\nanswers = [{ meaning = "ok" }]\n'
    )
    sc = load_scenario(here / "s.toml")
    record = fetch_audit(NOWHERE, sc, None)
    assert record is not None
    assert (record["units_sold"], record["oversold_units"]) == (9, 0)  # 9 of smoke's 200


@pytest.mark.parametrize("placeholder", ["{user.name}", "{cookie.sessionid}"])
def test_a_hook_using_a_journey_only_value_is_refused(placeholder: str) -> None:
    from flashsale.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"target\.audit: "):
        with_audit({"path": f"/audit/{placeholder}"})


# --------------------------------------------------- HTTP hooks: the real service


@pytest.fixture(scope="module")
def served() -> Iterator[ServiceURL]:
    with run_in_background(sale()) as url:
        yield url


def _buy(url: str, account: int, units: int) -> None:
    r = httpx.post(f"{url}/v1/cart", json={"account": account, "sku": "SKU-H", "units": units})
    assert r.status_code == 201, r.text
    pay = httpx.post(
        f"{url}/v1/checkout",
        json={"reservation_id": r.json()["reservation_id"], "account": account},
        headers={"Idempotency-Key": f"hooks-{account}"},
    )
    assert pay.status_code == 201, pay.text


def test_the_reference_hooks_are_skipped_without_the_admin_token(served: ServiceURL) -> None:
    sc = sale()
    assert reset_target(served, sc, 0.0, 0, admin_token=None) is False
    assert fetch_audit(served, sc, admin_token=None) is None


def test_the_reference_reset_and_audit(served: ServiceURL) -> None:
    sc = sale(units=7)
    token = served.admin_token
    assert reset_target(served, sc, 0.0, 0, token) is True
    assert fetch_audit(served, sc, token) == {
        "units_sold": 0,
        "oversold_units": 0,
        "stock_left": 7,
        "units_reserved": 0,
        "orders": 0,
        "source": f"{served}/admin/audit",
    }
    _buy(served, account=1, units=2)
    _buy(served, account=2, units=1)
    assert fetch_audit(served, sc, token) == {
        "units_sold": 3,
        "oversold_units": 0,
        "stock_left": 4,
        "units_reserved": 0,
        "orders": 2,
        "source": f"{served}/admin/audit",
    }
    # the reset sends the scenario itself as its JSON body: the sale is now of 5 units
    five = sale(units=5)
    assert reset_target(served, five, 0.0, 1, token) is True
    record = fetch_audit(served, five, token)
    assert record is not None and (record["units_sold"], record["stock_left"]) == (0, 5)


def test_the_reset_opens_the_sale_when_asked(served: ServiceURL) -> None:
    sc = sale()
    assert reset_target(served, sc, 3600.0, 0, served.admin_token) is True
    page = httpx.get(f"{served}/v1/sale").json()
    assert page["open"] is False
    assert 3000 < page["opens_in_s"] <= 3600
    assert reset_target(served, sc, 0.0, 0, served.admin_token) is True
    assert httpx.get(f"{served}/v1/sale").json()["open"] is True


def test_an_http_audit_maps_the_fields_it_names(served: ServiceURL) -> None:
    sc = sale(units=7)
    assert reset_target(served, sc, 0.0, 0, served.admin_token) is True
    _buy(served, account=3, units=2)
    mine = sc.model_copy(
        update={
            "target": sc.target.model_copy(
                update={
                    "audit": Audit.model_validate(
                        {
                            "path": "/admin/audit",
                            "headers": {"Authorization": "Bearer {admin_token}"},
                            "fields": {"units_sold": "units_sold", "orders": "orders"},
                        }
                    )
                }
            )
        }
    )
    assert fetch_audit(served, mine, served.admin_token) == {
        "units_sold": 2,
        "orders": 1,
        "oversold_units": 0,  # not mapped: derived, 2 of 7
        "source": f"{served}/admin/audit",
    }


def test_an_http_hook_refused_by_the_target_is_an_audit_error(served: ServiceURL) -> None:
    sc = sale()
    with pytest.raises(AuditError) as e:
        fetch_audit(served, sc, admin_token="not-the-token")
    assert str(e.value).startswith(f"target.audit: GET {served}/admin/audit: HTTP 401: ")
    missing = Hook.model_validate({"path": "/admin/ledger"})
    with pytest.raises(AuditError) as e:
        run_hook(missing, served, {}, "target.audit")
    assert str(e.value).startswith(f"target.audit: GET {served}/admin/ledger: HTTP 404: ")


def test_an_http_hook_with_no_answer_is_an_audit_error() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    hook = Hook.model_validate({"path": "/admin/audit", "timeout_s": 5})
    with pytest.raises(AuditError) as e:
        run_hook(hook, url, {}, "target.audit")
    assert str(e.value).startswith(f"target.audit: GET {url}/admin/audit: no answer: ")
