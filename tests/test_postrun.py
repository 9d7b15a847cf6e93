"""The post-run pipeline's replay checks, read from a metrics document as written."""

from __future__ import annotations

from flashsale.metrics import compute_metrics
from flashsale.postrun import replay_checks

from .test_metrics_data import make_outcome, scenario


def test_answers_lost_are_named_per_step_from_the_nested_metrics() -> None:
    # Two carts and one payment sent whose answers never came (status 0), one view answered.
    requests = [
        {"step": "view", "status": 200},
        {"step": "cart", "status": 0},
        {"step": "cart", "status": 0},
        {"step": "pay", "status": 0},
    ]
    doc = compute_metrics(scenario(), [make_outcome([{"result": "timed_out"}], requests)])
    audit = {"source": "GET /audit", "units_sold": 0, "oversold_units": 0}
    checks = replay_checks({"engine": "replay", "audit": [audit]}, doc["metrics"])
    lost = [c for c in checks if c[0] == "answers lost"]
    assert lost == [["answers lost", "cart 2, pay 1 (ambiguous: may have taken effect)", "warn"]]
