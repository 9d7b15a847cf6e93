"""report.html: one self-contained page a reviewer can mail around.

The page embeds its charts as base64 PNG and its style inline: no network, no
scripts, no files next to it. It reads only a metrics document, the drawn charts
and the threshold verdicts; it computes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flashsale.figures import Chart
from flashsale.html_page import embedded_chart, escape, html_page, html_table
from flashsale.metric_registry import KEY_FIGURES, REPLAY_FIGURES
from flashsale.metrics import fmt_interval, fmt_judged, fmt_metric, fmt_signed, fmt_undefined
from flashsale.runs import write_json_atomic, write_text_atomic
from flashsale.scenario import Scenario
from flashsale.thresholds import Verdict

__all__ = [
    "scenario_brief",
    "show_setting",
    "write_compare_report",
    "write_run_report",
]


def _replay_rows(metrics: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A replay's honesty checks, shown with the key figures when it has an audit."""
    return REPLAY_FIGURES if metrics["audit_mismatch_units"]["n"] else ()


def _ci(name: str, m: Mapping[str, Any]) -> str:
    return fmt_interval(name, m) or "n/a"


def _mean(name: str, m: Mapping[str, Any], signed: bool = False) -> str:
    """A block's mean, escaped, with "undefined in k of N replications" under it when
    some had no value (then the mean covers only the others; "n/a" when none had one)."""
    text = escape((fmt_signed if signed else fmt_metric)(name, m["mean"]))
    note = fmt_undefined(m)
    return text if note is None else f'{text}<br><span class="muted">{escape(note)}</span>'


def scenario_brief(scenario: Scenario) -> list[tuple[str, str]]:
    """The scenario in a few lines: stock, demand, bots, service, defenses on."""
    s = scenario
    d = s.defenses
    defenses = [
        name.replace("_", " ")
        for name in (
            "account_limit",
            "rate_limit",
            "captcha",
            "waiting_room",
            "lottery",
            "review",
            "resale",
        )
        if getattr(d, name).enabled
    ]
    channels = ", ".join(f"{c.name} ({100 * c.stock_share:.0f}% of stock)" for c in s.sale.channels)
    opens = f"{s.sale.date} " if s.sale.date else ""
    return [
        ("scenario", f"{s.name}: {s.description}" if s.description else s.name),
        (
            "sale",
            f"{s.sale.units:,} units of {s.sale.sku}, opens {opens}{s.sale.opens_at}, "
            f"runs {s.sale.window_s:g} s; channels: {channels}",
        ),
        (
            "humans",
            f"{s.humans.count:,} ({s.humans.arrivals.profile} arrivals), "
            f"{s.humans.units_per_order} unit(s) per order",
        ),
        (
            "bots",
            f"{s.bots.operators:,} operators x {s.bots.accounts_per_operator:,} accounts "
            f"= {s.bots.accounts:,} accounts, {s.bots.request_rate_per_s:g} requests/s each, "
            f"{s.bots.units_per_order} unit(s) per order",
        ),
        (
            "service",
            f"{s.service.workers} workers, queue limit {s.service.queue_limit:,}, "
            f"client timeout {s.service.queue_timeout_s:g} s, cart hold "
            f"{s.service.cart_hold_s:g} s, payment failure "
            f"{100 * s.service.payment.failure_prob:g}% at low load",
        ),
        ("defenses", ", ".join(defenses) if defenses else "none"),
        ("seed", str(s.seed)),
    ]


def _flat_scalars(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every scalar metric block (one with a ``mean``), as dotted names."""
    out: list[tuple[str, Any]] = []
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and "mean" in v and not isinstance(v["mean"], list):
            out.append((name, v))
        elif isinstance(v, Mapping) and "mean" not in v:
            out.extend(_flat_scalars(v, f"{name}."))
    return out


def _ci_note(doc: Mapping[str, Any]) -> str:
    ci = doc["ci"]
    return (
        f'<p class="muted">Intervals: {100 * ci["level"]:.0f}% Student t across '
        f"replications (n - 1 degrees of freedom). Why: {escape(ci['why'])}</p>"
    )


def write_run_report(
    scenario: Scenario,
    doc: Mapping[str, Any],
    charts: Sequence[Chart],
    verdicts: Sequence[Verdict],
    path: Path,
) -> Path:
    """Write one run's report.html: scenario in brief, key figures, verdicts, charts."""
    run = doc.get("run", {})
    reps = doc["replications"]
    m = doc["metrics"]
    partial = bool(doc.get("partial"))
    title = f"Flash sale report{' (PARTIAL)' if partial else ''}: {scenario.name}"
    body = [f"<h1>{escape(title)}</h1>"]
    body.append(
        f'<p class="muted">engine {escape(run.get("engine"))}, {len(reps)} replication(s) '
        f"{escape(reps)}, status {escape(run.get('status'))}"
        + (f", replay scale {escape(run.get('scale'))}" if run.get("scale") is not None else "")
        + f", finished {escape(run.get('finished_at'))}; folder {escape(run.get('path'))}</p>"
    )
    if partial:
        missing = run.get("replications_missing") or []
        body.append(
            f'<p class="warn"><b>Partial report</b>: this run is <b>{escape(run.get("status"))}'
            f"</b> ({escape(run.get('state') or run.get('error') or 'not whole')}). The figures "
            f"cover only replications {escape(reps)} of the {escape(run.get('replications_asked'))}"
            " asked"
            + (f"; replications {escape(missing)} are missing" if missing else "")
            + ". Do not read them as the run's.</p>"
        )
    body.append("<h2>Scenario</h2>")
    body.append(
        html_table(
            ["", ""],
            [(f"<b>{escape(k)}</b>", escape(v)) for k, v in scenario_brief(scenario)],
            num_from=9,
        )
    )
    body.append("<h2>Threshold verdicts</h2>")
    if verdicts:
        checks = [
            (
                f'<span class="{"pass" if v.passed else "fail"}">'
                f"{'PASS' if v.passed else 'FAIL'}</span>",
                escape(str(v.threshold)),
                escape(fmt_judged(v.as_json()) if v.why_undefined is None else "n/a"),
                escape(fmt_metric(v.threshold.metric, v.value))
                + (
                    ""
                    if v.why_undefined is None
                    else f'<br><span class="fail">{escape(v.why_undefined)}</span>'
                ),
                escape(_ci(v.threshold.metric, {"ci_low": v.ci_low, "ci_high": v.ci_high})),
            )
            for v in verdicts
        ]
        body.append(
            html_table(["verdict", "check", "judged", "mean", "95% CI"], checks, num_from=2)
        )
        failed = sum(not v.passed for v in verdicts)
        body.append(
            f"<p><b>{failed} of {len(verdicts)} checks breached</b> (exit code 1).</p>"
            if failed
            else f"<p>All {len(verdicts)} checks held.</p>"
        )
    else:
        body.append("<p>The scenario sets no thresholds.</p>")
    if doc.get("replay_checks"):
        body.append("<h2>Replay checks</h2>")
        replay = [
            (escape(label), f'<span class="{level}">{escape(text)}</span>')
            for label, text, level in doc["replay_checks"]
        ]
        body.append(html_table(["check", "what the replay observed"], replay, num_from=9))
    body.append("<h2>Key figures</h2>")
    rows = [
        (
            escape(label),
            _mean(name, m[name]),
            escape(_ci(name, m[name])),
            escape(", ".join(fmt_metric(name, v) for v in m[name]["values"])),
        )
        for name, label in KEY_FIGURES + _replay_rows(m)
    ]
    body.append(html_table(["metric", "mean", "95% CI", "per replication"], rows))
    body.append(_ci_note(doc))
    body.append("<h2>Charts</h2>")
    body.extend(embedded_chart(c) for c in charts)
    body.append("<h2>Every metric</h2><details open><summary>metrics.json in a table</summary>")
    rows = [
        (
            f"<code>{escape(name)}</code>",
            _mean(name, b),
            escape(_ci(name, b)),
            escape(f"{b['n']} of {len(b['values'])}" if "values" in b else b["n"]),
        )
        for name, b in _flat_scalars(m)
    ]
    body.append(html_table(["metric", "mean", "95% CI", "n (defined)"], rows))
    body.append("</details><h2>Definitions</h2>")
    body.append(
        html_table(
            ["metric", "meaning"],
            [(f"<code>{escape(k)}</code>", escape(v)) for k, v in doc["doc"].items()],
            num_from=9,
        )
    )
    page_title = f"flashsale report{' (PARTIAL)' if partial else ''}: {scenario.name}"
    return write_text_atomic(path, html_page(page_title, body))


def show_setting(value: Any) -> str:
    """A setting's value as a run label shows it: text as is, ``none`` for a field a
    run does not have, anything else as JSON (``true``, ``600.0``)."""
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)


def write_compare_report(
    docs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    charts: Sequence[Chart],
    pairs: Sequence[Mapping[str, Any]],
    paired_reason: str,
    folder: Path,
    *,
    differences: Sequence[Mapping[str, Any]],
    changes: Sequence[Mapping[str, Any]],
) -> Path:
    """Write compare.json and report.html for several runs side by side.

    ``differences``: every setting that differs, with each run's value
    (flashsale.compare.run_differences); ``changes``: per run after the first, the
    settings it changes from run 1 and a note when they are several
    (flashsale.compare.run_changes). Both go into compare.json and the page."""
    body = ["<h1>Flash sale comparison</h1>", "<h2>Runs</h2>"]
    body.append(
        html_table(
            ["run", "what differs", "scenario", "engine", "replications", "folder"],
            [
                (
                    f"run {i + 1}",
                    escape(lab),
                    escape(d["scenario"]),
                    escape(d.get("run", {}).get("engine")),
                    escape(len(d["replications"])),
                    f"<code>{escape(d.get('run', {}).get('path'))}</code>",
                )
                for i, (d, lab) in enumerate(zip(docs, labels, strict=True))
            ],
            num_from=9,
        )
    )
    body.append("<h2>What differs</h2>")
    body.extend(f'<p class="warn">{escape(c["note"])}</p>' for c in changes if c["note"])
    if differences:
        rows = [
            [
                f"<code>{escape(d['setting'])}</code>",
                *(escape(show_setting(v)) for v in d["values"]),
            ]
            for d in differences
        ]
        body.append(html_table(["setting", *(f"run {i + 1}" for i in range(len(docs)))], rows))
    else:
        body.append("<p>Nothing: the runs have the same scenario, engine and seed.</p>")
    body.append("<h2>Key metrics (mean and 95% CI)</h2>")
    rows = []
    for name, label in KEY_FIGURES:
        cells = [escape(label)]
        for d in docs:
            b = d["metrics"][name]
            cells.append(f'{_mean(name, b)}<br><span class="muted">{escape(_ci(name, b))}</span>')
        rows.append(cells)
    body.append(html_table(["metric", *(f"run {i + 1}" for i in range(len(docs)))], rows))
    body.append("<h2>Paired differences vs run 1</h2>")
    body.append(f"<p>{escape(paired_reason)}</p>")
    if pairs:
        rows = []
        for name, label in KEY_FIGURES:
            cells = [escape(label)]
            for p in pairs:
                b = p["metrics"].get(name)
                cells.append(
                    "n/a"
                    if b is None
                    else f'{_mean(name, b, signed=True)}<br><span class="muted">'
                    f"{escape(_ci_signed(name, b))}</span>"
                )
            rows.append(cells)
        body.append(html_table(["metric", *(f"run {p['run'] + 1} - run 1" for p in pairs)], rows))
    body.append(_ci_note(docs[0]))
    body.extend(_compare_verdicts(docs))
    body.append("<h2>Charts</h2>")
    body.extend(embedded_chart(c) for c in charts)
    write_json_atomic(
        folder / "compare.json",
        {
            "schema": "flashsale.compare/1",
            "runs": [
                {
                    "label": lab,
                    "path": d.get("run", {}).get("path"),
                    "scenario": d["scenario"],
                    "thresholds": d.get("thresholds", []),
                }
                for d, lab in zip(docs, labels, strict=True)
            ],
            "differences": list(differences),
            "changes": list(changes),
            "key_metrics": {name: [d["metrics"][name] for d in docs] for name, _ in KEY_FIGURES},
            "paired": {"reason": paired_reason, "differences": list(pairs)},
        },
    )
    return write_text_atomic(folder / "report.html", html_page("flashsale comparison", body))


def _ci_signed(name: str, b: Mapping[str, Any]) -> str:
    return fmt_interval(name, b, signed=True) or "n/a"


def _compare_verdicts(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each run's threshold verdicts (its own scenario's ``[thresholds]``), one row per
    check and a column per run; nothing when no run sets a threshold."""
    checks = list(dict.fromkeys(t["check"] for d in docs for t in d.get("thresholds", [])))
    if not checks:
        return []
    rows = []
    for check in checks:
        cells = [escape(check)]
        for d in docs:
            t = next((t for t in d.get("thresholds", []) if t["check"] == check), None)
            if t is None:
                cells.append('<span class="muted">not set</span>')
                continue
            word = "PASS" if t["passed"] else "FAIL"
            cells.append(f'<span class="{word.lower()}">{word}</span> {escape(fmt_judged(t))}')
        rows.append(cells)
    head = ["check", *(f"run {i + 1}" for i in range(len(docs)))]
    return ["<h2>Threshold verdicts</h2>", html_table(head, rows, num_from=9)]
