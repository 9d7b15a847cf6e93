"""Shared fixtures: paths to the built-in scenarios and a tiny valid scenario as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


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
