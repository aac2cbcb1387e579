"""Jupyter glue: friendly error display, ``show()`` for traces, and the environment check.

Everything shown has a text/plain form too, so notebooks read well on GitHub and under nbval.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import html
import socket
import sys
import textwrap
import threading
import traceback
import types
import urllib.error

from IPython import get_ipython
from IPython.display import display

from . import envcheck, runtime
from .errors import (LIBRARY_DIRS, ConfigError, Explanation, SocklabError, argument_error_call, explain,
                     note_call, socket_call_of, watch_socket_calls)
from .render.html import CSS, code_html, explanation_html, table_html, transcript_html, warnings_html
from .render.text import side_by_side, transcript
from .trace import Trace, as_trace


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


def _interrupted(shell, etype, value, tb, tb_offset):
    """An interrupt (the stop button): where the cell's own code was, without the frames of the
    call it was waiting in, and what socklab still has open or running."""
    # What has ended (a finished Background, a closed Client) waits only for its name to go.
    still = [o for o in runtime.running() if not getattr(o, "closed", False)
             and not (callable(getattr(o, "done", None)) and o.done())]
    if still:
        shown = ", ".join(repr(o) for o in still[:3]) + (f" and {len(still) - 3} more" if len(still) > 3 else "")
        text = (f"Interrupted: the cell stopped at the line the traceback marks. What socklab still "
                f"has open or running: {shown}. Running a cell again stops what its last run "
                "started; socklab.stop_all() stops all of it now.")
        display(Rich(text, warnings_html([text])))
    _show_own_frames(shell, etype, value, tb, tb_offset)


# what a socket call refuses its arguments with (MemoryError: a buffer size too big to allocate)
_ARGUMENT_ERRORS = (TypeError, ValueError, OverflowError, MemoryError)

# Said under the explanation of an uncaught error in a cell: the usual notebook story behind it.
_CLOSED = ("In a notebook this often means a cell ran again (or out of order) after another cell, "
           "such as a clean-up cell, closed the socket: run the cells that create it again, in order.")
# A second bind() of the same socket: EINVAL for TCP and UDP, EADDRINUSE for AF_UNIX (its file is
# there already).
_REBOUND = ("In a notebook, a cell that only binds a socket an earlier cell made binds it a second "
            "time when it runs again: run the cells from the one that creates the socket.")
# Another socket holds the port: one an earlier run (or another cell) left open.
_HELD = ("In a notebook, an earlier run's socket may still hold the address: a cell that ran before "
         "and kept its socket open, or a thread still waiting in accept() (close() from another "
         "thread does not free a socket that a thread waits on: shutdown(socket.SHUT_RDWR) does). "
         "Close it, or restart the kernel; a TCP port in TIME_WAIT frees itself after about 60 s.")
_HELD_UDP = ("In a notebook, an earlier run's socket may still hold the port: a cell that ran before "
             "and kept its socket open. Close it, or restart the kernel.")


def _in_a_notebook(exc: OSError, call: str | None) -> str | None:
    """The note for a cell's socket error that re-running cells often causes, where it fits."""
    if exc.errno == errno.EBADF:
        return _CLOSED
    bound = getattr(exc, "socklab_bound", None)  # before this call; None if not known
    if exc.errno == errno.EINVAL:  # TCP's and UDP's second bind(), unless known unbound before
        return _REBOUND if call == "bind" and bound is not False else None
    if exc.errno != errno.EADDRINUSE:
        return None
    if call == "bind" and bound:
        return _REBOUND
    if getattr(exc, "socklab_family", None) == socket.AF_UNIX:  # AF_UNIX's second bind()
        return None if call == "bind" and bound is False else _REBOUND
    return _HELD_UDP if getattr(exc, "socklab_type", None) == socket.SOCK_DGRAM else _HELD


def _own_frames(tb):
    """``tb`` without the frames of socklab and the standard library: what is left is the code in
    the cell (and the learner's own functions). The first frame, IPython's, stays: its display
    skips it."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    kept = entries[:1] + [e for e in entries[1:]
                          if not e.tb_frame.f_code.co_filename.startswith(LIBRARY_DIRS)]
    if len(kept) < 2:  # nothing of the learner's: the whole traceback says more than none
        return entries[0] if entries else None
    out = None
    for e in reversed(kept):
        out = types.TracebackType(out, e.tb_frame, e.tb_lasti, e.tb_lineno)
    return out


def _show_own_frames(shell, etype, value, tb, tb_offset):
    """IPython's traceback of the learner's frames only; %tb afterwards shows every frame."""
    shell.showtraceback((etype, value, _own_frames(tb)), tb_offset=tb_offset)
    sys.last_traceback = tb


def _error_handler(shell, etype, value, tb, tb_offset=None):
    """Show a SocklabError as its explanation instead of a wall of traceback; an OSError from a
    socket call, or a socket call's refusal of its arguments (TypeError, ValueError,
    OverflowError), as its explanation above the traceback of the cell's own code; anything else
    as IPython does."""
    if isinstance(value, SocklabError):
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # so %tb still works
        exp = value.explanation
        display(Rich(exp.text(), explanation_html(exp)))
        shell._showtraceback(etype, value, [f"{etype.__name__}: {exp.title} (explained above; %tb "
                                            "shows the full traceback)"])
        return
    if isinstance(value, KeyboardInterrupt):
        _interrupted(shell, etype, value, tb, tb_offset)
        return
    # urllib wraps the socket's error: explain that one (its reason), and show only the wrapper's
    # own frames, not the chained traceback of the error it handled.
    wrapped = isinstance(value, urllib.error.URLError) and isinstance(value.reason, OSError)
    cause = value.reason if wrapped else value
    exp, call = _socket_error_explained(cause)
    if exp is None:  # not a socket call's error (or one explain() has no text for)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return
    note = _in_a_notebook(cause, call) if isinstance(cause, OSError) else None
    if note:
        exp = dataclasses.replace(exp, details=exp.details + (note,))
    display(Rich(exp.text(), explanation_html(exp)))
    suppressed = value.__suppress_context__
    value.__suppress_context__ = suppressed or wrapped
    try:
        _show_own_frames(shell, etype, value, tb, tb_offset)
    finally:
        value.__suppress_context__ = suppressed


def _socket_error_explained(value) -> tuple:
    """(explanation, call) for a socket call's error (an OSError, or its refusal of its arguments),
    with what note_call() finds on the socket; (None, None) for any other error, and for an
    argument error explain() has no text of its own for."""
    call = socket_call_of(value) if isinstance(value, OSError) else argument_error_call(value)
    if call is None:
        return None, None
    note_call(value, call)  # the socket's family and type, the address it was given
    exp = explain(value, call=call)
    if not isinstance(value, OSError) and exp.title == type(value).__name__:
        return None, None
    return exp, call


def _thread_error(args, then) -> None:
    """threading.excepthook for the kernel: a socket error in a thread of the learner's (a server
    thread of notebook 09) is printed with its explanation and the learner's own frames only;
    anything else goes on to ``then``, the hook in force before."""
    checking = getattr(sys.modules.get("socklab.exercises.core"), "_watched", None) is not None
    name = getattr(args.thread, "name", "")
    exp = None
    if not checking and not name.startswith("socklab") and isinstance(args.exc_value, Exception):
        exp = _socket_error_explained(args.exc_value)[0]
    if exp is None:  # a check collects its learner threads' errors itself (exercises.core)
        then(args)
        return
    frames = traceback.extract_tb(args.exc_traceback)
    frames = [f for f in frames if not f.filename.startswith(LIBRARY_DIRS)] or frames
    shell = get_ipython()
    lines = []
    for f in frames:  # a cell as IPython names it ('Cell In[3]'), not its temporary file
        label = shell.compile.format_code_name(f.filename) if shell is not None else None
        where = f"{label[0]} {label[1]}" if label else f'File "{f.filename}"'
        lines.append(f"  {where}, line {f.lineno}, in {f.name}\n    {(f.line or '').strip()}")
    print(f"Exception in thread {name}:\n" + textwrap.indent(exp.text(), "  ")
          + "\n  Where (your code):\n" + "\n".join(lines)
          + f"\n{type(args.exc_value).__name__}: {args.exc_value}", file=sys.stderr)


_hooked = False


def setup(check: bool = True):
    """Install friendly error display for this kernel; return the environment check to display."""
    shell = get_ipython()
    if shell is not None:
        # OSError, and the argument errors: plain socket code in a cell gets the explanation
        # too (other such errors show as usual);
        # KeyboardInterrupt: where the cell was, not the library frames of the wait it broke.
        shell.set_custom_exc((SocklabError, OSError, KeyboardInterrupt, *_ARGUMENT_ERRORS),
                             _error_handler)
        watch_socket_calls()
        global _hooked
        if not _hooked:  # once per kernel: setup() may run in every notebook's first cell
            threading.excepthook = functools.partial(_thread_error, then=threading.excepthook)
            _hooked = True
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
    and as an HTML table. A Server, Client, socket or panel shows its own trace."""
    if order not in ("time", "side"):
        raise ConfigError(Explanation(
            "Invalid order", f"order={order!r:.40} is neither 'time' nor 'side'.",
            "show() lists the calls in the order they completed ('time'), or each side's calls "
            "together ('side': stable when threads race).", "Use order='time' or order='side'."))
    trace = as_trace(trace, "show()")
    text = side_by_side(trace) if order == "side" else transcript(trace, times=times)
    return Rich(text, transcript_html(trace, times=times, order=order))


def code(source: str, title: str = "") -> Rich:
    """Python source for the learner to copy, shown as a code block."""
    for name, value in (("source", source), ("title", title)):
        if not isinstance(value, str):
            raise ConfigError(Explanation(
                f"Invalid {name}", f"{name}={value!r:.60} is a {type(value).__name__}, not a str.",
                "code() shows Python source text as a code block.",
                "Pass the code as a str, e.g. socklab.notebook.code(socklab.client_code())."))
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
        # Read the failed call from the traceback: a recv() refused on a UDP socket and a refused
        # connect() are different stories.
        found = socket_call_of(value)
        note_call(value, found)
        display(explanation(value, self.address, self.call if self.call is not None else found))
        return True
