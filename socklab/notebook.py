"""Jupyter glue: friendly error display, ``show()`` for traces, and the environment check.

Everything shown has a text/plain form too, so notebooks read well on GitHub and under nbval.
"""
from __future__ import annotations

import html

from IPython import get_ipython
from IPython.display import display

from . import envcheck
from .errors import SocklabError, explain
from .render.html import CSS, code_html, explanation_html, table_html, transcript_html, warnings_html
from .render.text import side_by_side, transcript
from .trace import Trace


class Rich:
    """Something to display with both a text and an HTML form."""

    def __init__(self, text: str, html: str | None = None):
        self.text, self.html = text, html

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/plain": self.text}
        if self.html:
            data["text/html"] = self.html
        return data

    def __repr__(self):
        return self.text


def _error_handler(shell, etype, value, tb, tb_offset=None):
    """Show a SocklabError as its explanation instead of a wall of traceback."""
    import sys
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # so %tb still works
    exp = value.explanation
    display(Rich(exp.text(), explanation_html(exp)))
    shell._showtraceback(etype, value, [f"{etype.__name__}: {exp.title} (explained above; %tb shows "
                                        "the full traceback)"])


def setup(check: bool = True):
    """Install friendly error display for this kernel; return the environment check to display."""
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((SocklabError,), _error_handler)
    return environment() if check else None


def environment() -> Rich:
    """What this machine allows (IPv6, AF_UNIX, raw sockets, privileged ports, backlog cap)."""
    text = envcheck.report()
    e = html.escape
    rows = [f'<tr><td><span aria-hidden="true">{"✅" if c.ok else "➖"}</span> {"yes" if c.ok else "no"}'
            f"</td><td>{e(c.name)}</td><td>{e(c.detail)}</td></tr>" for c in envcheck.checks()]
    table = table_html("what this machine allows", ("allowed", "what", "details"), rows)
    return Rich(text, f'{CSS}<div class="socklab-box">{table}</div>')


def show(trace: Trace, order: str = "time", times: bool = False) -> Rich:
    """A trace as text (in time order, or ``order='side'``: each side's calls, stable under races)
    and as an HTML table."""
    text = side_by_side(trace) if order == "side" else transcript(trace, times=times)
    return Rich(text, transcript_html(trace, times=times, order=order))


def code(source: str, title: str = "") -> Rich:
    """Python source for the learner to copy, shown as a code block."""
    return Rich(source, code_html(source, title))


def explanation(exc: BaseException, address=None, call: str | None = None) -> Rich:
    """The friendly explanation of ``exc`` as text and HTML."""
    exp = explain(exc, address, call)
    return Rich(exp.text(), explanation_html(exp))


class explain_errors:
    """``with explain_errors():`` shows an explanation instead of a traceback; the cell carries on.

    ``address`` and ``call`` (optional) name what the block was doing, for a more precise message.

    ``.error`` holds the exception that was explained (None if nothing failed). KeyboardInterrupt
    and SystemExit are not caught.
    """

    def __init__(self, show_warnings=(), address=None, call: str | None = None):
        self.error = None
        self.warnings = show_warnings
        self.address, self.call = address, call

    def __enter__(self):
        if self.warnings:
            display(Rich("Warning: " + "; ".join(self.warnings), warnings_html(self.warnings)))
        return self

    def __exit__(self, etype, value, tb):
        if value is None or not isinstance(value, Exception):
            return False
        self.error = value
        display(explanation(value, self.address, self.call))
        return True
