"""``flashsale serve --db`` on a database that already holds a sale (issue 13): never
taken over silently. Without ``--fresh`` or ``--resume`` it is refused (exit 2,
naming both sales); ``--resume`` serves the database's sale and the banner names
it; ``--fresh`` replaces it. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.scenario import load_scenario
from flashsale.service.backends import open_store
from flashsale.service.runtime import Runtime
from flashsale.service.server import ADMIN_TOKEN_ENV

from ._processes import wait_until
from .conftest import SCENARIOS

SMOKE = str(SCENARIOS / "smoke.toml")
SAFETY_S = 120.0
"""A safety bound on each wait for the server (a hang fails, not hangs); no speed claim."""


def _hold_old_sale(db: str) -> None:
    """Leave in ``db`` a sale named 'old' of 2,000 units, as an earlier serve would."""
    old = load_scenario(SMOKE, ["name=old", "sale.units=2000"])

    async def start_and_stop() -> None:
        rt = Runtime(open_store(db, pool_size=1), old, "t", fresh=True)
        await rt.start()
        await rt.stop()

    asyncio.run(start_and_stop())


def _serve(db: str, *flags: str, tmp: Path) -> tuple[str, dict[str, object]]:
    """Run ``flashsale serve smoke.toml --db db *flags`` until it answers; its banner
    and its ``/v1/sale``."""
    ready = tmp / "ready"
    ready.unlink(missing_ok=True)
    code = "from flashsale.cli import app; app()"
    cmd = [sys.executable, "-c", code, "serve", SMOKE, "--port", "0", "--db", db, *flags]
    proc = subprocess.Popen(
        [*cmd, "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, ADMIN_TOKEN_ENV: "t0ken"},
    )
    try:
        wait_until(
            "the server is ready or gone",
            lambda: ready.exists() or proc.poll() is not None,
            bound_s=SAFETY_S,
        )
        assert ready.exists(), proc.communicate(timeout=SAFETY_S)[0]
        sale = httpx.get(f"{ready.read_text()}/v1/sale", timeout=SAFETY_S).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=SAFETY_S)[0]
    return out, sale


def test_a_database_holding_another_sale_is_refused_naming_both(db: str) -> None:
    _hold_old_sale(db)
    r = CliRunner().invoke(app, ["serve", SMOKE, "--port", "0", "--db", db])
    assert r.exit_code == 2, r.output
    assert "'old' (2,000 units of SMOKE-1)" in r.output, r.output
    assert "'smoke' (200 units of SMOKE-1)" in r.output, r.output
    assert "--resume" in r.output and "--fresh" in r.output, r.output


def test_resume_serves_and_names_the_database_sale_and_fresh_replaces_it(
    db: str, tmp_path: Path
) -> None:
    _hold_old_sale(db)
    banner, sale = _serve(db, "--resume", tmp=tmp_path)
    assert "resumed the sale in" in banner and "scenario old: 2,000 units" in banner, banner
    assert "smoke.toml is not used" in banner, banner
    assert sale["units"] == 2000
    banner, sale = _serve(db, "--fresh", tmp=tmp_path)
    assert "new sale in" in banner and "scenario smoke: 200 units" in banner, banner
    assert sale["units"] == 200


def test_a_new_database_needs_no_flag(tmp_path: Path) -> None:
    banner, sale = _serve(str(tmp_path / "new.db"), tmp=tmp_path)
    assert "new sale in" in banner and "scenario smoke: 200 units" in banner, banner
    assert sale["units"] == 200


def test_help_names_no_default_for_fresh_or_resume() -> None:
    r = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    text = " ".join(r.output.split())
    assert "Without either, such a --db is refused" in text, text
    assert "default: resume" not in text and "default: fresh" not in text


def test_a_channel_name_no_database_keeps_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "nul.toml"
    text = Path(SMOKE).read_text().replace('name = "web"', 'name = "w\\u0000b"', 1)
    assert text != Path(SMOKE).read_text()
    scenario.write_text(text)
    r = CliRunner().invoke(app, ["serve", str(scenario), "--port", "0"])
    assert r.exit_code == 2 and "NUL character" in r.output, r.output
