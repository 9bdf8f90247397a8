"""Self-contained HTML pages: a run's report (figures inlined) and an index of runs."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_report", "render_index", "format_value"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{margin-top:1.8em;color:#2b6cb0}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:right}th{background:#eef2f8}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #dde}
figcaption{font-size:.9em;color:#555}
.gallery img.thumb{height:160px;margin:.2em;border:1px solid #dde}
.status-done{color:#2f855a}.status-failed{color:#c53030}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
details{margin:1em 0}.meta{color:#555;font-size:.9em}
"""


def format_value(value: Any) -> str:
    """Format a table cell: floats with 4 significant digits, everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def render_report(
    name: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    blocks: Sequence[Mapping[str, Any]],
    *,
    error: str | None = None,
) -> str:
    """Render a run as one HTML page with its figures inlined as base64 PNG."""
    status = config.get("status", "done")
    parts = [f"<h1>{html.escape(name)}</h1>"]
    meta = [f"status: <b class='status-{html.escape(status)}'>{html.escape(status)}</b>"]
    for key in ("seed", "seconds", "started"):
        if config.get(key) is not None:
            meta.append(f"{key}: {html.escape(str(config[key]))}")
    if config.get("command"):
        meta.append(f"reproduce: <code>{html.escape(config['command'])}</code>")
    parts.append("<p class='meta'>" + " &middot; ".join(meta) + "</p>")
    if error:
        parts.append("<h2 class='status-failed'>The run failed</h2><p>Everything computed before the failure is kept below.</p>")
        parts.append(f"<pre>{html.escape(error)}</pre>")
    for block in blocks:
        kind = block["kind"]
        if kind == "section":
            parts.append(f"<h2>{html.escape(block['title'])}</h2>")
        elif kind == "text":
            parts.append(_paragraphs(block["text"]))
        elif kind == "table":
            parts.append(f"<h3>{html.escape(block['title'])}</h3>")
            if block.get("caption"):
                parts.append(_paragraphs(block["caption"]))
            parts.append(_table(block["columns"], block["rows"]))
        elif kind == "figure":
            data = base64.b64encode(Path(block["path"]).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(block['caption'])}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(block['caption'])}</figcaption></figure>"
            )
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    if scalars:
        parts.append("<h2>Metrics</h2>")
        parts.append(_table(["metric", "value"], [{"metric": k, "value": v} for k, v in scalars.items()]))
    parts.append("<details><summary>Configuration and versions</summary><pre>"
                 + html.escape(json.dumps(config, indent=2, default=str)) + "</pre></details>")
    return _page(f"mlimaging: {name}", "".join(parts))


def render_index(title: str, entries: Sequence[Mapping[str, Any]]) -> str:
    """Render an index page; each entry has ``name``, ``status``, ``seconds``, ``report`` (relative link)
    and optionally ``figures`` (relative paths), shown as linked thumbnails under the table."""
    rows, galleries = [], []
    for e in entries:
        link = f"<a href='{html.escape(str(e['report']))}'>{html.escape(e['name'])}</a>" if e.get("report") else html.escape(e["name"])
        rows.append(
            f"<tr><td>{link}</td><td class='status-{html.escape(e['status'])}'>{html.escape(e['status'])}</td>"
            f"<td>{format_value(float(e.get('seconds', 0.0)))}</td><td>{html.escape(e.get('description', ''))}</td></tr>"
        )
        figures = list(e.get("figures") or ())
        if figures:
            thumbs = "".join(
                f"<a href='{html.escape(str(f))}'><img class='thumb' src='{html.escape(str(f))}' "
                f"alt='{html.escape(str(f))}' loading='lazy'></a>"
                for f in figures
            )
            galleries.append(f"<h2>{link}</h2><div class='gallery'>{thumbs}</div>")
    body = (f"<h1>{html.escape(title)}</h1><table><thead><tr><th>experiment</th><th>status</th><th>seconds</th>"
            f"<th>what it shows</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{''.join(galleries)}")
    return _page(title, body)
