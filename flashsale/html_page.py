"""Self-contained HTML pages: one file a reviewer can mail around.

The run, comparison and sweep reports are built from these pieces: charts
embedded as base64 PNG and the style inline, so a page needs no network, no
scripts and no files next to it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from flashsale.figures import Chart

__all__ = ["embedded_chart", "escape", "html_page", "html_table"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#d9f2e6}.fail{background:#fde0d0;font-weight:bold}
.warn{background:#fff4cc;padding:.5em 1em;border-left:4px solid #E69F00}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}.muted{color:#666;font-size:.9em}
"""


def escape(text: object) -> str:
    """Any value as HTML text: names, labels and paths come from the user's files."""
    return html.escape(str(text))


def embedded_chart(chart: Chart) -> str:
    """A chart as a <figure> with its PNG inline (base64) and its caption, so the
    page needs no file next to it."""
    data = base64.b64encode(chart.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(chart.title)}">'
        f"<figcaption><b>{escape(chart.title)}.</b> {escape(chart.caption)}</figcaption></figure>"
    )


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], num_from: int = 1) -> str:
    """A table of already-escaped cells; columns from ``num_from`` on are numbers,
    right-aligned so their digits line up."""
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i >= num_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def html_page(title: str, body: Sequence[str]) -> str:
    """The whole document around ``body`` (HTML fragments), with the style inline."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
