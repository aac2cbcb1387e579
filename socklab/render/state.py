"""Tables of kernel socket state (``kstate.SockState`` rows) and the accept-queue gauge.

Addresses are written host:port (127.0.0.1:54321, [::1]:54321) so the nbval sanitize file masks
the ports; AF_UNIX paths go through ``runtime.display_path``.
"""
from __future__ import annotations

import html

from .. import runtime
from ..errors import ConfigError, Explanation
from .html import CSS, PALETTE, colour, table_html

COLUMNS = ("side", "proto", "local", "remote", "state", "recv-q", "send-q", "note")
NOTES = {
    "SYN-SENT": "SYN sent, no answer yet",
    "SYN-RECV": "half-open: SYN-ACK sent, handshake not complete (SYN queue, not yet in the accept queue)",
    "FIN-WAIT-1": "closed; its FIN is not acknowledged yet",
    "FIN-WAIT-2": "closed first; waiting for the peer to close",
    "CLOSE-WAIT": "peer closed (recv() gives b''); this side must close()",
    "LAST-ACK": "closed second; waiting for the last ACK",
    "CLOSING": "both sides closed at the same time",
    "TIME-WAIT": "closed first; no fd any more, the kernel keeps it 2 x MSL (60 s on Linux; about 30 s "
                 "on macOS, 120 s by default on Windows)",
    "CLOSE": "not listening or connected (e.g. only bound); ss -ta hides it",
}
STATE_ROLES = {"LISTEN": "info", "ESTABLISHED": "ok", "CONNECTED": "ok",  # render.html.PALETTE
               "TIME-WAIT": "purple", "SYN-SENT": "warn", "SYN-RECV": "warn"}


def format_addr(a) -> str:
    """('127.0.0.1', 5000) -> '127.0.0.1:5000'; ('::1', 5000) -> '[::1]:5000'; any/0 -> '*'."""
    if isinstance(a, tuple) and len(a) >= 2:
        ip, port = a[0], a[1]
        if port == 0 and ip in ("0.0.0.0", "::", ""):
            return "*"
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    if isinstance(a, str) and a:
        return runtime.display_path(a) if not a.startswith("\0") else "@" + a[1:]  # ss's abstract style
    return "-"


def note(row) -> str:
    """A short teaching note for one row: what its state means here."""
    if row.state == "LISTEN":
        if row.recv_q is None:
            return "listening (queue not shown here)"
        if row.backlog is None:
            return f"accept queue {row.recv_q}"
        return f"accept queue {row.recv_q} of {row.backlog + 1} (backlog {row.backlog}, holds backlog+1)"
    if row.state == "ESTABLISHED" and row.inode == 0:  # SYN-RECV rows have no fd either: not queued yet
        return "waiting in the accept queue: no fd until accept()"
    if row.state == "CLOSE-WAIT" and row.inode == 0:  # an fd closed after accept() would be LAST-ACK
        return ("waiting in the accept queue; its client has closed: after accept(), recv() gives "
                "what it sent, then b''")
    if "(in accept queue)" in row.side:
        return "connected; its server end waits for accept()"
    return NOTES.get(row.state, "")


def _cells(row) -> tuple:
    q = lambda v: "?" if v is None else str(v)  # noqa: E731 - unknown on this platform
    return (row.side or "?", row.proto, format_addr(row.local), format_addr(row.remote), row.state,
            q(row.recv_q), q(row.send_q), note(row))


def _footer(rows) -> list:
    out = []
    if any(r.state == "LISTEN" for r in rows):
        out.append("LISTEN rows: recv-q = connections waiting for accept(), send-q = backlog in force "
                   "(as `ss -ltn`).")
    reason = getattr(rows, "reason", "")
    if reason:
        out.append(f"Note: {reason}.")
    return out


def _checked(rows, where: str) -> list:
    """``rows`` if it holds SockState rows (a Rows, or a list of them); else ConfigError."""
    from ..kstate import SockState
    try:
        items = list(rows)
    except TypeError:
        items = None
    if isinstance(rows, (str, bytes)) or items is None or not all(isinstance(r, SockState) for r in items):
        raise ConfigError(Explanation(
            "Not kernel socket rows", f"{where} takes the rows socklab.demo_state() returns; it got "
            f"{rows!r:.60} (a {type(rows).__name__}).",
            "The table shows the kernel's sockets, one row each, as socklab.demo_state() reads them.",
            "Pass socklab.demo_state(srv) (for a Server, a socket, a port or an AF_UNIX path)."))
    return rows if hasattr(rows, "__len__") else items  # a generator is spent by now: its items


def state_text(rows) -> str:
    """The rows as an aligned plain-text table (the static-view form of ``state_html``)."""
    rows = _checked(rows, "state_text()")
    if not rows:
        return "\n".join(["(no sockets on this port)"] + _footer(rows))
    table = [COLUMNS] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join(lines + _footer(rows))


def _state_colour(state: str) -> str | None:
    """The inline colour of a state's name, or None (the text's own colour)."""
    role = STATE_ROLES.get(state) or ("closing" if "WAIT" in state or state in ("LAST-ACK", "CLOSING")
                                      else None)
    return colour(role) if role else None


def state_html(rows) -> str:
    """The rows as an HTML table; each state is named, and coloured in the theme's colours."""
    rows = _checked(rows, "state_html()")
    e = html.escape
    body = []
    for r in rows:
        c = _cells(r)
        ink = _state_colour(r.state)
        body.append("<tr>" + "".join(f"<td><code>{e(x)}</code></td>" for x in c[:4])
                    + (f'<td style="color:{ink}">' if ink else "<td>") + f"<b>{e(c[4])}</b></td>"
                    + "".join(f"<td>{e(x)}</td>" for x in c[5:]) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(COLUMNS)}">(no sockets on this port)</td></tr>')
    foot = "".join(f"<div>{e(line)}</div>" for line in _footer(rows))
    return (f'{CSS}<div class="socklab-box">{table_html("kernel socket state", COLUMNS, body)}'
            f"{foot}</div>")


# ---- the accept-queue gauge of a backlog experiment (socklab.backlog.BacklogResult)
MAX_SLOTS = 20  # a listen() default of 128 would draw 129 boxes: draw this many and say the rest


def _groups(result) -> tuple:
    from ..backlog import BacklogResult
    if not isinstance(result, BacklogResult):
        raise ConfigError(Explanation(
            "Not a backlog result", f"The accept-queue gauge draws what run_backlog_experiment() "
            f"returns; it got {result!r:.60} (a {type(result).__name__}).",
            "The gauge shows how one run of the backlog experiment filled the accept queue.",
            "Pass r = socklab.run_backlog_experiment(backlog=2, clients=4) (or a panel's .result)."))
    queued = [c.side for c in result.clients if c.outcome == "connected"]
    late = [c.side for c in result.clients if c.outcome == "connected after accept"]
    away = [c for c in result.clients if not c.connected]
    return queued, late, away


def _slots(result, queued) -> tuple:
    cap = result.capacity if result.capacity is not None else max(len(queued), 1)
    filled = result.queue_seen if result.queue_seen is not None else len(queued)
    return cap, min(filled, cap)


def queue_gauge_text(result) -> str:
    """The accept queue as '[##.]' boxes, then who waited in it, who got in late, who was turned away."""
    queued, late, away = _groups(result)
    cap, filled = _slots(result, queued)
    shown = min(cap, MAX_SLOTS)
    more = f" +{cap - shown} more places" if cap > shown else ""
    held = "" if result.backlog_in_force is None else \
        f" (backlog {result.backlog_in_force} in force, holds {cap})"
    full = " (full)" if filled >= cap else ""
    if result.capacity is None:  # psutil and /proc fallbacks: the queue's size cannot be read
        first = f"accept queue (its size is not shown on this system): {filled} waiting"
    else:
        first = (f"accept queue{held}: [{'#' * min(filled, shown)}{'.' * (shown - min(filled, shown))}]"
                 f"{more}  at most {filled} waiting{full}")
    lines = [first,
             f"  in the queue (connect() succeeded, not yet accepted): {', '.join(queued) or '(none)'}"]
    if late:
        lines.append(f"  let in after accept() (a retried SYN got in): {', '.join(late)}")
    if away:
        lines.append("  turned away: " + ", ".join(f"{c.side} ({c.outcome})" for c in away))
    if any(c.outcome == "timed out" for c in away):
        lines.append("  (their SYN was dropped, not refused: connect() waited and timed out)")
    return "\n".join(lines)


def queue_gauge_html(result) -> str:
    """The gauge as inline SVG: queue places filling up, the clients turned away beside them.
    An image for screen readers, described by the text form; a white card in any theme."""
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    queued, late, away = _groups(result)
    cap, filled = _slots(result, queued)
    shown = min(cap, MAX_SLOTS)
    box, gap = 64, 6
    outside = away + [c for c in result.clients if c.outcome == "connected after accept"]
    width = 20 + (shown + (1 if cap > shown else 0)) * (box + gap) + (40 + len(outside) * (box + gap)
                                                                       if outside else 0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{max(width, 300)}" height="104" '
             f'font-family="sans-serif" font-size="11"><title>accept queue gauge</title>'
             f"<desc>{e(queue_gauge_text(result))}</desc>"
             f'<rect width="100%" height="100%" fill="#ffffff"/>'
             f'<text x="10" y="16" fill="#1f2328">'
             + ("accept queue (size not known here)" if result.capacity is None else
                f"accept queue: {cap} places"
                + ("" if result.backlog_in_force is None else f" (backlog {result.backlog_in_force} + 1)"))
             + "</text>"]
    names = queued + ["?"] * filled  # the kernel may count more than we can name
    for i in range(shown):
        x = 10 + i * (box + gap)
        full = i < filled
        parts.append(f'<rect x="{x}" y="28" width="{box}" height="40" rx="4" '
                     f'fill="{"#dafbe1" if full else "#ffffff"}" '
                     f'stroke="{"#1a7f37" if full else "#8c959f"}"/>'
                     + (f'<text x="{x + box / 2:g}" y="52" text-anchor="middle" fill="#1f2328">'
                        f"{e(names[i])}</text>" if full else ""))
    x = 10 + shown * (box + gap)
    if cap > shown:
        parts.append(f'<text x="{x}" y="52" fill="#57606a">+{cap - shown}</text>')
        x += box + gap
    if outside:
        x += 30
        parts.append(f'<text x="{x}" y="88" fill="#57606a">outside the queue</text>')
        for c in outside:
            ink = PALETTE["info" if c.connected else "bad"][0]  # light values: the card is white
            what = "got in" if c.connected else c.outcome
            parts.append(f'<rect x="{x}" y="28" width="{box}" height="40" rx="4" fill="#ffffff" '
                         f'stroke="{ink}" stroke-dasharray="4 3"/>'
                         f'<text x="{x + box / 2:g}" y="45" text-anchor="middle" fill="#1f2328">'
                         f'{e(c.side)}</text><text x="{x + box / 2:g}" y="60" text-anchor="middle" '
                         f'fill="{ink}">{e(what)}</text>')
            x += box + gap
    parts.append("</svg>")
    caption = html.escape(queue_gauge_text(result).splitlines()[0])
    return (f'{CSS}<div class="socklab-box" style="color:#1f2328;background:#fff">{"".join(parts)}'
            f"<div>{caption}</div></div>")
