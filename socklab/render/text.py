"""Plain-text views of a trace: the fallback for GitHub, nbviewer and nbval.

Ports, times and fds vary from run to run; ``transcript(times=False)`` leaves times out and the
nbval sanitize file (tests/nbval-sanitize.cfg) masks ports.
"""
from __future__ import annotations

from .. import runtime
from ..trace import Data, Event, Trace, as_trace


def _arg(a) -> str:
    if isinstance(a, str) and (a.startswith("/") or a.startswith("\0")):
        return repr(runtime.display_path(a))
    if isinstance(a, tuple):
        inner = ", ".join(_arg(x) for x in a)
        return f"({inner},)" if len(a) == 1 else f"({inner})"
    return repr(a)


def format_call(ev: Event) -> str:
    """'bind(('127.0.0.1', 0))' for an event; notes come back as their text in brackets."""
    if ev.call == "note":
        return f"[{ev.args[0]}]"
    return f"{ev.call}({', '.join(_arg(a) for a in ev.args)})"


def format_result(ev: Event) -> str:
    """'-> b'hi'', '-> 5', or '!! ConnectionRefusedError: [Errno 111] ...'."""
    if ev.call == "note":
        return ""
    if ev.error is not None:
        e = ev.error
        msg = f"[Errno {e.errno}] {e.strerror}" if isinstance(e, OSError) and e.errno and e.strerror \
            else str(e)
        return f"!! {type(e).__name__}: {msg}"
    if ev.count > 1:
        return f"x{ev.count} -> {ev.nbytes} bytes in all"
    r = ev.result
    if r is None:
        return ""
    if isinstance(r, Data) and r.size > len(r.head):
        return f"-> {r.size} bytes"
    return f"-> {_arg(r)}"


def transcript(trace: Trace, times: bool = False, sides=None) -> str:
    """One line per event in the order the calls completed: side, call, result."""
    trace = as_trace(trace, "transcript()")
    events = [e for e in trace if sides is None or e.side in sides]
    if not events:
        return "(no socket calls yet)"
    width = max(len(e.side) for e in events)
    lines = []
    for e in events:
        t = f"{e.t * 1000:9.3f} ms  " if times else ""
        res = format_result(e)
        lines.append(f"{t}{e.side:<{width}}  {format_call(e)}{('  ' + res) if res else ''}")
    if trace.dropped:
        lines.append(f"({trace.dropped} older events dropped)")
    return "\n".join(lines)


def side_by_side(trace: Trace) -> str:
    """Each side's calls as its own numbered list: stable for stored outputs even when threads race."""
    groups = as_trace(trace, "side_by_side()").by_side()
    if not groups:
        return "(no socket calls yet)"
    out = []
    for side, events in groups.items():
        out.append(f"{side}:")
        for i, e in enumerate(events, 1):
            res = format_result(e)
            out.append(f"  {i:2}. {format_call(e)}{('  ' + res) if res else ''}")
    return "\n".join(out)
