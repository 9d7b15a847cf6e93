"""The target's own books: reset it to the sale, read its audit, cross-check the client.

A replay trusts nothing it did not count twice, and the target's books are the
authority. Reset and audit are hooks of the target protocol
(flashsale.protocol.Hook): an HTTP request to the target, or a local command
whose standard output is one JSON object (a script that queries staging's
database). The reference service's are ``POST /admin/reset`` and ``GET
/admin/audit`` with its admin token; a hook that needs ``{admin_token}`` is
skipped when none is given. With an audit, units sold and oversold units come
from it and the client's count of units bought is the cross-check
(:func:`cross_check`); without one, oversold units are unknown (null) and the
report says so.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

from flashsale.outcome import RESULT
from flashsale.protocol import Audit, Hook, ProtocolError, json_at, render, render_body
from flashsale.scenario import Scenario

__all__ = [
    "AuditError",
    "audit_record",
    "cross_check",
    "fetch_audit",
    "reset_target",
    "run_hook",
    "usable",
]

_PURCHASED = RESULT.index("purchased")
_MAX_OUTPUT = 1 << 20  # a hook's answer is a small JSON object


class AuditError(RuntimeError):
    """A reset or an audit did not answer as the target protocol says it should."""


def usable(hook: Hook | None, admin_token: str | None) -> bool:
    """True if ``hook`` exists and has every value it needs (``{admin_token}``)."""
    return hook is not None and (admin_token is not None or "admin_token" not in hook.names())


def _values(scenario: Scenario, admin_token: str | None, **extra: Any) -> dict[str, Any]:
    env = {f"env.{k}": v for k, v in os.environ.items()}
    return {
        **env,
        "units": scenario.sale.units,
        "sku": scenario.sale.sku,
        "admin_token": admin_token,
        "scenario": scenario.to_toml_dict(),
        "python": sys.executable,
        **extra,
    }


def run_hook(hook: Hook, base_url: str, values: Mapping[str, Any], what: str) -> Any:
    """Run ``hook`` (HTTP request or command) and return its JSON answer.

    Raises AuditError naming ``what`` for a refused request (not 2xx), a command that
    fails, an answer that is not JSON, a placeholder with no value, or no answer
    within the hook's ``timeout_s``."""
    try:
        if hook.command is not None:
            argv = [render(a, values) for a in hook.command]
            return _run_command(argv, hook.cwd, hook.timeout_s, what)
        assert hook.path is not None
        url = f"{base_url}{render(hook.path, values)}"
        headers = {k: render(v, values) for k, v in hook.headers.items()}
        content = None
        if hook.form is not None:
            content = urlencode({k: render(v, values) for k, v in hook.form.items()})
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        body = render_body(hook.json_, values) if hook.json_ is not None else None
    except ProtocolError as e:
        raise AuditError(f"{what}: {e}") from None
    try:
        r = httpx.request(
            hook.method, url, headers=headers, json=body, content=content, timeout=hook.timeout_s
        )
    except httpx.HTTPError as e:
        raise AuditError(f"{what}: {hook.method} {url}: no answer: {e}") from None
    if not 200 <= r.status_code < 300:
        raise AuditError(f"{what}: {hook.method} {url}: HTTP {r.status_code}: {r.text[:300]}")
    try:
        return r.json() if r.content else {}
    except ValueError:
        raise AuditError(f"{what}: {hook.method} {url}: the answer is not JSON") from None


def _run_command(argv: list[str], cwd: str | None, timeout_s: float, what: str) -> Any:
    if cwd is not None and not Path(cwd).is_dir():
        raise AuditError(f"{what}: cwd {cwd}: no such folder")
    command = f"{what}: command {' '.join(argv)[:200]}"
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise AuditError(f"{command}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise AuditError(f"{command}: no answer in {timeout_s:g} s") from None
    except OSError as e:  # not executable, not a program
        raise AuditError(f"{command}: {e.strerror or e}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise AuditError(
            f"{command} exited {done.returncode}" + (f": {err[-1][:300]}" if err else "")
        )
    out = done.stdout[:_MAX_OUTPUT].decode(errors="replace").strip()
    try:
        return json.loads(out) if out else {}
    except ValueError:
        raise AuditError(f"{command} printed no JSON object") from None


def reset_target(
    base_url: str,
    scenario: Scenario,
    opens_in_s: float,
    replication: int,
    admin_token: str | None,
) -> bool:
    """Reset the target to ``scenario``, the sale opening ``opens_in_s`` from now.
    False if the protocol has no reset this replay can run (no admin token)."""
    hook = scenario.target.reset
    if hook is None or not usable(hook, admin_token):
        return False
    values = _values(scenario, admin_token, opens_in_s=f"{opens_in_s:.3f}", replication=replication)
    run_hook(hook, base_url, values, "target.reset")
    return True


def fetch_audit(
    base_url: str, scenario: Scenario, admin_token: str | None
) -> dict[str, Any] | None:
    """The target's own count of the sale through the protocol's audit, mapped to
    :data:`flashsale.protocol.AUDIT_FIELDS`; None when there is no audit to run.

    ``oversold_units`` not mapped is units sold beyond the units on sale. Raises
    AuditError for a failed audit or a mapped field that is missing or not a whole
    number."""
    hook = scenario.target.audit
    if hook is None or not usable(hook, admin_token):
        return None
    answer = run_hook(hook, base_url, _values(scenario, admin_token), "target.audit")
    return audit_record(hook, answer, scenario.sale.units, base_url)


def audit_record(hook: Audit, answer: Any, units: int, base_url: str) -> dict[str, Any]:
    """The manifest's per-replication audit entry from the audit's JSON ``answer``."""
    out: dict[str, Any] = {}
    for name, path in hook.fields.items():
        found, v = json_at(answer, path)
        whole = isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v == int(v))
        if not found or isinstance(v, bool) or not whole:
            raise AuditError(
                f"target.audit: the answer's {path!r} (fields.{name}) is "
                + (f"not a whole number: {v!r}"[:200] if found else "missing")
            )
        out[name] = int(v)
    out.setdefault("oversold_units", max(0, out["units_sold"] - units))
    where = " ".join(hook.command) if hook.command else f"{base_url}{hook.path}"
    return out | {"source": where[:300]}


def cross_check(journeys: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> list[str]:
    """What disagrees between the client's count and the target's audit (empty: all agree)."""
    client_units = int(journeys["units"][journeys["result"] == _PURCHASED].sum())
    problems = []
    if client_units != record["units_sold"]:
        problems.append(
            f"audit mismatch: client-side journeys bought {client_units} units, "
            f"the target's audit says {record['units_sold']} sold ({record['source']})"
        )
    if record["oversold_units"] != 0:
        problems.append(f"oversold: the target's audit shows {record['oversold_units']} units")
    return problems
