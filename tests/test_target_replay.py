"""The false greens of the old replay, each now a test with the right expected value.

Every case runs the real command line (``flashsale replay``, ``flashsale probe``,
``python -m locust -f locustfiles/flashsale.py``) in a subprocess against a target on
loopback: the reference service (started by the replay, or ``flashsale serve``), the
two example shops (examples/shops/, their protocols in examples/targets/) or a tiny
stand-in behind a bearer token (tests/_auth_shop.py). Each checks what a user sees:
the exit code, the ``error:`` line, the run folder's manifest and metrics.json, and
the target's own books (``examples/shops/books.py audit``, the stand-in's audit).

Every run is bounded: smoke at scale 0.2 with a 6 s window (as tests/test_locust_replay.py),
a request cap, subprocess timeouts; one shop process per module, each replay resetting
it through its protocol's reset hook. No assertion on wall-clock time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest

from flashsale.outcome import RESULT, STEP, load_outcome
from flashsale.replay.scale import scale_scenario
from flashsale.replay.target import replayed_accounts
from flashsale.scenario import load_scenario

from ._shopserver import ROOT, books, closed_port, free_port, running

SMOKE = ROOT / "scenarios" / "smoke.toml"
TARGETS = ROOT / "examples" / "targets"
BOOKS_PY = ROOT / "examples" / "shops" / "books.py"
SCALE = 0.2
SHORT = [
    "--set", "sale.window_s=6",
    "--set", "humans.arrivals.early_window_s=2",
    "--set", "humans.arrivals.decay_s=2",
    "--set", "target.max_requests=5000",
]  # fmt: skip
FLASHSALE = str(Path(sys.executable).parent / "flashsale")
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "flashsale.py")]
RUN_TIMEOUT_S = 180  # a subprocess's bound; a replay here takes about 20 s
TOKEN = "s3cret"  # the stand-in's bearer token (tests/_auth_shop.py)

# The stand-in's protocol: every request carries the secret from the environment.
# No reset hook: the test resets the stand-in itself, so the first request the replay
# sends is the preflight's read of the sale page.
AUTH_PROTOCOL = """
[target]
protocol = "none"
headers = { Authorization = "Bearer {env.FLASHSALE_TEST_TOKEN}" }

[target.audit]
path = "/api/audit"
headers = { Authorization = "Bearer {env.FLASHSALE_TEST_TOKEN}" }
fields = { units_sold = "units_sold", oversold_units = "oversold_units", orders = "orders" }

[target.steps.view]
path = "/api/sale"
[[target.steps.view.answers]]
status = 200
json = { state = "open" }
meaning = "ok"
[[target.steps.view.answers]]
status = 200
json = { state = "over" }
meaning = "sold_out"
[[target.steps.view.answers]]
status = 200
json = { state = "soon" }
meaning = "not_open"
capture = { opens_in_s = "json:opens_in_s?" }

[target.steps.cart]
method = "POST"
path = "/api/holds"
json = { buyer = "{account}", qty = "{units}" }
answers = [
  { status = 201, meaning = "ok", capture = { hold = "json:hold" } },
  { status = 409, meaning = "sold_out" },
  { status = 425, meaning = "not_open" },
]

[target.steps.pay]
method = "POST"
path = "/api/holds/{hold}/pay"
[[target.steps.pay.answers]]
status = 200
json = { paid = true }
meaning = "ok"
capture = { units_bought = "json:qty" }
"""


# ----------------------------------------------------------------------------- helpers


class Shop(NamedTuple):
    url: str
    db: Path  # the books (example shops) or the request log (the stand-in)


class Replayed(NamedTuple):
    proc: subprocess.CompletedProcess[str]
    out: Path
    shop: dict[str, Any]  # the shop's own audit right after the run


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without an admin token or the tests' secrets."""
    env = dict(os.environ)
    for name in ("FLASHSALE_ADMIN_TOKEN", "FLASHSALE_TEST_TOKEN", "FLASHSALE_TEST_UNSET"):
        env.pop(name, None)
    return {**env, **extra}


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=env if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _replay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``flashsale replay smoke --scale 0.2`` (6 s window) with ``args``."""
    return _run([FLASHSALE, "replay", str(SMOKE), "--scale", str(SCALE), *SHORT, *args], env)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _show(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion prints: the end of both streams, tracebacks left out."""
    err = [line for line in proc.stderr.splitlines() if line.startswith(("error", "  "))]
    return f"exit {proc.returncode}\nstdout: {proc.stdout[-1500:]}\nstderr: {err[-20:]}"


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _metric(out: Path, name: str) -> Any:
    value = _json(out / "metrics.json")["metrics"][name]["values"]
    assert len(value) == 1
    return value[0]


def _client_units(out: Path) -> int:
    """Units the client-side journeys bought (journeys ending purchased)."""
    jr = load_outcome(out / "rep-000").journeys
    return int(jr["units"][jr["result"] == RESULT.index("purchased")].sum())


def _scaled() -> Any:
    sets = [SHORT[i + 1] for i in range(0, len(SHORT), 2)]
    return scale_scenario(load_scenario(SMOKE, sets), SCALE)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _books_path(text: str) -> str:
    """A protocol's hooks with the shops' books script by absolute path (for a copy of
    an examples/targets file written elsewhere: hooks run in the copy's folder)."""
    assert text.count('"../shops/books.py"') == 2
    return text.replace('"../shops/books.py"', json.dumps(str(BOOKS_PY)))


def _write_accounts(path: Path, count: int) -> Path:
    done = _run(
        [
            sys.executable,
            "-m",
            "examples.shops.coded_shop",
            "--write-accounts",
            str(path),
            "--accounts",
            str(count),
        ]
    )
    assert done.returncode == 0, done.stderr
    return path


def _coded_config_with_accounts(folder: Path, accounts: int) -> Path:
    """examples/targets/coded_shop.toml with the login from ``accounts.csv`` (``accounts``
    rows, read from the config's folder) instead of derived credentials."""
    _write_accounts(folder / "accounts.csv", accounts)
    text = _books_path((TARGETS / "coded_shop.toml").read_text())
    derived = 'form = { user = "buyer{account}", password = "pw{account}" }'
    assert text.count(derived) == 1
    text = text.replace(derived, 'form = { user = "{user.user}", password = "{user.password}" }')
    text = text.replace("[target]\n", '[target]\naccounts_file = "accounts.csv"\n', 1)
    cfg = folder / "coded_accounts.toml"
    cfg.write_text(text)
    return cfg


# ---------------------------------------------------------------------------- fixtures

_SALE = ("--units", "40", "--opens-in-s", "0")


@contextlib.contextmanager
def _shop(factory: pytest.TempPathFactory, module: str, data: str, *args: str) -> Iterator[Shop]:
    """Start ``module`` in a new folder; ``data`` (its books or its request log, in
    that folder) is passed as ``--db`` for an example shop, ``--log`` for the stand-in."""
    folder = factory.mktemp(module.rsplit(".", 1)[-1])
    path = folder / data
    option = "--log" if module == "tests._auth_shop" else "--db"
    with running(module, folder / "shop.log", option, str(path), *args) as url:
        yield Shop(url, path)


@pytest.fixture(scope="module")
def cookie_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with _shop(tmp_path_factory, "examples.shops.cookie_shop", "cookie.db", *_SALE) as shop:
        yield shop


@pytest.fixture(scope="module")
def coded_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    args = (*_SALE, "--sku", "SMOKE-1")
    with _shop(tmp_path_factory, "examples.shops.coded_shop", "coded.db", *args) as shop:
        yield shop


@pytest.fixture(scope="module")
def auth_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The stand-in behind ``Bearer s3cret``; ``db`` is its log of requests received."""
    with _shop(tmp_path_factory, "tests._auth_shop", "requests.log", "--token", TOKEN) as shop:
        yield shop


@pytest.fixture(scope="module")
def html_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The stand-in whose sale page is a text/html 200 page; no token needed."""
    args = ("--token", "", "--html-status")
    with _shop(tmp_path_factory, "tests._auth_shop", "requests.log", *args) as shop:
        yield shop


def _replay_by_protocol(
    shop: Shop, config: str, tmp_path_factory: pytest.TempPathFactory
) -> Replayed:
    """Replay ``shop`` by its shipped protocol ``examples/targets/<config>.toml``."""
    out = tmp_path_factory.mktemp(f"{config}-replay") / "run"
    proc = _replay(
        "--target-config", str(TARGETS / f"{config}.toml"), "--target", shop.url,
        "--out", str(out),
        env=_env(FLASHSALE_SHOP_DB=str(shop.db)),
    )  # fmt: skip
    return Replayed(proc, out, books("audit", shop.db))


@pytest.fixture(scope="module")
def cookie_replay(cookie_shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """The cookie shop replayed by its protocol (cases 1 and 7 read the same run)."""
    return _replay_by_protocol(cookie_shop, "cookie_shop", tmp_path_factory)


@pytest.fixture(scope="module")
def coded_replay(coded_shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return _replay_by_protocol(coded_shop, "coded_shop", tmp_path_factory)


def _agrees_with_the_books(r: Replayed) -> None:
    """A replay of a shop that never oversells: exit 0, and units sold the same three
    ways (metrics.json, the shop's own books, the client-side journeys), no protocol error."""
    assert r.proc.returncode == 0, _show(r.proc)
    assert _errors(r.proc.stderr) == []
    sold = _metric(r.out, "units_sold")
    assert sold == r.shop["units_sold"] == _client_units(r.out) > 0
    assert _metric(r.out, "oversold_units") == r.shop["oversold_units"] == 0
    manifest = _json(r.out / "manifest.json")
    assert manifest["status"] == "complete"
    assert manifest["audit"][0]["units_sold"] == r.shop["units_sold"]
    assert manifest["replay"]["protocol"]["protocol_errors"] == {}
    assert "protocol errors       0 of" in r.proc.stdout


# ------------------------------------------------- 1. the cookie shop's oversell is found


@pytest.mark.slow
def test_cookie_shop_oversell_is_found_by_its_audit(cookie_replay: Replayed) -> None:
    proc, out, shop = cookie_replay
    assert proc.returncode == 1, _show(proc)
    assert shop["oversold_units"] > 0 and shop["units_sold"] > shop["units"]
    assert _metric(out, "oversold_units") == shop["oversold_units"]
    assert _metric(out, "units_sold") == shop["units_sold"]
    manifest = _json(out / "manifest.json")
    assert manifest["status"] == "complete"
    assert manifest["audit"][0]["units_sold"] == shop["units_sold"]
    assert manifest["audit"][0]["oversold_units"] == shop["oversold_units"]
    oversold = [e for e in _errors(proc.stderr) if "oversold" in e]
    assert oversold == [
        f"error: {out}: oversold: the target's audit shows {shop['oversold_units']} units"
    ], _show(proc)
    assert f"FAIL oversold_units == 0: got {shop['oversold_units']}" in proc.stdout


# ------------------------------------------- 2. the coded shop: units sold agree, exit 0


@pytest.mark.slow
def test_coded_shop_units_sold_agree_with_its_books(coded_replay: Replayed) -> None:
    _agrees_with_the_books(coded_replay)


@pytest.mark.slow
def test_every_request_of_a_journey_is_a_row_of_the_requests_table(
    coded_replay: Replayed,
) -> None:
    """The coded shop's protocol logs in first: those requests are requests too."""
    proc, out, _ = coded_replay
    outcome = load_outcome(out / "rep-000")
    replay = _json(out / "manifest.json")["replay"]
    assert "Traceback" not in proc.stderr, _show(proc)
    assert int(outcome.journeys["requests"].sum()) == outcome.requests["journey"].size
    assert replay["requests"] == replay["protocol"]["requests"]
    logins = int((outcome.requests["step"] == STEP.index("login")).sum())
    assert logins == replay["protocol"]["seen"]["login:ok"] == replay["journeys"]


@pytest.mark.slow
def test_a_shop_that_sends_no_server_timing_leaves_the_latency_parts_unknown(
    coded_replay: Replayed,
) -> None:
    """The coded shop reports no Server-Timing: its answers' parts are NaN, not 0."""
    rq = load_outcome(coded_replay.out / "rep-000").requests
    assert rq["status"].size and (rq["status"] == 200).any()
    for column in ("queue_wait", "service_time", "gateway_time"):
        assert np.isnan(rq[column]).all(), column


# ------------------------------------------------------------- 3. with an accounts file


@pytest.mark.slow
def test_coded_shop_with_an_accounts_file_agrees_with_its_books(
    coded_shop: Shop, tmp_path: Path
) -> None:
    accounts = len(replayed_accounts(_scaled()))
    cfg = _coded_config_with_accounts(tmp_path, accounts)
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(cfg), "--target", coded_shop.url, "--out", str(out),
        env=_env(FLASHSALE_SHOP_DB=str(coded_shop.db)),
    )  # fmt: skip
    _agrees_with_the_books(Replayed(proc, out, books("audit", coded_shop.db)))


def test_an_accounts_file_lacking_an_account_replayed_is_refused(
    coded_shop: Shop, tmp_path: Path
) -> None:
    accounts = len(replayed_accounts(_scaled()))
    cfg = _coded_config_with_accounts(tmp_path, accounts - 1)  # the last one missing
    before = books("audit", coded_shop.db)
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(cfg), "--target", coded_shop.url, "--out", str(out),
        env=_env(FLASHSALE_SHOP_DB=str(coded_shop.db)),
    )  # fmt: skip
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert "target.accounts_file" in errors[0] and f"no row for account {accounts - 1}" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # refused before the run folder, the reset and any request
    assert books("audit", coded_shop.db) == before


def test_set_target_fields_apply_over_a_target_config(coded_shop: Shop, tmp_path: Path) -> None:
    """The accounts file and the login form given with --set over coded_shop.toml: a
    file lacking an account replayed is refused naming the file and the account."""
    accounts = len(replayed_accounts(_scaled()))
    csv = _write_accounts(tmp_path / "accounts.csv", accounts - 1)
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(TARGETS / "coded_shop.toml"), "--target", coded_shop.url,
        "--set", f"target.accounts_file={json.dumps(str(csv))}",
        "--set", 'target.steps.login.form={user="{user.user}", password="{user.password}"}',
        "--out", str(out),
        env=_env(FLASHSALE_SHOP_DB=str(coded_shop.db)),
    )  # fmt: skip
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert "target.accounts_file" in errors[0] and f"no row for account {accounts - 1}" in errors[0]


# --------------------------- 4. the reference protocol against a shop unlike ours: refused


def test_reference_protocol_against_the_cookie_shop_is_refused_before_any_load(
    cookie_shop: Shop, tmp_path: Path
) -> None:
    books("reset", cookie_shop.db, "--units", "40")
    out = tmp_path / "run"
    proc = _replay("--target", cookie_shop.url, "--out", str(out))
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert errors[0].startswith(f"error: {SMOKE}: target.steps.view: protocol error: ")
    assert "no rule matches 404" in errors[0]
    assert "Traceback" not in proc.stderr
    assert books("audit", cookie_shop.db)["orders"] == 0
    manifest = _json(out / "manifest.json")
    assert manifest["status"] == "failed" and not (out / "rep-000").exists()


# ----------------------------------------------------- 5. a cart path that 404s: exit 1


@pytest.mark.slow
def test_a_cart_path_that_404s_fails_the_replay(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _replay("--set", "target.steps.cart.path=/v1/nope", "--out", str(out))
    assert proc.returncode == 1, _show(proc)
    last = _errors(proc.stderr)[-1]
    assert last.startswith(f"error: {out}: the target protocol: "), _show(proc)
    assert "cart: " in last and "protocol error(s), e.g. no rule matches 404" in last
    # never PASS alone; no cart ever succeeded either
    assert "replay check(s) failed (protocol errors, progress)" in proc.stdout
    checks = {name: v for name, _, v in _json(out / "metrics.json")["replay_checks"]}
    assert checks["protocol errors"] == "fail"
    tally = _json(out / "manifest.json")["replay"]["protocol"]
    assert tally["protocol_errors"]["cart"] > 0
    assert not tally["progressed"]


# ------------------ 6. a cart answering 201 without the capture the pay needs: exit 1


@pytest.mark.slow
def test_a_cart_answer_lacking_its_capture_is_a_protocol_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _replay(
        "--set",
        "target.steps.cart.answers="
        '[{status=201, meaning="ok", capture={basket_id="json:basket_id"}}]',
        "--set", 'target.steps.pay.json={reservation_id="{basket_id}", account="{account}"}',
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 1, _show(proc)
    last = _errors(proc.stderr)[-1]
    assert last.startswith(f"error: {out}: the target protocol: "), _show(proc)
    assert "the answer matched status 201 -> ok but lacks json:basket_id" in last
    tally = _json(out / "manifest.json")["replay"]["protocol"]
    assert tally["protocol_errors"]["cart"] > 0
    # the journeys ended error by a protocol error, none carted (so none is a yellow cart)
    assert _metric(out, "yellow_cart_rate") != 1.0
    jr = load_outcome(out / "rep-000").journeys
    assert np.isnan(jr["carted"]).all()
    assert int((jr["result"] == RESULT.index("error")).sum()) >= tally["protocol_errors"]["cart"]
    assert _metric(out, "units_sold") == 0


# ------------------------------ 7. a cart answered is never sent again by its journey


@pytest.mark.slow
def test_a_cart_answered_is_never_sent_again_by_its_journey(cookie_replay: Replayed) -> None:
    """The cookie shop adds a re-sent add to the basket again: after an ok (200) or a
    lost answer (no status) at the cart, the journey sends no other cart."""
    _, out, shop = cookie_replay
    req = load_outcome(out / "rep-000").requests
    cart = req["step"] == STEP.index("cart")
    journeys, sent, status = req["journey"][cart], req["sent"][cart], req["status"][cart]
    resent = []
    for j in np.unique(journeys):
        mine = np.flatnonzero(journeys == j)
        mine = mine[np.argsort(sent[mine], kind="stable")]
        definite = np.flatnonzero(np.isin(status[mine], [200, 0]))
        if definite.size and definite[0] < mine.size - 1:
            resent.append(int(j))
    assert resent == []
    ok_carts = int((status == 200).sum())
    assert ok_carts > 0
    assert ok_carts == shop["orders"]  # each basket the shop filled was checked out once


# ------------------------------------- 8. a sale already closed when the replay starts


@contextlib.contextmanager
def _reference_service(*args: str) -> Iterator[str]:
    """``flashsale serve smoke --port 0 ARGS``; yields its URL once it listens."""
    proc = subprocess.Popen(
        [FLASHSALE, "serve", str(SMOKE), "--port", "0", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else ""
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert m, f"flashsale serve did not start (rc={proc.poll()}): {first!r}"
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.slow
def test_a_sale_already_closed_is_refused_unless_expected(tmp_path: Path) -> None:
    admin = "test-admin-token"
    with _reference_service("--set", "sale.window_s=0.5", "--admin-token", admin) as url:
        deadline = time.monotonic() + 30  # a safety bound on the wait, not an assertion
        while True:
            sale = httpx.get(f"{url}/v1/sale", timeout=10).json()
            if (not sale["open"] and sale["closes_in_s"] == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not sale["open"] and sale["closes_in_s"] == 0, sale

        out = tmp_path / "refused"
        proc = _replay("--target", url, "--out", str(out))  # no FLASHSALE_ADMIN_TOKEN
        assert proc.returncode == 2, _show(proc)
        errors = _errors(proc.stderr)
        assert len(errors) == 1, _show(proc)
        assert "the sale is already closed or sold out" in errors[0]
        assert "target.expect_sold_out" in errors[0]
        assert not (out / "rep-000").exists()

        out = tmp_path / "expected"
        proc = _replay("--target", url, "--set", "target.expect_sold_out=true", "--out", str(out))
        audit = httpx.get(
            f"{url}/admin/audit", headers={"Authorization": f"Bearer {admin}"}, timeout=10
        ).json()
    # it runs; without an admin token there is no audit, so oversold units are unknown
    # and the oversold threshold fails (exit 1), never a refusal
    assert proc.returncode == 1, _show(proc)
    assert not any("already closed" in e for e in _errors(proc.stderr))
    assert "audit                 none: oversold units unknown" in proc.stdout
    assert "FAIL oversold_units == 0: undefined" in proc.stdout
    manifest = _json(out / "manifest.json")
    assert manifest["status"] == "complete" and manifest["audit"] == [{"source": None}]
    assert manifest["replay"]["protocol"]["protocol_errors"] == {}
    assert _metric(out, "oversold_units") is None
    assert _metric(out, "units_sold") == 0 == audit["units_sold"]


# ---------------------------------------------------- 9. CR/LF in a target.headers value


@pytest.mark.parametrize("where", ["scenario", "target-config"])
def test_a_line_break_in_a_header_value_is_refused(
    auth_shop: Shop, tmp_path: Path, where: str
) -> None:
    table = '[target]\nheaders = { X-Load-Test = "flashsale\\r\\nX-Injected: 1" }\n'
    scenario = SMOKE
    if where == "scenario":
        scenario = tmp_path / "smoke.toml"
        scenario.write_text(SMOKE.read_text() + "\n" + table)
        extra: list[str] = []
    else:
        (tmp_path / "target.toml").write_text(table)
        extra = ["--target-config", str(tmp_path / "target.toml")]
    sent = len(_lines(auth_shop.db))
    out = tmp_path / "run"
    cmd = [FLASHSALE, "replay", str(scenario), "--scale", str(SCALE), *SHORT, *extra]
    proc = _run([*cmd, "--target", auth_shop.url, "--out", str(out)])
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "target.headers" in errors[0], _show(proc)
    assert "line breaks" in errors[0] and "Traceback" not in proc.stderr
    assert len(_lines(auth_shop.db)) == sent and not out.exists()


# ------------------------------------- 10. secrets: unset, right and wrong bearer token


def test_an_unset_secret_is_refused_before_any_request(auth_shop: Shop, tmp_path: Path) -> None:
    sent = len(_lines(auth_shop.db))
    out = tmp_path / "run"
    proc = _replay(
        "--target", auth_shop.url,
        "--set", 'target.headers={Authorization="Bearer {env.FLASHSALE_TEST_UNSET}"}',
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert "FLASHSALE_TEST_UNSET not set" in errors[0] and "Traceback" not in proc.stderr
    assert len(_lines(auth_shop.db)) == sent and not out.exists()


def _reset_auth_shop(shop: Shop, units: int) -> None:
    r = httpx.post(
        f"{shop.url}/api/reset",
        json={"units": units, "opens_in_s": 0},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


@pytest.mark.slow
def test_the_preflight_sends_the_secret_headers(auth_shop: Shop, tmp_path: Path) -> None:
    """With the right token every request is let in and the replay agrees with the
    stand-in's own audit; the token itself is never printed."""
    _reset_auth_shop(auth_shop, _scaled().sale.units)
    cfg = tmp_path / "auth.toml"
    cfg.write_text(AUTH_PROTOCOL)
    sent = len(_lines(auth_shop.db))
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(cfg), "--target", auth_shop.url, "--out", str(out),
        env=_env(FLASHSALE_TEST_TOKEN=TOKEN),
    )  # fmt: skip
    assert proc.returncode == 0, _show(proc)
    received = _lines(auth_shop.db)[sent:]
    assert received[0] == "GET /api/sale 200"  # the preflight: the sale page, first
    assert not [line for line in received if line.endswith(" 401")]
    manifest = _json(out / "manifest.json")
    assert manifest["replay"]["protocol"]["protocol_errors"] == {}
    assert _metric(out, "units_sold") == manifest["audit"][0]["units_sold"] == _client_units(out)
    assert _metric(out, "units_sold") > 0
    for text in (proc.stdout, proc.stderr, (out / "manifest.json").read_text()):
        assert TOKEN not in text


def test_a_wrong_token_is_a_protocol_error_at_the_preflight(
    auth_shop: Shop, tmp_path: Path
) -> None:
    cfg = tmp_path / "auth.toml"
    cfg.write_text(AUTH_PROTOCOL)
    sent = len(_lines(auth_shop.db))
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(cfg), "--target", auth_shop.url, "--out", str(out),
        env=_env(FLASHSALE_TEST_TOKEN="wrong-token"),
    )  # fmt: skip
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert errors[0].startswith(f"error: {cfg}: target.steps.view: protocol error: ")
    assert "no rule matches 401" in errors[0]
    assert "Traceback" not in proc.stderr and "wrong-token" not in proc.stderr
    assert _lines(auth_shop.db)[sent:] == ["GET /api/sale 401"]  # the preflight only


# ------------------------------------ 11. unreachable, not JSON, a malformed URL: exit 2


def test_an_unreachable_target_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    """Nobody listens: the preflight's read of the sale page gets no answer, and the
    replay fails before any load (exit 1, the transport's reason, the folder marked
    failed), as when a target stops answering mid-run (commit 988798f). The README's
    "a target that does not answer ... exit 2" predates that decision."""
    url = f"http://127.0.0.1:{closed_port()}"
    out = tmp_path / "run"
    proc = _replay("--target", url, "--out", str(out))
    assert proc.returncode == 1, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert errors[0].startswith(
        f"error: {out}: the replay failed: {url}: cannot reach the target: ConnectError"
    )
    assert errors[0].endswith("(GET /v1/sale)")
    assert "Traceback" not in proc.stderr
    manifest = _json(out / "manifest.json")
    assert manifest["status"] == "failed" and not (out / "rep-000").exists()


def test_a_sale_page_that_is_not_json_is_a_protocol_error(html_shop: Shop, tmp_path: Path) -> None:
    cfg = tmp_path / "auth.toml"
    cfg.write_text(AUTH_PROTOCOL)
    out = tmp_path / "run"
    proc = _replay(
        "--target-config", str(cfg), "--target", html_shop.url, "--out", str(out),
        env=_env(FLASHSALE_TEST_TOKEN=TOKEN),
    )  # fmt: skip
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert errors[0].startswith(f"error: {cfg}: target.steps.view: protocol error: ")
    assert "no rule matches 200 '<!doctype html>" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_reference_protocol_reads_a_sale_page_that_is_not_json_as_a_protocol_error(
    html_shop: Shop, tmp_path: Path
) -> None:
    sent = len(_lines(html_shop.db))
    out = tmp_path / "run"
    proc = _replay("--target", html_shop.url, "--out", str(out))
    assert proc.returncode == 2, _show(proc)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, _show(proc)
    assert errors[0].startswith(f"error: {SMOKE}: target.steps.view: protocol error: ")
    assert _lines(html_shop.db)[sent:] == ["GET /v1/sale 200"]  # the preflight only


def test_a_malformed_target_url_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _replay("--target", "http://[::1", "--out", str(out))
    assert proc.returncode == 2, _show(proc)
    assert _errors(proc.stderr) == [
        "error: target 'http://[::1': expected an http(s) URL like http://127.0.0.1:8000 "
        "(optionally with a path)"
    ]
    assert "Traceback" not in proc.stderr and not out.exists()


# ---------------------------------------------------------------------- 12. probe


def _probe(shop: Shop, cfg: Path) -> tuple[subprocess.CompletedProcess[str], str, str]:
    proc = _run(
        [FLASHSALE, "probe", str(SMOKE), "--target-config", str(cfg), "--target", shop.url],
        _env(FLASHSALE_SHOP_DB=str(shop.db)),
    )
    human, _, bot = proc.stdout.partition("\nbot journey (account ")
    return proc, human, bot


@pytest.mark.slow
def test_probe_shows_every_exchange_of_both_journeys(cookie_shop: Shop) -> None:
    proc, human, bot = _probe(cookie_shop, TARGETS / "cookie_shop.toml")
    assert proc.returncode == 0, _show(proc)
    assert "human journey (account 0)" in human and bot
    assert "  view: GET /shop/products/1/" in human
    for journey in (human, bot):
        for step in ("  login: GET /shop/products/1/", "  cart: POST /shop/basket/add/1/"):
            assert step in journey
        assert "  pay: POST /shop/checkout/" in journey
        assert "    rule     status 200 -> ok" in journey
        assert "    meaning  ok" in journey
        assert '    captured {"basket_url": "/shop/baskets/' in journey
        assert '    captured {"order_number": "' in journey
        assert "  => purchased:" in journey
    assert "protocol errors: 0" in proc.stdout


@pytest.mark.slow
def test_probe_without_the_login_step_shows_the_bots_protocol_error(
    cookie_shop: Shop, tmp_path: Path
) -> None:
    text = _books_path((TARGETS / "cookie_shop.toml").read_text())
    text, n = re.subn(
        r"\[target\.steps\.login\].*?(?=\[target\.steps\.view\])", "", text, flags=re.S
    )
    assert n == 1
    cfg = tmp_path / "no_login.toml"
    cfg.write_text(text)
    proc, human, bot = _probe(cookie_shop, cfg)
    assert proc.returncode == 1, _show(proc)
    assert "  => purchased:" in human  # the page view sets the cookies a human needs
    assert "cart: protocol error: {cookie.csrftoken} has no value here" in bot
    assert "protocol errors: 1" in proc.stdout


# ------------------------------------------------------------------ 13. plain Locust


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_plain_locust_against_the_coded_shop(
    coded_shop: Shop, tmp_path: Path, processes: int
) -> None:
    out = tmp_path / "run"
    cmd = [
        *LOCUST, "--headless", "--only-summary", "--loglevel", "WARNING",
        "--scenario", str(SMOKE), "--target-config", str(TARGETS / "coded_shop.toml"),
        "--host", coded_shop.url, "--scale", str(SCALE), *SHORT,
        "--out", str(out), "--run-time", "90s",
    ]  # fmt: skip
    if processes > 1:  # the master on loopback, on a port of its own (not Locust's 5557)
        port = str(free_port())
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1"]
        cmd += ["--master-bind-port", port, "--master-port", port]
    proc = _run(cmd, _env(FLASHSALE_SHOP_DB=str(coded_shop.db)))
    shop = books("audit", coded_shop.db)
    assert proc.returncode == 0, _show(proc)
    manifest = _json(out / "manifest.json")
    assert manifest["status"] == "complete" and manifest["replay"]["processes"] == processes
    assert (out / "report.html").exists() and str(out / "report.html") in proc.stdout
    sold = _metric(out, "units_sold")
    assert sold == shop["units_sold"] == _client_units(out) == manifest["audit"][0]["units_sold"]
    assert sold > 0 and shop["oversold_units"] == 0
