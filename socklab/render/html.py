"""HTML views: explanations, transcripts and code, for JupyterLab and nbviewer. No widgets here."""
from __future__ import annotations

import html

from ..errors import Explanation
from ..trace import Trace
from .text import format_call, format_result

SIDE_COLOURS = ("#1f6feb", "#b35900", "#1a7f37", "#8250df", "#bf3989", "#0a7e8c")

CSS = """<style>
.socklab-box{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.4}
.socklab-box table{border-collapse:collapse}
.socklab-box td,.socklab-box th{padding:1px 8px;text-align:left;vertical-align:top}
.socklab-box code,.socklab-box pre{font-family:var(--jp-code-font-family,monospace);font-size:12px}
.socklab-err{border-left:4px solid #cf222e;background:#fff5f5;padding:6px 10px;margin:4px 0;color:#1f2328}
.socklab-warn{border-left:4px solid #bf8700;background:#fff8e5;padding:6px 10px;margin:4px 0;color:#1f2328}
.socklab-bad{color:#cf222e}
</style>"""


def side_colour(side: str, sides: list) -> str:
    base = side.split("/")[0]
    order = [s for s in sides if "/" not in s] or sides
    i = order.index(base) if base in order else sides.index(side)
    return SIDE_COLOURS[i % len(SIDE_COLOURS)]


def explanation_html(exp: Explanation) -> str:
    """A red-edged box: title, what happened, why, how to fix."""
    e = html.escape
    err = f" <code>{e(exp.error)}</code>" if exp.error else ""
    notes = "".join(f"<div><b>Note:</b> {e(d)}</div>" for d in exp.details)
    return (f'{CSS}<div class="socklab-box socklab-err"><b>{e(exp.title)}</b>{err}'
            f"<div><b>What happened:</b> {e(exp.what)}</div><div><b>Why:</b> {e(exp.why)}</div>"
            f"<div><b>How to fix:</b> {e(exp.fix)}</div>{notes}</div>")


def warnings_html(warnings) -> str:
    if not warnings:
        return ""
    items = "".join(f"<div>{html.escape(w)}</div>" for w in warnings)
    return f'{CSS}<div class="socklab-box socklab-warn"><b>Warning</b>{items}</div>'


def transcript_html(trace: Trace, times: bool = True, last: int | None = 200,
                    order: str = "time") -> str:
    """A table of events, one colour per side; the newest ``last`` rows.

    ``order='side'`` groups rows by side, stable when threads race (as ``side_by_side``)."""
    events = list(trace)
    sides = list(dict.fromkeys(e.side for e in events))
    if order == "side":
        events.sort(key=lambda e: sides.index(e.side))  # stable sort keeps each side's order
    skipped = 0
    if last is not None and len(events) > last:
        skipped, events = len(events) - last, events[-last:]
    rows = []
    if skipped:
        rows.append(f'<tr><td colspan="4">... {skipped} earlier events</td></tr>')
    for ev in events:
        colour = side_colour(ev.side, sides)
        res = html.escape(format_result(ev))
        cls = ' class="socklab-bad"' if ev.error is not None else ""
        t = f"<td>{ev.t * 1000:.3f} ms</td>" if times else ""
        rows.append(f'<tr>{t}<td style="color:{colour}"><b>{html.escape(ev.side)}</b></td>'
                    f"<td><code>{html.escape(format_call(ev))}</code></td><td{cls}><code>{res}</code></td></tr>")
    if not rows:
        rows.append("<tr><td>(no socket calls yet)</td></tr>")
    head = "<th>time</th>" if times else ""
    return (f'{CSS}<div class="socklab-box"><table><tr>{head}<th>side</th><th>call</th><th>result</th></tr>'
            + "".join(rows) + "</table></div>")


def code_html(code: str, title: str = "") -> str:
    cap = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{CSS}<div class="socklab-box">{cap}<pre>{html.escape(code)}</pre></div>'
