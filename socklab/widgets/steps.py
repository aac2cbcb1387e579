"""The server's six steps and the client's steps, one button click (or one method call) each.

``StepPanel`` has two buttons: *Server: next step* (socket, bind, listen, accept, exchange, close)
and *Client: next step* (socket, connect, send, recv, close). Each click makes one real socket call
(two for the exchange), shows the kernel's view of the sockets right after it, and keeps the
plain-Python line it ran, so the learner ends with a server program and a client program.
Calls that wait (accept, recv) run in a thread, so the other side's button stays usable.

Live output goes through widget traits and ``Output.append_stdout`` only (never print() from a
thread). Static views: ``history()`` (steps, code and kernel state), ``code()``, ``transcript()``.
``kernel_state(*sockets)`` is the same kernel view for sockets made by hand in cells.
"""
from __future__ import annotations

import html as _html
import os
import socket
import threading
from dataclasses import dataclass, replace

import ipywidgets as W

from .. import kstate, runtime
from ..config import FAMILIES, SocketConfig
from ..errors import explain
from ..notebook import Rich, show
from ..render.html import CSS, explanation_html, table_html, warning_html
from ..trace import Data, Trace, TracedSocket
from .base import (Choice, Panel, Timeout, check_choice, check_range, check_text, family_name,
                   type_name, unencodable)
from ..runtime import Thread

try:  # the kernel-state table renderer (another module of the package; optional here)
    from ..render.state import state_html as _state_html, state_text as _state_text
except ImportError:  # pragma: no cover - only while that module does not exist
    _state_html = _state_text = None

TYPES = ("SOCK_STREAM", "SOCK_DGRAM")
SERVER_STEPS = {True: ("socket", "bind", "listen", "accept", "exchange", "close"),
                False: ("socket", "bind", "exchange", "close")}
WAITS = {("server", "accept"), ("server", "exchange"), ("client", "recv")}
BUFSIZE = 1024


def client_steps(family: str, stream: bool) -> tuple:
    """A datagram client on AF_UNIX binds its own path first: the reply needs an address."""
    if stream:
        return ("socket", "connect", "send", "recv", "close")
    if family == "AF_UNIX":
        return ("socket", "bind", "send", "recv", "close")
    return ("socket", "send", "recv", "close")


class NotYet(Exception):
    """A step that makes no sense yet (e.g. connect before the server has an address)."""


# ---- the kernel's view ---------------------------------------------------------------------
def _raw(s):
    return getattr(s, "sock", s)


def _inode(s):
    try:
        return os.fstat(_raw(s).fileno()).st_ino  # a socket fd's inode is the kernel's socket id
    except (OSError, ValueError):
        return None


def _names(s) -> list:
    out = []
    for fn in ("getsockname", "getpeername"):
        try:
            out.append(getattr(_raw(s), fn)())
        except OSError:
            pass  # not bound / not connected (or closed)
    return out


_LISTENER_STATES = ("LISTEN", "CLOSE", "UNCONN", "UNCONNECTED")


def kernel_rows(where, kind: str, *, server=None, sides: dict | None = None,
                ends: dict | None = None, conns: dict | None = None) -> kstate.Rows:
    """The kernel's rows for the ports ``where`` (``kind`` 'tcp' or 'udp') or AF_UNIX paths, labelled.

    ``server`` is the server's port (or path); ``sides`` maps inode -> side for sockets still open;
    for sockets that may be closed by now, ``ends`` maps a client's own port -> its side and
    ``conns`` a client's port -> the side of the server connection it talks to. Only rows between the ports
    given are kept: a TIME-WAIT left by an earlier run that used one of these port numbers belongs
    to another conversation. Order: the server's socket, then each connection as client end,
    server end.
    """
    sides, ends, conns = sides or {}, ends or {}, conns or {}
    if kind == "unix":
        paths = [where] if isinstance(where, str) else list(where)
        rows, seen, source, reason = [], set(), "", ""
        for p in paths:
            got = kstate.unix_sockets_at(p)
            source, reason = got.source, got.reason
            for r in got:
                if not r.inode or r.inode not in seen:
                    seen.add(r.inode)
                    side = sides.get(r.inode) or ends.get(r.local) or (
                        "server" if r.local == server and r.state in _LISTENER_STATES else
                        "server end" if r.local == server else "client")
                    rows.append(replace(r, side=side + (" (in accept queue)" if "(in accept queue)"
                                                          in r.side else "")))
        rank = {"server": 0}
        rows.sort(key=lambda r: rank.get(r.side, 1 if r.side.startswith("client") else 2))
        return kstate.Rows(rows, source, reason)
    where = set(where)
    got = kstate.sockets_on_ports(where, kind)
    out = []
    for r in got:
        lport, rport = r.local[1], r.remote[1]
        if lport not in where or rport not in where | {0}:
            continue
        if r.inode and r.inode in sides:
            side = sides[r.inode]
        elif lport == server and r.state in _LISTENER_STATES:
            side = "server"
        elif lport == server:
            side = conns.get(rport) or kstate.server_end_name(r)
        else:
            side = ends.get(lport, "client")
        if lport == server and (rport == 0 or r.state in _LISTENER_STATES):
            order = (0, 0, 0)
        elif lport == server:
            order = (1, rport, 1)
        else:
            order = (1, lport, 0)
        out.append((order, replace(r, side=side)))
    out.sort(key=lambda x: x[0])
    return kstate.Rows([r for _, r in out], got.source, got.reason)


def _labels(socks):
    """(inode -> side, client port -> side, client port -> server connection side) for the sockets
    given."""
    sides, ends, conns = {}, {}, {}
    for s in socks:
        side = getattr(s, "side", "") or "socket"
        ino = _inode(s)
        if ino:
            sides[ino] = side
        names = _names(s)
        if names and not isinstance(names[0], str) and "/conn" not in side and side != "server":
            ends[names[0][1]] = side  # a client's own port
        if len(names) == 2 and "/conn" in side and isinstance(names[1], tuple):
            conns[names[1][1]] = side  # a server connection: keyed by its client's port
    return sides, ends, conns


def _where(socks):
    """(ports or paths, kind, server port/path) of the sockets given; where is None if none has an
    address yet. The first socket with an address counts as the server's."""
    kind, where, server = None, set(), None
    for s in socks:
        raw = _raw(s)
        if raw is None or raw.fileno() == -1:
            continue
        names = _names(s)
        if raw.family == getattr(socket, "AF_UNIX", None):
            kind = "unix"
            found = {n for n in names if isinstance(n, str) and n}
        else:
            kind = kind or ("udp" if raw.type == socket.SOCK_DGRAM else "tcp")
            found = {n[1] for n in names if isinstance(n, tuple) and n[1]}
        if server is None and found:  # the first socket that has an address of its own
            own = names[0] if names else None
            server = own if isinstance(own, str) else (own[1] if own else None)
        where |= found
    return (where or None), kind, server


def kernel_state(*socks) -> Rich:
    """What the kernel lists for these sockets (and their peers), as a table: text and HTML.

    Pass the sockets you made by hand, the server's first (socklab.socket(...), the conn from
    accept(), plain sockets): each row is labelled with the side of the socket it belongs to.
    """
    where, kind, server = _where(socks)
    if where is None:
        text = "(the kernel lists nothing for these sockets: none is open with an address)"
        return Rich(text, f'{CSS}<div class="socklab-box"><i>{_html.escape(text)}</i></div>')
    sides, ends, conns = _labels(socks)
    if kind == "unix":
        where = [server] + sorted(where - {server})
    return _render(kernel_rows(where, kind, server=server, sides=sides, ends=ends, conns=conns))


def _render(rows) -> Rich:
    if _state_text is None:  # pragma: no cover
        text = "\n".join(f"{r.side or '?':<14} {r.proto:<12} {r.state}" for r in rows) or "(nothing)"
        return Rich(text, f"<pre>{_html.escape(text)}</pre>")
    return Rich(_state_text(rows), _state_html(rows))


_SHORT = {"CLOSE": "CLOSE (bound, not listening)", "UNCONN": "UNCONN (bound)",
          "UNCONNECTED": "UNCONNECTED (bound)",
          # Which of the two depends on when the peer's delayed ACK of the FIN arrives: a race.
          "FIN-WAIT-1": "FIN-WAIT (closed first)", "FIN-WAIT-2": "FIN-WAIT (closed first)"}


def summary(rows) -> str:
    """One line: each socket's side and state, with the accept queue and unread bytes."""
    if not rows:
        return "nothing listed"
    parts = []
    for r in rows:
        s = f"{r.side or '?'} {_SHORT.get(r.state, r.state)}"
        if r.state == "LISTEN" and r.recv_q is not None:
            s += f" (accept queue {r.recv_q}" + (f", backlog {r.backlog})" if r.backlog is not None
                                                  else ")")
        elif r.state in ("ESTABLISHED", "CONNECTED") and r.recv_q and not r.proto.endswith("dgram"):
            s += f" ({r.recv_q} bytes unread)"
        parts.append(s)
    return "; ".join(parts)


# ---- one step ------------------------------------------------------------------------------
@dataclass
class Step:
    """One click: who, which step, the Python it ran, what came back, the kernel's view after it."""

    n: int
    side: str
    step: str
    code: str
    result: str = ""
    error: str = ""
    state: str = ""

    def text(self) -> str:
        lines = [f"{self.n:2}. {self.side:<6} {self.step}()"]
        lines += [f"      {line}" for line in self.code.splitlines()]
        if self.error:
            lines.append(f"      !! {self.error}")
        elif self.result:
            lines.append(f"      => {self.result}")
        lines.append(f"      kernel: {self.state}")
        return "\n".join(lines)


# ---- the panel -----------------------------------------------------------------------------
class StepPanel(Panel):
    """Build a server and a client one step at a time, with buttons; watch the kernel after each.

    Methods do what the buttons do: ``server_step()``, ``client_step()``, ``reset()``; ``wait()``
    waits for a step still blocked in a thread (accept/recv). Re-running the cell that made a
    panel stops the old one's sockets.
    """

    timeout = Timeout()  # checked when set: every socket of a run waits at most this long

    def __init__(self, family="AF_INET", type="SOCK_STREAM", backlog=5, message="hello",
                 timeout: float = 120.0, name: str | None = None):
        self.timeout = timeout
        families = [f for f in FAMILIES if hasattr(socket, f)]
        family = check_choice("family", family, families, normalise=family_name)
        type = check_choice("type", type, TYPES, normalise=type_name)
        check_range("backlog", backlog, 0, 4096)
        self.family = Choice("family", options=families, value=family, description="family")
        self.type = Choice("type", options=TYPES, value=type, description="type")
        self.backlog = W.BoundedIntText(value=backlog, min=0, max=4096, description="backlog")
        self.message = W.Text(value=check_text("message", message), description="message")
        self.server_button = W.Button(button_style="success", layout=W.Layout(width="auto"))
        self.client_button = W.Button(button_style="info", layout=W.Layout(width="auto"))
        self.reset_button = W.Button(description="Reset", layout=W.Layout(width="auto"))
        for b, cls, fn in ((self.server_button, "server-step", self.server_step),
                           (self.client_button, "client-step", self.client_step),
                           (self.reset_button, "reset", self.reset)):
            b.add_class("socklab-" + cls)
            b.on_click(lambda _b, fn=fn: fn())
        # what the last click did, announced: the code views and tables change too, but read aloud
        # on every redraw they would drown it (see Panel._view)
        self.status = self._view("socklab-status", live=True)
        self.alert = self._view("socklab-alert", live=True)
        self.server_code = self._view("socklab-code")
        self.client_code = self._view("socklab-code")
        self.state_view = self._view("socklab-state")
        self.steps_view = self._view("socklab-steps")
        self.events = self._event_log()
        tab = self._tabs(((self.state_view, "kernel state"), (self.steps_view, "steps so far"),
                          (self.events, "events (live)")))
        column = W.Layout(width="50%")
        super().__init__([
            W.HBox([self.family, self.type]), W.HBox([self.backlog, self.message]),
            W.HBox([W.VBox([self.server_button, self.server_code], layout=column),
                    W.VBox([self.client_button, self.client_code], layout=column)]),
            W.HBox([self.reset_button]), self.status, self.alert, tab])
        self.add_class("socklab-step-panel")
        self._lock = threading.RLock()
        self._init_run()
        self.family.observe(self._changed, names="value")
        self.type.observe(self._changed, names="value")
        self._register(name)
        self._refresh()

    # ---- state of one run
    def _init_run(self):
        self.trace = Trace()
        self.trace.subscribe(self._on_event)
        self.srv: TracedSocket | None = None
        self.conn: TracedSocket | None = None
        self.cli: TracedSocket | None = None
        self.address = None       # the server's address once bound
        self.client_path = None   # AF_UNIX datagram client's own path
        self._ends: dict = {}     # the client's port -> 'client' (its rows outlive its fd)
        self._conns: dict = {}    # the client's port -> the server connection's side
        self.steps: list = []
        self.error = None         # Explanation of the last failed step
        self._next = {"server": 0, "client": 0}
        self._busy: dict = {"server": None, "client": None}  # side -> (step, thread)
        self._stopping = False

    @property
    def stream(self) -> bool:
        return self.type.value == "SOCK_STREAM"

    def steps_for(self, side: str) -> tuple:
        """The steps of ``side`` ('server' or 'client') for the family and type picked."""
        side = check_choice("side", side, ("server", "client"))
        if side == "server":
            return SERVER_STEPS[self.stream]
        return client_steps(self.family.value, self.stream)

    def next_step(self, side: str) -> str | None:
        """The step the side's button does next (None when all are done)."""
        steps = self.steps_for(side)  # checks side
        i = self._next[side]
        return steps[i] if i < len(steps) else None

    def _changed(self, change=None):
        self.reset()

    # ---- text forms for GitHub / nbviewer / nbval
    def _plain_text(self) -> str:
        return (f"socklab step panel ({self.family.value}, {self.type.value}): interactive "
                              "in JupyterLab; the cells below drive it and show its steps as text.")

    def history_text(self) -> str:
        if not self.steps:
            return "(no steps yet)"
        return "\n".join(s.text() for s in self.steps)

    def history(self) -> Rich:
        """Every step so far: the Python it ran, what came back, the kernel's view after it."""
        return Rich(self.history_text(), self._history_html())

    def program(self, side: str) -> str:
        """The Python the side's successful steps ran, as one program."""
        lines = ["import socket"]
        if self.family.value == "AF_UNIX":
            lines.append("import os")
        lines.append("")
        lines += [s.code for s in self.steps if s.side == side and not s.error]
        return "\n".join(lines) + "\n"

    def code(self) -> Rich:
        """The server's and the client's steps so far as two plain-Python programs."""
        text = f"# server\n{self.program('server')}\n# client\n{self.program('client')}"
        return Rich(text, self._code_html("server") + self._code_html("client"))

    def transcript(self) -> Rich:
        """Every socket call, grouped by side (stable when the server's thread and the client race)."""
        return show(self.trace, order="side")

    def state(self) -> Rich:
        """The kernel's view of this panel's sockets now."""
        return _render(self._rows())

    # ---- buttons
    def server_step(self):
        """Do the server's next step (blocking steps run in a thread); return the Step or None."""
        return self._step("server")

    def client_step(self):
        """Do the client's next step (recv runs in a thread); return the Step or None."""
        return self._step("client")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for steps still running in a thread; True when none is left."""
        timeout = self.timeout + 1 if timeout is None else timeout
        for side in ("server", "client"):
            busy = self._busy[side]
            if busy is not None:
                busy[1].join(timeout)
        return not any(self._busy.values())

    def reset(self):
        """Close every socket of this run (waking calls still waiting) and start again."""
        with self._lock:
            self._stopping = True
            busy = [b for b in self._busy.values() if b is not None]
            socks = [self.conn, self.cli, self.srv]
        for s in socks:  # wake accept()/recv(): shutdown, not close (close does not wake them)
            if s is not None and not s.closed:
                try:
                    s.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # never connected or listening: nothing blocks on it
        for _, t in busy:
            t.join(self.timeout + 1)
        with self._lock:
            for s in socks:
                if s is not None:
                    s.close()
            for p in (self.address, self.client_path):
                if isinstance(p, str) and p and not p.startswith("\0") and os.path.exists(p):
                    os.unlink(p)
            self.trace.unsubscribe(self._on_event)
            self._init_run()
        self.alert.value = ""
        self.events.clear_output()
        self._refresh()

    stop = reset

    def run_demo(self) -> Rich:
        """Click through a whole run in an order that shows each state; return the history."""
        self.reset()
        if self.stream:
            order = ("server", "server", "server", "client", "client", "server", "client", "server",
                     "client", "client", "server")
        elif self.family.value == "AF_UNIX":
            order = ("server", "server", "client", "client", "client", "server", "client", "client",
                     "server")
        else:
            order = ("server", "server", "client", "client", "server", "client", "client", "server")
        for side in order:
            if self._step(side) is None:  # the step could not be made (the alert says why)
                break
            if not self.wait():
                break
        return self.history()

    # ---- the machinery
    def _say(self, html_text: str):
        self.alert.value = warning_html(html_text)

    def _step(self, side: str):
        with self._lock:
            if self not in runtime.running():  # stopped by socklab.stop_all(): running again now
                runtime.register(self.key, self, explicit=False)
            busy = self._busy[side]
            if busy is not None:
                hint = "connect or send from the client" if side == "server" else "let the server reply"
                self._say(f"The {side} is still waiting in <code>{busy[0]}()</code>: {hint}, or press Reset.")
                return None
            name = self.next_step(side)
            if name is None:
                self._say(f"The {side} has done all its steps. Press Reset to start again.")
                return None
            try:
                code, action = getattr(self, f"_{side}_{name}")()
            except NotYet as exc:
                self._say(_html.escape(str(exc)))
                return None
            self.alert.value = ""
            step = Step(0, side, name, code)
            self._stopping = False
            if (side, name) in WAITS:
                t = Thread(target=self._run, args=(step, action),
                           name=f"socklab-step-{side}")
                self._busy[side] = (name, t)
                t.start()
                self._refresh()
                return step
        self._run(step, action)
        return step

    def _run(self, step: Step, action):
        try:
            step.result = action() or ""
            ok = True
        except Exception as exc:
            ok = False
            exp = explain(exc, call=step.step)
            step.error = exp.error or exp.title
            with self._lock:
                if self._stopping:
                    self._busy[step.side] = None
                    return
                self.error = exp
                self.alert.value = explanation_html(exp)
                self._failed(step)
        with self._lock:
            if self._stopping:
                self._busy[step.side] = None
                return
            if ok:
                self._next[step.side] += 1
            step.state = self._summary()
            step.n = len(self.steps) + 1
            self.steps.append(step)
            self._busy[step.side] = None
        self._refresh()

    def _failed(self, step: Step):
        """After a failed connect() the socket's state is not portable: start the client again."""
        if step.side == "client" and step.step in ("connect", "bind") and self.cli is not None:
            self.cli.close()
            self.cli = None
            self._next["client"] = 0
            step.error += " (the client starts again with a new socket)"

    def _summary(self) -> str:
        if self.address is None:
            return "nothing listed (no socket has an address yet)"
        try:
            return summary(self._rows())
        except Exception as exc:  # a socket table that cannot be read must not break the panel
            return f"(not available here: {exc})"

    def _rows(self):
        if self.address is None:
            return kstate.Rows([], "", "")
        sides = {ino: s.side for s in (self.srv, self.conn, self.cli) if s is not None and (ino := _inode(s))}
        if self.cli is not None:
            for n in _names(self.cli)[:1]:
                if isinstance(n, tuple) and n[1]:
                    self._ends[n[1]] = "client"
        if self.family.value == "AF_UNIX":
            where = [self.address] + ([self.client_path] if self.client_path else [])
            return kernel_rows(where, "unix", server=self.address, sides=sides)
        ports = {self.address[1]} | set(self._ends)
        return kernel_rows(ports, "tcp" if self.stream else "udp", server=self.address[1],
                           sides=sides, ends=self._ends, conns=self._conns)

    def _config(self) -> SocketConfig:
        return SocketConfig(family=self.family.value, type=self.type.value,
                            backlog=self.backlog.value).validate()

    def _msg(self) -> bytes:
        try:
            return self.message.value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, set from code
            raise NotYet(unencodable("The message", self.message.value, exc)
                         + " Type the message again without it.") from None

    # ---- server steps: each returns (python code, action)
    def _server_socket(self):
        c = self._config()

        def act():
            self.srv = TracedSocket.create(c.af, c.kind, trace=self.trace, side="server")
            self.srv.settimeout(self.timeout)
        return (f"srv = socket.socket(socket.{c.family}, socket.{c.type})\n"
                f"srv.settimeout({self.timeout:g})  # no call waits forever"), act

    def _server_bind(self):
        c = self._config()
        addr = c.path if c.family == "AF_UNIX" else (c.host, 0)

        def act():
            self.srv.bind(addr)
            self.address = self.srv.getsockname()
            return f"srv.getsockname() = {_show(self.address)}"
        if c.family == "AF_UNIX":
            return f"PATH = {runtime.display_path(addr)!r}\nsrv.bind(PATH)", act
        return f"srv.bind({addr!r})  # port 0: any free port", act

    def _server_listen(self):
        backlog = self.backlog.value

        def act():
            self.srv.listen(backlog)
        return f"srv.listen({backlog})", act

    def _server_accept(self):
        def act():
            conn, addr = self.srv.accept()
            conn.settimeout(self.timeout)
            self.conn = conn
            if isinstance(addr, tuple):
                self._conns[addr[1]] = conn.side
            return f"addr = {_show(addr)}"
        return f"conn, addr = srv.accept()\nconn.settimeout({self.timeout:g})", act

    def _server_exchange(self):
        if self.stream:
            def act():
                data = self.conn.recv(BUFSIZE)
                if not data:
                    return "data = b'' (the client has closed: nothing to echo)"
                self.conn.sendall(data)
                return f"data = {_shown(data)}, echoed"
            return f"data = conn.recv({BUFSIZE})\nconn.sendall(data)  # echo it back", act

        def act():
            data, addr = self.srv.recvfrom(BUFSIZE)
            if addr:  # an unbound AF_UNIX sender has no address to answer
                self.srv.sendto(data, addr)
            return f"data = {_shown(data)} from {_show(addr)}, echoed"
        return f"data, addr = srv.recvfrom({BUFSIZE})\nsrv.sendto(data, addr)  # echo it back", act

    def _server_close(self):
        unix = self.family.value == "AF_UNIX"

        def act():
            if self.conn is not None:
                self.conn.close()
            self.srv.close()
            if unix and isinstance(self.address, str) and os.path.exists(self.address):
                os.unlink(self.address)
        code = ("conn.close()\n" if self.conn is not None else "") + "srv.close()"
        if unix:
            code += "\nos.unlink(PATH)  # the socket file outlives close()"
        return code, act

    # ---- client steps
    def _client_socket(self):
        c = self._config()

        def act():
            self.cli = TracedSocket.create(c.af, c.kind, trace=self.trace, side="client")
            self.cli.settimeout(self.timeout)
        return (f"cli = socket.socket(socket.{c.family}, socket.{c.type})\n"
                f"cli.settimeout({self.timeout:g})"), act

    def _need_address(self, what):
        if self.address is None:
            raise NotYet(f"The server has no address yet, so there is nothing to {what}: "
                         "do the server's socket() and bind() steps first.")
        return self.address

    def _client_connect(self):
        addr = self._need_address("connect to")

        def act():
            self.cli.connect(addr)
            return f"cli.getsockname() = {_show(self.cli.getsockname())}"
        return f"cli.connect({_code_addr(addr)})", act

    def _client_bind(self):
        path = runtime.private_path("step-client")

        def act():
            self.cli.bind(path)
            self.client_path = path
        code = f"CLIENT_PATH = {runtime.display_path(path)!r}\ncli.bind(CLIENT_PATH)  # the reply's address"
        return code, act

    def _client_send(self):
        msg = self._msg()
        if self.stream:
            def act():
                self.cli.sendall(msg)
            return f"cli.sendall({_shown(msg)})", act
        addr = self._need_address("send to")

        def act():
            self.cli.sendto(msg, addr)
        return f"cli.sendto({_shown(msg)}, {_code_addr(addr)})", act

    def _client_recv(self):
        if self.stream:
            def act():
                reply = self.cli.recv(BUFSIZE)
                return f"reply = {_shown(reply)}" + (" (the server has closed)" if not reply else "")
            return f"reply = cli.recv({BUFSIZE})", act

        def act():
            reply, addr = self.cli.recvfrom(BUFSIZE)
            return f"reply = {_shown(reply)}"
        return f"reply, addr = cli.recvfrom({BUFSIZE})", act

    def _client_close(self):
        def act():
            self.cli.close()
            if self.client_path and os.path.exists(self.client_path):
                os.unlink(self.client_path)
        return "cli.close()" + ("\nos.unlink(CLIENT_PATH)" if self.client_path else ""), act

    # ---- live views
    def _button_label(self, side: str) -> str:
        busy = self._busy[side]
        who = side.capitalize()
        if busy is not None:
            return f"{who}: waiting in {busy[0]}() ..."
        name = self.next_step(side)
        if name is None:
            return f"{who}: done"
        return f"{who} step {self._next[side] + 1}/{len(self.steps_for(side))}: {name}()"

    def _code_html(self, side: str) -> str:
        title = "server" if side == "server" else "client"
        return (f'{CSS}<div class="socklab-box"><b>{title}</b><pre style="white-space:pre;overflow-x:auto">'
                f"{_html.escape(self.program(side))}</pre></div>")

    def _history_html(self) -> str:
        e = _html.escape
        bad = '<span class="socklab-bad">!! {}</span>'  # as the text form: not colour alone
        rows = "".join(
            f"<tr><td>{s.n}</td><td><b>{e(s.side)}</b></td><td><pre>{e(s.code)}</pre></td>"
            f"<td>{bad.format(e(s.error)) if s.error else e(s.result)}</td>"
            f"<td>{e(s.state)}</td></tr>" for s in self.steps)
        if not rows:
            rows = '<tr><td colspan="5"><i>no steps yet</i></td></tr>'
        head = ("#", "side", "Python", "result", "kernel state after it")
        return f'{CSS}<div class="socklab-box">{table_html("steps so far", head, [rows])}</div>'

    def _status_html(self) -> str:
        """The last step in one line (what a screen reader announces after a click), and who waits."""
        e = _html.escape
        parts = [f"{side} waiting in <code>{busy[0]}()</code> ..." for side, busy in self._busy.items()
                 if busy is not None]
        if self.steps:
            s = self.steps[-1]
            outcome = f"!! {e(s.error)}" if s.error else f"=> {e(s.result)}" if s.result else "done"
            parts.insert(0, f"step {s.n}, {e(s.side)} <code>{e(s.step)}()</code>: {outcome}; "
                            f"kernel: {e(s.state)}")
        return "; ".join(parts)

    def _refresh(self):
        """Redraw buttons, code and state (from any thread: widget traits only)."""
        with self._lock:
            self.server_button.description = self._button_label("server")
            self.client_button.description = self._button_label("client")
            self.server_button.disabled = self._busy["server"] is not None
            self.client_button.disabled = self._busy["client"] is not None
            self.backlog.disabled = not self.stream
            self.server_code.value = self._code_html("server")
            self.client_code.value = self._code_html("client")
            self.steps_view.value = self._history_html()
            self.status.value = self._status_html()
            try:
                st = self.state()
                self.state_view.value = st.html or f"<pre>{_html.escape(st.text)}</pre>"
            except Exception as exc:  # a socket table that cannot be read must not break the panel
                self.state_view.value = f"<i>kernel state not available: {_html.escape(str(exc))}</i>"


def _show(addr) -> str:
    if isinstance(addr, str):
        return repr(runtime.display_path(addr)) if addr else "'' (unbound)"
    return repr(addr)


def _shown(data: bytes) -> str:
    """``data`` as the trace and LabPanel show it: whole when short, else its first bytes and its
    size (a huge message box must not make every view of the panel huge)."""
    return repr(Data(data))


def _code_addr(addr) -> str:
    return "PATH" if isinstance(addr, str) else repr(addr)
