"""The error explorer: pick a socket error, provoke it live on real sockets, read the explanation.

Each scenario is a plain function that makes the error happen with traced sockets and raises it;
``provoke(key)`` runs one, bounded in time (at most a few tenths of a second), with every socket it
opened closed again, and returns an ``Outcome`` (the error, socklab's explanation, the calls made).
``ErrorExplorer`` is the panel: a dropdown of scenarios, a Run button, the explanation as an alert.
"""
from __future__ import annotations

import contextlib
import html as _html
import socket
import struct
import time
from dataclasses import dataclass

import ipywidgets as W

from ..errors import Explanation, explain
from ..notebook import Rich
from ..render.html import CSS, explanation_html, transcript_html
from ..render.text import side_by_side
from ..trace import Sym, Trace, TracedSocket
from .base import Panel, check_choice, kept, last_n

LOOPBACK = ("127.0.0.1", 0)
TIMEOUT = 0.1  # seconds: the short timeouts the scenarios provoke


def _sock(stack, trace, side, family=socket.AF_INET, type=socket.SOCK_STREAM):
    return stack.enter_context(TracedSocket.create(family, type, trace=trace, side=side))


def _tcp_pair(stack, trace):
    """A connected TCP pair on loopback: (client, the server's connection socket)."""
    listener = _sock(stack, trace, "server")
    listener.settimeout(2)
    listener.bind(LOOPBACK)
    listener.listen(1)
    client = _sock(stack, trace, "client")
    client.settimeout(2)
    client.connect(listener.getsockname())
    conn, _ = listener.accept()
    stack.enter_context(conn)
    listener.close()
    return client, conn


# ---- the scenarios: each raises the error it is named after
def refused(stack, trace):
    """connect() to a port where nothing listens."""
    lonely = _sock(stack, trace, "server")
    lonely.bind(LOOPBACK)                  # bound but never listening: nobody accepts on this port
    client = _sock(stack, trace, "client")
    client.settimeout(2)
    client.connect(lonely.getsockname())


def queue_full(stack, trace):
    """connect() to a listener whose accept queue is full: no refusal, a timeout."""
    server = _sock(stack, trace, "server")
    server.bind(LOOPBACK)
    server.listen(0)                       # and never accept()
    for i in range(1, 9):
        client = _sock(stack, trace, f"client{i}")
        client.settimeout(TIMEOUT)
        client.connect(server.getsockname())


def in_use(stack, trace):
    """bind() to a port another socket is listening on."""
    first = _sock(stack, trace, "server")
    first.bind(LOOPBACK)
    first.listen()
    second = _sock(stack, trace, "server2")
    second.bind(first.getsockname())


def not_available(stack, trace):
    """bind() to an IP address this machine does not have."""
    s = _sock(stack, trace, "server")
    s.bind(("203.0.113.5", 0))             # TEST-NET-3: documentation only, never a local address


def family_mismatch(stack, trace):
    """An IPv6 address given to an AF_INET socket."""
    s = _sock(stack, trace, "server")
    s.bind(("::1", 0))


def no_such_name(stack, trace):
    """A host name that is not a numeric address, resolved without DNS (AI_NUMERICHOST)."""
    args = ("no-such-host.invalid", 80, Sym("flags=AI_NUMERICHOST"))
    start = time.perf_counter()
    try:
        socket.getaddrinfo("no-such-host.invalid", 80, flags=socket.AI_NUMERICHOST)
    except OSError as exc:
        trace.record("resolver", "getaddrinfo", args, error=exc, start=start)
        raise
    trace.record("resolver", "getaddrinfo", args, result="(resolved)", start=start)


def recv_timeout(stack, trace):
    """recv() with a timeout on a connection where the peer sends nothing."""
    client, _conn = _tcp_pair(stack, trace)
    client.settimeout(TIMEOUT)
    client.recv(100)


def would_block(stack, trace):
    """recv() on a non-blocking socket with no data waiting."""
    client, _conn = _tcp_pair(stack, trace)
    client.setblocking(False)
    client.recv(100)


def broken_pipe(stack, trace):
    """send() after the peer closed: the first send may succeed, a later one fails."""
    client, conn = _tcp_pair(stack, trace)
    conn.close()
    for _ in range(100):                   # in practice the second send fails
        client.send(b"are you there?")
    raise RuntimeError("no BrokenPipeError after 100 sends")


def reset(stack, trace):
    """recv() after the peer aborted the connection (SO_LINGER with a 0 s timeout: RST)."""
    client, conn = _tcp_pair(stack, trace)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    client.recv(100)


def message_too_long(stack, trace):
    """One UDP datagram larger than IPv4 allows (65507 bytes of payload)."""
    receiver = _sock(stack, trace, "receiver", type=socket.SOCK_DGRAM)
    receiver.bind(LOOPBACK)
    sender = _sock(stack, trace, "sender", type=socket.SOCK_DGRAM)
    sender.sendto(b"x" * 65508, receiver.getsockname())


def port_out_of_range(stack, trace):
    """A port number that does not fit in 16 bits."""
    s = _sock(stack, trace, "server")
    s.bind(("127.0.0.1", 70000))


def address_as_string(stack, trace):
    """'host:port' as one string instead of a (host, port) tuple."""
    s = _sock(stack, trace, "server")
    s.bind("127.0.0.1:8080")


def send_str(stack, trace):
    """send() given a str instead of bytes."""
    client, _conn = _tcp_pair(stack, trace)
    start = time.perf_counter()
    try:
        client.sock.send("hello")          # the real socket call, recorded by hand
    except TypeError as exc:
        trace.record(client.side, "send", ("hello",), error=exc, start=start)
        raise


SCENARIOS = {
    "refused": ("connect(): nobody listening -> ConnectionRefusedError", refused),
    "queue_full": ("connect(): accept queue full -> TimeoutError", queue_full),
    "in_use": ("bind(): port in use -> EADDRINUSE", in_use),
    "not_available": ("bind(('203.0.113.5', 0)) -> EADDRNOTAVAIL", not_available),
    "family_mismatch": ("AF_INET socket, IPv6 address -> gaierror (family)", family_mismatch),
    "no_such_name": ("unknown host, no DNS (AI_NUMERICHOST) -> gaierror EAI_NONAME", no_such_name),
    "recv_timeout": (f"recv() with settimeout({TIMEOUT:g}) -> TimeoutError", recv_timeout),
    "would_block": ("recv() non-blocking, no data -> BlockingIOError", would_block),
    "broken_pipe": ("send() after the peer closed -> BrokenPipeError", broken_pipe),
    "reset": ("recv() after the peer reset (SO_LINGER 0) -> ConnectionResetError", reset),
    "message_too_long": ("UDP datagram of 65508 bytes -> EMSGSIZE", message_too_long),
    "port_out_of_range": ("bind(('127.0.0.1', 70000)) -> OverflowError", port_out_of_range),
    "address_as_string": ("bind('127.0.0.1:8080') -> TypeError", address_as_string),
    "send_str": ("send('hello') -> TypeError", send_str),
}


@dataclass
class Outcome:
    """What one scenario did: the error it raised, socklab's explanation, the calls, the time."""

    key: str
    title: str
    error: BaseException | None
    explanation: Explanation | None
    trace: Trace
    seconds: float

    @property
    def error_name(self) -> str:
        """'ConnectionRefusedError (errno 111, ECONNREFUSED)' or 'OverflowError'."""
        e = self.error
        if e is None:
            return "no error"
        num = getattr(e, "errno", None)
        if isinstance(num, int) and self.explanation is not None and self.explanation.code:
            return f"{type(e).__name__} (errno {num}, {self.explanation.code})"
        return type(e).__name__

    def text(self) -> str:
        lines = [f"scenario: {self.title}", side_by_side(self.trace), f"error: {self.error_name}"]
        if self.explanation is not None:
            lines.append(self.explanation.text())
        return "\n".join(lines)


def provoke(key: str) -> Outcome:
    """Run scenario ``key``: make its error happen for real, close everything, explain it."""
    title, fn = SCENARIOS[key]
    trace = Trace()
    error = None
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            fn(stack, trace)
        except Exception as exc:
            error = exc
    seconds = time.perf_counter() - t0
    exp = None
    if error is not None:
        failed = [e for e in trace if e.error is not None]
        call = failed[-1].call if failed else None
        address = None
        if failed and call in ("bind", "connect", "getaddrinfo"):
            address = failed[-1].args[0]
        elif failed and call == "sendto":
            address = failed[-1].args[1]
        exp = explain(error, address, call)
    return Outcome(key, title, error, exp, trace, seconds)


RUNS_KEPT = 50  # ErrorExplorer.outcomes keeps the latest runs


class ErrorExplorer(Panel):
    """A dropdown of scenarios and a Run button (``run(key)`` from code). Each run provokes the
    error live, within a bounded time, and leaves no socket open."""

    def __init__(self, scenario: str = "refused", name: str | None = None):
        check_choice("scenario", scenario, tuple(SCENARIOS))
        self.outcomes: list = kept(RUNS_KEPT)  # each keeps its trace: the latest runs only
        self.scenario = W.Dropdown(options=[(title, key) for key, (title, _) in SCENARIOS.items()],
                                   value=scenario, description="scenario",
                                   layout=W.Layout(width="560px"))
        self.run_button = W.Button(description="Run", button_style="danger")
        self.run_button.add_class("socklab-run")
        self.run_button.on_click(lambda _b: self.run())
        self._status_alert_log("<i>pick a scenario and press Run</i>", log_height=None)
        self.calls = self._view("socklab-log")
        super().__init__([W.HBox([self.scenario, self.run_button]), self.status, self.alert,
                          self.calls])
        self.add_class("socklab-panel")
        self._register(name)

    def run(self, key: str | None = None) -> Outcome:
        """Provoke scenario ``key`` (default: the one picked) and show its explanation; an
        unknown ``key`` raises ConfigError naming the scenarios."""
        if key is not None:
            self.scenario.value = check_choice("scenario", key, tuple(SCENARIOS))
        self.status.value = "<i>running...</i>"
        out = provoke(self.scenario.value)
        self.outcomes.append(out)
        self.status.value = (f"<b>{_html.escape(out.error_name)}</b> after "
                             f"{out.seconds * 1000:.1f} ms; every socket is closed again")
        self.alert.value = explanation_html(out.explanation) if out.explanation else ""
        self.calls.value = transcript_html(out.trace, times=False, order="side")
        return out

    def stop(self):
        """Nothing keeps running between runs; here for re-run symmetry with the other panels."""

    def transcript(self, last: int | None = None) -> Rich:
        """The scenarios run so far (or the ``last`` few) as text, and the explanations as HTML."""
        outs = last_n(self.outcomes, last, "scenarios")
        if last == 0:
            return Rich("(no scenario shown: last=0)")
        if not outs:
            return Rich("(no scenario run yet)")
        note = self.outcomes.dropped_note("scenarios") if last is None else ""
        text = "\n\n".join(([note] if note else []) + [o.text() for o in outs])
        html = "".join(f"<div><b>{_html.escape(o.title)}</b></div>"
                       + (explanation_html(o.explanation) if o.explanation else "") for o in outs)
        return Rich(text, f"{CSS}<div class='socklab-box'>{html}</div>")

    def _plain_text(self) -> str:
        return ("socklab error explorer: interactive in JupyterLab; "
                              "the transcript below shows runs.")


__all__ = ["SCENARIOS", "Outcome", "provoke", "ErrorExplorer"]
