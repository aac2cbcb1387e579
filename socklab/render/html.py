"""HTML views: explanations, transcripts and code, for JupyterLab and nbviewer. No widgets here.

Colours come from ``PALETTE`` as CSS custom properties (``--socklab-<role>``) that follow
JupyterLab's light or dark theme; inline styles use ``colour(role)``, whose fallback is the light
colour, so a page without the <style> block still reads. State is never shown by colour alone: an
error also says "Error" (or "!!"), a warning "Warning".
"""
from __future__ import annotations

import html

from ..errors import Explanation
from ..trace import Event, Trace, as_trace
from .text import format_call, format_result

# role -> (light theme, dark theme). Every text role reaches WCAG AA (4.5:1) on every '*-bg' role of
# the same theme (tests/test_accessibility.py computes it). 'bg', 'ink' and the table rows are
# JupyterLab's own variables; their fallbacks are the values of its light and dark themes (the dark
# hover, rgba(3,169,244,.2), as drawn over a striped row).
PALETTE = {
    "bg": ("var(--jp-layout-color0,#ffffff)", "var(--jp-layout-color0,#111111)"),
    "ink": ("var(--jp-content-font-color1,#1f2328)", "var(--jp-content-font-color1,#ffffff)"),
    "muted": ("#57606a", "#a5adb7"),
    "bad": ("#cf222e", "#ff7b72"),
    "ok": ("#1a7f37", "#3fb950"),
    "info": ("#0969da", "#58a6ff"),
    "warn": ("#7d4e00", "#d29922"),
    "closing": ("#9a4d00", "#f0883e"),
    "purple": ("#7c4ddb", "#bc8cff"),
    "pink": ("#b3357f", "#f778ba"),
    "teal": ("#0a7480", "#39c5cf"),
    "err-bg": ("#fff5f5", "#3b1d20"),
    "warn-bg": ("#fff8e5", "#3a2d0b"),
    "ok-bg": ("#f0fff4", "#132d1d"),
    "hint-bg": ("#fbf8ff", "#2b2140"),
    "note-bg": ("#f6f8fa", "#1c2128"),
    "row-bg": ("var(--jp-rendermime-table-row-background,#f5f5f5)",
               "var(--jp-rendermime-table-row-background,#212121)"),
    "hover-bg": ("var(--jp-rendermime-table-row-hover-background,#e1f5fe)",
                 "var(--jp-rendermime-table-row-hover-background,#1b3c4b)"),
}
SIDE_ROLES = ("info", "closing", "ok", "purple", "pink", "teal")  # one per side, in order
SIDE_COLOURS = tuple(PALETTE[r][0] for r in SIDE_ROLES)  # light values: for SVG, which has no theme
DARK_THEME = '[data-jp-theme-light="false"]'  # JupyterLab sets it on <body> in dark themes


def colour(role: str) -> str:
    """An inline CSS colour for ``role`` that follows the theme: 'var(--socklab-ok,#1a7f37)'."""
    return f"var(--socklab-{role},{PALETTE[role][0]})"


def _props(theme: int) -> str:
    return ";".join(f"--socklab-{role}:{values[theme]}" for role, values in PALETTE.items())


CSS = f"""<style>
.socklab-box{{{_props(0)};color:var(--socklab-ink);background:var(--socklab-bg);font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.4}}
{DARK_THEME} .socklab-box{{{_props(1)}}}
.socklab-box table{{border-collapse:collapse}}
.socklab-box td,.socklab-box th{{padding:1px 8px;text-align:left;vertical-align:top}}
.socklab-box tbody tr:nth-child(odd){{background:var(--socklab-row-bg)}}
.socklab-box tbody tr:hover{{background:var(--socklab-hover-bg)}}
.socklab-box code,.socklab-box pre{{font-family:var(--jp-code-font-family,monospace);font-size:12px}}
.socklab-err{{border-left:4px solid var(--socklab-bad);background:var(--socklab-err-bg);padding:6px 10px;margin:4px 0}}
.socklab-warn{{border-left:4px solid var(--socklab-warn);background:var(--socklab-warn-bg);padding:6px 10px;margin:4px 0}}
.socklab-bad{{color:var(--socklab-bad,#cf222e)}}
.socklab-sr{{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}}
</style>"""


def side_slots(sides) -> dict:
    """{side: its colour slot}, in one pass: sides take slots in order of appearance, and a
    connection ('server/conn1') takes its server's slot."""
    sides = list(sides)
    plain = [s for s in sides if "/" not in s]
    first: dict = {}
    for i, s in enumerate(plain or sides):
        first.setdefault(s, i)
    own: dict = {}
    for i, s in enumerate(sides):
        own.setdefault(s, i)
    n = len(SIDE_ROLES)
    out = {}
    for s in sides:
        base = s.split("/")[0]
        out[s] = (first[base] if base in first else own[s]) % n
    return out


def side_colour(side: str, sides: list) -> str:
    return SIDE_COLOURS[side_slots(sides)[side]]


def table_html(label: str, head, rows) -> str:
    """A table captioned ``label`` for screen readers (the caption is hidden on screen), ``head``
    as column headers, ``rows`` already made '<tr>...</tr>' strings."""
    th = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in head)
    return (f'<table><caption class="socklab-sr">{html.escape(label)}</caption><thead><tr>{th}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def explanation_html(exp: Explanation) -> str:
    """A red-edged box headed 'Error': title, what happened, why, how to fix."""
    e = html.escape
    err = f" <code>{e(exp.error)}</code>" if exp.error else ""
    notes = "".join(f"<div><b>Note:</b> {e(d)}</div>" for d in exp.details)
    return (f'{CSS}<div class="socklab-box socklab-err"><b><span aria-hidden="true">✗</span> Error: '
            f"{e(exp.title)}</b>{err}"
            f"<div><b>What happened:</b> {e(exp.what)}</div><div><b>Why:</b> {e(exp.why)}</div>"
            f"<div><b>How to fix:</b> {e(exp.fix)}</div>{notes}</div>")


def warning_html(inner: str) -> str:
    """``inner`` (HTML, escaped by the caller) in a yellow-edged box headed 'Warning:'."""
    return (f'{CSS}<div class="socklab-box socklab-warn"><b><span aria-hidden="true">⚠</span> '
            f"Warning:</b> {inner}</div>")


def warnings_html(warnings) -> str:
    if not warnings:
        return ""
    return warning_html("".join(f"<div>{html.escape(w)}</div>" for w in warnings))


def transcript_html(trace: Trace, times: bool = True, last: int | None = 200,
                    order: str = "time") -> str:
    """A table of events (a Trace, or a list of its Events), one colour per side; the newest
    ``last`` rows.

    ``order='side'`` groups rows by side, stable when threads race (as ``side_by_side``)."""
    if isinstance(trace, (list, tuple)) and all(isinstance(e, Event) for e in trace):
        events = list(trace)  # some of a trace's events, picked by the caller
    else:
        events = list(as_trace(trace, "transcript_html()"))
    groups: dict = {}
    for ev in events:
        groups.setdefault(ev.side, []).append(ev)
    sides = list(groups)  # in order of first appearance
    if order == "side":
        events = [ev for group in groups.values() for ev in group]
    skipped = 0
    if last is not None and len(events) > last:
        skipped, events = len(events) - last, events[-last:]
    columns = (["time"] if times else []) + ["side", "call", "result"]
    rows = []
    if skipped:
        rows.append(f'<tr><td colspan="{len(columns)}">... {skipped} earlier events</td></tr>')
    slots = side_slots(sides)
    for ev in events:
        res = html.escape(format_result(ev))
        cls = ' class="socklab-bad"' if ev.error is not None else ""
        t = f"<td>{ev.t * 1000:.3f} ms</td>" if times else ""
        rows.append(f'<tr>{t}<td style="color:{colour(SIDE_ROLES[slots[ev.side]])}">'
                    f"<b>{html.escape(ev.side)}</b></td>"
                    f"<td><code>{html.escape(format_call(ev))}</code></td><td{cls}><code>{res}</code></td></tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(columns)}">(no socket calls yet)</td></tr>')
    return f'{CSS}<div class="socklab-box">{table_html("socket calls", columns, rows)}</div>'


def code_html(code: str, title: str = "") -> str:
    cap = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{CSS}<div class="socklab-box">{cap}<pre>{html.escape(code)}</pre></div>'
