"""The README is the user's contract: its scenario reference names every field."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from flashsale.scenario import Scenario, _model_of

from .conftest import ROOT

# Fields whose value is a distribution or a tagged table: documented as a whole.
_LEAVES = {"arrivals", "thresholds"}


def _paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        sub = _model_of(field.annotation)
        if sub is None or key in _LEAVES or "dist" in sub.model_fields:
            yield f"{prefix}{key}"
        else:
            sep = "[]." if "list" in str(field.annotation) else "."
            yield from _paths(sub, f"{prefix}{key}{sep}")


def test_readme_documents_every_scenario_field() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p for p in _paths(Scenario) if f"`{p}`" not in readme and p not in readme]
    assert not missing, f"README scenario reference lacks: {missing}"


def test_readme_lists_every_outcome_column() -> None:
    from flashsale.outcome import JOURNEYS, REQUESTS, TIMELINE

    readme = (ROOT / "README.md").read_text()
    for schema in (JOURNEYS, REQUESTS, TIMELINE):
        for col in schema.names:
            assert f"`{col}`" in readme, f"README outcome reference lacks {schema.name}.{col}"
