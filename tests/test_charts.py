"""Charts: every chart of a run is drawn as a PNG, from metrics alone."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flashsale.charts import draw_run_charts
from flashsale.figures import OKABE_ITO
from flashsale.metrics import compute_metrics

from .test_metrics_data import make_outcome, scenario, synthetic_outcome

RUN_CHARTS = {
    "stock_left",
    "sales_per_second",
    "success_by_arrival",
    "lorenz",
    "outcomes",
    "latency",
    "load",
}


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    sc = scenario(
        sale={"units": 200, "window_s": 30},
        humans={"count": 400},
        bots={"operators": 3, "accounts_per_operator": 10, "units_per_order": 2},
    )
    return compute_metrics(sc, [synthetic_outcome(sc, np.random.default_rng(i)) for i in range(3)])


def test_every_run_chart_is_drawn(doc: dict[str, Any], tmp_path: Path) -> None:
    charts = draw_run_charts(doc, tmp_path)
    assert {c.name for c in charts} == RUN_CHARTS
    for c in charts:
        w, h = _png_size(c.path)
        assert w >= 800 and h >= 400, c.name
        assert c.title and c.caption
    assert not list(tmp_path.glob(".*partial*")), "temporary files left behind"


def test_charts_without_data_are_skipped(tmp_path: Path) -> None:
    doc = compute_metrics(scenario(), [make_outcome([{"result": "sold_out"}])])
    names = {c.name for c in draw_run_charts(doc, tmp_path)}
    # No timeline rows and no requests: nothing to draw over time.
    assert names == {"success_by_arrival", "lorenz", "outcomes"}


def test_palette_is_okabe_ito() -> None:
    assert set(OKABE_ITO.values()) == {
        "#000000",
        "#E69F00",
        "#56B4E9",
        "#009E73",
        "#F0E442",
        "#0072B2",
        "#D55E00",
        "#CC79A7",
    }
