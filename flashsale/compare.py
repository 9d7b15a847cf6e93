"""Runs side by side: key metrics with CIs, curves overlaid, paired differences.

Used to compare mitigations (the same sale with a defense on and off) or a
simulation with a replay of the same scenario. Each run is labelled by every
setting whose value differs between the runs' resolved scenarios and manifests
(e.g. ``defenses.waiting_room.enabled=true``), not by folder names nobody can read.
A distribution (a table with ``dist``) is one setting, shown with its parameters
(``humans.patience_s=exponential(mean=600.0)``). Where that list is too long for a
chart's legend, the charts name each run by its folder, engine and replications
instead; the console, the report's "What differs" table and compare.json keep it
in full. A run that differs from run 1 in more than one setting gets a note saying so: an
effect seen there cannot be attributed to any one of them (a defense switched on
or off counts once, whatever its parameters; so does the engine with its replay
scale).

When the runs share a seed and the same replications, replication r of each saw
the same arrivals and buyers (common random numbers), so the difference of a
metric is taken replication by replication and its Student t interval is much
tighter than two independent intervals side by side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flashsale.charts import draw_compare_charts
from flashsale.metric_registry import KEY_FIGURES
from flashsale.metrics import (
    METRICS_SCHEMA,
    fmt_interval,
    fmt_judged,
    fmt_metric,
    fmt_signed,
    fmt_undefined,
)
from flashsale.postrun import load_run_metrics
from flashsale.report import show_setting, write_compare_report
from flashsale.runs import (
    RunError,
    RunFolder,
    new_results_dir,
    prepare_output_dir,
    remove_if_empty,
    remove_partials,
)
from flashsale.stats import paired_diff
from flashsale.thresholds import check_thresholds

__all__ = [
    "chart_labels",
    "compare_runs",
    "compare_summary",
    "paired_differences",
    "run_changes",
    "run_differences",
    "run_labels",
    "run_metrics",
]

_IGNORED = ("description", "thresholds")
"""Scenario keys that do not change what happens in a sale."""
_MANIFEST_KEYS = ("engine", "scale", "seed")
"""Manifest facts that distinguish runs of one scenario."""
_NOT_A_SETTING = ("name",)
"""Differences listed, never counted as a setting that changes the sale."""
_SWITCH = re.compile(r"^(defenses\.[^.]+)\.enabled$")
"""A defense's on/off switch: switched, it and its parameters are one change."""
_DEFENSE = re.compile(r"^(defenses\.[^.]+)\.")
_CHART_LABEL_MAX = 70
"""Longest run label (characters) a chart's legend shows as it is: one line under the
key-metric bars (wrapped at 70), two beside the curves (wrapped at 48)."""


def _show_distribution(dist: Mapping[str, Any]) -> str:
    """A distribution as one setting's value: ``lognormal(median=0.0002395, sigma=0.3564)``,
    its parameters in the scenario's order, each shown as a setting is."""
    params = ", ".join(f"{k}={show_setting(v)}" for k, v in dist.items() if k != "dist")
    return f"{dist['dist']}({params})"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested scenario fields as ``{"a.b.c": value}``; a distribution (a table with
    ``dist``, as :mod:`flashsale.distributions` writes one) is one field, shown whole."""
    if isinstance(data, Mapping) and "dist" in data:
        return {prefix: _show_distribution(data)}
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


def _settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings, flat: its resolved scenario's fields, then engine, scale, seed."""
    flat = {
        k: v
        for k, v in _flatten(manifest.get("scenario", {})).items()
        if not k.startswith(_IGNORED)
    }
    flat.update({k: manifest.get(k) for k in _MANIFEST_KEYS})
    return flat


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def run_differences(manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every setting whose value is not the same in all runs, none left out:
    ``[{"setting": "humans.patience_s", "values": ["exponential(mean=300.0)",
    "exponential(mean=600.0)"]}, ...]``, one value per run (None where a run has no
    such field; a distribution whole, as text), scenario fields in file order, then
    engine, replay scale and seed. Description and thresholds do not
    change a sale and are not compared."""
    flats = [_settings(m) for m in manifests]
    keys = dict.fromkeys(k for f in flats for k in f)
    return [
        {"setting": k, "values": [f.get(k) for f in flats]}
        for k in keys
        if any(not _same(f.get(k), flats[0].get(k)) for f in flats[1:])
    ]


def run_labels(manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """One label per run: every setting whose value differs between the runs,
    ``setting=value`` (:func:`run_differences`; ``name`` only if nothing else
    differs), or the scenario's name when the runs are alike."""
    differ = run_differences(manifests)
    if len(differ) > 1:
        differ = [d for d in differ if d["setting"] not in _NOT_A_SETTING]
    return [
        ", ".join(f"{d['setting']}={show_setting(d['values'][i])}" for d in differ)
        or str(m.get("scenario_name", "run"))
        for i, m in enumerate(manifests)
    ]


def chart_labels(
    labels: Sequence[str],
    paths: Sequence[Path],
    manifests: Sequence[Mapping[str, Any]],
    n_replications: Sequence[int],
) -> list[str]:
    """The run labels a chart's legend shows: ``labels`` (:func:`run_labels`) when each
    fits (:data:`_CHART_LABEL_MAX`), else for every run its folder's name, engine,
    replay scale and replications, e.g. ``poco-sim (sim, 30 replications)``,
    ``poco-01 (replay, scale 0.01)`` (one replication goes unsaid: the charts say a run
    of one has no interval). Folders of one name are named by their whole path."""
    if all(len(lab) <= _CHART_LABEL_MAX for lab in labels):
        return list(labels)
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    out = []
    for name, m, n in zip(names, manifests, n_replications, strict=True):
        facts = [str(m.get("engine"))]
        if m.get("scale") is not None:
            facts.append(f"scale {show_setting(m['scale'])}")
        if n > 1:
            facts.append(f"{n} replications")
        out.append(f"{name} ({', '.join(facts)})")
    return out


def _change(setting: str, switched: set[str], engine_changed: bool) -> str:
    """The change a differing setting is part of: a parameter of a defense switched
    on or off is part of that switch; a replay's scale, of a change of engine (a
    simulation has no scale)."""
    if setting == "scale" and engine_changed:
        return "engine"
    m = _DEFENSE.match(setting)
    return m.group(1) if m and m.group(1) in switched else setting


def run_changes(differences: Sequence[Mapping[str, Any]], n_runs: int) -> list[dict[str, Any]]:
    """For each of ``n_runs`` runs after the first, the settings it changes from
    run 1 (from :func:`run_differences`), and a note when there is more than one:
    ``[{"run": 1, "settings": ["humans.patience_s", "defenses.waiting_room"],
    "note": "These runs differ in 2 settings (...): an effect cannot be attributed
    to one of them."}]``; the note is None for one setting or none.

    A defense switched on or off is one change, its parameters with it (they do
    nothing while it is off); the engine likewise takes the replay scale with it.
    The scenario's name is no setting."""
    out = []
    for i in range(1, n_runs):
        changed = [
            d["setting"]
            for d in differences
            if d["setting"] not in _NOT_A_SETTING and not _same(d["values"][i], d["values"][0])
        ]
        switched = {m.group(1) for s in changed if (m := _SWITCH.match(s))}
        settings = list(dict.fromkeys(_change(s, switched, "engine" in changed) for s in changed))
        note = None
        if len(settings) > 1:
            who = "These runs differ" if n_runs == 2 else f"Run {i + 1} differs from run 1"
            note = (
                f"{who} in {len(settings)} settings ({', '.join(settings)}): an effect "
                "cannot be attributed to one of them."
            )
        out.append({"run": i, "settings": settings, "note": note})
    return out


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
                    for name, _ in KEY_FIGURES
                },
            }
        )
    return pairs, (
        f"The runs share seed {seeds[0]} and replications {base['replications']}: replication "
        "r of each saw the same arrivals and buyers (common random numbers), so each "
        "difference is taken replication by replication, with a 95% Student t interval."
    )


def run_metrics(run: RunFolder) -> dict[str, Any]:
    """The run's stored metrics.json, or the metrics recomputed from its tables (a
    missing, unreadable or older document), with the folder's path as given (a
    folder copied or moved since keeps its old path in the file). Raises RunError as
    :func:`flashsale.postrun.load_run_metrics` does."""
    path = run.path / "metrics.json"
    if path.exists():
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError:
            doc = {}
        if doc.get("schema") == METRICS_SCHEMA and all(n in doc["metrics"] for n, _ in KEY_FIGURES):
            doc.setdefault("run", {})["path"] = str(run.path)  # where it is now (it may move)
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
        docs = [run_metrics(r) for r in runs]
        for run, doc in zip(runs, docs, strict=True):  # each run judged by its own scenario
            verdicts = check_thresholds(run.scenario.thresholds, doc["metrics"])
            doc["thresholds"] = [v.as_json() for v in verdicts]
        manifests = [r.manifest for r in runs]
        labels = run_labels(manifests)
        differences = run_differences(manifests)
        changes = run_changes(differences, len(runs))
        pairs, reason = paired_differences(docs, [r.manifest.get("seed") for r in runs])
        short = chart_labels(
            labels, [r.path for r in runs], manifests, [len(d["replications"]) for d in docs]
        )
        charts = draw_compare_charts(docs, short, KEY_FIGURES, pairs, folder / "charts")
        return write_compare_report(
            docs, labels, charts, pairs, reason, folder, differences=differences, changes=changes
        )
    except BaseException:
        remove_partials(folder)
        if made:
            remove_if_empty(folder)
        raise


def compare_summary(doc: Mapping[str, Any]) -> list[str]:
    """The terminal's view of a compare.json document: each run's label (every
    setting that differs), a note for each run that changes more than one setting
    from run 1, then per key metric each run's mean and, when the runs are paired,
    its difference from run 1 with the 95% interval (the same figures as the
    report; shares in percentage points). A metric undefined in some replications
    says so ("undefined in k of N replications"): its mean covers the others, and a
    difference only the pairs where both runs have a value."""
    runs = doc["runs"]
    lines = [
        f"run {i + 1}{' (baseline)' if i == 0 else ''}: {r['label']}  [{r['path']}]"
        for i, r in enumerate(runs)
    ]
    lines.extend(c["note"] for c in doc.get("changes", []) if c["note"])
    diffs = {d["run"]: d["metrics"] for d in doc["paired"]["differences"]}
    width = max(len(label) for _, label in KEY_FIGURES)
    how = " (difference from run 1, 95% CI)" if diffs else ""
    lines.append(f"  {'key metric':<{width}}  mean per run, in run order{how}")
    for name, label in KEY_FIGURES:
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
    for i, r in enumerate(runs):
        checks = r.get("thresholds", [])
        failed = sum(not t["passed"] for t in checks)
        if checks:
            lines.append(f"thresholds, run {i + 1}: {len(checks) - failed} of {len(checks)} held")
            lines.extend(
                f"  {'PASS' if t['passed'] else 'FAIL'} {t['check']}: {fmt_judged(t)}"
                for t in checks
            )
    return lines
