"""Tests of socklab's engine on real sockets: no mocks, no sleeps, a timeout on every blocking call.

Run: .venv/bin/python -m pytest tests/test_engine.py
"""
from __future__ import annotations

import ast
import errno
import io
import ipaddress
import json
import os
import shutil
import pathlib
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
import tokenize

import pytest

import socklab
from socklab import kstate, runtime
from socklab.config import can_raw, somaxconn, unprivileged_port_start
from socklab.servers import Client, Server
from socklab.trace import Data, Trace

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
LOOPBACK = {"AF_INET": "127.0.0.1", "AF_INET6": "::1"}

HAS_UNIX = hasattr(socket, "AF_UNIX")
HAS_V6 = runtime.has_ipv6()
CAN_RAW = can_raw()
LINUX = sys.platform.startswith("linux")


def _unix_raw_ok() -> bool:
    if not HAS_UNIX:
        return False
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_RAW).close()
        return True
    except OSError:
        return False


needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="this Python has no AF_UNIX sockets")
needs_v6 = pytest.mark.skipif(not HAS_V6, reason="IPv6 loopback (::1) is not available here")
needs_linux = pytest.mark.skipif(not LINUX, reason="reads /proc and Linux error codes")

FAMILY_MARKS = {"AF_INET": [], "AF_INET6": [needs_v6], "AF_UNIX": [needs_unix]}


def fam_params(families=("AF_INET", "AF_INET6", "AF_UNIX")):
    return [pytest.param(f, marks=FAMILY_MARKS[f], id=f) for f in families]


# ---- helpers

def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port(family=socket.AF_INET) -> int:
    """A port nobody listens on right now (bound to port 0, read, closed)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def calls(trace: Trace, side: str) -> list:
    """A side's call names in order, without notes."""
    return [c for c in trace.calls(side) if c != "note"]


def events(trace: Trace, side: str, call: str) -> list:
    return [e for e in trace if e.side == side and e.call == call]


class Waiter:
    """Set once the trace records an event matching ``pred`` (events already recorded count too)."""

    def __init__(self, trace: Trace, pred):
        self.trace, self.pred, self.hit = trace, pred, threading.Event()
        trace.subscribe(self._on)
        if any(pred(e) for e in trace):
            self.hit.set()

    def _on(self, ev):
        if self.pred(ev):
            self.hit.set()

    def wait(self, timeout: float = TIMEOUT) -> None:
        ok = self.hit.wait(timeout)
        self.trace.unsubscribe(self._on)
        assert ok, f"no matching event within {timeout} s; trace: {list(self.trace)}"


def conn_closed(trace: Trace, side: str = "server/conn1") -> Waiter:
    return Waiter(trace, lambda e: e.side == side and e.call == "close")


def _ids(cases):
    """Test ids: the first value of each case (a tuple or a pytest.param)."""
    return [c.values[0] if hasattr(c, "values") else c[0] for c in cases]


def caught(fn):
    """The exception ``fn()`` raises (the test fails if it raises none)."""
    try:
        fn()
    except Exception as exc:  # any kind is the result here
        return exc
    pytest.fail(f"{getattr(fn, '__name__', fn)} raised nothing")


# ===================================================================== exchanges

@pytest.mark.parametrize("family", fam_params())
def test_stream_exchange(family, leakcheck):
    trace = Trace()
    srv = Server(family=family, type="SOCK_STREAM", trace=trace).start()
    try:
        done = conn_closed(trace)
        c = Client(srv)
        c.connect()
        assert c.request(b"hello socklab") == b"hello socklab"
        c.close()
        done.wait()  # the handler saw end of stream and closed its side
    finally:
        srv.stop()

    assert calls(trace, "server") == ["socket", "bind", "listen", "accept", "close"]
    assert calls(trace, "server/conn1") == ["settimeout", "recv", "sendall", "recv", "close"]
    assert calls(trace, "client") == ["socket", "settimeout", "connect", "sendall", "recv", "close"]
    assert set(trace.by_side()) == {"server", "server/conn1", "client"}
    # the data, both ways, by content
    srecv = events(trace, "server/conn1", "recv")
    assert srecv[0].result == Data(b"hello socklab") and srecv[0].nbytes == 13
    assert srecv[1].result == Data(b"") and srecv[1].nbytes == 0  # end of stream
    assert events(trace, "server/conn1", "sendall")[0].args == (Data(b"hello socklab"),)
    assert events(trace, "client", "sendall")[0].args == (Data(b"hello socklab"),)
    assert events(trace, "client", "recv")[0].result == Data(b"hello socklab")
    assert all(e.ok for e in trace)
    if family == "AF_UNIX":
        assert any(e.call == "note" and "removed socket file" in e.args[0] for e in trace)
        assert not os.path.exists(srv.config.path)


@pytest.mark.parametrize("family", fam_params())
def test_datagram_exchange(family, leakcheck):
    trace = Trace()
    srv = Server(family=family, type="SOCK_DGRAM", trace=trace).start()
    try:
        c = Client(srv)
        assert c.request(b"hello datagram") == b"hello datagram"
        c.close()
    finally:
        srv.stop()
    assert calls(trace, "server") == ["socket", "bind", "recvfrom", "sendto", "close"]
    if family == "AF_UNIX":  # a reply address, and connected: a wait for room sleeps
        assert calls(trace, "client") == ["socket", "settimeout", "bind", "connect", "send", "recv",
                                          "close"]
        assert events(trace, "client", "recv")[0].result == Data(b"hello datagram")
    else:
        assert calls(trace, "client") == ["socket", "settimeout", "sendto", "recvfrom", "close"]
        assert events(trace, "client", "recvfrom")[0].result[0] == Data(b"hello datagram")
    got, peer = events(trace, "server", "recvfrom")[0].result
    assert got == Data(b"hello datagram")
    assert events(trace, "server", "sendto")[0].args[0] == Data(b"hello datagram")
    if family == "AF_UNIX":
        assert not os.path.exists(srv.config.path)


@needs_unix
@pytest.mark.skipif(not _unix_raw_ok(), reason="socket(AF_UNIX, SOCK_RAW) is not supported here")
def test_unix_raw_exchange(leakcheck):
    """Linux treats AF_UNIX SOCK_RAW as SOCK_DGRAM: datagrams, with boundaries."""
    trace = Trace()
    srv = Server(family="AF_UNIX", type="SOCK_RAW", trace=trace).start()
    try:
        c = Client(srv)
        assert c.request(b"raw unix") == b"raw unix"
        c.close()
    finally:
        srv.stop()
    assert calls(trace, "server") == ["socket", "bind", "recvfrom", "sendto", "close"]
    assert calls(trace, "client") == ["socket", "settimeout", "bind", "connect", "send", "recv", "close"]
    assert events(trace, "server", "recvfrom")[0].result[0] == Data(b"raw unix")


@pytest.mark.skipif(not CAN_RAW, reason="raw IP sockets need root or CAP_NET_RAW")
@pytest.mark.parametrize("family", fam_params(("AF_INET", "AF_INET6")))
def test_raw_ip_exchange(family, leakcheck):
    """socklab.ping sends an ICMP echo; a raw Server sees the request and the kernel's reply."""
    req_type, reply_type = (8, 0) if family == "AF_INET" else (128, 129)
    ident = os.getpid() & 0xFFFF
    seen, both = {}, threading.Event()

    def handler(sock, data, addr, server):
        icmp = data[(data[0] & 0x0F) * 4:] if family == "AF_INET" else data  # IPv4: IP header first
        if len(icmp) >= 8 and struct.unpack("!H", icmp[4:6])[0] == ident:
            seen[icmp[0]] = icmp[8:]
            if req_type in seen and reply_type in seen:
                both.set()

    trace = Trace()
    srv = Server(family=family, type="SOCK_RAW", handler=handler, trace=trace).start()
    try:
        rtts = socklab.ping(LOOPBACK[family], trace=trace, timeout=TIMEOUT)
        assert both.wait(TIMEOUT), f"raw server saw {seen}"
    finally:
        srv.stop()
    assert len(rtts) == 1 and rtts[0] is not None and rtts[0] < TIMEOUT
    assert seen[req_type] == seen[reply_type] == b"socklab-ping-1"
    server = calls(trace, "server")  # both packets (and any other ICMP) arrive by recvfrom
    assert server[:2] == ["socket", "bind"] and server[-1] == "close" and set(server[2:-1]) == {"recvfrom"}
    pinger = calls(trace, "pinger")
    assert pinger[:3] == ["socket", "settimeout", "sendto"]
    assert "recvfrom" in pinger and pinger[-1] == "close"
    assert events(trace, "pinger", "sendto")[0].args[0].head.endswith(b"socklab-ping-1")


# ===================================================================== lifecycle

@pytest.mark.parametrize("family", fam_params())
def test_start_returns_ready(family, leakcheck):
    srv = Server(family=family).start()
    try:
        assert srv.ready.is_set() and srv.running and not srv.stopped.is_set()
        assert srv in socklab.running()
        if family != "AF_UNIX" and kstate.available():
            proto = "tcp" if family == "AF_INET" else "tcp6"
            assert (proto, srv.address[:2]) in kstate.listening()
        # ready means connectable at once: no retry, no sleep
        with socket.socket(srv.sock.family, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(srv.address)
    finally:
        srv.stop()


def test_stop_wakes_idle_server(leakcheck):
    """A server blocked in select (no client at all) stops at once."""
    srv = Server().start()
    t0 = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - t0 < 1.0
    assert srv.stopped.is_set() and not srv.running
    assert not srv._thread.is_alive() and srv.sock.closed
    assert srv not in socklab.running()


@pytest.mark.parametrize("family", fam_params())
def test_stop_wakes_blocked_handler(family, leakcheck):
    """An idle connected client keeps the handler blocked in recv(); stop() still returns promptly,
    joins every thread, closes every socket, frees the port / removes the socket file."""
    trace = Trace()
    srv = Server(family=family, trace=trace, idle_timeout=60).start()
    address = srv.address
    c = Client(srv)
    try:
        assert c.request(b"stay") == b"stay"
        handler = next(t for t in threading.enumerate() if t.name == "socklab-server/conn1")
        assert handler.is_alive()
        t0 = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - t0 < 1.0
        assert not handler.is_alive() and not srv._thread.is_alive()
        assert srv.sock.closed and all(conn.closed for conn in srv._conns)
        assert "shutdown" in calls(trace, "server/conn1")
        assert calls(trace, "server/conn1")[-1] == "close"
        assert c.recv() == b""  # the idle client sees end of stream
    finally:
        c.close()
    if family == "AF_UNIX":
        assert not os.path.exists(address)
        exc = caught(lambda: Client(address, family="AF_UNIX", path=address).connect())
        assert isinstance(exc, FileNotFoundError) and isinstance(exc, socklab.SocklabError)
    else:
        if kstate.available():
            assert all(a[1][1] != address[1] for a in kstate.listening())
        exc = caught(lambda: Client(srv).connect())
        assert isinstance(exc, ConnectionRefusedError) and isinstance(exc, socklab.SocklabError)
    socklab.stop_all()  # the failed clients above are registered until stopped


def test_stop_from_inside_a_handler_does_not_wait_for_itself(leakcheck):
    """A handler that stops its own server (a 'quit' command) gets stop() back at once; the server
    stops when the handler returns, without an error."""
    seen = {}

    def quit_handler(conn, server):
        conn.sendall(b"bye")
        server.stop()
        seen["stopped when stop() returned"] = server.stopped.is_set()

    srv = Server(handler=quit_handler).start()
    with Client(srv) as c:
        c.connect()
        assert c.recv() == b"bye"
    assert srv.stopped.wait(socklab.servers.DEFAULT_TIMEOUT)
    assert seen == {"stopped when stop() returned": False}  # it did not wait for its own thread
    assert srv.errors == [] and not srv._thread.is_alive()


def test_stop_all_stops_the_others_when_one_handler_is_stuck(leakcheck):
    """A handler stuck where no socket wakes it (here: an Event) makes its server's stop() fail;
    stop_all() still stops every other demo, then says which one did not stop."""
    entered, release = threading.Event(), threading.Event()

    def stuck(conn, server):
        entered.set()
        release.wait(60)

    a = Server(handler=stuck, name="engine/stuck").start()
    b = Server(name="engine/fine").start()
    c = Client(a, name="engine/stuck-client")
    try:
        c.connect()
        assert entered.wait(5)
        with pytest.raises(socklab.SocklabError) as err:
            socklab.stop_all()
        assert err.value.explanation.title == "Not everything stopped"
        assert str(a.address) in str(err.value) and "timeout" in err.value.explanation.fix
        assert not b.running and b.stopped.is_set()  # stopped, although a came first or last
    finally:
        release.set()
        c.close()
        assert a.stopped.wait(10)
    assert socklab.running() == []


def test_stop_of_a_server_whose_handler_is_stuck_is_explained(leakcheck):
    """stop() cannot end a handler held in its own code (here an Event): it says so, explained,
    naming the server, and says how to make the handler return; stop() again then works."""
    entered, release = threading.Event(), threading.Event()

    def stuck(conn, server):
        entered.set()
        release.wait(60)

    srv = Server(handler=stuck).start()
    c = Client(srv)
    try:
        c.connect()
        assert entered.wait(5)
        with pytest.raises(RuntimeError) as err:
            srv.stop(timeout=0.2)
        e = err.value.explanation
        assert e.title == "Still running after stop()" and str(srv.address) in e.what
        assert "handler" in e.why and "Python cannot kill a thread" in e.why
        assert "timeout" in e.fix and "stop() again" in e.fix
    finally:
        release.set()
        c.close()
    srv.stop()
    assert srv.stopped.is_set() and not srv.running


def test_stop_of_a_background_call_that_ignores_its_socket_is_explained(leakcheck):
    """A function given wake=sock is woken by shutting sock down; one that waits elsewhere is not."""
    release = threading.Event()
    with socket.socket() as s:
        bg = socklab.Background(lambda: release.wait(60), wake=s)
        try:
            with pytest.raises(RuntimeError) as err:
                bg.stop(timeout=0.2)
            e = err.value.explanation
            assert e.title == "Still running after stop()" and "background <lambda>()" in e.what
            assert "does not wait on the socket" in e.why
        finally:
            release.set()
        bg.stop()


def test_start_that_is_not_ready_in_time_is_explained(leakcheck):
    """A serving thread held before its loop (as a CPU-starved one would be: here its first Python
    call waits on an Event) makes start() give up: explained, with the fix (more time), and
    nothing left running once the thread goes on."""
    release = threading.Event()

    def hold(frame, event, arg):
        if threading.current_thread().name.startswith("socklab-"):
            threading.settrace(None)
            sys.settrace(None)
            release.wait(0.5)  # held past start()'s 0.2 s, then let go, as a starved thread would be
        return None

    threading.settrace(hold)
    srv = Server()
    try:
        with pytest.raises(TimeoutError) as err:
            srv.start(timeout=0.2)
    finally:
        threading.settrace(None)
        release.set()
    e = err.value.explanation
    assert e.title == "Not ready in time" and "start(timeout=30)" in e.fix
    assert srv.stopped.wait(5) and not srv.running and socklab.running() == []


@pytest.mark.parametrize("family", fam_params())
def test_stop_racing_the_handler(family, leakcheck):
    """stop() right after the client closes races the handler's own close: the trace must never show
    a shutdown after the connection was closed (or any failed call)."""
    for _ in range(100):
        trace = Trace()
        with Server(family=family, trace=trace) as srv:
            c = Client(srv)
            assert c.request(b"race") == b"race"
            c.close()
        conn = calls(trace, "server/conn1")
        assert conn[-1] == "close", conn
        assert [e for e in trace if not e.ok] == []
        alive = [t.name for t in threading.enumerate() if t.name.startswith("socklab-") and t.is_alive()]
        assert alive == [], f"stop() returned before joining {alive}"


def test_context_manager(leakcheck):
    with Server() as srv:  # entering starts it
        assert srv.running
        with Client(srv) as c:
            assert c.request(b"ctx") == b"ctx"
        assert c.sock.closed
    assert srv.stopped.is_set() and srv.sock.closed and srv not in socklab.running()
    with Server(type="SOCK_DGRAM").start() as srv2:  # the socketserver-like form
        with Client(srv2) as c2:
            assert c2.request(b"ctx2") == b"ctx2"
    assert srv2.stopped.is_set() and srv2 not in socklab.running()


def test_stop_twice_is_harmless(leakcheck):
    srv = Server().start()
    c = Client(srv)
    c.request(b"x")
    srv.stop()
    srv.stop()
    c.close()
    c.close()
    Server().stop()  # never started: nothing to do, no error
    assert srv.stopped.is_set() and socklab.running() == []


def test_failed_bind_leaves_nothing(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as blocker:
        port = blocker.getsockname()[1]
        srv = Server(port=port, reuse_address=False)
        exc = caught(srv.start)
        assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
        assert isinstance(exc, socklab.SocklabError) and "in use" in exc.explanation.title
        assert not srv.running and srv.stopped.is_set() and srv.sock.closed
        assert srv._thread is None and srv not in socklab.running()
        # SO_REUSEADDR (default for a fixed TCP port) never allows a second listener either
        exc = caught(Server(port=port).start)
        assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
        assert socklab.running() == []


@needs_unix
def test_failed_unix_bind_keeps_foreign_file(tmp_path, leakcheck):
    """A path taken by a file that is not a socket: refused before any socket exists; and if the
    file appears after that check, bind fails (EADDRINUSE). Either way the file is not deleted."""
    path = tmp_path / "taken.sock"
    path.write_text("not mine")
    exc = caught(lambda: Server(family="AF_UNIX", path=str(path)))
    assert isinstance(exc, socklab.ConfigError) and "not a socket" in exc.explanation.what
    assert path.read_text() == "not mine"
    path.unlink()
    srv = Server(family="AF_UNIX", path=str(path))  # checked while the path is free
    path.write_text("not mine")                     # ... and taken before bind()
    exc = caught(srv.start)
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
    assert path.read_text() == "not mine"
    assert socklab.running() == []


# ===================================================================== registry

def test_explicit_name_replaces_previous(leakcheck):
    s1 = Server(name="demo").start()
    s2 = Server(name="demo").start()
    assert s1.stopped.is_set() and not s1.running and s2.running
    assert s1 not in socklab.running() and s2 in socklab.running()
    s3 = Server(name="other").start()  # another name: both run
    assert s2.running and s3.running
    assert socklab.stop_all() == 2


@pytest.mark.parametrize("family", fam_params(("AF_INET", "AF_INET6")))
def test_fixed_port_rerun_same_name(family, leakcheck):
    """The old server is stopped while its client is still connected, so the server closes first and
    its port has connections in TIME_WAIT / FIN_WAIT: the new bind must still work."""
    port = free_port(getattr(socket, family))
    old = Server(family=family, port=port, name="fixed").start()
    old_client = Client(old, name="fixed-client")
    assert old_client.request(b"one") == b"one"
    new = Server(family=family, port=port, name="fixed").start()  # no EADDRINUSE
    assert old.stopped.is_set() and new.running and new.address[1] == port
    assert old_client.recv() == b""
    assert Client(new, name="fixed-client").request(b"two") == b"two"  # replaces (closes) old_client
    assert old_client.sock.closed
    assert socklab.stop_all() == 2


def test_fixed_udp_port_is_not_shared(leakcheck):
    """SO_REUSEADDR is never set for UDP (it would let two servers share the port)."""
    port = free_port()
    u1 = Server(type="SOCK_DGRAM", port=port, name="u1").start()
    exc = caught(Server(type="SOCK_DGRAM", port=port, name="u2").start)
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
    u1b = Server(type="SOCK_DGRAM", port=port, name="u1").start()  # same name: replaces, port reused
    assert u1.stopped.is_set() and u1b.running
    assert Client(u1b).request(b"udp") == b"udp"
    socklab.stop_all()


def test_stop_all(leakcheck):
    objs = [Server().start(), Server(type="SOCK_DGRAM").start()]
    if HAS_UNIX:
        objs.append(Server(family="AF_UNIX").start())
    clients = [Client(s) for s in objs]
    for c in clients:
        assert c.request(b"all") == b"all"
    assert len(socklab.running()) == 2 * len(objs)
    assert socklab.stop_all() == 2 * len(objs)
    assert socklab.running() == []
    assert all(s.stopped.is_set() and s.sock.closed for s in objs)
    assert all(c.sock.closed for c in clients)
    assert socklab.stop_all() == 0


def test_loop_on_one_line_without_ipython(leakcheck):
    assert runtime.generation() is None, "this test needs a process without an IPython shell"
    servers = [Server().start() for _ in range(3)]
    clients = [Client(s) for s in servers]
    assert all(s.running for s in servers)
    assert len({s.address for s in servers}) == 3
    for c in clients:
        assert c.request(b"loop") == b"loop"
    assert len(socklab.running()) == 6
    for s in servers:
        s.stop()
    for c in clients:
        c.close()
    assert socklab.running() == []


# ===================================================================== re-running a demo

def _demo(port):
    """What a notebook cell does; re-running it re-registers under the same names."""
    srv = Server(port=port, name="rerun-demo").start()
    c = Client(srv, name="rerun-demo-client")
    assert c.request(b"again") == b"again"
    return srv


def _state():
    return fd_count(), threading.active_count(), kstate.listening()


@needs_linux
def test_rerun_demo_100_times(leakcheck):
    port = free_port()
    _demo(port)
    _demo(port)
    base = _state()
    for _ in range(98):
        srv = _demo(port)
    assert _state() == base
    assert ("tcp", ("127.0.0.1", port)) in base[2]
    assert srv.running and len(socklab.running()) == 2
    socklab.stop_all()


KERNEL_SETUP = """
import json, os, threading, socklab
from socklab import kstate
def _socklab_state():
    return {"fds": len(os.listdir('/proc/self/fd')), "threads": threading.active_count(),
            "listening": [[p, list(a)] for p, a in kstate.listening()]}
"""

KERNEL_CELL = """srv = socklab.Server(port={port}).start()
c = socklab.Client(srv)
assert c.request(b'ping') == b'ping'
"""


@needs_linux
@pytest.mark.timeout(240)
def test_rerun_cell_100_times_in_a_real_kernel(tmp_path):
    jupyter_client = pytest.importorskip("jupyter_client")
    port = free_port()
    km = jupyter_client.KernelManager(kernel_name="python3")
    # IPython's history database opens and closes a journal file now and then: keep it out of the count
    km.start_kernel(cwd=str(ROOT), env=dict(os.environ, IPYTHONDIR=str(tmp_path)),
                    extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    kc.start_channels()

    def run(code):
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = kc.execute_interactive(code, timeout=30, output_hook=hook)
        return reply["content"], "".join(out)

    def state():
        content, out = run("print(json.dumps(_socklab_state()))")
        assert content["status"] == "ok", content
        return json.loads(out.strip().splitlines()[-1])

    try:
        kc.wait_for_ready(timeout=60)
        content, _ = run(KERNEL_SETUP)
        assert content["status"] == "ok", content
        cell = KERNEL_CELL.format(port=port)
        failures = []
        base = None
        for i in range(100):
            content, _ = run(cell)
            if content["status"] != "ok":
                failures.append((i, content.get("ename"), content.get("evalue", "")[:300]))
            if i == 1:
                base = state()
        final = state()
        assert not [f for f in failures if "Address already in use" in f[2]], failures
        assert not failures, failures
        assert base["listening"] == final["listening"]  # the kernel's own ZMQ ports are listed too
        assert ["tcp", ["127.0.0.1", port]] in final["listening"]
        assert final["fds"] == base["fds"], (base, final)
        assert final["threads"] == base["threads"], (base, final)
        content, out = run("print(len(socklab.running()), socklab.stop_all(), "
                           "json.dumps(_socklab_state()))")
        assert content["status"] == "ok", content
        running, stopped, after = out.split(" ", 2)
        assert running == stopped == "2", out
        after = json.loads(after)
        assert ["tcp", ["127.0.0.1", port]] not in after["listening"]
        assert after["threads"] == final["threads"] - 2  # the server and its connection handler
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ===================================================================== friendly errors

def check_explained(exc, cls, title, body, err=None):
    """explain(exc) names the problem; explained(exc) is still ``cls`` and a SocklabError."""
    assert isinstance(exc, cls), repr(exc)
    assert not isinstance(exc, socklab.SocklabError)  # a real exception from the socket module
    if err is not None:
        assert exc.errno == err, repr(exc)
    e = socklab.explain(exc)
    for part in (e.title, e.what, e.why, e.fix):
        assert isinstance(part, str) and part.strip()
    assert all(w.lower() in e.title.lower() for w in title), e.title
    text = " ".join((e.what, e.why, e.fix)).lower()
    missing = [w for w in body if w.lower() not in text]
    assert not missing, f"{missing} not in: {text}"
    x = socklab.explained(exc)
    assert isinstance(x, cls) and isinstance(x, type(exc)) and isinstance(x, socklab.SocklabError)
    assert x.explanation == e and x.args == exc.args and x.__cause__ is exc
    assert e.title in str(x)
    if isinstance(exc, OSError):
        assert x.errno == exc.errno
    return e


def provoke_refused():
    with socket.socket() as bound:  # bound but not listening: the kernel answers with RST
        bound.bind(("127.0.0.1", 0))
        with socket.socket() as s:
            s.settimeout(TIMEOUT)
            s.connect(bound.getsockname())


def provoke_addrinuse():
    with socket.create_server(("127.0.0.1", 0)) as lsn, socket.socket() as s:
        s.bind(lsn.getsockname())


def provoke_addrnotavail():
    with socket.socket() as s:
        s.bind(("203.0.113.5", 0))


def provoke_family_mismatch():
    with socket.socket(socket.AF_INET) as s:
        s.bind(("::1", 0))


def provoke_noname():
    socket.getaddrinfo("no such host", 80, flags=socket.AI_NUMERICHOST)  # never asks DNS


def provoke_recv_timeout():
    with socket.create_server(("127.0.0.1", 0)) as lsn, \
            socket.create_connection(lsn.getsockname(), timeout=TIMEOUT) as s:
        s.settimeout(0.2)
        s.recv(1)


def _peer(lsn):
    lsn.settimeout(TIMEOUT)
    conn, _ = lsn.accept()
    return conn


def provoke_broken_pipe():
    with socket.create_server(("127.0.0.1", 0)) as lsn, \
            socket.create_connection(lsn.getsockname(), timeout=TIMEOUT) as s:
        _peer(lsn).close()
        assert s.recv(1) == b""  # the peer's FIN has arrived: it is gone
        for _ in range(100):  # the first send may still succeed; then EPIPE
            s.send(b"x" * 1024)


def provoke_reset():
    with socket.create_server(("127.0.0.1", 0)) as lsn, \
            socket.create_connection(lsn.getsockname(), timeout=TIMEOUT) as s:
        conn = _peer(lsn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: RST instead of FIN
        s.recv(1)


def provoke_unix_too_long():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind("/tmp/" + "x" * 120)


def provoke_msgsize():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x" * 65508, ("127.0.0.1", 9))


def provoke_overflow():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 70000))


def provoke_address_str():
    with socket.socket() as s:
        s.bind("127.0.0.1:8080")


def provoke_send_str():
    a, b = socket.socketpair()
    with a, b:
        a.send("hello")


ERROR_CASES = [
    ("ECONNREFUSED", provoke_refused, ConnectionRefusedError, ["refused"], ["listening", "start the server"],
     errno.ECONNREFUSED),
    ("EADDRINUSE", provoke_addrinuse, OSError, ["in use"], ["port 0", "so_reuseaddr", "stop_all"],
     errno.EADDRINUSE),
    ("EADDRNOTAVAIL", provoke_addrnotavail, OSError, ["assign"], ["127.0.0.1", "this machine"],
     errno.EADDRNOTAVAIL),
    ("EAI_FAMILY", provoke_family_mismatch, socket.gaierror, ["family"], ["af_inet", "'::1'", "127.0.0.1"],
     None),
    ("EAI_NONAME", provoke_noname, socket.gaierror, ["unknown host"], ["numeric", "127.0.0.1"],
     socket.EAI_NONAME),
    ("timeout", provoke_recv_timeout, TimeoutError, ["timed out"], ["settimeout", "recv"], None),
    ("EPIPE", provoke_broken_pipe, BrokenPipeError, ["broken pipe"], ["closed", "b''"], errno.EPIPE),
    ("ECONNRESET", provoke_reset, ConnectionResetError, ["reset"], ["so_linger", "rst"], errno.ECONNRESET),
    pytest.param("AF_UNIX path", provoke_unix_too_long, OSError, ["af_unix path too long"],
                 ["108", "shorter path"], None, marks=needs_unix),
    ("EMSGSIZE", provoke_msgsize, OSError, ["too long"], ["65507", "udp", "split"], errno.EMSGSIZE),
    ("OverflowError", provoke_overflow, OverflowError, ["port", "range"], ["65535", "0"], None),
    ("TypeError address", provoke_address_str, TypeError, ["address format"],
     ["tuple", "'127.0.0.1:8080'", "int"], None),
    ("TypeError send str", provoke_send_str, TypeError, ["bytes", "str"], ["encode", "b'hello'"], None),
]


@needs_linux
@pytest.mark.parametrize("name,provoke,cls,title,body,err", ERROR_CASES,
                         ids=_ids(ERROR_CASES))
def test_friendly_error(name, provoke, cls, title, body, err, leakcheck):
    exc = caught(provoke)
    check_explained(exc, cls, title, body, err)


def test_family_mismatch_is_eai_addrfamily_or_family():
    exc = caught(provoke_family_mismatch)
    assert socklab.explain(exc).code in ("EAI_ADDRFAMILY", "EAI_FAMILY")


NOBODY_ERROR = """
import json, socket, socklab
try:
    {provoke}
except Exception as exc:
    e = socklab.explain(exc)
    x = socklab.explained(exc)
    print(json.dumps(dict(type=type(exc).__name__, errno=getattr(exc, "errno", None), title=e.title,
                          what=e.what, why=e.why, fix=e.fix, same_class=isinstance(x, type(exc)),
                          socklab_error=isinstance(x, socklab.SocklabError),
                          still_permission=isinstance(x, PermissionError))))
else:
    print(json.dumps(dict(type=None)))
"""


@needs_linux
@pytest.mark.skipif(unprivileged_port_start() <= 80,
                    reason="net.ipv4.ip_unprivileged_port_start <= 80: port 80 is not privileged here")
def test_friendly_error_eacces_as_non_root(as_nobody):
    r = as_nobody(NOBODY_ERROR.format(provoke="socket.socket().bind(('127.0.0.1', 80))"))
    assert r["type"] == "PermissionError" and r["errno"] == errno.EACCES, r
    assert "permission denied" in r["title"].lower()
    assert "1024" in r["why"] + r["fix"] and "port 0" in r["fix"]
    assert r["same_class"] and r["socklab_error"] and r["still_permission"]


@needs_linux
def test_friendly_error_eperm_raw_as_non_root(as_nobody):
    r = as_nobody(NOBODY_ERROR.format(
        provoke="socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"))
    assert r["type"] == "PermissionError" and r["errno"] == errno.EPERM, r
    assert "not permitted" in r["title"].lower()
    assert "CAP_NET_RAW" in r["why"] and "SOCK_STREAM" in r["fix"]
    assert r["same_class"] and r["socklab_error"] and r["still_permission"]


def test_client_raises_explained_errors(leakcheck):
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        target = bound.getsockname()
        exc = caught(Client(target).connect)
    assert isinstance(exc, ConnectionRefusedError) and isinstance(exc, socklab.SocklabError)
    assert repr(target) in exc.explanation.what  # names the address it tried
    with Server() as srv:
        c = Client(srv, timeout=0.2)
        c.connect()
        exc = caught(c.recv)  # the echo server has nothing to say
        assert isinstance(exc, TimeoutError) and isinstance(exc, socklab.SocklabError)
        assert "recv()" in exc.explanation.what
        assert events(c.trace, "client", "recv")[0].error is not None  # the trace has it too
        c.close()
    socklab.stop_all()


@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6"])
def test_localhost_without_an_address_of_the_family_is_explained(family, leakcheck):
    """Where the hosts file gives 'localhost' one family only, a server of the other family says
    so and suggests the numeric address (it used to say 'Unknown host name', 'use localhost')."""
    try:
        socket.getaddrinfo("localhost", None, getattr(socket, family))
    except socket.gaierror:
        exc = caught(lambda: Server(family=family, host="localhost").start())
        assert isinstance(exc, socket.gaierror) and isinstance(exc, socklab.SocklabError)
        e = exc.explanation
        lacks = "IPv6" if family == "AF_INET6" else "IPv4"
        assert e.title == f"'localhost' has no {lacks} address on this machine"
        assert ("'::1'" if family == "AF_INET6" else "'127.0.0.1'") in e.fix
        assert socklab.running() == []
        return
    with Server(family=family, host="localhost") as srv:  # it resolves here: an echo works
        assert Client(srv).request(b"ok") == b"ok"
    socklab.stop_all()


@pytest.mark.parametrize("lines, versions", [
    ("127.0.0.1 localhost\n", {4}),
    ("127.0.0.1\tlocalhost localhost.localdomain\n::1 ip6-localhost ip6-loopback\n", {4}),
    ("# ::1 localhost\n127.0.0.1 LOCALHOST # a comment\n", {4}),
    ("127.0.0.1 localhost\n::1 localhost\n", {4, 6}),
    ("::1 localhost\nnot-an-address localhost\n", {6}),
    ("", set()),
])
def test_hosts_file_versions_reads_a_real_hosts_file(lines, versions, tmp_path):
    from socklab.errors import _hosts_file_versions
    hosts = tmp_path / "hosts"
    hosts.write_text(lines)
    assert _hosts_file_versions("localhost", str(hosts)) == versions
    assert _hosts_file_versions("localhost", str(tmp_path / "missing")) == set()


# ===================================================================== config validation

BAD_CONFIGS = [
    ("unknown family", dict(family="AF_BOGUS"), "unknown socket family"),
    ("unknown type", dict(type="SOCK_BOGUS"), "unknown socket type"),
    ("port str", dict(port="8080"), "port must be an int"),
    ("port 70000", dict(port=70000), "out of range"),
    ("port -1", dict(port=-1), "out of range"),
    ("port True", dict(port=True), "port must be an int"),
    ("host:port", dict(host="127.0.0.1:8080"), "host and port"),
    ("AF_INET + ::1", dict(family="AF_INET", host="::1"), "ipv6 address on an ipv4"),
    pytest.param("AF_INET6 + 127.0.0.1", dict(family="AF_INET6", host="127.0.0.1"),
                 "ipv4 address on an ipv6", marks=needs_v6),
    ("0.0.0.0", dict(host="0.0.0.0"), "all interfaces"),
    ("backlog x", dict(backlog="x"), "backlog"),
    pytest.param("unix path 120 bytes", dict(family="AF_UNIX", path="/tmp/" + "p" * 115),
                 "too long", marks=needs_unix),
    pytest.param("unix missing dir", dict(family="AF_UNIX", path="/nonexistent-socklab-dir/s.sock"),
                 "directory does not exist", marks=needs_unix),
]


@pytest.mark.parametrize("name,kw,title", BAD_CONFIGS, ids=_ids(BAD_CONFIGS))
def test_bad_config_is_explained(name, kw, title, leakcheck):
    fds = fd_count()
    exc = caught(socklab.SocketConfig(**kw).validate)
    assert fd_count() == fds  # no socket was created to find out
    assert isinstance(exc, socklab.ConfigError) and isinstance(exc, ValueError)
    e = exc.explanation
    assert title in e.title.lower(), e.title
    assert e.what and e.why and e.fix
    assert e.title in str(exc)


def test_unix_path_of_120_bytes_is_120_bytes():
    assert len(("/tmp/" + "p" * 115).encode()) == 120


@pytest.mark.parametrize("name,kw,title", BAD_CONFIGS, ids=_ids(BAD_CONFIGS))
def test_bad_config_through_server_start(name, kw, title, leakcheck):
    threads = threading.active_count()
    exc = caught(lambda: Server(**kw).start())
    assert isinstance(exc, socklab.ConfigError) and title in exc.explanation.title.lower()
    assert socklab.running() == [] and threading.active_count() == threads


def test_config_warnings_but_allowed():
    c = socklab.SocketConfig(host="0.0.0.0", allow_all_interfaces=True).validate()
    assert c.host == "0.0.0.0" and any("all interfaces" in w for w in c.warnings)
    c = socklab.SocketConfig(backlog=-3).validate()
    assert c.backlog == -3 and any("negative" in w for w in c.warnings)
    c = socklab.SocketConfig().validate()
    assert c.warnings == () and c.host == "127.0.0.1" and c.port == 0


def test_negative_backlog_server_still_serves(leakcheck):
    with Server(backlog=-1) as srv:  # listen(-1) is listen(0) for Python and Linux
        assert any("negative" in w for w in srv.warnings)
        with Client(srv) as c:
            assert c.request(b"neg") == b"neg"


@pytest.mark.skipif(somaxconn() is None, reason="net.core.somaxconn cannot be read here")
def test_huge_backlog_warns_about_somaxconn():
    c = socklab.SocketConfig(backlog=10 ** 7).validate()
    assert any("somaxconn" in w for w in c.warnings)


def test_all_interfaces_server_really_listens_everywhere(leakcheck):
    with Server(host="0.0.0.0", allow_all_interfaces=True) as srv:
        assert any("all interfaces" in w for w in srv.warnings)
        assert srv.address[0] == "0.0.0.0"
        assert Client(("127.0.0.1", srv.address[1])).request(b"any") == b"any"
    socklab.stop_all()


NOBODY_CONFIG = """
import json, socklab
out = {{}}
for name, kw in {cases!r}:
    try:
        socklab.SocketConfig(**kw).validate()
        out[name] = None
    except socklab.ConfigError as exc:
        out[name] = exc.explanation.title
print(json.dumps(out))
"""


@needs_linux
def test_privileged_configs_as_non_root(as_nobody):
    cases = [("raw4", dict(type="SOCK_RAW")), ("raw6", dict(family="AF_INET6", type="SOCK_RAW")),
             ("port80", dict(port=80)), ("port8080", dict(port=8080))]
    r = as_nobody(NOBODY_CONFIG.format(cases=cases))
    assert r["raw4"] == "Raw sockets need privileges"
    if HAS_V6:
        assert r["raw6"] == "Raw sockets need privileges"
    if unprivileged_port_start() > 80:
        assert r["port80"] == "Privileged port"
    assert r["port8080"] is None


# ===================================================================== trace

def test_bulk_transfer_is_coalesced(leakcheck):
    size = 4 * 1024 * 1024
    data = bytes(range(256)) * (size // 256)
    trace = Trace()
    srv = Server(trace=trace).start()
    try:
        done = conn_closed(trace)
        c = Client(srv)
        c.connect()
        errors = []

        def send():
            try:
                c.sendall(data)
            except Exception as exc:  # reported below, not lost in the thread
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()  # send and receive at once: the echo would fill both buffers otherwise
        parts, got = [], 0
        while got < size:
            chunk = c.recv(65536)
            assert chunk, "connection closed early"
            parts.append(chunk)
            got += len(chunk)
        sender.join(TIMEOUT)
        assert not sender.is_alive() and not errors
        assert b"".join(parts) == data
        c.close()
        done.wait()
    finally:
        srv.stop()
    # the first trace.detail calls of a run are kept one by one, the rest fold into one event per call
    bound = trace.detail + 1
    recvs = [e for e in events(trace, "server/conn1", "recv") if e.nbytes]
    sends = events(trace, "server/conn1", "sendall")
    assert 1 <= len(recvs) <= bound and any(e.count > 1 for e in recvs), recvs
    assert sum(e.nbytes for e in recvs) == size
    assert 1 <= len(sends) <= bound and any(e.count > 1 for e in sends), sends
    assert sum(e.nbytes for e in sends) == size
    assert sum(e.count for e in recvs) >= size // 65536  # each chunk counted, just not kept
    client_recvs = [e for e in events(trace, "client", "recv") if e.nbytes]
    assert len(client_recvs) <= bound and sum(e.nbytes for e in client_recvs) == size
    assert len(trace) < 4 * bound + 12, list(trace)  # independent of the 4 MiB
    assert calls(trace, "server/conn1")[-2:] == ["recv", "close"]  # end of stream is its own event
    assert events(trace, "server/conn1", "recv")[-1].nbytes == 0


def test_folding_rules():
    """Folding is per side and for successful data calls only; other calls, errors and end of
    stream are never merged; the first ``detail`` calls of a run stay one by one."""
    t = Trace(detail=0)
    t.record("a", "recv", (10,), result=Data(b"x"), nbytes=1)
    t.record("b", "send", (Data(b"y"),), result=1, nbytes=1)
    t.record("a", "recv", (10,), result=Data(b"z"), nbytes=1)  # folded, though b came in between
    t.record("a", "recv", (10,), result=Data(b""), nbytes=0)  # end of stream: its own event
    t.record("a", "settimeout", (1,))
    t.record("a", "recv", (10,), result=Data(b"w"), nbytes=1)  # a new run
    t.record("a", "recv", (10,), error=TimeoutError("timed out"))
    t.record("a", "recv", (10,), error=TimeoutError("timed out"))
    assert t.calls("a") == ["recv", "recv", "settimeout", "recv", "recv", "recv"]
    first = next(e for e in t if e.side == "a")
    assert first.count == 2 and first.nbytes == 2
    t = Trace(detail=3)
    for i in range(10):
        t.record("a", "send", (Data(b"m"),), result=1, nbytes=1)
    assert [e.count for e in t] == [1, 1, 1, 7]
    t = Trace(coalesce=False)
    for i in range(10):
        t.record("a", "send", (Data(b"m"),), result=1, nbytes=1)
    assert len(t) == 10


def test_subscribe_listener_is_called(leakcheck):
    trace = Trace()
    seen = []
    trace.subscribe(seen.append)
    with Server(trace=trace) as srv:
        done = conn_closed(trace)
        with Client(srv) as c:
            c.request(b"hi")
        done.wait()
    assert {(e.side, e.call) for e in seen} >= {("server", "accept"), ("client", "connect"),
                                                 ("server/conn1", "recv"), ("client", "recv")}
    trace.unsubscribe(seen.append)
    n = len(seen)
    trace.note("x", "after unsubscribe")
    assert len(seen) == n


@pytest.mark.filterwarnings("ignore:socklab trace listener")
def test_raising_listener_does_not_kill_server(leakcheck):
    trace = Trace()

    def broken(ev):
        raise ZeroDivisionError("broken view")

    trace.subscribe(broken)
    with Server(trace=trace) as srv:
        for msg in (b"one", b"two"):  # the server keeps serving, connection after connection
            with Client(srv) as c:
                assert c.request(msg) == msg
        assert srv.running and srv._thread.is_alive()
    assert trace.listener_errors and all(isinstance(e, ZeroDivisionError) for e in trace.listener_errors)
    assert srv.errors == []
    assert srv.connections_served == 2


# ===================================================================== codegen

def read_line(proc, timeout: float = 10.0) -> str:
    """One line of ``proc``'s stdout, waiting at most ``timeout`` seconds (selectors, no sleep)."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line within {timeout} s; got {buf!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"process exited early: {buf!r} {proc.stderr.read()!r}")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def reap(proc) -> None:
    """End ``proc`` if it still runs, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


CODEGEN = [pytest.param(f, t, marks=FAMILY_MARKS[f], id=f"{f}-{t}")
           for f in ("AF_INET", "AF_INET6", "AF_UNIX") for t in ("SOCK_STREAM", "SOCK_DGRAM")]


@pytest.mark.parametrize("family,type_", CODEGEN)
def test_generated_code_runs(family, type_, tmp_path):
    cfg = socklab.SocketConfig(family=family, type=type_)
    server_src, client_src = socklab.server_code(cfg), socklab.client_code(cfg, message=b"hello codegen")
    compile(server_src, "server", "exec")
    compile(client_src, "client", "exec")
    assert "socklab" not in server_src and "socklab" not in client_src  # plain socket code only
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", server_src], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env)
    try:
        line = read_line(proc)
        assert line.startswith("server address: "), line
        shown = line[len("server address: "):]
        if family == "AF_UNIX":
            answer = path = shown
            assert path.startswith(str(tmp_path))
        else:
            addr = ast.literal_eval(shown)
            assert addr[0] == LOOPBACK[family] and addr[1] > 0
            answer = str(addr[1])
        cli = subprocess.run([sys.executable, "-c", client_src], input=answer + "\n", capture_output=True,
                             text=True, timeout=20, cwd=tmp_path, env=env)
        assert cli.returncode == 0, cli.stderr
        assert "reply: b'hello codegen'" in cli.stdout, cli.stdout
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
        if family == "AF_UNIX":
            assert not os.path.exists(path)  # the generated server removes its socket file
    finally:
        reap(proc)


# ===================================================================== interpreter exit

EXIT_SNIPPET = """
import socklab
from socklab import runtime
t = socklab.Server().start()
u = socklab.Server(type="SOCK_DGRAM").start()
ct = socklab.Client(t)
assert ct.request(b"hi") == b"hi"  # leaves the handler blocked in recv()
assert socklab.Client(u).request(b"hi") == b"hi"
if {unix}:
    x = socklab.Server(family="AF_UNIX").start()
    assert socklab.Client(x).request(b"hi") == b"hi"
    xd = socklab.Server(family="AF_UNIX", type="SOCK_DGRAM").start()
    assert socklab.Client(xd).request(b"hi") == b"hi"
print(runtime.rundir(), len(socklab.running()), flush=True)
# exits without stopping anything
"""


def test_exit_without_stopping():
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", EXIT_SNIPPET.format(unix=HAS_UNIX)], capture_output=True,
                       text=True, timeout=30, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # no tracebacks, no "Exception ignored" at shutdown
    rundir, n = r.stdout.split()
    assert int(n) == (8 if HAS_UNIX else 4)
    assert not os.path.exists(rundir)
    assert elapsed < 10, f"took {elapsed:.1f} s to exit"


# ===================================================================== static checks

SOURCES = sorted((ROOT / "socklab").rglob("*.py"))


def test_sources_found():
    assert len(SOURCES) >= 9


def code_only(src: str) -> str:
    """The source without comments and string literals (docstrings may say "never time.sleep")."""
    toks = tokenize.generate_tokens(io.StringIO(src).readline)
    return " ".join(t.string for t in toks if t.type not in (tokenize.COMMENT, tokenize.STRING))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_sleep_no_bare_except(path):
    src = path.read_text()
    code = code_only(src)
    assert not re.search(r"\btime\s*\.\s*sleep\b|\bfrom\s+time\s+import\b[^\n]*\bsleep\b", code), \
        f"{path}: waits must use events, joins or selectors, never time.sleep"
    assert not re.search(r"\bexcept\s*:", code), f"{path}: bare 'except:'"
    tree = ast.parse(src, str(path))
    bare = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and n.type is None]
    assert not bare, f"{path}: bare 'except:' at lines {bare}"
    sleeps = [n.lineno for n in ast.walk(tree)
              if (isinstance(n, ast.Attribute) and n.attr == "sleep" and isinstance(n.value, ast.Name)
                  and n.value.id == "time")
              or (isinstance(n, ast.ImportFrom) and n.module == "time"
                  and any(a.name == "sleep" for a in n.names))]
    assert not sleeps, f"{path}: time.sleep at lines {sleeps}"


def test_static_checks_can_fail():
    assert re.search(r"\btime\s*\.\s*sleep\b", code_only("import time\ntime.sleep(1)\n"))
    assert not re.search(r"\btime\s*\.\s*sleep\b", code_only('"""never time.sleep"""  # time.sleep\n'))
    assert re.search(r"\bexcept\s*:", code_only("try:\n    pass\nexcept:\n    pass\n"))


def _link_local_address():
    """(address, interface) of a link-local IPv6 address this machine has, or None."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for hexaddr, _, _, scope, _, name in rows:
        if scope == "20":  # link scope
            return str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))), name
    return None


@pytest.mark.skipif(_link_local_address() is None, reason="no link-local IPv6 address on this machine")
def test_a_link_local_address_with_its_zone_binds_and_echoes(leakcheck):
    """'fe80::...%eth0' is what the explanations ask for; a (host, port) pair would drop the zone."""
    addr, iface = _link_local_address()
    with Server(family="AF_INET6", host=f"{addr}%{iface}") as srv, Client(srv) as c:
        assert srv.address[3] == socket.if_nametoindex(iface)
        assert c.request(b"link-local") == b"link-local"


def test_servers_sharing_a_trace_get_their_own_side_names(leakcheck):
    t = Trace()
    with Server(trace=t) as a, Server(trace=t) as b:
        assert (a.side, b.side) == ("server", "server2")
        with Client(a) as ca, Client(b) as cb:
            assert ca.request(b"to a") == b"to a" and cb.request(b"to b") == b"to b"
        sides = {e.side for e in t if e.call in ("listen", "accept")}
        assert sides == {"server", "server2"}, sides
    again = Server(trace=t).start()  # both stopped: a new one is 'server' again (a panel's Start)
    assert again.side == "server"
    again.stop()


@pytest.mark.skipif(shutil.which("setpriv") is None or not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root and setpriv (util-linux) to drop CAP_NET_RAW")
def test_root_without_cap_net_raw_is_not_told_raw_sockets_are_allowed():
    """Root in a container that drops CAP_NET_RAW (Podman's default) cannot open raw sockets:
    socklab's check and the environment report say so (they used to trust euid 0)."""
    code = ("import socket, socklab.config, socklab.envcheck\n"
            "print(socklab.config.can_raw())\n"
            "try:\n"
            "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()\n"
            "    print('opened')\n"
            "except PermissionError:\n"
            "    print('refused')\n"
            "print(next(c.ok for c in socklab.envcheck.checks() if c.name.startswith('raw')))\n")
    out = subprocess.run(["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable,
                          "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "refused", "False"]


@pytest.mark.skipif(shutil.which("setpriv") is None or not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root and setpriv (util-linux) to drop CAP_NET_BIND_SERVICE")
def test_root_without_cap_net_bind_service_is_not_told_low_ports_are_allowed():
    """Root in a container that drops CAP_NET_BIND_SERVICE cannot bind a port below
    ip_unprivileged_port_start: the port check and the environment report say so."""
    code = ("import socket, socklab, socklab.envcheck\n"
            "from socklab.config import unprivileged_port_start\n"
            "low = unprivileged_port_start() - 1\n"
            "try:\n"
            "    socklab.SocketConfig(port=low).validate()\n"
            "    print('accepted')\n"
            "except socklab.ConfigError as exc:\n"
            "    print(exc.explanation.title.replace(' ', '-'))\n"
            "try:\n"
            "    with socket.socket() as s:\n"
            "        s.bind(('127.0.0.1', low))\n"
            "    print('bound')\n"
            "except PermissionError:\n"
            "    print('refused')\n"
            "except OSError:  # taken by something else: permitted all the same\n"
            "    print('bound')\n"
            "print(next(c.ok for c in socklab.envcheck.checks() if c.name.startswith('ports')))\n")
    if unprivileged_port_start() == 0:
        pytest.skip("ip_unprivileged_port_start is 0 here: every port is unprivileged")
    dropped = subprocess.run(["setpriv", "--inh-caps=-net_bind_service",
                              "--bounding-set=-net_bind_service", sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=60)
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.split() == ["Privileged-port", "refused", "False"], dropped.stdout
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert kept.stdout.split() == ["accepted", "bound", "True"], kept.stdout


def test_a_handler_may_read_with_makefile_or_recv_into_and_the_trace_shows_it(leakcheck):
    """Learners write handlers with conn.makefile(...).readline() or recv_into(); both work on the
    traced connection, read through its recv() (traced, and capped at max_message)."""
    def lines(conn, server):
        with conn, conn.makefile("rb") as rf, conn.makefile("wb") as wf:
            wf.write(b"got " + rf.readline())
            wf.flush()

    def into(conn, server):
        buf = bytearray(64)
        with conn:
            n = conn.recv_into(buf)  # at most max_message=4 bytes per read
            conn.sendall(bytes(buf[:n]))

    with Server(handler=lines) as srv, Client(srv) as c:
        assert c.request(b"hello\n", expect=10) == b"got hello\n"
        assert srv.wait_idle(TIMEOUT) and srv.errors == []
        assert calls(srv.trace, "server/conn1")[1:3] == ["recv", "send"]
    with Server(handler=into, max_message=4) as srv, Client(srv) as c:
        assert c.request(b"abcdefgh", expect=4) == b"abcd"
        assert srv.wait_idle(TIMEOUT) and srv.errors == []
        recv = [e for e in srv.trace if e.side == "server/conn1" and e.call == "recv"]
        assert recv[0].args == (4,) and recv[0].result.head == b"abcd"


@pytest.mark.skipif(not HAS_UNIX, reason="no AF_UNIX here")
def test_unix_datagram_request_to_a_full_receiver_sleeps_and_says_why(leakcheck):
    """Linux: with a timeout, an unconnected AF_UNIX sendto() to a full receiver spins in poll()/
    EAGAIN for the whole timeout; a connected send() sleeps. request() connects first."""
    path = runtime.private_path("full-dgram")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        receiver.bind(path)
        filler.connect(path)
        filler.setblocking(False)
        with pytest.raises(BlockingIOError):
            while True:  # fill the receiver's queue: it never reads
                filler.send(b"f")
        c = socklab.Client(path, family="AF_UNIX", type="SOCK_DGRAM", timeout=0.5)
        try:
            cpu = time.thread_time()
            with pytest.raises(TimeoutError) as info:
                c.request(b"x")
            cpu = time.thread_time() - cpu
        finally:
            c.close()
        # spinning would use about the whole 0.5 s of this thread's CPU; sleeping uses almost none
        assert cpu < 0.2, f"{cpu:.3f} s of CPU while waiting for room"
        calls = [(e.call, e.ok) for e in c.trace]
        assert ("connect", True) in calls and calls[-2:] == [("send", False), ("close", True)], calls
        assert "receiver's queue" in info.value.explanation.what
    os.unlink(path)
