"""A prediction held against what happened: a replay against the simulation of its scenario.

The capacity planner's last step: replay a small sale against staging, calibrate the
service model from it, simulate that scenario N times, and ask how far the forecast
can be trusted. The replay is one draw of the sale, so it is held against where *one
new replication* of the simulation should fall, not against the mean's confidence
interval (which shrinks to nothing as N grows): for each key figure, the 95%
prediction interval mean +- t(0.975, N - 1) * s * sqrt(1 + 1/N) over the simulation's
replications (:func:`flashsale.stats.prediction_interval`, after Hahn & Meeker,
*Statistical Intervals*, 1991, ch. 4), the error observed - predicted (shares in
percentage points), and whether the observation falls inside. The curves over time
(stock left, sales per second, latency p95 per step) get the same band point by point.

Everything is read from the two runs' metrics documents (stored metrics.json, or
recomputed from the tables as ``flashsale compare`` does); nothing is measured here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flashsale.compare import run_differences, run_metrics
from flashsale.metric_registry import KEY_FIGURES, bounds_of, label_of, lookup, unit_of
from flashsale.metrics import fmt_metric, fmt_signed
from flashsale.outcome import STEP
from flashsale.runs import (
    RunError,
    RunFolder,
    new_results_dir,
    prepare_output_dir,
    remove_if_empty,
    remove_partials,
    write_json_atomic,
)
from flashsale.stats import CI_LEVEL, PI_METHOD, prediction_band, prediction_interval

__all__ = [
    "PREDICTED_FIGURES",
    "PREDICT_SCHEMA",
    "SAME_MODEL_EXCEPT",
    "fmt_error",
    "fmt_interval_of",
    "judge",
    "outside",
    "predict_runs",
    "prediction",
    "prediction_summary",
    "scenario_differences",
    "verdict_text",
]

PREDICT_SCHEMA = "flashsale.predict/1"

PREDICTED_FIGURES = "latency_p95_s"
"""Besides the key figures, the per-step metric predicted for every step either run has."""

SAME_MODEL_EXCEPT = ("service", "seed", "engine", "scale", "name")
"""Settings the two runs may differ in without a warning: the service model (what a
calibration replaces), the seed, the engine and the replay's scale (the replay's
scenario.toml is already scaled), and the scenario's name."""

_UNKNOWN_WHEN_NULL = {"oversold_units": "unknown in the replay: no audit of the target's books"}
"""Metrics whose null in a replay means "not observed", not "undefined"."""

_ENGINES = {"replay": "a replay", "sim": "a simulation"}
_TOLERANCE = 1e-9
"""Relative slack at the interval's ends: a mean of N equal shares is not always the
same float as one of them."""


def _load(path: Path, engine: str, arg: str) -> RunFolder:
    run = RunFolder.load(path)
    got = run.manifest.get("engine")
    if got != engine:
        what = _ENGINES.get(str(got), f"a run of engine {got!r}")
        raise RunError(f"{path}: {arg} must be {_ENGINES[engine]} run folder, this is {what}")
    return run


def scenario_differences(
    replay: Mapping[str, Any], simulation: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The settings in which the two runs' manifests differ beyond
    :data:`SAME_MODEL_EXCEPT`: ``[{"setting": "humans.count", "replay": 500,
    "simulation": 1000}, ...]`` (a prediction of another sale than the one replayed)."""
    return [
        {"setting": d["setting"], "replay": d["values"][0], "simulation": d["values"][1]}
        for d in run_differences([replay, simulation])
        if d["setting"].split(".")[0] not in SAME_MODEL_EXCEPT
    ]


def _figures(observed: Mapping[str, Any], predicted: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key figures, then latency p95 of every step either run has, in step order."""
    steps = [
        s
        for s in STEP
        if lookup(observed, f"{PREDICTED_FIGURES}.{s}") is not None
        or lookup(predicted, f"{PREDICTED_FIGURES}.{s}") is not None
    ]
    per_step = [f"{PREDICTED_FIGURES}.{s}" for s in steps]
    return [*KEY_FIGURES, *((name, label_of(name)) for name in per_step)]


def judge(name: str, observed: float | None, predicted: Sequence[float | None]) -> dict[str, Any]:
    """One figure: the observed value against the ``predicted`` per-replication values.

    Returns ``{"observed", "mean", "pi_low", "pi_high", "n", "replications", "error",
    "relative_error", "inside", "why"}``: the 95% prediction interval of one new
    replication over the n defined values (clipped to the metric's bounds); error =
    observed - mean; relative_error = error / mean (None for shares, whose error is
    read in points, and for a zero mean); inside True/False, or None when it cannot
    be told (``why`` says why: fewer than two values, the replay's value unknown).
    A value undefined in the replay (no sell-out) is inside when it was undefined in
    some replication too, outside when every replication had one, and the reverse.
    """
    mean, low, high, n = prediction_interval(predicted, CI_LEVEL, bounds_of(name))
    out: dict[str, Any] = {
        "observed": observed,
        "mean": mean,
        "pi_low": low,
        "pi_high": high,
        "n": n,
        "replications": len(predicted),
        "error": None,
        "relative_error": None,
        "inside": None,
        "why": None,
    }
    undefined = len(predicted) - n
    if observed is None:
        if name in _UNKNOWN_WHEN_NULL:
            out["why"] = _UNKNOWN_WHEN_NULL[name]
        elif undefined:
            out["inside"] = True
            out["why"] = f"undefined in the replay, as in {undefined} of {len(predicted)}"
        else:
            out["inside"] = False
            out["why"] = f"undefined in the replay, defined in all {len(predicted)}"
        return out
    if mean is None:
        out["inside"] = False
        out["why"] = f"defined in the replay, undefined in all {len(predicted)}"
        return out
    out["error"] = observed - mean
    if unit_of(name) != "share" and mean != 0:
        out["relative_error"] = (observed - mean) / abs(mean)
    if low is None or high is None:
        out["why"] = "fewer than two replications with a value: no interval"
        return out
    slack = _TOLERANCE * max(1.0, abs(observed))
    out["inside"] = low - slack <= observed <= high + slack
    if undefined:
        out["why"] = f"undefined in {undefined} of {len(predicted)}; the interval covers the rest"
    return out


def _curves(observed: Mapping[str, Any], predicted: Mapping[str, Any]) -> dict[str, Any]:
    """The main sale's curves: the replay as a line, the simulation as its mean with a
    95% prediction band (:func:`flashsale.stats.prediction_band`) over its replications.
    Timeline: stock left and units held in carts (``reserved``) at the end of each bin,
    units paid per second by humans and by bots."""
    n = len(predicted["replications"])
    obs_tl = observed["series"]["timeline"].get("main")
    sim_tl = predicted["series"]["timeline"].get("main")
    out: dict[str, Any] = {"timeline": {}, "latency_p95_s": {}}
    if obs_tl is not None and sim_tl is not None:
        out["timeline"] = {
            "replay_bin_s": obs_tl["bin_s"],
            "simulation_bin_s": sim_tl["bin_s"],
        }
        for col, at in (
            ("stock_left", "t_end_s"),
            ("reserved", "t_end_s"),
            ("sold_human_per_s", "t_s"),
            ("sold_bot_per_s", "t_s"),
        ):
            out["timeline"][col] = {
                "replay": {"t_s": obs_tl[at], "value": obs_tl[col]["mean"]},
                "simulation": {"t_s": sim_tl[at], **prediction_band(sim_tl[col], n, (0.0, None))},
            }
    obs_lat = observed["series"]["latency"].get("main") or {}
    sim_lat = predicted["series"]["latency"].get("main") or {}
    if obs_lat and sim_lat:
        out["latency_p95_s"] = {
            "replay_bin_s": obs_lat["bin_s"],
            "simulation_bin_s": sim_lat["bin_s"],
            "steps": {
                s: {
                    "replay": {"t_s": obs_lat["t_s"], "value": obs_lat[s]["p95"]["mean"]},
                    "simulation": {
                        "t_s": sim_lat["t_s"],
                        **prediction_band(sim_lat[s]["p95"], n, (0.0, None)),
                    },
                }
                for s in STEP
                if s in obs_lat and s in sim_lat
            },
        }
    return out


def _run_facts(run: RunFolder, doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": str(run.path),
        "engine": run.manifest.get("engine"),
        "scenario": run.manifest.get("scenario_name"),
        "status": run.status,
        "seed": run.manifest.get("seed"),
        "scale": run.manifest.get("scale"),
        "replications": list(doc["replications"]),
    }


def prediction(
    replay: RunFolder,
    simulation: RunFolder,
    observed: Mapping[str, Any],
    predicted: Mapping[str, Any],
) -> dict[str, Any]:
    """The predict.json document for a replay (its metrics document ``observed``) and a
    simulation (``predicted``): runs, scenario differences, every figure judged
    (:func:`judge`, in the order of the key figures, then latency p95 per step), the
    curves, and which run is not whole (stopped early: its figures cover what it holds)."""
    figures = []
    for name, label in _figures(observed["metrics"], predicted["metrics"]):
        obs = lookup(observed["metrics"], name)
        pred = lookup(predicted["metrics"], name)
        figures.append(
            {
                "name": name,
                "label": label,
                "unit": unit_of(name),
                **judge(
                    name,
                    None if obs is None else obs["mean"],
                    [None] * len(predicted["replications"]) if pred is None else pred["values"],
                ),
            }
        )
    return {
        "schema": PREDICT_SCHEMA,
        "replay": _run_facts(replay, observed),
        "simulation": _run_facts(simulation, predicted),
        "scenario_differences": scenario_differences(replay.manifest, simulation.manifest),
        "not_whole": [
            f"{r.path}: not a whole run ({r.describe_state()}); its figures cover what it holds"
            for r in (replay, simulation)
            if not r.whole
        ],
        "interval": {
            "level": CI_LEVEL,
            "method": PI_METHOD,
            "formula": "mean +- t(0.975, n - 1) * s * sqrt(1 + 1/n), over the n "
            "replications where the figure is defined",
            "source": "Hahn & Meeker, Statistical Intervals (Wiley, 1991), ch. 4: the "
            "interval for one future observation from a normal distribution",
            "why": "a replay is one draw of the sale, not a mean: it is held against where "
            "one new replication should fall; the mean's confidence interval shrinks as "
            "replications are added and would call every honest replay wrong",
        },
        "figures": figures,
        "curves": _curves(observed, predicted),
    }


def outside(doc: Mapping[str, Any]) -> list[str]:
    """Names of the figures whose observation falls outside its prediction interval."""
    return [f["name"] for f in doc["figures"] if f["inside"] is False]


def fmt_error(figure: Mapping[str, Any]) -> str:
    """observed - predicted: "+2.16 pp" for a share, "-1.13 s (-18.8%)" otherwise."""
    if figure["error"] is None:
        return "n/a"
    text = fmt_signed(figure["name"], figure["error"])
    rel = figure["relative_error"]
    return text if rel is None else f"{text} ({100 * rel:+.1f}%)"


def fmt_interval_of(figure: Mapping[str, Any]) -> str:
    """The prediction interval as "low to high", or "n/a"."""
    low, high = figure["pi_low"], figure["pi_high"]
    if low is None or high is None:
        return "n/a"
    return f"{fmt_metric(figure['name'], low)} to {fmt_metric(figure['name'], high)}"


def verdict_text(figure: Mapping[str, Any]) -> str:
    """ "inside", "OUTSIDE" or "not judged", with the reason when there is one."""
    word = {True: "inside", False: "OUTSIDE", None: "not judged"}[figure["inside"]]
    obs, low, high = figure["observed"], figure["pi_low"], figure["pi_high"]
    if figure["inside"] is False and None not in (obs, low, high):
        beyond = obs - high if obs > high else obs - low  # close calls: rounding hides them
        word += f" by {fmt_signed(figure['name'], beyond)}"
    return f"{word} ({figure['why']})" if figure["why"] else word


def prediction_summary(doc: Mapping[str, Any]) -> list[str]:
    """The terminal's table of a predict.json document: per figure the observed value,
    the predicted mean, the 95% prediction interval, the error and the verdict; a
    warning line per scenario difference first, and a count of verdicts last."""
    lines = [f"warning: {text}" for text in doc["not_whole"]]
    for d in doc["scenario_differences"]:
        lines.append(
            f"warning: the scenarios differ in {d['setting']}: replay {d['replay']}, "
            f"simulation {d['simulation']}"
        )
    sim = doc["simulation"]
    lines.append(f"observed:  {doc['replay']['path']} (replay, scale {doc['replay']['scale']})")
    lines.append(f"predicted: {sim['path']} (simulation, {len(sim['replications'])} replications)")
    head = ("figure", "observed", "predicted", "95% prediction interval", "error", "verdict")
    rows = [
        (
            f["label"],
            fmt_metric(f["name"], f["observed"]),
            fmt_metric(f["name"], f["mean"]),
            fmt_interval_of(f),
            fmt_error(f),
            verdict_text(f),
        )
        for f in doc["figures"]
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head) - 1)]
    for r in (head, *rows):
        pairs = enumerate(zip(r[:-1], widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  " + "  ".join([*cells, r[-1]]))
    judged = [f for f in doc["figures"] if f["inside"] is not None]
    out = outside(doc)
    lines.append(
        f"{len(judged) - len(out)} of {len(judged)} figures inside their 95% prediction "
        f"interval{'s' if len(judged) != 1 else ''}"
        + (f"; outside: {', '.join(out)}" if out else "")
    )
    if len(sim["replications"]) < 2:
        lines.append("1 replication: no interval; simulate with --replications 30 to judge")
    return lines


def predict_runs(
    replay_dir: Path, sim_dir: Path, out: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Hold a replay against a simulation into ``out`` (new or empty; default
    ``results/<UTC time>-predict``): predict.json, charts/ and report.html. Returns
    the report's path and the document.

    Raises RunError when ``replay_dir`` is not a replay's run folder, ``sim_dir`` not a
    simulation's, either cannot be read, or ``out`` cannot be used (checked before
    anything is computed). A prediction cut short leaves no temporary file, and no
    folder when it made the folder itself.
    """
    from flashsale.predict_charts import draw_predict_charts, write_predict_report

    replay = _load(replay_dir, "replay", "REPLAY_DIR")
    simulation = _load(sim_dir, "sim", "SIM_DIR")
    folder = out if out is not None else new_results_dir("predict")
    made = not folder.exists()
    prepare_output_dir(folder)
    try:
        doc = prediction(replay, simulation, run_metrics(replay), run_metrics(simulation))
        write_json_atomic(folder / "predict.json", doc)
        charts = draw_predict_charts(doc, folder / "charts")
        return write_predict_report(doc, charts, folder / "report.html"), doc
    except BaseException:
        remove_partials(folder)
        if made:
            remove_if_empty(folder)
        raise
