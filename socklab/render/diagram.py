"""A sequence diagram of a Trace: one lifeline per side, one row per event.

Client sides stand left, each server side right with its accepted connections ('server/conn1')
beside it. connect -> accept is the handshake, send/recv are arrows with a byte count and a
preview, shutdown/close of a connected stream carry the FIN, errors are red and dashed and say
'!! TimeoutError: ...' (never colour alone). The SVG is an image (role="img") whose <title> names
the lifelines and whose <desc> tells every row in words, for screen readers.
Rows are capped (``last``): a '... K earlier events' row stands for the rest.

Who talks to whom is inferred from the trace: the k-th successful connect to a listener pairs
with its k-th accept. When clients race, pass ``peers={'client2': 'server/conn1', ...}``.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..trace import Data, Sym, Trace, as_trace
from ..errors import ConfigError, Explanation
from .html import CSS, SIDE_COLOURS, side_slots
from .text import format_call, format_result

LAST = 200           # rows drawn by default
PREVIEW = 16         # bytes of payload shown on an arrow
RECV_CALLS = ("recv", "recvfrom", "recv_into")
SEND_CALLS = ("send", "sendall", "sendto")
# on the SVG's own white background: text reaches 4.5:1 (GREY, 3:1, draws lines and dots only)
RED, INK, MUTED, GREY = "#cf222e", "#1f2328", "#57606a", "#8c959f"
SVG_LABELS = {"connect": "connect: SYN, SYN-ACK, ACK", "accept": "accept: new socket"}  # room to explain


@dataclass
class Row:
    """One drawn row: an arrow src -> dst, or (dst None) a mark on src's lifeline."""

    src: str
    dst: str | None
    label: str
    error: str = ""      # '!! TimeoutError: timed out' or ''
    note: bool = False
    detail: str = ""     # the full call and result, for the SVG tooltip


def _size(n) -> str:
    n = n or 0
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _preview(d) -> str:
    if not isinstance(d, Data) or not d.head:
        return ""
    return repr(d.head[:PREVIEW]) + ("..." if d.size > PREVIEW else "")


def _key(addr):
    return tuple(addr) if isinstance(addr, (tuple, list)) else addr


class _Model:
    """One pass over the events: who listens where, which sockets are streams, who pairs with whom."""

    def __init__(self, events, peers):
        self.peers = dict(peers or {})
        self.peers.update({v: k for k, v in list(self.peers.items())})
        self.kind: dict = {}         # side -> 'SOCK_STREAM' / 'SOCK_DGRAM'
        self.bound: dict = {}        # bind address -> side (ports and paths that name a side)
        self.listeners: list = []
        self.bound_sides: list = []  # every side that bound, port 0 included
        self.first_io: dict = {}     # side -> 'recv' or 'send': servers wait first, clients speak first
        waiting: dict = {}           # listener -> ([connected clients], [accepted conns]) not yet paired
        for ev in events:
            s, c = ev.side, ev.call
            if c == "socket" and len(ev.args) > 1 and isinstance(ev.args[1], Sym):
                self.kind[s] = ev.args[1].name
            elif c == "bind" and ev.error is None and ev.args:
                a = _key(ev.args[0])
                self.bound_sides.append(s)
                if isinstance(a, str) or (isinstance(a, tuple) and len(a) > 1 and a[1]):
                    self.bound[a] = s
            elif c == "listen" and ev.error is None and s not in self.listeners:
                self.listeners.append(s)
            elif c in RECV_CALLS + SEND_CALLS:
                self.first_io.setdefault(s, "recv" if c in RECV_CALLS else "send")
            if c == "connect" and ev.error is None and self.stream(s):
                target = self.resolve(ev.args[0] if ev.args else None, s)
                if target:
                    waiting.setdefault(target, ([], []))[0].append(s)
            elif c == "accept" and ev.error is None and isinstance(ev.result, tuple):
                conn = str(ev.result[0]).strip("<>")
                self.kind.setdefault(conn, "SOCK_STREAM")
                waiting.setdefault(s, ([], []))[1].append(conn)
            for clients, conns in waiting.values():
                while clients and conns:
                    a, b = clients.pop(0), conns.pop(0)
                    if a not in self.peers and b not in self.peers:
                        self.peers[a], self.peers[b] = b, a

    def stream(self, side) -> bool:
        return self.kind.get(side, self.kind.get(side.split("/")[0], "SOCK_STREAM")) == "SOCK_STREAM"

    def resolve(self, addr, caller):
        """The side an address belongs to: an exact bind, else the only listener (or bound side)."""
        a = _key(addr)
        if a in self.bound and self.bound[a] != caller:
            return self.bound[a]
        candidates = [x for x in (self.listeners or self.bound_sides) if x != caller]
        return candidates[0] if len(set(candidates)) == 1 else None

    def order(self, sides) -> list:
        """Clients first (appearance order), then each server followed by its connections."""
        def serverish(s):
            return s in self.listeners or "/" in s or self.first_io.get(s) == "recv"
        left = [s for s in sides if not serverish(s)]
        right = []
        for s in sides:
            if serverish(s) and "/" not in s:
                right += [s] + [c for c in sides if c.startswith(s + "/")]
        return left + right + [s for s in sides if s not in left and s not in right]


def _send_dst(m, ev, last_sender):
    """Where a send goes: the stream's peer, the addressed side, or whoever sent to us last."""
    s = ev.side
    if ev.call == "sendto":
        dst = m.resolve(ev.args[1], s) if len(ev.args) > 1 else None
        return dst or last_sender.get(s)
    return m.peers.get(s) if m.stream(s) else m.resolve(None, s)


def _rows(events, m, cut: int) -> list:
    """Rows for events[cut:]; earlier events only update who-sent-to-whom (labels cost the time)."""
    last_sender: dict = {}  # datagrams: side -> who sent to it last (replies go back there)
    rows = []
    for i, ev in enumerate(events):
        s, c = ev.side, ev.call
        if i < cut:
            if c in SEND_CALLS:
                dst = _send_dst(m, ev, last_sender)
                if dst:
                    last_sender[dst] = s
            continue
        err = format_result(ev) if ev.error is not None else ""
        detail = f"{s}: {format_call(ev)} {format_result(ev)}".rstrip()
        dst, label = None, None
        if c == "note":
            rows.append(Row(s, None, str(ev.args[0]) if ev.args else "", note=True, detail=detail))
            continue
        if c == "connect" and m.stream(s) and (ev.error is None or isinstance(ev.error, TimeoutError)):
            # a timeout means the SYN went unanswered (full queue); refused means nobody listened there
            dst = m.resolve(ev.args[0] if ev.args else None, s)
            label = "connect" if dst else None
        elif c == "accept" and ev.error is None and isinstance(ev.result, tuple):
            dst, label = str(ev.result[0]).strip("<>"), "accept"
        elif c in SEND_CALLS:
            data = ev.args[0] if ev.args else None
            dst = _send_dst(m, ev, last_sender)
            if dst:
                last_sender[dst] = s
            n = ev.nbytes if ev.nbytes is not None else getattr(data, "size", None)
            many = f" x{ev.count}" if ev.count > 1 else ""
            label = f"{c}{many} {_size(n)} {'' if many else _preview(data)}".rstrip()
        elif c in RECV_CALLS:
            src = m.peers.get(s) if m.stream(s) else last_sender.get(s)
            if src and ev.error is None:
                data = ev.result[0] if c == "recvfrom" and isinstance(ev.result, tuple) else ev.result
                if ev.nbytes == 0:
                    label = f"{c} EOF (b'')"
                else:
                    many = f" x{ev.count}" if ev.count > 1 else ""
                    label = f"{c}{many} {_size(ev.nbytes)} {'' if many else _preview(data)}".rstrip()
                rows.append(Row(src, s, label, detail=detail))
                continue
        elif c in ("shutdown", "close") and m.stream(s) and s in m.peers:
            how = ev.args[0].name if c == "shutdown" and ev.args and isinstance(ev.args[0], Sym) else ""
            if how != "SHUT_RD":  # SHUT_RD sends nothing
                dst, label = m.peers[s], f"{c}({how}): FIN" if how else "close: FIN"
        if label is None:
            dst, label = None, f"{format_call(ev)} {format_result(ev) if ev.error is None else ''}".strip()
        rows.append(Row(s, dst, label, err, detail=detail))
    return rows


def _window(trace, last, peers):
    trace = as_trace(trace, "the sequence diagram")
    if last is not None and (type(last) is not int or last < 0):
        raise ConfigError(Explanation(
            "Invalid last", f"last={last!r:.40} is not a whole number of 0 or more.",
            "last is how many of the newest calls the diagram draws.",
            "Use e.g. last=40, or last=None for every call the trace holds."))
    if peers is not None and not (isinstance(peers, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in peers.items())):
        raise ConfigError(Explanation(
            "Invalid peers", f"peers={peers!r:.60} is not a dict of side names.",
            "peers pairs sides whose messages go to each other, when the trace cannot tell.",
            "Use e.g. peers={'client': 'server/conn1'}, or leave it out."))
    events = list(trace)
    m = _Model(events, peers)
    cut = max(len(events) - last, 0) if last is not None else 0
    rows = _rows(events, m, cut)
    used = {r.src for r in rows} | {r.dst for r in rows if r.dst}
    seen = [e.side for e in events[cut:]] + [r.dst for r in rows if r.dst]
    sides = m.order([x for x in dict.fromkeys(seen) if x in used])
    return rows, sides, trace.dropped + cut


def _line(r: Row) -> str:
    err = f"  {r.error}" if r.error else ""
    if r.dst is None:
        return f"{r.src}: {'[' + r.label + ']' if r.note else r.label}{err}"
    if r.label.startswith(RECV_CALLS):
        return f"{r.dst} ◀──{r.label}── {r.src}{err}"
    return f"{r.src} ──{r.label}──▶ {r.dst}{err}"


def _spoken(r: Row) -> str:
    """One row in words for a screen reader: no arrows or box-drawing characters."""
    label = r.label if len(r.label) <= 90 else r.label[:87] + "..."
    err = f", error: {r.error.removeprefix('!! ')}" if r.error else ""
    if r.dst is None:
        return f"{r.src} {'note' if r.note else 'calls'}: {label}{err}"
    if r.label.startswith(RECV_CALLS):
        return f"{r.dst} receives from {r.src}: {label}{err}"
    return f"{r.src} to {r.dst}: {label}{err}"


def _desc(rows, sides, skipped) -> str:
    if not rows:
        return "no socket calls yet"
    head = f"{len(rows)} events on {len(sides)} lifelines"
    if skipped:
        head += f", after {skipped} earlier events not drawn"
    return head + ". " + "; ".join(_spoken(r) for r in rows) + "."


def diagram_text(trace: Trace, last: int | None = LAST, peers=None) -> str:
    """The diagram as text, one event per line in order, e.g. 'client ──connect──▶ server'.

    A receive reads right to left: 'server/conn1 ◀──recv 5 B b'hello'── client'. Errors end the
    line with '!! TimeoutError: timed out'. Stable wording, for static views and nbval.
    """
    rows, sides, skipped = _window(trace, last, peers)
    if not rows:
        return "(no socket calls yet)"
    head = [f"lifelines: {' | '.join(sides)}"]
    if skipped:
        head.append(f"... {skipped} earlier events")
    return "\n".join(head + [_line(r) for r in rows])


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 forbids (NUL, ESC, ...) shown as \\xNN escapes, so
    data from the wire can never make the SVG unreadable."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def diagram_svg(trace: Trace, last: int | None = LAST, peers=None) -> str:
    """The diagram as a standalone SVG string (white background, dark ink, errors red)."""
    rows, sides, skipped = _window(trace, last, peers)
    e = lambda s: html.escape(_xml_safe(str(s)), quote=True)  # noqa: E731
    col = max(150, 8 * max((len(s) for s in sides), default=0) + 24)
    top, step, pad = 44, 24, 16
    x = {s: pad + col * i + col // 2 for i, s in enumerate(sides)}
    y0 = top + 14 + (step if skipped else 0)
    marks = [x[r.src] + 10 + 6.5 * (min(len(r.label), 90) + len(r.error) + 4) for r in rows if r.dst is None]
    width = int(max([pad * 2 + col * len(sides), 320] + marks))  # room for marks on the last lifeline
    height = y0 + step * len(rows) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="socklab-diagram" role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f"<title>sequence diagram: {e(', '.join(sides))}</title>",
           f"<desc>{e(_desc(rows, sides, skipped))}</desc>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    slots = side_slots(sides)
    for s in sides:
        c = SIDE_COLOURS[slots[s]]
        out.append(f'<g class="side" data-side="{e(s)}"><rect x="{x[s] - col // 2 + 6}" y="8" '
                   f'width="{col - 12}" height="24" rx="4" fill="#ffffff" stroke="{c}" stroke-width="1.5"/>'
                   f'<text x="{x[s]}" y="24" text-anchor="middle" fill="{c}" font-weight="bold">{e(s)}</text>'
                   f'<line class="lifeline" data-side="{e(s)}" x1="{x[s]}" y1="32" x2="{x[s]}" '
                   f'y2="{height - 4}" stroke="{GREY}" stroke-dasharray="4 3"/></g>')
    if skipped:
        out.append(f'<text x="{pad}" y="{top + 14}" fill="{MUTED}" font-style="italic">'
                   f"... {skipped} earlier events</text>")
    halo = 'paint-order="stroke" stroke="#ffffff" stroke-width="3"'  # stays legible over lifelines
    for i, r in enumerate(rows):
        y = y0 + step * i + 8
        ink = RED if r.error else INK
        cap = 48 if r.dst not in (None, r.src) else 90  # an arrow's label should fit over it
        label = r.label if len(r.label) <= cap else r.label[:cap - 3] + "..."
        tip = f"<title>{e(r.detail)}</title>"
        if r.dst is None or r.dst == r.src:
            x1 = x[r.src]
            text = f"[{label}]" if r.note else label + (f"  {r.error}" if r.error else "")
            style = f'fill="{MUTED}" font-style="italic"' if r.note else f'fill="{ink}"'
            out.append(f'<g class="row{" error" if r.error else ""}">{tip}'
                       f'<circle cx="{x1}" cy="{y - 4}" r="3" fill="{GREY if r.note else ink}"/>'
                       f'<text x="{x1 + 7}" y="{y}" {style} {halo}>{e(text)}</text></g>')
            continue
        x1, x2 = x[r.src], x[r.dst]
        d = 1 if x2 > x1 else -1
        head = f"{x2},{y} {x2 - 8 * d},{y - 4} {x2 - 8 * d},{y + 4}"
        if r.error:
            text = ("connect: SYN got no answer" if label == "connect" else label) + f"  {r.error}"
        else:
            text = SVG_LABELS.get(label, label)
        dash = ' stroke-dasharray="5 3"' if r.error else ""
        out.append(f'<g class="row arrow{" error" if r.error else ""}">{tip}'
                   f'<line x1="{x1}" y1="{y}" x2="{x2 - 8 * d}" y2="{y}" stroke="{ink}" '
                   f'stroke-width="1.3"{dash}/>'
                   f'<polygon points="{head}" fill="{ink}"/>'
                   f'<text x="{(x1 + x2) / 2:g}" y="{y - 4}" text-anchor="middle" fill="{ink}" {halo}>'
                   f"{e(text)}</text></g>")
    if not rows:
        out.append(f'<text x="{pad}" y="{top}" fill="{MUTED}">(no socket calls yet)</text>')
    out.append("</svg>")
    return "".join(out)


def diagram_html(trace: Trace, last: int | None = LAST, peers=None, max_height: int = 600) -> str:
    """The SVG in a scrolling box for JupyterLab (HTML output; no JavaScript). The box stays white
    in a dark theme: SVG presentation attributes cannot follow the theme's colours."""
    return (f'{CSS}<div class="socklab-box" style="overflow:auto;max-height:{max_height}px;'
            f'color:{INK};background:#ffffff">{diagram_svg(trace, last, peers)}</div>')
