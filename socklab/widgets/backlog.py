"""The accept-queue panel: listen(backlog), a server that never accept()s, N clients, a live gauge.

Pick the backlog, the number of clients, their connect timeout and whether the server starts
accept()ing while they wait; Run measures on real sockets (``socklab.backlog``) in a background
thread. Meanwhile the accept-queue gauge and the kernel's view of the listener's port (LISTEN row
with its queue and backlog, ESTABLISHED connections, SYN-SENT clients) update live through widget
traits only. At the end: a per-client results table and a bar chart of clients connected vs
backlog. Sweep runs backlog 0..3. ``transcript()`` is the text form (no times in it).

``kernel_view(listener, *clients)`` shows the same kernel table for sockets built by hand in cells,
with rows in a stable order and each client named.
"""
from __future__ import annotations

import html as _html
import os
import socket
import threading
import time
import weakref
from dataclasses import replace
from types import SimpleNamespace

import ipywidgets as W

from .. import runtime
from ..backlog import LATE, BacklogResult, ClientOutcome, Sample, StopSignal, run_backlog_experiment
from ..config import sysctl_int
from ..errors import ConfigError, Explanation
from ..kstate import Rows, demo_state
from ..notebook import Rich
from ..render.html import CSS, colour, table_html
from ..render.state import queue_gauge_html, queue_gauge_text, state_html, state_text
from ..servers import _number
from ..trace import Trace
from .base import Choice, BackgroundPanel, bad_setting, check_choice, check_range, family_name, kept, shown
from ..runtime import Thread

LIVE_EVERY = 0.1            # s between live redraws while a run goes on
SNAPSHOT_WAIT = 2.0         # s other threads of a run wait at most while its kernel snapshot is taken
SWEEP_BACKLOGS = (0, 1, 2, 3)
BACKLOG_RANGE = (0, 8)
CLIENT_RANGE = (1, 12)
TIMEOUT_RANGE = (0.1, 3.0)
ACCEPT_RANGE = (0.0, 2.0)
_BUSY = "A run is in progress: it ends by itself within the timeout."

OUTCOMES = {  # outcome of socklab.backlog -> what it means, for the results table
    "connected": "connected: waits in the accept queue",
    "connected after accept": "got in late: connect() waited for room (a resent SYN, the first "
                              "about 1 s after) until accept() made some",
    "timed out": "timed out: its SYN was dropped (not refused)",
    "refused": "refused: ConnectionRefusedError (TCP: the server answered with RST; AF_UNIX on "
               "macOS/BSD: the queue was full)",
    "would block": "BlockingIOError: AF_UNIX queue full",
    "error": "error",
    "waiting": "waiting (SYN-SENT)",
}
_STATE_ORDER = {"LISTEN": 0, "ESTABLISHED": 1, "CONNECTED": 1, "SYN-RECV": 2, "SYN-SENT": 4}


# ---- kernel state in a stable order, clients named
def _inode(sock) -> int | None:
    raw = getattr(sock, "sock", sock)
    try:
        return os.fstat(raw.fileno()).st_ino if raw.fileno() != -1 else None
    except (OSError, AttributeError):
        return None


def _same(a, b) -> bool:
    """Same (ip, port); a wildcard ip ('0.0.0.0', '::') matches any ip on that port."""
    if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) >= 2 and len(b) >= 2):
        return False
    return a[1] == b[1] and (a[0] == b[0] or b[0] in ("0.0.0.0", "::", ""))


def order_rows(rows, names: dict | None = None, listener=None) -> Rows:
    """Rows in an order that does not depend on ephemeral port numbers.

    ``names`` maps a client's local address (or its socket inode) to its side name: those rows get
    the name and come in the order of ``names``, each followed by its server end. The rest: LISTEN
    first, connected before closing ones, SYN-SENT clients last.

    With ``listener`` (its (ip, port)), rows that merely share the port number are dropped: the
    kernel's table finds sockets by port, and a TIME-WAIT left by some earlier connection to a
    since-closed server on the same port number would otherwise show up here.
    """
    names = dict(names or {})
    labelled = []
    for r in rows:
        name = names.get(r.local) or (names.get(r.inode) if r.inode else None)
        if isinstance(listener, tuple) and not (
                _same(r.local, listener) or (_same(r.remote, listener) and (name or r.state != "TIME-WAIT"))):
            continue
        labelled.append(r if not name or r.state == "LISTEN" else _named(r, name))
    order = list(dict.fromkeys(names.values()))
    by_port = {r.local[1]: r.side for r in labelled
               if r.side in order and isinstance(r.local, tuple)}

    def key(ir):
        i, r = ir
        if r.state == "LISTEN":
            return (0, 0, 0, i)
        if r.side in order:
            return (1, order.index(r.side), 0, i)
        peer = r.remote[1] if isinstance(r.remote, tuple) else None
        if peer in by_port:  # the server end of a named client: right after it
            return (1, order.index(by_port[peer]), 1, i)
        return (2, _STATE_ORDER.get(r.state, 3), 0, i)
    ordered = [r for _, r in sorted(enumerate(labelled), key=key)]
    return Rows(ordered, getattr(rows, "source", ""), getattr(rows, "reason", ""))


def _stable_state(target) -> Rows:
    """demo_state read twice and merged: a netlink dump is not atomic, and a socket can be skipped
    while other sockets of the machine come and go."""
    def key(r):  # AF_UNIX clients are unnamed: tell them apart by inode
        return r.proto, r.local, r.remote, None if isinstance(r.local, tuple) else r.inode
    first = demo_state(target)
    seen = {key(r) for r in first}
    extra = [r for r in demo_state(target) if key(r) not in seen]
    return Rows(list(first) + extra, getattr(first, "source", ""), getattr(first, "reason", ""))


def _named(row, name):
    return replace(row, side=name)


_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # socket -> its last local address


def _local(sock):
    try:
        addr = sock.getsockname()
    except (OSError, AttributeError):
        addr = None
    if isinstance(addr, tuple) and addr[1]:
        try:
            _seen[sock] = addr
        except TypeError:
            pass  # not weak-referenceable: no memory of it after close
        return addr
    return _seen.get(sock) if _is_weakrefable(sock) else None


def _is_weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def kernel_rows(listener, *clients) -> Rows:
    """The kernel's view of ``listener``'s port (or path), the given client sockets named.

    A client is recognised by its socket (inode) or its address; a client that has been closed
    since an earlier view keeps its name (its address is remembered), e.g. in FIN-WAIT-2. A client
    with no row is not left out silently: the table's note says why it has none.
    """
    names, given = {}, []
    for c in clients:
        side = getattr(c, "side", "client")
        addr = _local(c)
        if addr is not None:
            names[addr] = side
        ino = _inode(c)
        if ino:
            names[ino] = side
        given.append((side, c, addr))
    rows = order_rows(_stable_state(listener), names, _listener_address(listener))
    shown_sides = {r.side for r in rows}
    missing = [_why_no_row(side, c, addr) for side, c, addr in given if side not in shown_sides]
    if not missing:
        return rows
    reason = "; ".join(filter(None, [getattr(rows, "reason", "")] + missing))
    return Rows(list(rows), getattr(rows, "source", ""), reason)


def _fin_timeout() -> str:
    seconds = sysctl_int("/proc/sys/net/ipv4/tcp_fin_timeout")
    return "60 s on Linux" if seconds is None else f"{seconds} s here"


def _why_no_row(side: str, sock, addr) -> str:
    """Why the kernel's table has no row for the client ``side``."""
    if _inode(sock) is None:  # closed
        return (f"{side} has no row: it is closed and the kernel has forgotten its end (at once after "
                f"a reset; after a FIN, once FIN-WAIT-2 has lasted net.ipv4.tcp_fin_timeout, "
                f"{_fin_timeout()}, or TIME-WAIT its 60 s)")
    if addr is None:
        return f"{side} has no row: it has no address yet (not connected)"
    return f"{side} has no row: it is not connected to this listener"


def _listener_address(listener):
    addr = getattr(listener, "address", None)
    if addr is None and hasattr(listener, "getsockname"):
        try:
            addr = listener.getsockname()
        except OSError:
            addr = None
    elif addr is None and isinstance(listener, tuple):
        addr = listener
    return addr if isinstance(addr, tuple) else None


def wait_for_state(listener, state: str, count: int = 1, timeout: float = 2.0) -> bool:
    """Wait (at most ``timeout`` s, checking every 10 ms) until the kernel shows ``count`` sockets
    in ``state`` on ``listener``'s port; True if it did. For views that must not race a thread
    (a connect() just started elsewhere) or a delayed ACK (FIN-WAIT-1 becoming FIN-WAIT-2)."""
    why = "wait_for_state() looks at the kernel's table until it shows what you wait for, or time is up."
    if not isinstance(state, str):
        raise ConfigError(Explanation("Invalid state", f"state={state!r:.40} is not a state's name.", why,
                                      "Pass a state as the table shows it, e.g. 'SYN-SENT', 'ESTABLISHED' "
                                      "or 'FIN-WAIT-2'."))
    _number("count", count, integer=True, low=1, high=100000, why=why,
            fix="Pass how many sockets must be in that state, e.g. 1.")
    _number("timeout", timeout, integer=False, low=0, high=3600, why=why,
            fix="Pass a number of seconds such as 2 (the default).")
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while True:
        rows = order_rows(demo_state(listener), listener=_listener_address(listener))
        if sum(r.state == state for r in rows) >= count:
            return True
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.01)


def kernel_view(listener, *clients) -> Rich:
    """``kernel_rows`` as text and HTML (what ``ss -tan`` would show, explained)."""
    rows = kernel_rows(listener, *clients)
    return Rich(state_text(rows), _boxed(state_html(rows), "socklab-state"))


def _boxed(inner: str, cls: str) -> str:
    return f'<div class="{cls}">{inner}</div>'


_WHY = "The panel runs real sockets and one thread per client, so its controls have limits."


def _bad(what: str, fix: str) -> ConfigError:
    return bad_setting(what, fix, _WHY)


def _check_range(name, value, lo, hi, kinds=(int,)):
    check_range(name, value, lo, hi, kinds,
                fix="Pick a value in range, or call socklab.run_backlog_experiment(...) directly "
                    "for other values (e.g. listen() without a backlog).", why=_WHY)


# ---- results: table and chart, text and HTML
def results_html(result: BacklogResult, times: bool = False) -> str:
    """The per-client table; ``times`` adds how long each connect() took (live view only)."""
    e = _html.escape
    roles = {"connected": "ok", "connected after accept": "info"}  # the outcome is written out too
    rows = []
    for c in result.clients:
        took = f"<td>{c.seconds:.2f} s</td>" if times and c.seconds is not None else ""
        rows.append(f"<tr><td><code>{e(c.side)}</code></td>"
                    f'<td style="color:{colour(roles.get(c.outcome, "bad"))}"><b>'
                    f"{e(OUTCOMES.get(c.outcome, c.outcome))}</b></td><td>{e(c.error)}</td>"
                    f"<td>{e(c.accepted_as)}</td>{took}</tr>")
    head = ["client", "connect()", "exception", "accepted as"] + (["connect() took"] if times else [])
    return (f'{CSS}<div class="socklab-box">{table_html("clients of the backlog run", head, rows)}'
            f"<div>{e(_summary(result))}</div></div>")


def _summary(result: BacklogResult) -> str:
    late = result.count("connected after accept")
    parts = [f"{result.count('connected')} waited in the queue"]
    if late:
        parts.append(f"{late} got in late")
    for what in ("timed out", "refused", "would block", "error"):
        if result.count(what):
            parts.append(f"{result.count(what)} {what}")
    return f"listen({'' if result.backlog is None else result.backlog}), {len(result.clients)} clients: " \
        + ", ".join(parts) + "."


def _bar_counts(r: BacklogResult) -> tuple:
    queued, late = r.count("connected"), r.count("connected after accept")
    return queued, late, len(r.clients) - queued - late


def chart_text(history: dict) -> str:
    """Clients connected vs backlog: '#' waited in the queue, '+' got in late, '.' turned away."""
    if not history:
        return "(no runs yet)"
    lines = ["clients connected vs backlog  (# in the queue, + got in late, . turned away)"]
    for b in sorted(history):
        r = history[b]
        q, late, away = _bar_counts(r)
        hold = "" if r.capacity is None else f"  (queue holds {r.capacity})"
        fam = "" if r.family == "AF_INET" else f"  [{r.family}]"
        bar = "#" * q + "+" * late + "." * away
        lines.append(f"  listen({b})  {bar:<{CLIENT_RANGE[1]}}  {q + late} of {len(r.clients)} "
                     f"connected{hold}{fam}")
    return "\n".join(lines)


def chart_svg(history: dict) -> str:
    """The same as stacked bars (inline SVG): one bar per backlog, a dashed line at 'backlog'.
    An image for screen readers, described by ``chart_text``; a white card in any theme."""
    e = lambda s: _html.escape(str(s), quote=True)  # noqa: E731
    backlogs = sorted(history)
    top = max([len(history[b].clients) for b in backlogs] + [b + 1 for b in backlogs] + [1])
    unit, bar_w, step, left, base = min(18, 160 // top), 34, 74, 44, 30 + min(18, 160 // top) * top
    width, height = max(left + step * max(len(backlogs), 1) + 150, 440), base + 44
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
         'font-family="sans-serif" font-size="11"><title>clients connected vs backlog</title>'
         f"<desc>{e(chart_text(history))}</desc>"
         '<rect width="100%" height="100%" fill="#ffffff"/>',
         '<text x="6" y="14" fill="#1f2328">clients connected vs backlog</text>',
         f'<line x1="{left - 6}" y1="{base}" x2="{left + step * len(backlogs)}" y2="{base}" '
         'stroke="#8c959f"/>']
    for n in range(0, top + 1, max(1, top // 6)):
        y = base - n * unit
        p.append(f'<text x="{left - 10}" y="{y + 4}" text-anchor="end" fill="#57606a">{n}</text>')
    for i, b in enumerate(backlogs):
        r = history[b]
        x = left + i * step
        y = base
        for count, fill, what in zip(_bar_counts(r), ("#2da44e", "#1f6feb", "#ffebe9"),
                                     ("in the queue", "got in late", "turned away")):
            if count:
                y -= count * unit
                stroke = "#cf222e" if what == "turned away" else fill
                p.append(f'<rect x="{x}" y="{y}" width="{bar_w}" height="{count * unit}" fill="{fill}" '
                         f'stroke="{stroke}"><title>{e(f"listen({b}): {count} {what}")}</title></rect>')
        q, late, _ = _bar_counts(r)
        p.append(f'<text x="{x + bar_w / 2:g}" y="{y - 3}" text-anchor="middle" fill="#1f2328" '
                 f'font-weight="bold">{q + late} of {len(r.clients)}</text>')
        yb = base - b * unit  # where 'backlog' would be if the queue held exactly backlog
        p.append(f'<line x1="{x - 4}" y1="{yb}" x2="{x + bar_w + 4}" y2="{yb}" stroke="#1f2328" '
                 f'stroke-dasharray="3 2"><title>backlog = {b}</title></line>')
        p.append(f'<text x="{x + bar_w / 2:g}" y="{base + 14}" text-anchor="middle" '
                 f'fill="#1f2328">listen({b})</text>')
    lx = left + step * len(backlogs) + 10
    for j, (fill, stroke, what) in enumerate((("#2da44e", "#2da44e", "in the queue"),
                                              ("#1f6feb", "#1f6feb", "got in late"),
                                              ("#ffebe9", "#cf222e", "turned away"))):
        y = 30 + j * 16
        p.append(f'<rect x="{lx}" y="{y}" width="10" height="10" fill="{fill}" stroke="{stroke}"/>'
                 f'<text x="{lx + 14}" y="{y + 9}" fill="#1f2328">{what}</text>')
    p.append(f'<line x1="{lx}" y1="{30 + 3 * 16 + 5}" x2="{lx + 10}" y2="{30 + 3 * 16 + 5}" '
             f'stroke="#1f2328" stroke-dasharray="3 2"/><text x="{lx + 14}" y="{30 + 3 * 16 + 9}" '
             'fill="#1f2328">the backlog value</text>')
    p.append(f'<text x="6" y="{base + 34}" fill="#57606a">A full queue: "in the queue" ends one '
             'above the dashed line (backlog + 1, Linux).</text>')
    return "".join(p) + "</svg>"


def chart_html(history: dict) -> str:
    if not history:
        return ""
    # stays white in a dark theme: SVG presentation attributes cannot follow the theme's colours
    return f'{CSS}<div class="socklab-box" style="color:#1f2328;background:#fff">{chart_svg(history)}</div>'


def sweep_text(results) -> str:
    """Capacity vs backlog, one line per run of a sweep."""
    lines = ["backlog  clients  connected  turned away  backlog in force  queue holds"]
    for r in results:
        q = lambda v: "?" if v is None else str(v)  # noqa: E731 - unknown off Linux
        lines.append(f"{q(r.backlog):>7}  {len(r.clients):>7}  {r.connected:>9}  "
                     f"{len(r.clients) - r.connected:>11}  {q(r.backlog_in_force):>16}  {q(r.capacity):>11}")
    return "\n".join(lines)


def sweep_html(results) -> str:
    e = _html.escape
    head = ("backlog", "clients", "connected", "turned away", "backlog in force", "queue holds")
    rows = ["<tr>" + "".join(f"<td>{e(str('?' if v is None else v))}</td>" for v in
                             (r.backlog, len(r.clients), r.connected, len(r.clients) - r.connected,
                              r.backlog_in_force, r.capacity)) + "</tr>" for r in results]
    return f'{CSS}<div class="socklab-box">{table_html("backlog sweep", head, rows)}</div>'


RUNS_KEPT = 50  # BacklogPanel.results keeps the latest runs (each keeps its samples)


class BacklogPanel(BackgroundPanel):
    """Backlog, clients, connect timeout, 'accept after'; Run, Sweep 0..3, Clear.

    Each button has a method (``run()``, ``sweep()``, ``clear()``) so a cell or a test can drive
    the panel. While a run goes on, ``gauge`` and ``state_view`` change live (widget traits set from
    the panel's background thread). Re-running the cell that made the panel stops it.
    """

    def __init__(self, backlog: int = 1, clients: int = 4, connect_timeout: float = 1.5,
                 accept_after: float | None = None, family: str = "AF_INET", name: str | None = None):
        _check_range("backlog", backlog, *BACKLOG_RANGE)
        _check_range("clients", clients, *CLIENT_RANGE)
        _check_range("connect_timeout", connect_timeout, *TIMEOUT_RANGE, kinds=(int, float))
        if accept_after is not None:
            _check_range("accept_after", accept_after, *ACCEPT_RANGE, kinds=(int, float))
        self.result: BacklogResult | None = None   # the last run
        self.results: list = kept(RUNS_KEPT)       # every run, in order (the latest RUNS_KEPT)
        self.history: dict = {}                    # backlog -> its latest run, for the chart
        self.snapshot: Rows | None = None          # the kernel's view while the last run's clients waited
        self.error: BaseException | None = None
        self._worker: threading.Thread | None = None
        self._stop_signal: StopSignal | None = None  # the running experiment's, for stop()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._live: dict = {}
        families = ("AF_INET",) + (("AF_INET6",) if runtime.has_ipv6() else ()) + \
            (("AF_UNIX",) if hasattr(socket, "AF_UNIX") else ())
        family = check_choice("family", family, families, normalise=family_name)
        # Number boxes, not sliders: an ipywidgets slider's handle has no accessible name.
        self.backlog = W.BoundedIntText(value=backlog, min=BACKLOG_RANGE[0], max=BACKLOG_RANGE[1],
                                        description="backlog")
        self.clients = W.BoundedIntText(value=clients, min=CLIENT_RANGE[0], max=CLIENT_RANGE[1],
                                        description="clients")
        self.timeout = W.BoundedFloatText(value=connect_timeout, min=TIMEOUT_RANGE[0],
                                          max=TIMEOUT_RANGE[1], step=0.1, description="timeout (s)")
        self.accepts = W.Checkbox(value=accept_after is not None, description="server accepts after",
                                  indent=False)
        self.accept_after = W.BoundedFloatText(value=0.2 if accept_after is None else accept_after,
                                               min=ACCEPT_RANGE[0], max=ACCEPT_RANGE[1], step=0.1,
                                               description="delay (s)",
                                               tooltip="seconds after the last client called "
                                                       "connect() until the server calls accept()",
                                               disabled=accept_after is None)
        self.accepts.observe(lambda ch: setattr(self.accept_after, "disabled", not ch["new"]),
                             names="value")
        if family not in families:
            raise _bad(f"family={family!r} is not one of {', '.join(families)}.",
                       "Use 'AF_INET' (or 'AF_UNIX' to compare).")
        self.family = Choice("family", options=families, value=family, description="family")
        self.buttons = self._buttons((("Run", self._click_run, "success", "socklab-run-backlog"),
                                      ("Sweep backlog 0..3", self._click_sweep, "info",
                                       "socklab-sweep-backlog"),
                                      ("Clear", self.clear, "", "socklab-clear")))
        self._status_alert_log("<i>ready: pick a backlog and a number of clients, then Run</i>", log_height=None)
        self.gauge = self._view("socklab-gauge")
        self.state_view = self._view("socklab-state")
        self.table = self._view("socklab-results")
        self.plot = self._view("socklab-plot")
        super().__init__([W.HBox([self.backlog, self.clients]), W.HBox([self.timeout, self.family]),
                          W.HBox([self.accepts, self.accept_after]),
                          W.HBox(list(self.buttons.values())), self.status, self.alert, self.gauge,
                          self.state_view, self.table, self.plot])
        self.add_class("socklab-panel")
        self._register(name)

    # ---- text form for GitHub / nbviewer / nbval
    def _plain_text(self) -> str:
        return ("socklab accept-queue panel: interactive in JupyterLab; "
                              "the transcript below shows a run.")

    def transcript(self, chart: bool = True) -> Rich:
        """The last run: setup and per-client outcomes, gauge, kernel table while the clients waited,
        and (``chart``) the chart of every backlog tried. No times: stable from run to run on Linux.
        (The panel's own results table adds how long each connect() took.)"""
        r = self.result
        if r is None:
            return Rich("(no runs yet)")
        parts = [r.text(), "", queue_gauge_text(r)]
        hparts = [queue_gauge_html(r)]
        if self.snapshot is not None:
            parts += ["", "The kernel's view while the clients waited:", state_text(self.snapshot)]
            hparts.append(state_html(self.snapshot))
        if chart and self.history:
            parts += ["", chart_text(self.history)]
            hparts.append(chart_html(self.history))
        return Rich("\n".join(parts), "".join(hparts))

    def chart(self) -> Rich:
        """Clients connected vs backlog for every backlog run so far (text and SVG)."""
        return Rich(chart_text(self.history), chart_html(self.history))

    # ---- buttons
    def _click_run(self):
        if not self._refuse_if_busy(_BUSY):
            self._guard(lambda: self.run(wait=False))

    def _click_sweep(self):
        if not self._refuse_if_busy(_BUSY):
            self._guard(lambda: self.sweep(wait=False))

    def _guard(self, fn):
        try:
            fn()
        except Exception as exc:
            self._alert_error(exc)

    def run(self, backlog: int | None = None, clients: int | None = None,
            connect_timeout: float | None = None, accept_after: float | None | bool = False,
            family: str | None = None, wait: bool = True) -> BacklogResult | None:
        """One experiment with the controls' settings (arguments set the controls first).

        ``accept_after``: seconds after the last client called connect() when the server starts
        accept()ing; None means never; leave it out to keep the checkbox's choice. With ``wait``
        (the default from code) returns the ``BacklogResult``; the button runs it in the background.
        """
        if backlog is not None:
            _check_range("backlog", backlog, *BACKLOG_RANGE)
        if clients is not None:
            _check_range("clients", clients, *CLIENT_RANGE)
        if connect_timeout is not None:
            _check_range("connect_timeout", connect_timeout, *TIMEOUT_RANGE, kinds=(int, float))
        if accept_after not in (False, None):
            _check_range("accept_after", accept_after, *ACCEPT_RANGE, kinds=(int, float))
        if family is not None and family not in self.family.options:
            raise _bad(f"family={family!r} is not one of {', '.join(self.family.options)}.",
                       "Use 'AF_INET' (or 'AF_UNIX' to compare).")
        self.stop()
        if backlog is not None:
            self.backlog.value = backlog
        if clients is not None:
            self.clients.value = clients
        if connect_timeout is not None:
            self.timeout.value = connect_timeout
        if accept_after is not False:
            self.accepts.value = accept_after is not None
            if accept_after is not None:
                self.accept_after.value = accept_after
        if family is not None:
            self.family.value = family
        job = [self._settings()]
        return self._start(job, wait, single=True)

    def sweep(self, backlogs=SWEEP_BACKLOGS, extra: int = 1, connect_timeout: float = 0.5,
              wait: bool = True) -> list | None:
        """Run backlog 0..3 (``backlogs``) with backlog + 1 + ``extra`` clients each, never
        accept()ing; returns the results (capacity vs backlog in ``sweep_text(results)``)."""
        if not isinstance(backlogs, (list, tuple, range)) or not backlogs:
            raise _bad(f"backlogs={shown(backlogs)} is not a list of backlogs.",
                       f"Pass a tuple of backlogs, e.g. backlogs=(0, 1, 2, 3) (each "
                       f"{BACKLOG_RANGE[0]}..{BACKLOG_RANGE[1]}); for one backlog, use run(backlog=...).")
        for b in backlogs:
            _check_range("backlog", b, *BACKLOG_RANGE)
        _check_range("extra", extra, 0, 4)
        _check_range("connect_timeout", connect_timeout, *TIMEOUT_RANGE, kinds=(int, float))
        self.stop()
        fam = self.family.value
        job = [dict(backlog=b, clients=b + 1 + extra, connect_timeout=connect_timeout,
                    accept_after=None, family=fam) for b in backlogs]
        return self._start(job, wait, single=False)

    def stop(self):
        """End a run in progress at once (its clients still in connect() are shut down) and skip
        the rest of a sweep."""
        self._cancel.set()
        with self._lock:
            signal = self._stop_signal
        if signal is not None:
            signal.set()
        self._wait_for_worker(TIMEOUT_RANGE[1] + ACCEPT_RANGE[1] + 8)

    def clear(self):
        """Forget the runs shown."""
        if self._refuse_if_busy("A run is in progress: clear it when it has finished."):
            return
        self.result, self.results, self.history, self.snapshot = None, kept(RUNS_KEPT), {}, None
        for w in (self.gauge, self.state_view, self.table, self.plot, self.alert):
            w.value = ""
        self.status.value = "<i>ready</i>"

    # ---- the run, in a background thread; the view changes only through widget traits
    def _settings(self) -> dict:
        return dict(backlog=self.backlog.value, clients=self.clients.value,
                    connect_timeout=round(self.timeout.value, 3),
                    accept_after=round(self.accept_after.value, 3) if self.accepts.value else None,
                    family=self.family.value)

    def _start(self, job, wait, single):
        self._cancel.clear()
        self.error = None
        self.alert.value = ""
        done: list = []
        self._run_worker(self._work, (job, done), "socklab-backlog-panel", wait,
                         sum(j["connect_timeout"] + (j["accept_after"] or 0) + 8 for j in job))
        if not wait:
            return None
        if self.error is not None:
            raise self.error
        return done[0] if single and done else (None if single else done)

    def _work(self, job, done):
        try:
            for i, settings in enumerate(job):
                if self._cancel.is_set():
                    self.status.value = "<b>stopped</b>"
                    return
                r = self._one(settings, f" ({i + 1} of {len(job)})" if len(job) > 1 else "")
                done.append(r)
            if len(job) > 1:
                self.table.value = _boxed(sweep_html(done), "socklab-sweep") + self.table.value
                self.status.value = ("<b>sweep finished</b>: queue holds "
                                     + ", ".join(f"{r.capacity} for listen({r.backlog})" for r in done))
        except Exception as exc:
            self.error = exc
            self._alert_error(exc)
            self.status.value = "<b>failed</b>"

    def _one(self, s, label) -> BacklogResult:
        trace = Trace()
        with self._lock:
            self._live = dict(address=None, outcomes={}, accepting=False, settings=s, snapshot=None,
                              taking=threading.Event(), taken=threading.Event())
        trace.subscribe(self._on_event)
        box: dict = {}

        signal = StopSignal()
        with self._lock:
            self._stop_signal = signal
        if self._cancel.is_set():  # stop() came between the runs of a sweep
            signal.set()

        def experiment():
            try:
                box["result"] = run_backlog_experiment(trace=trace, stop=signal, **s)
            except BaseException as exc:  # handed to the panel's thread
                box["error"] = exc
        runner = Thread(target=experiment, name="socklab-backlog-run")
        t0 = time.perf_counter()
        self.table.value = ""
        runner.start()
        while runner.is_alive():
            self._draw_live(label, time.perf_counter() - t0)
            runner.join(LIVE_EVERY)
        trace.unsubscribe(self._on_event)
        if "error" in box:
            raise box["error"]
        r = box["result"]
        names = {c.local: c.side for c in r.clients if isinstance(c.local, tuple)}
        snap = self._live["snapshot"]
        self.snapshot = order_rows(snap, names, self._live["address"]) if snap else None
        self.result = r
        self.results.append(r)
        if r.backlog is not None:
            self.history[r.backlog] = r
        self.gauge.value = _boxed(queue_gauge_html(r), "socklab-gauge-final")
        if self.snapshot is not None:
            self.state_view.value = _boxed(state_html(self.snapshot), "socklab-state-final")
        self.table.value = results_html(r, times=True)
        self.plot.value = chart_html(self.history)
        self.status.value = f"<b>{'stopped' if r.stopped else 'finished'}</b>{label}: {_html.escape(_summary(r))}"
        return r

    def _on_event(self, ev):
        """Trace listener, called in the experiment's threads: bookkeeping only, no widgets.

        It also takes the run's kernel snapshot, at a moment that does not depend on timing: when
        the server is about to accept(), or when the first connect() fails (that client has not
        closed yet), or when the last client got into the queue. It runs in the thread that made
        the call, before that thread goes on, and every other thread that reports a call meanwhile
        waits for it here (before it can close a socket or accept): nothing changes under it.
        """
        live = self._live
        with self._lock:
            n = live["settings"]["clients"]
            outcomes = live["outcomes"]
            moment = False
            if ev.call == "note" and ev.side == "server" and str(ev.args[0]).startswith("now calling"):
                live["accepting"] = moment = True
            elif ev.side.startswith("client") and ev.call == "socket":
                outcomes[ev.side] = "waiting"
            elif ev.side.startswith("client") and ev.call == "connect":
                if live["address"] is None and ev.args:
                    live["address"] = ev.args[0]
                if ev.error is None:
                    late = live["accepting"] and ev.dt is not None and ev.dt >= LATE
                    outcomes[ev.side] = "connected after accept" if late else "connected"
                    moment = not live["accepting"] and len(outcomes) == n and \
                        all(o == "connected" for o in outcomes.values())
                else:
                    outcomes[ev.side] = {TimeoutError: "timed out", ConnectionRefusedError: "refused",
                                         BlockingIOError: "would block"}.get(type(ev.error), "error")
                    moment = True
            moment = moment and not live["taking"].is_set() and live["address"] is not None
            if moment:
                live["taking"].set()  # taken below, outside the lock; only once per run
            addr, family = live["address"], live["settings"]["family"]
        if moment:
            try:
                rows = _stable_state(_listener_target(addr, family))
                with self._lock:
                    live["snapshot"] = rows if any(r.state == "LISTEN" for r in rows) else None
            finally:
                live["taken"].set()
        elif live["taking"].is_set():  # claimed under the lock before this event was counted
            live["taken"].wait(SNAPSHOT_WAIT)

    def _draw_live(self, label, elapsed):
        with self._lock:
            live = self._live
            addr, outcomes, s = live["address"], dict(live["outcomes"]), live["settings"]
        res = BacklogResult(s["backlog"], s["family"], s["connect_timeout"], s["accept_after"])
        res.clients = [ClientOutcome(side, out) for side, out in outcomes.items()]
        syn = None
        if addr is not None:
            rows = order_rows(demo_state(_listener_target(addr, s["family"])), listener=addr)
            listen = [r for r in rows if r.state == "LISTEN"]
            if s["family"] != "AF_UNIX":
                syn = sum(r.state == "SYN-SENT" for r in rows)
            if listen:
                res.backlog_in_force = listen[0].backlog
                res.samples = [Sample(elapsed, "live", listen[0].recv_q, listen[0].backlog, syn)]
                self.state_view.value = state_html(rows)
        self.gauge.value = queue_gauge_html(res)
        waiting = sum(o == "waiting" for o in outcomes.values())
        counts = {o: sum(v == o for v in outcomes.values()) for o in set(outcomes.values())}
        queue = res.samples[0].queue if res.samples else None
        self.status.value = (f"<b>running</b>{label}, t = {elapsed:.1f} s: "
                             + ("" if queue is None else f"accept queue {queue}, ")
                             + f"{counts.get('connected', 0)} connected, {waiting} waiting"
                             + ("" if syn is None else f" ({syn} in SYN-SENT)")
                             + "".join(f", {n} {o}" for o, n in sorted(counts.items())
                                       if o not in ("connected", "waiting")))


def _listener_target(address, family):
    """What kstate.demo_state needs to find and label a listener it only knows the address of."""
    return SimpleNamespace(config=SimpleNamespace(family=family, stream=True), address=address,
                           trace=None, side="server")
