"""Shared fixtures: paths to the built-in scenarios and a tiny valid scenario as data."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from flashsale.arrivals import HUMAN, Schedule
from flashsale.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def scenario_with(data: dict[str, Any], **over: Any) -> Scenario:
    """``data`` with overrides like ``humans__count=3`` (``__`` separates table names),
    validated into a Scenario."""
    for path, value in over.items():
        node = data
        *head, last = path.split("__")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_scenario(data)


def tiny_sale(**over: Any) -> Scenario:
    """A hand-computable sale: 3 units, 5 humans, one worker, constant step times
    (view 0.1 s, cart 0.2 s, pay 0.3 s), no retries; ``over`` as for scenario_with."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "tiny",
        "seed": 3,
        "sale": {"units": 3, "window_s": 60},
        "humans": {
            "count": 5,
            "think_s": 1.0,
            "refresh_s": 1.0,
            "retries_on_error": 0,
            "arrivals": {"profile": "poisson", "rate_per_s": 1.0},
        },
        "service": {
            "workers": 1,
            "queue_limit": 100,
            "queue_timeout_s": 100,
            "step_s": {"view": 0.1, "cart": 0.2, "pay": 0.3},
        },
    }
    return scenario_with(data, **over)


def fixed_schedule(times: list[float]) -> Schedule:
    """One human arriving at each of ``times`` (s), account and person = index."""
    n = len(times)
    ids = np.arange(n, dtype=np.int64)
    return Schedule(
        t=np.array(times),
        kind=np.full(n, HUMAN),
        account=ids,
        person=ids,
        channel=np.zeros(n, dtype=np.uint8),
        operator=np.full(n, -1, dtype=np.int64),
    )


@pytest.fixture
def smoke_path() -> Path:
    return SCENARIOS / "smoke.toml"


@pytest.fixture
def minimal_data() -> dict[str, Any]:
    """The smallest valid scenario: every other field takes its default."""
    return {
        "schema_version": 1,
        "name": "tiny",
        "sale": {"units": 10},
        "humans": {"count": 20},
    }


PG = os.environ.get("FLASHSALE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL the service tests use; .ci/run makes sure it answers."""


def pg_url(request: pytest.FixtureRequest) -> str:
    """A database URL with a schema of the test's own, so parallel tests never collide."""
    schema = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + f"_{os.getpid()}"
    return f"{PG}?schema={schema}"


def drop_schema(url: str) -> None:
    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each service test runs on both backends: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "sale.db")
        return
    url = pg_url(request)
    yield url
    drop_schema(url)
