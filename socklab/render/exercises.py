"""HTML for exercise results and hints (the text forms live with the objects). No widgets here."""
from __future__ import annotations

import html
import re

from .html import CSS

# The headline says passed / not yet / not attempted; the colours (theme-aware, from
# render.html.PALETTE via CSS) only repeat it.
EX_CSS = """<style>
.socklab-ex{border-left:4px solid var(--socklab-muted);background:var(--socklab-note-bg);padding:6px 10px;margin:4px 0}
.socklab-ex.pass{border-left-color:var(--socklab-ok);background:var(--socklab-ok-bg)}
.socklab-ex.fail{border-left-color:var(--socklab-bad);background:var(--socklab-err-bg)}
.socklab-ex.todo{border-left-color:var(--socklab-warn);background:var(--socklab-warn-bg)}
.socklab-ex.hint{border-left-color:var(--socklab-purple);background:var(--socklab-hint-bg)}
.socklab-ex ul{margin:2px 0 2px 0;padding-left:20px}
.socklab-ex .fb{margin-left:18px}
</style>"""
MARKS = {"passed": "✓", "failed": "✗", "not run": "·"}


def _inline(text: str) -> str:
    """Escape, then show `code` spans as <code> and *emphasis* in italics (outside code)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*([^*\s][^*]*)\*", r"<i>\1</i>", html.escape(p)))
    return "".join(out)


def result_html(result) -> str:
    kind = {"passed": "pass", "not attempted": "todo"}.get(result.status, "fail")
    head = _inline(result.headline())
    general = "".join(f"<div>{_inline(ln)}</div>" for ln in result.lines)
    rows = []
    for c in result.cases:
        # a screen reader says the status, not 'check mark' (or nothing, for the dot)
        mark = f'<span role="img" aria-label="{c.status}:">{MARKS[c.status]}</span>'
        suffix = " <i>(not run)</i>" if c.status == "not run" else ""
        fb = "".join(f'<div class="fb">{_inline(ln)}</div>' for ln in c.lines)
        rows.append(f"<li>{mark} {_inline(c.name)}{suffix}{fb}</li>")
    cases = f"<ul style='list-style:none'>{''.join(rows)}</ul>" if rows else ""
    notes = "".join(f"<div><b>Tip:</b> {_inline(n)}</div>" for n in result.notes)
    return (f'{CSS}{EX_CSS}<div class="socklab-box socklab-ex {kind}"><b>{head}</b>{general}'
            f"{cases}{notes}</div>")


def hint_html(h) -> str:
    more = ("That was the last hint: compare with the plain code in the notebook, or ask."
            if h.last else "Run this cell again for the next hint.")
    return (f'{CSS}{EX_CSS}<div class="socklab-box socklab-ex hint"><b>💡 Hint {h.number} of {h.total}'
            f"</b> for {html.escape(h.exercise_id)} {_inline(h.title)}: {_inline(h.hint)}"
            f"<div><i>{more}</i></div></div>")
