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


def test_readme_metric_table_is_the_registry() -> None:
    from flashsale.metric_registry import markdown_table

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics, charts and reports") :]
    # Regenerate: python -c "import flashsale.metric_registry as r; print(r.markdown_table())"
    assert markdown_table() in section, "README metric table differs from the metric registry"


def test_readme_threshold_examples_load_and_judge_as_it_says() -> None:
    import tomllib

    from flashsale.scenario import load_scenario
    from flashsale.stats import summarize
    from flashsale.thresholds import check_thresholds

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Thresholds.** A `[thresholds]` entry") :]
    block = section[section.index("```toml\n") + 8 : section.index("```\n", 8)]
    table = tomllib.loads(block)["thresholds"]
    sc = load_scenario(
        ROOT / "scenarios" / "smoke.toml", [f'thresholds.{k}="{v}"' for k, v in table.items()]
    )
    keys = {t.key for t in sc.thresholds}
    assert keys == set(table)
    # The worked example: pay p95 of 1.8, 2.0 and 1.9 s holds on the mean, not on ci_high.
    pay = {"latency_p95_s": {"pay": summarize([1.8, 2.0, 1.9], bounds=(0.0, None))}}
    mean, top = (t for t in sc.thresholds if t.metric == "latency_p95_s.pay")
    [on_mean, on_top] = check_thresholds([mean, top], pay)
    assert on_mean.passed and not on_top.passed
    assert f"`{on_top}`" in " ".join(section.split())
