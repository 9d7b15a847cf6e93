"""Runs side by side: key metrics with CIs, curves overlaid, paired differences.

Used to compare mitigations (the same sale with a defense on and off) or a
simulation with a replay of the same scenario. Each run is labelled by what
differs between the runs' resolved scenarios and manifests (e.g.
``defenses.waiting_room.enabled=true``), not by folder names nobody can read.

When the runs share a seed and the same replications, replication r of each saw
the same arrivals and buyers (common random numbers), so the difference of a
metric is taken replication by replication and its Student t interval is much
tighter than two independent intervals side by side.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flashsale.charts import draw_compare_charts
from flashsale.metrics import (
    METRICS_SCHEMA,
    fmt_interval,
    fmt_metric,
    fmt_signed,
    fmt_undefined,
)
from flashsale.postrun import load_run_metrics
from flashsale.report import KEY_METRICS, write_compare_report
from flashsale.runs import (
    RunError,
    RunFolder,
    new_results_dir,
    prepare_output_dir,
    remove_partials,
)
from flashsale.stats import paired_diff

__all__ = ["compare_runs", "compare_summary", "paired_differences", "run_labels"]

_IGNORED = ("description", "thresholds")
"""Scenario keys that do not change what happens in a sale."""
_MANIFEST_KEYS = ("engine", "scale", "seed")
"""Manifest facts that distinguish runs of one scenario."""
_MAX_KEYS = 4


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and any(isinstance(v, Mapping) for v in data):
        out = {}
        for i, v in enumerate(data):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def _show(value: Any) -> str:
    return "none" if value is None else json.dumps(value) if not isinstance(value, str) else value


def run_labels(manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """One label per run: the settings whose values differ between the runs.

    Scenario fields first (``name`` only if nothing else differs), then the
    engine, replay scale and seed; at most four per label, then "+N more".
    """
    flats = []
    for m in manifests:
        flat = {
            k: v for k, v in _flatten(m.get("scenario", {})).items() if not k.startswith(_IGNORED)
        }
        flat.update({k: m.get(k) for k in _MANIFEST_KEYS})
        flats.append(flat)
    keys = list(dict.fromkeys(k for f in flats for k in f))
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    if len(differ) > 1 and "name" in differ:
        differ.remove("name")
    labels = []
    for f, m in zip(flats, manifests, strict=True):
        parts = [f"{k}={_show(f.get(k))}" for k in differ[:_MAX_KEYS]]
        if len(differ) > _MAX_KEYS:
            parts.append(f"+{len(differ) - _MAX_KEYS} more")
        labels.append(", ".join(parts) or str(m.get("scenario_name", "run")))
    return labels


def paired_differences(
    docs: Sequence[Mapping[str, Any]], seeds: Sequence[Any]
) -> tuple[list[dict[str, Any]], str]:
    """Paired differences of the key metrics vs the first run, or none and why not."""
    base = docs[0]
    if any(s != seeds[0] for s in seeds):
        return [], (
            "No paired differences: the runs have different seeds, so their "
            "replications saw different arrivals."
        )
    if any(d["replications"] != base["replications"] for d in docs):
        return [], "No paired differences: the runs hold different replications."
    if len(base["replications"]) < 2:
        return [], "No paired differences: a paired interval needs at least two replications."
    pairs = []
    for i, d in enumerate(docs[1:], start=1):
        pairs.append(
            {
                "run": i,
                "metrics": {
                    name: paired_diff(base["metrics"][name]["values"], d["metrics"][name]["values"])
                    for name, _ in KEY_METRICS
                },
            }
        )
    return pairs, (
        f"The runs share seed {seeds[0]} and replications {base['replications']}: replication "
        "r of each saw the same arrivals and buyers (common random numbers), so each "
        "difference is taken replication by replication, with a 95% Student t interval."
    )


def _metrics_of(run: RunFolder) -> dict[str, Any]:
    """The run's stored metrics.json, or the metrics recomputed from its tables."""
    path = run.path / "metrics.json"
    if path.exists():
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError:
            doc = {}
        if doc.get("schema") == METRICS_SCHEMA and all(n in doc["metrics"] for n, _ in KEY_METRICS):
            return doc
    return load_run_metrics(run)


def compare_runs(paths: Sequence[Path], out: Path | None = None) -> Path:
    """Compare run folders into ``out`` (new or empty); returns the report.html path.

    Raises RunError for fewer than two runs, an unreadable run folder or an output
    folder that cannot be used (a file, not empty, not creatable or writable: the
    check every command's output folder goes through, made before any metric is
    computed). A comparison cut short leaves no temporary file, and no folder when
    it made the folder itself.
    """
    if len(paths) < 2:
        raise RunError(f"compare needs at least two run folders, got {len(paths)}")
    runs = [RunFolder.load(p) for p in paths]
    folder = out if out is not None else new_results_dir("compare")
    made = not folder.exists()
    prepare_output_dir(folder)
    try:
        docs = [_metrics_of(r) for r in runs]
        labels = run_labels([r.manifest for r in runs])
        pairs, reason = paired_differences(docs, [r.manifest.get("seed") for r in runs])
        charts = draw_compare_charts(docs, labels, KEY_METRICS, pairs, folder / "charts")
        return write_compare_report(docs, labels, charts, pairs, reason, folder)
    except BaseException:
        remove_partials(folder)
        if made:
            _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and its empty subfolders (``charts/``) if no file is left."""
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def compare_summary(doc: Mapping[str, Any]) -> list[str]:
    """The terminal's view of a compare.json document: each run's label, then per key
    metric each run's mean and, when the runs are paired, its difference from run 1
    with the 95% interval (the same figures as the report). A metric undefined in
    some replications says so ("undefined in k of N replications"): its mean covers
    the others, and a difference only the pairs where both runs have a value."""
    runs = doc["runs"]
    lines = [
        f"run {i + 1}{' (baseline)' if i == 0 else ''}: {r['label']}  [{r['path']}]"
        for i, r in enumerate(runs)
    ]
    diffs = {d["run"]: d["metrics"] for d in doc["paired"]["differences"]}
    width = max(len(label) for _, label in KEY_METRICS)
    how = " (difference from run 1, 95% CI)" if diffs else ""
    lines.append(f"  {'key metric':<{width}}  mean per run, in run order{how}")
    for name, label in KEY_METRICS:
        cells = []
        for i in range(len(runs)):
            block = doc["key_metrics"][name][i]
            cell = fmt_metric(name, block["mean"])
            undefined = fmt_undefined(block)
            if undefined is not None:
                cell += f" [{undefined}]"
            d = diffs.get(i, {}).get(name)
            if d is not None and d["mean"] is not None:
                ci = fmt_interval(name, d, signed=True)
                pairs = fmt_undefined(d)
                cell += (
                    f" ({fmt_signed(name, d['mean'])}{f', CI {ci}' if ci else ''}"
                    f"{f'; {pairs}' if pairs else ''})"
                )
            cells.append(cell)
        lines.append(f"  {label:<{width}}  " + " | ".join(cells))
    if not diffs:
        lines.append(doc["paired"]["reason"])
    return lines
