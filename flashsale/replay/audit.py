"""Talking to the target's admin API: reset it to the sale, read its audit, cross-check.

A replay trusts nothing it did not count twice. The client side counts units in
journeys that ended ``purchased``; the service's ``GET /admin/audit`` counts
units in its order table. They must agree, and the audit must show no oversold
unit; :func:`cross_check` says what disagrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np

from flashsale.outcome import RESULT
from flashsale.scenario import Scenario

__all__ = [
    "AuditError",
    "audit_record",
    "cross_check",
    "fetch_audit",
    "reset_target",
    "sale_status",
]

_PURCHASED = RESULT.index("purchased")
_AUDIT_FIELDS = ("units_sold", "units_reserved", "stock_left", "oversold_units", "orders")


class AuditError(RuntimeError):
    """The target's admin API did not answer as the reference API says it should."""


def _admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reset_target(
    base_url: str, token: str, scenario: Scenario, opens_in_s: float, replication: int = 0
) -> dict[str, Any]:
    """Reset the service to ``scenario`` with the sale opening ``opens_in_s`` from now."""
    r = httpx.post(
        f"{base_url}/admin/reset",
        params={"opens_in_s": f"{opens_in_s:.3f}", "replication": replication},
        json=scenario.to_toml_dict(),
        headers=_admin(token),
        timeout=30.0,
    )
    if r.status_code != 200:
        raise AuditError(f"{base_url}/admin/reset: HTTP {r.status_code}: {r.text[:300]}")
    body: dict[str, Any] = r.json()
    return body


def sale_status(base_url: str, scenario: Scenario) -> dict[str, Any]:
    """``GET`` the sale status path of the target (``opens_in_s`` tells when it opens)."""
    r = httpx.get(f"{base_url}{scenario.target.paths.status}", timeout=10.0)
    if r.status_code != 200:
        raise AuditError(f"{base_url}{scenario.target.paths.status}: HTTP {r.status_code}")
    body: dict[str, Any] = r.json()
    return body


def fetch_audit(base_url: str, token: str) -> dict[str, Any]:
    """The service's own count of the sale (``GET /admin/audit``)."""
    r = httpx.get(f"{base_url}/admin/audit", headers=_admin(token), timeout=60.0)
    if r.status_code != 200:
        raise AuditError(f"{base_url}/admin/audit: HTTP {r.status_code}: {r.text[:300]}")
    body: dict[str, Any] = r.json()
    missing = [f for f in _AUDIT_FIELDS if f not in body]
    if missing:
        raise AuditError(f"{base_url}/admin/audit: answer lacks {', '.join(missing)}")
    return body


def audit_record(audit: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The manifest's per-replication audit entry (cross-helper API 2)."""
    return {f: int(audit[f]) for f in _AUDIT_FIELDS} | {"source": f"{base_url}/admin/audit"}


def cross_check(journeys: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> list[str]:
    """What disagrees between the client's count and the service's audit (empty: all agree)."""
    client_units = int(journeys["units"][journeys["result"] == _PURCHASED].sum())
    problems = []
    if client_units != record["units_sold"]:
        problems.append(
            f"audit mismatch: client-side journeys bought {client_units} units, "
            f"the service's audit says {record['units_sold']} sold ({record['source']})"
        )
    if record["oversold_units"] != 0:
        problems.append(f"oversold: the service's audit shows {record['oversold_units']} units")
    return problems
