"""The exchange panel: one real TCP connection, both ends driven by hand, one call per click.

A client and the server end of one connection, both on loopback, both in this thread: you decide when
each side sends, receives or shuts down, so you can see that TCP keeps no message boundaries, that
``recv(n)`` returns at most n bytes of whatever has arrived, that ``recv`` returns ``b''`` once the peer
has shut down its sending side, and that sockets carry bytes, not str. ``transcript()`` is the text form.
"""
from __future__ import annotations

import array
import socket

import ipywidgets as W

from .. import runtime
from ..errors import explain
from ..notebook import Rich, show
from ..trace import Data, Trace, TracedSocket
from .base import Choice, Panel, Timeout, bad_setting, check_data, check_range, check_text, shown

SIDES = ("client", "server")
BUFSIZE_RANGE = (1, 1 << 20)  # the recv size box's limits: recv(n) sets aside n bytes
# recv(0) is allowed by the OS but would mislead here: it returns b'' at once, whatever is waiting.
BUFSIZE_WHY = ("recv(n) returns at most n bytes and sets aside n bytes for them. recv(0) returns b'' "
               "at once, whatever is waiting, and that b'' is not the end of the stream: only a "
               "recv(n) with n >= 1 that returns b'' means the peer sends no more.")
HOWS = {socket.SHUT_RD: "SHUT_RD", socket.SHUT_WR: "SHUT_WR", socket.SHUT_RDWR: "SHUT_RDWR"}


def unread(sock) -> int | None:
    """Bytes that have arrived on ``sock`` and are waiting for recv() (FIONREAD); None where unknown."""
    try:
        import fcntl
        import termios
    except ImportError:  # Windows: no fcntl
        return None
    raw = getattr(sock, "sock", sock)
    if raw is None or raw.fileno() == -1:
        return None
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(raw.fileno(), termios.FIONREAD, buf)
    except OSError:
        return None
    return buf[0]


class ExchangePanel(Panel):
    """Both ends of one TCP connection, driven one call at a time.

    Buttons: Connect, Client send, Server recv, Server send, Client recv, Client shutdown(SHUT_WR),
    Close both. Each has a method (``connect()``, ``client_send(message)``, ``server_recv(bufsize)``,
    ``server_send(message)``, ``client_recv(bufsize)``, ``client_shutdown()``, ``close_both()``; also
    ``server_shutdown()``) so a cell or a test can drive the panel too. (Not ``send``/``close``: those
    names belong to ipywidgets.) Every recv() has a timeout (``timeout`` seconds, above 0 and at most
    600, else ConfigError): with nothing to read it ends in an explained TimeoutError. A method
    returns what its call returned, or None after a failure (explained in the alert box; the
    exception is in ``last``). A ``str`` message, from the box or passed from code, is encoded as
    UTF-8 unless "encode" is unticked: then it is sent as it is, so the real TypeError shows.
    Bytes are sent as they are.
    The client sets TCP_NODELAY, so each send() leaves at once as its own segment.
    """

    _side_width = 12
    timeout = Timeout()  # checked when set: every call of both ends waits at most this long

    def __init__(self, message: str = "hello", bufsize: int = 1024, timeout: float = 0.1,
                 name: str | None = None):
        self.timeout = timeout  # first: a bad one is refused before anything exists
        message = check_text("message", message)
        check_range("bufsize", bufsize, *BUFSIZE_RANGE, why=BUFSIZE_WHY)
        self.trace = Trace(coalesce=False)
        self.client: TracedSocket | None = None
        self.server: TracedSocket | None = None   # the server's end of the connection
        self.last = None                          # what the last call returned (or its exception)
        self.message = W.Text(value=message, description="message")
        self.bufsize = W.BoundedIntText(value=bufsize, min=BUFSIZE_RANGE[0], max=BUFSIZE_RANGE[1],
                                        description="recv size")
        self.encode = W.Checkbox(value=True, description="encode to bytes (UTF-8)", indent=False)
        self.call = Choice("call", options=("send", "sendall"), value="send", description="send with")
        self.buttons = self._buttons((
            ("Connect", self.connect, "success"),
            ("Client send", self.client_send, "info"),
            ("Server recv", self.server_recv, "info"),
            ("Server send", self.server_send, "info"),
            ("Client recv", self.client_recv, "info"),
            ("Client shutdown(SHUT_WR)", self.client_shutdown, "warning"),
            ("Close both", self.close_both, "danger")), width="auto")
        self._status_alert_log("<i>not connected</i>")
        super().__init__([W.HBox([self.message, self.encode]), W.HBox([self.call, self.bufsize]),
                          W.HBox(list(self.buttons.values())[:4]), W.HBox(list(self.buttons.values())[4:]),
                          self.status, self.alert, self.events])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    # ---- static form
    def _plain_text(self) -> str:
        return "socklab exchange panel: interactive in JupyterLab; the transcript below shows a run."

    def transcript(self) -> Rich:
        """Every call both ends made, in order (all in one thread: the order is stable)."""
        return show(self.trace)

    def waiting(self) -> dict:
        """Bytes that have arrived and wait for recv() at each end: {'client': n, 'server': m}."""
        return {"client": unread(self.client), "server": unread(self.server)}

    # ---- plumbing
    def _end(self, side) -> TracedSocket:
        if side not in SIDES:
            raise ValueError(f"side must be 'client' or 'server', not {side!r}")
        if self.client is None:
            self._connect()  # not connect(): its failure must end this call, explained as such
        return self.client if side == "client" else self.server

    def _redraw(self):
        if self.client is None:
            self.status.value = "<i>not connected</i>"
            return
        w = self.waiting()
        fmt = lambda n: "?" if n is None else f"{n} bytes"  # noqa: E731
        self.status.value = (f"connected. Arrived, not yet read: at the server <b>{fmt(w['server'])}</b>, "
                             f"at the client <b>{fmt(w['client'])}</b>")

    # ---- buttons
    def connect(self):
        """A fresh connection: listen on 127.0.0.1 port 0, connect, accept, close the listener."""
        return self._act("connect", self._connect)

    def _connect(self):
        self._close_ends()
        client = server = None
        listener = TracedSocket.create(socket.AF_INET, socket.SOCK_STREAM, trace=self.trace,
                                       side="listener")
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = TracedSocket.create(socket.AF_INET, socket.SOCK_STREAM, trace=self.trace,
                                         side="client")
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.settimeout(self.timeout)
            client.connect(listener.getsockname())
            listener.settimeout(self.timeout)
            server, _addr = listener.accept(conn_side="server")
            server.settimeout(self.timeout)
            self.client, self.server = client, server
        finally:
            listener.close()
            if self.client is not client:  # failed half-way: keep no end, so the next call reconnects
                for end in (client, server):
                    if end is not None:
                        end.close()
        return self.client

    def client_send(self, message: str | bytes | None = None):
        """The client sends ``message`` (str or bytes; default: the message box) with send() or
        sendall()."""
        return self._xsend("client", message)

    def server_send(self, message: str | bytes | None = None):
        """The server end sends ``message`` (str or bytes; default: the message box)."""
        return self._xsend("server", message)

    def server_recv(self, bufsize: int | None = None):
        """The server end calls recv(bufsize) once (default: the recv size box; 1..1048576)."""
        return self._xrecv("server", bufsize)

    def client_recv(self, bufsize: int | None = None):
        """The client calls recv(bufsize) once."""
        return self._xrecv("client", bufsize)

    def client_shutdown(self, how=socket.SHUT_WR):
        """Half-close: the client will send no more (the server's recv() then returns b'')."""
        return self._xshutdown("client", _check_how(how))

    def server_shutdown(self, how=socket.SHUT_WR):
        """Half-close the other way: the server end will send no more."""
        return self._xshutdown("server", _check_how(how))

    def close_both(self):
        """Close both ends."""
        return self._act("close", self._close_ends)

    def _xsend(self, side, message):
        if message is not None and not isinstance(message, str):
            message = check_data("message", message)  # bytes pass; anything else: ConfigError

        def go():
            end = self._end(side)
            msg = self.message.value if message is None else message
            if isinstance(msg, str) and self.encode.value:
                msg = msg.encode("utf-8")
            if isinstance(msg, str):  # the traced call cannot even record a str: show the real error
                try:
                    getattr(end.sock, self.call.value)(msg)
                except TypeError as exc:
                    self.trace.record(side, self.call.value, (msg,), error=exc)
                    raise
            return getattr(end, self.call.value)(msg)
        return self._act(f"{side} {self.call.value}", go)

    def _xrecv(self, side, bufsize):
        if bufsize is not None:
            check_range("bufsize", bufsize, *BUFSIZE_RANGE, why=BUFSIZE_WHY)

        def go():
            end = self._end(side)
            data = end.recv(self.bufsize.value if bufsize is None else bufsize)
            if data == b"":
                self.trace.note(side, "b'' = end of stream: the peer sends no more")
            return data
        return self._act(f"{side} recv", go)

    def _xshutdown(self, side, how):
        return self._act(f"{side} shutdown", lambda: self._end(side).shutdown(how))

    def stop(self):
        """Close everything (called when the cell that made the panel is re-run)."""
        self._close_ends()
        self._redraw()
        runtime.unregister(self.key, self)

    def _close_ends(self):
        for end in (self.client, self.server):
            if end is not None:
                end.close()
        self.client = self.server = None

    # ---- for a quick look in a cell
    def last_result(self) -> str:
        v = self.last
        if isinstance(v, BaseException):
            return f"{type(v).__name__}: {explain(v).title}"
        return repr(Data(v)) if isinstance(v, (bytes, bytearray)) and len(v) > 32 else repr(v)

    def __repr__(self):
        state = "connected" if self.client is not None else "not connected"
        return f"<socklab ExchangePanel {state}>"


def _check_how(how) -> int:
    """``how`` if it is socket.SHUT_RD, SHUT_WR or SHUT_RDWR; else a ConfigError."""
    if isinstance(how, bool) or not isinstance(how, int) or how not in HOWS:
        names = ", ".join(f"socket.{name}" for name in HOWS.values())
        raise bad_setting(f"how={shown(how)} is not one of {names}.",
                          "Use how=socket.SHUT_WR to stop sending (the usual half-close).",
                          "shutdown(how) ends reading (SHUT_RD), sending (SHUT_WR) or both (SHUT_RDWR).")
    return how
