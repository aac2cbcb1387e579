"""Bad input through the public API and through the LabPanel: explained, bounded, leaving nothing behind.

Each case of the matrix runs twice: through the public API (SocketConfig / Server / Client /
socklab.socket), where it must raise a ``SocklabError`` whose explanation names the problem (or,
for inputs that are allowed, show a warning or note that does), and, where the input can be
entered in a panel, through ``socklab.widgets.LabPanel``: set the widgets, call the button method,
and the panel's alert shows the explanation while no exception escapes. Every case runs under the
``leakcheck`` fixture (fds, threads, listening sockets, rundir files), within a time bound, and
ends with a fresh echo exchange (API and panel): the kernel is still usable.

Real sockets only: a resetting peer closes with SO_LINGER (1, 0); a peer that never reads fills
the buffers until socklab's timeout ends the send; unknown hosts are names that can never resolve,
so no case waits on DNS. Privilege cases run as uid 65534 in a subprocess (see conftest).

Run: .venv/bin/python -m pytest tests/test_bad_input.py
"""
from __future__ import annotations

import html
import json
import os
import shutil
import socket
import struct
import subprocess
import pathlib
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

import socklab
from socklab import Client, Server, SocketConfig
from socklab.config import can_raw, somaxconn, unprivileged_port_start
from socklab.render.html import transcript_html
from socklab.widgets import LabPanel

HAS_UNIX = hasattr(socket, "AF_UNIX")
HAS_V6 = socklab.runtime.has_ipv6()
LINUX = sys.platform.startswith("linux")
TIMEOUT = 5.0
PANEL_CLIENT_TIMEOUT = 5.0  # LabPanel's clients use socklab's default timeout

needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="this Python has no AF_UNIX sockets")
needs_v6 = pytest.mark.skipif(not HAS_V6, reason="IPv6 loopback (::1) is not available here")

pytestmark = pytest.mark.skipif(not LINUX, reason="leak checks and error codes are Linux's")


# ===================================================================== the environment of a case

class Env:
    """Peers and files a case needs, made on demand and cleaned up (in reverse order) by ``close()``."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="slbad-", dir="/tmp")  # short: AF_UNIX paths fit
        self._cleanups: list = []
        self._panel = None
        self.reset_done = threading.Event()
        self.connected = threading.Event()  # the client's connect() has returned
        self.release = threading.Event()
        self.closed = False

    def later(self, fn):
        self._cleanups.append(fn)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.release.set()  # a handler that never reads returns now
        if self._panel is not None:
            self._panel.stop()
        for fn in reversed(self._cleanups):
            fn()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- files
    def stale_path(self) -> str:
        """An AF_UNIX socket file whose socket is closed: the file outlives close()."""
        path = os.path.join(self.tmp, "stale.sock")
        if os.path.exists(path):
            return path
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)
        assert os.path.exists(path)
        return path

    def missing_path(self) -> str:
        return os.path.join(self.tmp, "nobody-here.sock")

    # ---- plain sockets holding ports
    def _plain(self, listen: bool) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        if listen:
            s.listen()
        self.later(s.close)
        return s.getsockname()[1]

    def closed_port(self) -> int:
        """A port bound but not listening: connecting to it is refused, and nobody else can take it."""
        return self._plain(listen=False)

    def taken_port(self) -> int:
        """A port a plain socket is listening on."""
        return self._plain(listen=True)

    # ---- socklab peers with bad manners
    def server(self, handler=None, **kw) -> Server:
        srv = Server(handler=handler, name=f"bad-input/peer{len(self._cleanups)}", **kw).start()
        self.later(srv.stop)
        return srv

    def resetting_server(self) -> Server:
        """Accepts, then, once the client's connect() has returned, closes with SO_LINGER (1, 0):
        the kernel sends RST instead of FIN. (A reset before that makes connect() itself fail with
        ECONNRESET, when the client is slow to pick up its finished handshake: not this case.)"""
        def reset(conn, server):
            self.connected.wait(TIMEOUT)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            self.reset_done.set()
        return self.server(reset)

    def never_reading_server(self) -> Server:
        """Accepts and never calls recv(): the client's sends fill both buffers, then block."""
        def sit(conn, server):
            self.release.wait(60)  # set by close(); the bound only guards against a broken test
        return self.server(sit)

    def silent_server(self) -> Server:
        """Reads everything, never answers: the client's recv() waits for its timeout."""
        def swallow(conn, server):
            while conn.recv(server.max_message):
                pass
        return self.server(swallow)

    def binary_server(self, reply=b"\xff\xfe<script>alert(1)</script>") -> Server:
        """Answers every message with bytes that are not UTF-8 (and look like HTML)."""
        def answer(conn, server):
            while conn.recv(server.max_message):
                conn.sendall(reply)
        return self.server(answer)

    # ---- the panel
    def panel(self) -> LabPanel:
        if self._panel is None:
            self._panel = LabPanel(name="bad-input/panel")
        return self._panel


@pytest.fixture
def env(leakcheck):  # after leakcheck: cleaned up before the leak check looks
    e = Env()
    yield e
    e.close()


# ===================================================================== panel helpers

def set_panel(p: LabPanel, family="AF_INET", type="SOCK_STREAM", host="", port=0, backlog=5,
              all_interfaces=False, message="hello"):
    """Set the controls as a learner would; family first (changing it clears the host box).
    A callable ``message`` is called first (big messages are made only when a case runs)."""
    message = message() if callable(message) else message
    p.family.value = family
    p.type.value = type
    p.host.value = host
    p.port.value = port
    p.backlog.value = backlog
    p.all_interfaces.value = all_interfaces
    p.message.value = message


def click_start(**settings):
    def go(p, env):
        set_panel(p, **settings)
        p.start_server()
    return go


def click_connect(**settings):
    """Connect with no server of the panel's own: the panel connects to the address in its controls."""
    def go(p, env):
        set_panel(p, **settings)
        p.connect()
    return go


def click_send(**settings):
    """Start the panel's server, connect, send."""
    def go(p, env):
        set_panel(p, **settings)
        p.start_server()
        assert p.server is not None and p.server.running, p.alert.value
        p.send_message()
    return go


def click_send_to(peer, family="AF_INET", wait=None, **settings):
    """Point the panel at ``peer(env)`` (a socklab server with bad manners), connect and send."""
    def go(p, env):
        # The API half of the case set these: a peer waiting on them must wait for the panel.
        env.connected.clear()
        env.reset_done.clear()
        srv = peer(env)
        if family == "AF_UNIX":
            set_panel(p, family=family, host=srv.address, **settings)
        else:
            set_panel(p, family=family, host=srv.address[0], port=srv.address[1], **settings)
        p.connect()
        assert p.client is not None, p.alert.value
        env.connected.set()
        if wait is not None:
            assert getattr(env, wait).wait(TIMEOUT), f"{wait} never happened"
        p.send_message()
    return go


# ===================================================================== API helpers

def start(**kw):
    def go(env):
        srv = Server(name="bad-input/api", **kw)
        srv.start()
        return srv  # not reached when the input is refused
    return go


def connect(target, **kw):
    def go(env):
        c = Client(target(env) if callable(target) else target, name="bad-input/api-client", **kw)
        env.later(c.close)
        c.connect()
    return go


def with_echo(fn, **server_kw):
    """Run ``fn(client, server, env)`` against a fresh echo server of the case."""
    def go(env):
        srv = env.server(**server_kw)
        c = Client(srv, name="bad-input/api-client")
        env.later(c.close)
        return fn(c, srv, env)
    return go


def with_peer(peer, fn, **client_kw):
    def go(env):
        srv = peer(env)
        c = Client(srv, name="bad-input/api-client", **client_kw)
        env.later(c.close)
        return fn(c, srv, env)
    return go


# ---- API functions of the allowed-but-explained cases: they return the text the learner is shown

def negative_backlog(env):
    srv = env.server(backlog=-5)
    with Client(srv) as c:
        assert c.request(b"neg") == b"neg"  # listen(-5) is listen(0): still serves
    return " ".join(srv.warnings)


def huge_backlog(env):
    srv = env.server(backlog=10 ** 6)
    with Client(srv) as c:
        assert c.request(b"big") == b"big"
    return " ".join(srv.warnings)


def all_interfaces_allowed(env):
    srv = env.server(host="0.0.0.0", allow_all_interfaces=True)
    assert srv.address[0] == "0.0.0.0"
    with Client(("127.0.0.1", srv.address[1])) as c:
        assert c.request(b"any") == b"any"
    return " ".join(srv.warnings)


def empty_message(c, srv, env):
    assert c.request(b"") == b""
    c.sendall(b"after")  # the connection is still fine
    assert c.recv() == b"after"
    notes = [e.args[0] for e in c.trace if e.call == "note" and e.side == c.side]
    assert notes, list(c.trace)
    return " ".join(notes)


def huge_message(c, srv, env):
    data = bytes(range(256)) * 4096  # 1 MiB, 1024 times max_message
    assert c.request(data) == data  # the exchange completes
    sizes = [e.args[0] for e in srv.trace if e.side.startswith("server/conn") and e.call == "recv"]
    assert sizes and max(sizes) <= srv.max_message == 1024, sizes
    got = [e.nbytes / e.count for e in srv.trace if e.side.startswith("server/conn") and e.call == "recv"]
    assert max(got) <= 1024, got  # per call, on average over folded runs; exact check in test_security
    return f"echoed {len(data)} bytes, read at most {srv.max_message} per recv"


NON_UTF8 = b"\xff\xfe<script>alert(1)</script>"


def non_utf8_bytes(c, srv, env):
    assert c.request(NON_UTF8) == NON_UTF8  # echoed intact
    text = socklab.transcript(c.trace)
    page = transcript_html(c.trace)
    assert r"\xff\xfe" in text, text
    assert "<script>" not in page and "&lt;script&gt;" in page, page
    return text


def send_after_close(c, srv, env):
    c.connect()
    c.close()
    c.send(b"late")


def stale_unix_bind(env):
    path = env.stale_path()
    try:
        Server(family="AF_UNIX", path=path, name="bad-input/api").start()
    finally:
        assert os.path.exists(path)  # socklab never removes a file it did not create


def raw_proto0(env):
    socklab.socket("AF_INET", "SOCK_RAW", name="bad-input/raw")


def short_ipv4(env):
    srv = env.server(host="127.1")
    assert srv.address[0] == "127.0.0.1"
    return " ".join(srv.warnings)


def unix_path_with_nul(env):
    path = os.path.join(env.tmp, "demo\0x")
    try:
        Server(family="AF_UNIX", path=path, name="bad-input/api").start()
    finally:
        assert os.listdir(env.tmp) == [], os.listdir(env.tmp)  # no file left at the cut-off path


def unix_path_taken_by(kind):
    def go(env):
        path = os.path.join(env.tmp, "taken")
        os.mkdir(path) if kind == "directory" else open(path, "w").close()
        try:
            Server(family="AF_UNIX", path=path, name="bad-input/api").start()
        finally:
            assert os.path.isdir(path) if kind == "directory" else os.path.isfile(path)  # left alone
    return go


def start_twice(env):
    env.server().start()


def wrong_expect_then_fine(c, srv, env):
    try:
        c.request(b"hi", expect="2")
    finally:  # refused before sending: nothing unread is left to answer the next request
        assert c.request(b"next") == b"next"


# ===================================================================== the matrix

@dataclass
class Case:
    id: str
    api: object                 # fn(env): raises an explained error, or returns the text shown
    title: object               # str or tuple of acceptable titles (case-insensitive substring)
    words: tuple = ()           # in what/why/fix (API) and in the panel's alert
    panel: object = None        # fn(panel, env): set widgets and click; None: not enterable in a panel
    panel_title: object = None  # when the panel shows another explanation than the API
    panel_where: str = "alert"  # alert, status or transcript
    raises: bool = True
    bound: float = 3.0          # seconds the whole case (API + panel) may take
    no_panel: str = ""          # why the panel cannot take this input
    marks: tuple = ()
    nobody: dict = field(default_factory=dict)  # runs as uid 65534: {"api": ..., "panel": ...}


SLOW = 2 * PANEL_CLIENT_TIMEOUT + 5  # a panel case that waits for its client's timeout

CASES = [
    # ---- wrong types
    Case("family-unknown", start(family="AF_BOGUS"), "Unknown socket family", ("AF_INET",),
         no_panel="the family is a dropdown of the three families"),
    Case("type-float", start(type=1.5), "Unknown socket type", ("SOCK_STREAM",),
         no_panel="the type is a dropdown"),
    Case("port-str", start(port="8080"), "Port must be an int", ("8080",),
         no_panel="the port box only takes integers"),
    Case("port-float", start(port=8080.5), "Port must be an int", ("0",),
         no_panel="the port box only takes integers"),
    Case("host-int", start(host=127001), "Host must be a string", ("quotes",),
         no_panel="the host box is text"),
    Case("backlog-str", start(backlog="5"), "Backlog must be a whole number", ("5",),
         no_panel="the backlog box only takes integers"),
    Case("send-str", with_echo(lambda c, s, e: (c.connect(), c.send("hello"))), "Sockets send bytes, not str",
         ("encode",), no_panel="the panel encodes its message box as UTF-8"),
    Case("recv-bufsize-str", with_echo(lambda c, s, e: (c.connect(), c.recv("1024"))), "Wrong argument type",
         ("recv(1024)",), no_panel="the panel has no bufsize box"),
    Case("timeout-str", connect(lambda env: env.server().address, timeout="5"), "Invalid timeout",
         ("seconds",), no_panel="the panel has no timeout box"),
    Case("timeout-negative", connect(lambda env: env.server().address, timeout=-1), "Invalid timeout",
         ("seconds",), no_panel="the panel has no timeout box"),
    Case("server-max-message-0", start(max_message=0), "Invalid max_message", ("65536",),
         no_panel="the panel uses socklab's caps"),
    Case("server-lifetime-str", start(lifetime="long"), "Invalid lifetime", ("seconds",),
         no_panel="the panel uses socklab's caps"),
    Case("socket-family-unknown", lambda env: socklab.socket("AF_PACKETZ"), "Unknown socket family",
         ("AF_UNIX",), no_panel="the family is a dropdown"),
    Case("socket-protocol-unknown", lambda env: socklab.socket("inet", "dgram", 999, name="bad-input/proto"),
         "Invalid argument", ("protocol", "IPPROTO_"), no_panel="the panel picks the protocol itself"),
    Case("raw-protocol-0", raw_proto0, "Protocol not supported",
         ("IPPROTO_ICMP",),
         no_panel="the panel always passes IPPROTO_ICMP(V6) for raw sockets"),

    Case("config-given-by-position", lambda env: Server("AF_UNIX"), "config must be a SocketConfig",
         ("family='AF_UNIX'",), no_panel="the panel builds its configuration itself"),
    Case("start-twice", start_twice, "Already started", ("new Server",),
         no_panel="the panel's Start stops its old server first"),
    Case("request-not-bytes", with_echo(lambda c, s, e: c.request(123)), "request() sends bytes",
         ("b'hello'",), no_panel="the panel sends its message box's text"),
    Case("request-expect-str", with_echo(wrong_expect_then_fine), "Invalid expect", ("int",),
         no_panel="the panel has no expect box"),
    Case("ping-count-float", lambda env: socklab.ping(count=2.5), "Invalid count", ("whole number",),
         no_panel="the ping panel is tested in test_widgets_icmp"),
    Case("ping-timeout-none", lambda env: socklab.ping(timeout=None), "Invalid timeout", ("seconds",),
         no_panel="the ping panel is tested in test_widgets_icmp"),

    # ---- ports
    Case("port-70000", start(port=70000), "Port out of range", ("65535",),
         no_panel="the port box is bounded to 0-65535"),
    Case("port-negative", start(port=-1), "Port out of range", ("65535",),
         no_panel="the port box is bounded to 0-65535"),
    Case("client-port-70000", connect(("127.0.0.1", 70000)), "Port out of range", ("65535",),
         no_panel="the port box is bounded to 0-65535"),
    Case("client-port-str", connect(("127.0.0.1", "80")), "Wrong address format", ("int",),
         no_panel="the port box only takes integers"),
    Case("port-in-use", lambda env: start(port=env.taken_port())(env), "Address already in use",
         ("port 0",), panel=lambda p, env: click_start(port=env.taken_port())(p, env)),
    Case("connect-refused", connect(lambda env: ("127.0.0.1", env.closed_port())), "Connection refused",
         ("start the server",), panel=lambda p, env: click_connect(host="127.0.0.1",
                                                                   port=env.closed_port())(p, env)),

    # ---- host names that can never resolve: refused before any resolver is asked
    Case("host-with-spaces", start(host="no such host"), "Invalid host name", ("spaces", "127.0.0.1"),
         panel=click_start(host="no such host")),
    Case("host-empty-label", connect(("bad..name", 80)), "Invalid host name", ("empty label",),
         panel=click_connect(host="bad..name", port=80)),
    Case("host-bad-label", start(host="-dash.example"), "Invalid host name", ("hyphen",),
         panel=click_start(host="-dash.example")),
    Case("host-port-in-one", start(host="127.0.0.1:8080"), "Host and port in one string", ("8080",),
         panel=click_start(host="127.0.0.1:8080")),
    Case("host-not-local", start(host="203.0.113.5"), "Cannot assign requested address", ("127.0.0.1",),
         panel=click_start(host="203.0.113.5")),
    Case("all-interfaces-short-form", start(host="0"), "all interfaces", ("0.0.0.0", "allow_all_interfaces"),
         panel=click_start(host="0")),
    Case("all-interfaces-ipv6-spelling", start(family="AF_INET6", host="0::0"), "all interfaces",
         ("::", "allow_all_interfaces"), panel=click_start(family="AF_INET6", host="0::0"), marks=(needs_v6,)),
    Case("all-interfaces-mapped-ipv4", start(family="AF_INET6", host="::ffff:0.0.0.0"), "all interfaces",
         ("allow_all_interfaces",), panel=click_start(family="AF_INET6", host="::ffff:0.0.0.0"),
         marks=(needs_v6,)),
    Case("ipv4-short-form", short_ipv4, "old short form", ("127.0.0.1",), raises=False,
         panel=click_start(host="127.1"), panel_title="127.0.0.1", panel_where="status"),
    Case("host-is-a-url", start(host="http://localhost:8080/index.html"), "A URL is not a host",
         ("host='localhost'", "port=8080"), panel=click_start(host="http://localhost:8080/index.html")),
    Case("host-port-bracketed", start(family="AF_INET6", host="[::1]:8080"), "Host and port in one string",
         ("host='::1'", "port=8080"), panel=click_start(family="AF_INET6", host="[::1]:8080")),
    Case("host-port-not-a-number", start(host="localhost:http"), "Host and port in one string",
         ("host='localhost'", "as an int"), panel=click_start(host="localhost:http")),
    Case("zone-on-a-global-address", start(family="AF_INET6", host="::1%lo"), "zone", ("host='::1'",),
         panel=click_start(family="AF_INET6", host="::1%lo")),
    Case("link-local-without-zone", start(family="AF_INET6", host="fe80::1"), "link-local", ("%eth0",),
         panel=click_start(family="AF_INET6", host="fe80::1")),
    Case("link-local-not-on-that-interface", start(family="AF_INET6", host="fe80::1%lo"),
         "Cannot assign requested address", ("fe80::1",),
         panel=click_start(family="AF_INET6", host="fe80::1%lo"), marks=(needs_v6,)),
    Case("link-local-unknown-interface", start(family="AF_INET6", host="fe80::1%nosuch0"), "No such interface",
         ("lo",), panel=click_start(family="AF_INET6", host="fe80::1%nosuch0")),
    Case("all-interfaces-not-allowed", start(host="0.0.0.0"), "all interfaces",
         ("allow_all_interfaces",), panel=click_start(host="0.0.0.0")),
    Case("all-interfaces-allowed", all_interfaces_allowed, "all interfaces", ("other machines",),
         panel=click_send(host="0.0.0.0", all_interfaces=True), raises=False),

    # ---- family / address mismatches
    Case("inet-with-ipv6-address", start(family="AF_INET", host="::1"), "IPv6 address on an IPv4 socket",
         ("AF_INET6",), panel=click_start(family="AF_INET", host="::1")),
    Case("inet6-with-ipv4-address", start(family="AF_INET6", host="127.0.0.1"),
         "IPv4 address on an IPv6 socket", ("::1",), panel=click_start(family="AF_INET6", host="127.0.0.1"),
         marks=(needs_v6,)),
    Case("unix-with-host", start(family="AF_UNIX", host="127.0.0.1"), "AF_UNIX takes a path", ("path",),
         panel=click_start(family="AF_UNIX", host="127.0.0.1"),
         panel_title="An IP address is not an AF_UNIX path", marks=(needs_unix,)),
    Case("unix-client-to-tuple", connect(("127.0.0.1", 80), family="AF_UNIX"), "Wrong address format",
         ("AF_UNIX a path",), no_panel="an AF_UNIX panel takes a path, never a tuple", marks=(needs_unix,)),
    Case("inet-client-to-path", connect("/tmp/socklab-demo.sock"), "Wrong address format", ("tuple",),
         panel=click_connect(host="/tmp/socklab-demo.sock", port=80), panel_title="Invalid host name"),

    # ---- AF_UNIX paths
    Case("unix-path-too-long", start(family="AF_UNIX", path="/tmp/" + "p" * 115), "AF_UNIX path too long",
         ("108",), panel=click_start(family="AF_UNIX", host="/tmp/" + "p" * 115), marks=(needs_unix,)),
    Case("unix-stale-file-bind", stale_unix_bind, "Address already in use", ("os.unlink",),
         panel=lambda p, env: click_start(family="AF_UNIX", host=env.stale_path())(p, env),
         marks=(needs_unix,)),
    Case("unix-stale-file-connect", connect(lambda env: env.stale_path(), family="AF_UNIX"),
         "Connection refused", ("start the server",),
         panel=lambda p, env: click_connect(family="AF_UNIX", host=env.stale_path())(p, env),
         marks=(needs_unix,)),
    Case("unix-path-with-nul", unix_path_with_nul, "NUL byte", ("abstract",), marks=(needs_unix,),
         no_panel="the panel's path box is text, and a NUL byte cannot be typed into it"),
    Case("unix-path-is-a-file", unix_path_taken_by("file"), "taken by another file", ("not a socket",),
         marks=(needs_unix,), panel=lambda p, env: (open(os.path.join(env.tmp, "f"), "w").close(),
                                                    click_start(family="AF_UNIX",
                                                                host=os.path.join(env.tmp, "f"))(p, env))),
    Case("unix-path-is-a-directory", unix_path_taken_by("directory"), "taken by another file",
         ("a directory",), marks=(needs_unix,), panel=click_start(family="AF_UNIX", host="/tmp")),
    Case("unix-missing-directory", start(family="AF_UNIX", path="/nonexistent-socklab/x.sock"),
         "Directory does not exist", ("directory",),
         panel=click_start(family="AF_UNIX", host="/nonexistent-socklab/x.sock"), marks=(needs_unix,)),
    Case("unix-connect-missing-file", connect(lambda env: env.missing_path(), family="AF_UNIX"),
         "No such file or directory", ("server",),
         panel=lambda p, env: click_connect(family="AF_UNIX", host=env.missing_path())(p, env),
         marks=(needs_unix,)),

    # ---- privileges: as uid 65534 in a subprocess
    Case("raw-without-privileges", None, "Raw sockets need privileges", ("CAP_NET_RAW",),
         nobody={"api": {"type": "SOCK_RAW"}, "panel": {"type": "SOCK_RAW"},
                 "socket": ["AF_INET", "SOCK_RAW", socket.IPPROTO_ICMP]}),
    Case("privileged-port-as-non-root", None, "Privileged port", ("1024",),
         nobody={"api": {"port": 80}, "panel": {"port": 80}},
         marks=(pytest.mark.skipif(unprivileged_port_start() <= 80,
                                   reason="ip_unprivileged_port_start <= 80: port 80 is not privileged"),)),

    # ---- backlog
    Case("backlog-negative", negative_backlog, "negative", ("0",), panel=click_send(backlog=-5), raises=False),
    Case("backlog-huge", huge_backlog, "somaxconn", (), panel=click_send(backlog=100000), raises=False,
         marks=(pytest.mark.skipif(somaxconn() is None or somaxconn() >= 100000,
                                   reason="net.core.somaxconn unknown or not below 100000"),)),
    Case("backlog-overflow", start(backlog=2 ** 31), "Backlog out of range", ("C int",),
         no_panel="the backlog box is bounded to -10..100000"),

    # ---- messages
    Case("empty-message", with_echo(empty_message), "empty message", ("b''",),
         panel=click_send(message=""), panel_where="transcript", raises=False),
    Case("huge-message", with_echo(huge_message, max_message=1024), "echoed 1048576 bytes", (),
         panel=click_send(message="x" * 300_000), panel_title="(300000 bytes)", panel_where="status",
         raises=False),
    Case("udp-message-too-long", with_echo(lambda c, s, e: c.request(b"x" * 70000), type="SOCK_DGRAM"),
         "Message too long", ("65507",), panel=click_send(type="SOCK_DGRAM", message="x" * 70000)),
    Case("non-utf8-bytes", with_echo(non_utf8_bytes), r"b'\xff\xfe<script>", (),
         panel=click_send_to(lambda env: env.binary_server()),
         panel_title=r"b&#x27;\xff\xfe&lt;script&gt;", panel_where="status", raises=False),
    Case("text-not-encodable", with_echo(lambda c, s, e: c.request("\udcff\udcfe")), "Text cannot be encoded",
         ("surrogate",), panel=click_send(message="\udcff\udcfe")),
    Case("send-after-close", with_echo(send_after_close), "Bad file descriptor", ("closed",),
         no_panel="the panel's Send reconnects after Close client"),

    # ---- peers with bad manners
    Case("peer-resets", with_peer(lambda env: env.resetting_server(),
                                  lambda c, s, e: (c.connect(), e.connected.set(), e.reset_done.wait(TIMEOUT),
                                                   c.request(b"hi"))),
         ("Connection reset by peer", "Broken pipe"), ("close",),
         panel=click_send_to(lambda env: env.resetting_server(), wait="reset_done")),
    Case("peer-never-reads", with_peer(lambda env: env.never_reading_server(),
                                       lambda c, s, e: c.request(b"x" * (32 << 20)), timeout=0.5),
         "Timed out", ("not reading",), bound=SLOW,
         panel=click_send_to(lambda env: env.never_reading_server(), message=lambda: "x" * (32 << 20))),
    Case("peer-never-replies", with_peer(lambda env: env.silent_server(),
                                         lambda c, s, e: c.request(b"anyone?"), timeout=0.3),
         "Timed out", ("recv()",), bound=SLOW,
         panel=click_send_to(lambda env: env.silent_server())),
]


def _title_ok(expected, text: str, escape: bool = False) -> bool:
    options = expected if isinstance(expected, tuple) else (expected,)
    return any((html.escape(o) if escape else o).lower() in text.lower() for o in options)


def _panel_text(p: LabPanel, where: str) -> str:
    if where == "transcript":
        return p.transcript().text
    return getattr(p, where).value


def check_api(case: Case, env: Env) -> None:
    try:
        shown = case.api(env)
    except Exception as exc:  # the result under test: which exception, and how it is explained
        assert case.raises, f"{case.id}: raised {exc!r} for an input that is allowed"
        assert isinstance(exc, socklab.SocklabError), f"{case.id}: unexplained {type(exc).__name__}: {exc!r}"
        e = exc.explanation
        for part in (e.title, e.what, e.why, e.fix):
            assert isinstance(part, str) and part.strip()
        assert _title_ok(case.title, e.title), f"{case.id}: title {e.title!r}, expected {case.title!r}"
        body = " ".join((e.what, e.why, e.fix, *e.details))
        missing = [w for w in case.words if w.lower() not in body.lower()]
        assert not missing, f"{case.id}: {missing} not in the explanation: {e.text()}"
        assert e.title in str(exc)  # printing the exception shows the explanation
    else:
        assert not case.raises, f"{case.id}: nothing raised (returned {shown!r})"
        assert isinstance(shown, str) and _title_ok(case.title, shown), f"{case.id}: shown {shown!r}"
        missing = [w for w in case.words if w.lower() not in shown.lower()]
        assert not missing, f"{case.id}: {missing} not in {shown!r}"


def check_panel(case: Case, env: Env) -> None:
    p = env.panel()
    case.panel(p, env)  # a button method: an exception escaping it fails the test here
    text = _panel_text(p, case.panel_where)
    title = case.panel_title if case.panel_title is not None else case.title
    escape = case.panel_where != "transcript" and case.panel_title is None
    assert _title_ok(title, text, escape=escape), f"{case.id}: {title!r} not in the panel's {case.panel_where}: " \
                                                  f"{text[:2000]}"
    if case.panel_where == "alert" and case.panel_title is None:
        missing = [w for w in case.words if html.escape(w).lower() not in text.lower()]
        assert not missing, f"{case.id}: {missing} not in the panel's alert: {text}"
    if case.raises:
        assert "socklab-err" in p.alert.value or "socklab-warn" in p.alert.value, p.alert.value
    if case.panel_where == "status":
        assert len(p.status.value) < 5000, "the status line shows previews, not whole messages"
    for view in (p.alert, p.status, p.diagram_view, p.state_view):  # data is shown, never interpreted
        assert "<script>" not in view.value, view.value[:2000]
    p.close_client()
    p.stop_server()


def fresh_exchange() -> None:
    """The kernel is still usable: a new echo exchange through the API and through a panel."""
    with Server(name="bad-input/fresh") as srv, Client(srv) as c:
        assert c.request(b"still usable") == b"still usable"
    p = LabPanel(name="bad-input/fresh-panel")
    text = p.run_demo("still usable").text
    assert p.alert.value == "", p.alert.value
    assert "recv(65536)  -> b'still usable'" in text, text  # the client got its echo
    p.stop()


def _case_params():
    out = []
    for c in CASES:
        if c.nobody:  # see test_bad_input_as_non_root
            continue
        out.append(pytest.param(c, id=c.id, marks=c.marks))
    return out


def test_matrix_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    with_panel = [c for c in CASES if c.panel is not None or c.nobody.get("panel")]
    assert len(with_panel) >= 20
    assert all(c.no_panel for c in CASES if c.panel is None and not c.nobody), \
        [c.id for c in CASES if c.panel is None and not c.nobody and not c.no_panel]


@pytest.mark.parametrize("case", _case_params())
def test_bad_input(case: Case, env, leakcheck):
    t0 = time.monotonic()
    check_api(case, env)
    if case.panel is not None:
        check_panel(case, env)
    env.close()  # the case's own peers and files go; what is left must be nothing (leakcheck)
    elapsed = time.monotonic() - t0
    assert elapsed < case.bound, f"{case.id} took {elapsed:.1f} s (bound {case.bound} s)"
    fresh_exchange()


# ===================================================================== as a non-root user

NOBODY_PRELOAD = ("import html, json, threading, ipywidgets, socklab.widgets, socklab.kstate, "
                  "socklab.render.diagram, socklab.render.state, socklab.render.html\n")

NOBODY_SNIPPET = r'''
import html, json, os, socket, threading, socklab
from socklab import kstate
from socklab.widgets import LabPanel
case = json.loads({case!r})

def state():
    return [len(os.listdir("/proc/self/fd")), threading.active_count(), kstate.listening(),
            sorted(os.listdir(socklab.runtime.rundir()))]

before = state()
out = {{"uid": os.geteuid()}}
try:
    socklab.Server(name="nobody/api", **case["api"]).start()
    out["api"] = None
except Exception as exc:
    e = getattr(exc, "explanation", None)
    out["api"] = [type(exc).__name__, isinstance(exc, socklab.SocklabError)] + (
        [e.title, e.what, e.why, e.fix] if e else [repr(exc)])
if case.get("socket"):
    fam, typ, proto = case["socket"]
    try:
        socklab.socket(fam, typ, proto, name="nobody/socket").close()
        out["socket"] = None
    except Exception as exc:
        e = getattr(exc, "explanation", None)
        out["socket"] = [type(exc).__name__, isinstance(exc, PermissionError),
                         isinstance(exc, socklab.SocklabError), e.title if e else repr(exc),
                         (e.why + " " + e.fix) if e else ""]
p = LabPanel(name="nobody/panel")
for k, v in case["panel"].items():
    getattr(p, k).value = v
p.start_server()
out["panel_alert"] = p.alert.value
out["panel_server"] = p.server is not None
p.stop()
with socklab.Server(name="nobody/fresh") as srv, socklab.Client(srv) as c:
    out["echo"] = c.request(b"still usable").decode()
q = LabPanel(name="nobody/fresh-panel")
out["panel_echo"] = "-> b'still usable'" in q.run_demo("still usable").text and q.alert.value == ""
q.stop()
socklab.stop_all()
for t in threading.enumerate():
    if t is not threading.current_thread():
        t.join(5)
out["before"], out["after"] = before, state()
print(json.dumps(out))
'''


def _root_conftest():
    """tests/conftest.py as a module: `import conftest` may find tests/browser/conftest.py instead."""
    import importlib.util
    name = "socklab_tests_root_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).with_name("conftest.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_as_nobody_preloaded(code: str, timeout: float = 60) -> dict:
    """Like conftest.run_as_nobody, but with the widget modules imported before privileges drop
    (after the drop, the interpreter's own files may be unreadable)."""
    conftest = _root_conftest()
    mode, why = conftest.nobody_mode()
    if mode is None:
        pytest.skip(f"cannot run code as a non-root user: {why}")
    if mode == "user":
        r = conftest._as_user([sys.executable, "-c", code], timeout)
    elif mode == "self":
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, cwd="/", env=conftest._env())
    else:
        r = subprocess.run([sys.executable, "-c", NOBODY_PRELOAD + conftest._DROP + code],
                           capture_output=True, text=True, timeout=timeout, cwd="/", env=conftest._env())
    assert r.returncode == 0, f"snippet failed as uid {conftest.NOBODY} ({mode} mode):\n{r.stderr}"
    lines = r.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{r.stderr}"
    return json.loads(lines[-1])


NOBODY_CASES = [c for c in CASES if c.nobody]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in NOBODY_CASES])
def test_bad_input_as_non_root(case: Case):
    t0 = time.monotonic()
    r = run_as_nobody_preloaded(NOBODY_SNIPPET.format(case=json.dumps(case.nobody)))
    assert r["uid"] == (65534 if os.geteuid() == 0 else os.geteuid())
    api = r["api"]
    assert api is not None, f"{case.id}: the server started as uid 65534"
    assert api[1], f"{case.id}: unexplained {api}"
    cls, _, title, what, why, fix = api
    assert _title_ok(case.title, title), (case.id, title)
    missing = [w for w in case.words if w.lower() not in (what + why + fix).lower()]
    assert not missing, (case.id, missing, api)
    if "socket" in case.nobody:
        name, is_perm, explained, stitle, sbody = r["socket"]
        assert name == "PermissionError" and is_perm and explained, r["socket"]
        assert "not permitted" in stitle.lower() and "CAP_NET_RAW" in sbody
    assert _title_ok(case.title, r["panel_alert"], escape=True), r["panel_alert"]
    assert "socklab-err" in r["panel_alert"] and not r["panel_server"]
    assert r["echo"] == "still usable" and r["panel_echo"], r
    before, after = r["before"], r["after"]
    assert after == before, f"leak as uid 65534: before {before}, after {after}"
    assert time.monotonic() - t0 < 60
