"""The calibrated scenario: a scenario's TOML with its ``[service]`` table replaced by
the one :mod:`flashsale.calibrate` fitted, every fitted value carrying its 95%
interval and method as an end-of-line comment (tomlkit keeps the rest of the file,
comments included, as it was)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flashsale.calibrate import STEPS, Calibration, Estimate, round_fit

__all__ = ["calibrated_scenario", "calibrated_service"]


def _commented(value: Any, note: str) -> Any:
    """A tomlkit item carrying ``note`` as its end-of-line comment."""
    import tomlkit

    if isinstance(value, Mapping):
        item: Any = tomlkit.inline_table()
        item.update(value)
    else:
        item = tomlkit.item(value)
    item.comment(note)
    return item


def _pool_workers(cal: Calibration, steps: Sequence[str]) -> tuple[Estimate | None, bool]:
    """A pool's workers (its steps share one fit) and whether the replay identified them."""
    f = cal.steps[steps[0]]
    return f.concurrency, f.identified


def calibrated_service(
    cal: Calibration,
    base: Mapping[str, Any],
    *,
    capacity_ratio: float = 1.0,
) -> Any:
    """The ``[service]`` table (tomlkit) of the calibrated scenario.

    ``base`` is the ``[service]`` table it replaces: its settings that no table
    measures (queue limits and timeouts, the cart hold, the gateway's timeout) and
    ``emulate_step_s`` are kept. The pools are the replayed scenario's
    (``cal.pools``), each with its fitted workers multiplied by ``capacity_ratio`` (a
    scenario with more workers than the replayed one, ``--for``).
    """
    import tomlkit

    svc = tomlkit.table()
    default_steps = cal.pools.get("default", ())
    est, known = _pool_workers(cal, default_steps) if default_steps else (None, False)
    ratio_note = (
        f"fitted at the replay's capacity, times {capacity_ratio:.4g} (this scenario's "
        "workers / the replay's): "
        if capacity_ratio != 1
        else "fitted "
    )

    def workers_item(e: Estimate | None, identified: bool, kept: int) -> Any:
        if e is None or not identified:
            why = e.method if e is not None else "every step is served by a pool of its own"
            return _commented(kept, f"kept: {why}")
        n = max(1, round(e.value * capacity_ratio))
        return _commented(n, f"{ratio_note}{e.describe()}")

    svc.add("workers", workers_item(est, known, int(base.get("workers", 64))))
    for key in ("queue_limit", "queue_timeout_s", "cart_hold_s"):
        if key in base:
            svc.add(key, _commented(base[key], "kept: not measured"))
    step_s = tomlkit.table()
    for s in STEPS:
        f = cal.steps[s]
        shape = ""
        if f.shape is not None:
            shape = f"; {'sigma' if f.dist['dist'] == 'lognormal' else 'cv'} {f.shape.describe()}"
        note = f"mean demand {f.demand.describe('s')}{shape}"
        step_s.add(s, _commented(f.dist, note))
    svc.add("step_s", step_s)
    if base.get("emulate_step_s"):  # the reference service's setting, not the model's
        svc.add(
            "emulate_step_s",
            _commented(True, "kept: the reference service holds a worker for a step_s draw"),
        )
    pay = tomlkit.table()
    pf, base_pay = cal.payment, base.get("payment", {})
    pay.add(
        "failure_prob", _commented(round_fit(pf.failure_prob.value), pf.failure_prob.describe())
    )
    if pf.failure_growth is not None and pf.load_knee is not None:
        pay.add(
            "failure_growth",
            _commented(round_fit(pf.failure_growth.value), pf.failure_growth.describe()),
        )
        pay.add(
            "load_knee",
            _commented(round_fit(pf.load_knee), "fitted: the load where failures start"),
        )
    else:
        pay.add(
            "failure_growth", _commented(0.0, "no growth with load found (likelihood ratio, 5%)")
        )
    gw_note = pf.gateway.describe("s") if pf.gateway is not None else "no gateway time reported"
    pay.add("gateway_s", _commented(pf.gateway_dist, f"mean {gw_note}"))
    if "timeout_s" in base_pay:
        pay.add("timeout_s", _commented(base_pay["timeout_s"], "kept: not measured"))
    svc.add("payment", pay)
    named = {name: steps for name, steps in cal.pools.items() if name != "default"}
    if named:
        base_pools = base.get("pools") or {}
        pools = tomlkit.table(is_super_table=True)
        for name, steps in named.items():
            kept = base_pools.get(name, {})
            t = tomlkit.table()
            t.add("steps", tomlkit.item(list(steps)))
            fitted, known = _pool_workers(cal, steps)
            pool_kept = int(kept.get("workers", base.get("workers", 64)))
            t.add("workers", workers_item(fitted, known, pool_kept))
            for key in ("queue_limit", "queue_timeout_s"):  # else [service]'s, as before
                if key in kept:
                    t.add(key, _commented(kept[key], "kept: not measured"))
            pools.add(name, t)
        svc.add("pools", pools)
    return svc


def calibrated_scenario(
    text: str, cal: Calibration, *, capacity_ratio: float = 1.0, header: str = ""
) -> str:
    """``text`` (a scenario's TOML) with its ``[service]`` table replaced by the fitted
    one (:func:`calibrated_service`), ``header`` as comment lines at the top."""
    import tomlkit

    doc = tomlkit.parse(text)
    base = doc.get("service", {}).unwrap() if "service" in doc else {}
    doc["service"] = calibrated_service(cal, base, capacity_ratio=capacity_ratio)
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + doc.as_string()
