"""Security caps of socklab's servers, on real sockets.

- message size: a handler's recv() never returns more than max_message bytes per call, whatever
  bufsize it asks for (stream), and a datagram is read at most max_message bytes;
- connections: the (max_connections + 1)-th client is closed by the server, and the trace says so;
- idle connections are closed after idle_timeout; a server stops by itself after ``lifetime``;
- received data is never evaluated: no eval/exec/compile/pickle/marshal/shelve/yaml.load in
  socklab (an AST scan), and payloads that would run code if evaluated come back as plain bytes;
- default binds are loopback; AF_UNIX sockets live in a private directory (mode 0700, owned by
  this user, closed to other users), the default AF_UNIX paths are inside it, and it is removed
  at interpreter exit, also after a KeyboardInterrupt.

Run: .venv/bin/python -m pytest tests/test_security.py
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import pickle
import select
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import socklab
from socklab import Client, Server, kstate, runtime
from socklab.trace import Trace

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
HAS_UNIX = hasattr(socket, "AF_UNIX")
HAS_V6 = runtime.has_ipv6()
LINUX = sys.platform.startswith("linux")
needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="this Python has no AF_UNIX sockets")
needs_linux = pytest.mark.skipif(not LINUX, reason="reads /proc")


def data_events(trace, call, side_prefix="server/conn"):
    return [e for e in trace if e.call == call and e.side.startswith(side_prefix) and e.error is None]


# ===================================================================== message size

def test_handler_recv_never_exceeds_max_message(leakcheck):
    """A handler asking recv(1 MiB) still gets at most max_message bytes per call."""
    chunks, done = [], threading.Event()

    def greedy(conn, server):
        while True:
            data = conn.recv(1 << 20)  # asks for far more than the cap
            if not data:
                break
            chunks.append(len(data))
        conn.sendall(b"%d" % sum(chunks))
        done.set()

    trace = Trace(coalesce=False)  # one event per call: every recv is checked
    payload = os.urandom(1 << 20)
    with Server(handler=greedy, max_message=1000, trace=trace, name="sec-cap") as srv:
        with Client(srv) as c:
            c.sendall(payload)
            c.shutdown()  # end of stream: the handler leaves its loop
            assert done.wait(TIMEOUT)
            assert c.recv() == b"%d" % len(payload)
    assert sum(chunks) == len(payload)
    assert max(chunks) <= 1000 and len(chunks) >= len(payload) // 1000, (max(chunks), len(chunks))
    recvs = data_events(trace, "recv")
    assert recvs and all(e.args[0] == 1000 and e.nbytes <= 1000 for e in recvs)


def test_echo_reads_at_most_max_message_per_call(leakcheck):
    trace = Trace(coalesce=False)
    payload = bytes(range(256)) * 2048  # 512 KiB
    with Server(max_message=4096, trace=trace, name="sec-echo") as srv, Client(srv) as c:
        assert c.request(payload) == payload
    sizes = [e.nbytes for e in data_events(trace, "recv")]
    assert sizes and max(sizes) <= 4096 and sum(sizes) == len(payload)


def test_datagram_is_read_at_most_max_message(leakcheck):
    with Server(type="SOCK_DGRAM", max_message=100, name="sec-udp") as srv, Client(srv) as c:
        reply = c.request(b"x" * 500)
    assert reply == b"x" * 100  # the server read 100 bytes; the kernel discarded the rest


@pytest.mark.parametrize("kw", [dict(max_message=0), dict(max_message=1 << 30), dict(max_connections=0),
                                dict(max_connections=2.5), dict(idle_timeout=None), dict(lifetime=-1),
                                dict(lifetime=float("inf"))],
                         ids=["max_message=0", "max_message=1GiB", "max_connections=0", "max_connections=2.5",
                              "idle_timeout=None", "lifetime=-1", "lifetime=inf"])
def test_caps_must_be_sane(kw, leakcheck):
    threads = threading.active_count()
    with pytest.raises(socklab.ConfigError) as info:
        Server(**kw)
    assert info.value.explanation.title == f"Invalid {next(iter(kw))}"
    assert threading.active_count() == threads and socklab.running() == []


# ===================================================================== connections, idle, lifetime

def test_connection_over_max_connections_is_closed(leakcheck):
    with Server(max_connections=2, name="sec-conns") as srv:
        c1, c2 = Client(srv), Client(srv)
        assert c1.request(b"one") == b"one" and c2.request(b"two") == b"two"  # both being served
        c3 = Client(srv)
        c3.connect()  # the kernel completes the handshake; the server then accepts and closes
        assert c3.recv() == b""  # end of stream, within the client's timeout
        notes = [e.args[0] for e in srv.trace if e.call == "note" and e.side.startswith("server")]
        assert notes == ["over max_connections=2: closed"], list(srv.trace)
        assert srv.connections_served == 2
        side, exp = srv.errors[-1]  # what a panel shows: the refusal explained, once per burst
        assert exp.title == "Too many connections at once" and "max_connections=2" in exp.what
        c3.close()
        freed = threading.Event()  # set when the server has closed its end of c1's connection
        watch = lambda ev: freed.set() if ev.side == "server/conn1" and ev.call == "close" else None  # noqa: E731
        srv.trace.subscribe(watch)
        c1.close()  # the server reads b'', closes its end: a place is free again
        assert freed.wait(TIMEOUT), list(srv.trace)
        srv.trace.unsubscribe(watch)
        c4 = Client(srv)
        assert c4.request(b"four") == b"four"
        assert srv.connections_served == 3
        for c in (c2, c4):
            c.close()


def _client_notes(srv, client):
    return [e.args[0] for e in srv.trace if e.side == client.side and e.call == "note"]


def test_a_client_over_max_connections_is_told_why(leakcheck):
    turned_away = "the server closed this connection at once: it was already serving max_connections=1 clients"
    with Server(max_connections=1, name="sec-cap-client") as srv, Client(srv) as c1:
        assert c1.request(b"one") == b"one"
        c2 = Client(srv)
        with pytest.raises(ConnectionError) as info:  # b'' or a reset: "two" may be unread at the close
            c2.request(b"two")
        exp = info.value.explanation
        assert exp.title == "Too many connections at once" and "max_connections=1" in exp.what
        assert "connect() succeeded" in exp.what and "larger max_connections" in exp.fix
        c2.close()
        c3 = Client(srv)
        c3.connect()
        assert c3.recv() == b""  # end of stream, as the OS says; the trace says why
        assert _client_notes(srv, c3) == [turned_away]
        c3.send(b"late")  # accepted by this kernel; the peer's, whose socket is gone, answers with RST
        hangup = select.poll()
        hangup.register(c3.sock.fileno(), 0)  # no events asked for: wakes on POLLERR/POLLHUP only
        assert hangup.poll(TIMEOUT * 1000), "the reset never came"
        with pytest.raises((BrokenPipeError, ConnectionResetError)) as info:
            c3.send(b"again")
        assert info.value.explanation.title == "Too many connections at once"
        assert info.value.explanation.code in ("EPIPE", "ECONNRESET")
        assert _client_notes(srv, c3) == [turned_away]  # said once
        c3.close()
        assert c1.request(b"still served") == b"still served"
        assert _client_notes(srv, c1) == []


def test_an_unbound_af_unix_client_is_told_most_likely_and_a_served_one_is_not_blamed(leakcheck):
    # Unbound AF_UNIX clients all have the address '': the server cannot say which was turned away.
    with Server(family="AF_UNIX", max_connections=1, idle_timeout=0.5, name="sec-cap-unix") as srv, \
            Client(srv) as c1, Client(srv) as c2:
        assert c1.request(b"one") == b"one"
        c2.connect()
        assert c2.recv() == b""
        assert _client_notes(srv, c2) == [
            "the server closed connections over max_connections=1 while this one waited, and this "
            "one ended before any data: most likely it was one of them"]
        with pytest.raises(BrokenPipeError) as info:  # AF_UNIX: a send to a closed peer fails at once
            c2.request(b"two")
        assert info.value.explanation.title != "Too many connections at once"  # a guess explains no error
        assert len(_client_notes(srv, c2)) == 1
        assert c1.recv() == b""  # the server closes c1 after idle_timeout: c1 was served, not turned away
        assert _client_notes(srv, c1) == []


def test_a_connection_closed_by_a_stopping_server_is_not_blamed_on_max_connections(leakcheck):
    srv = Server(name="sec-stop-race").start()
    with Client(srv) as c:
        c.connect()
        srv.stop()  # the connection was accepted and closed, or never accepted: closed with the listener
        try:
            assert c.recv() == b""
        except ConnectionResetError as exc:
            assert exc.explanation.title != "Too many connections at once"
        assert _client_notes(srv, c) == []
        assert not [e for e in srv.trace if e.call == "note" and "max_connections" in e.args[0]]


def test_turn_aways_count_only_after_since_and_a_reconnected_client_is_told_again(leakcheck):
    with Server(max_connections=1, name="sec-cap-since") as srv, Client(srv) as c1:
        assert c1.request(b"one") == b"one"
        c2 = Client(srv)
        for attempt in (1, 2):  # the same Client object, connected again after close()
            c2.connect()
            assert c2.recv() == b""
            assert len(_client_notes(srv, c2)) == attempt
            address = c2.sock.getsockname()
            assert srv.turned_away(address) == 1  # each connection has its own port
            assert srv.turned_away(address, since=time.monotonic()) == 0  # an old one is not this one
            c2.close()


def test_idle_connection_is_closed_after_idle_timeout(leakcheck):
    with Server(idle_timeout=0.3, name="sec-idle") as srv, Client(srv, timeout=TIMEOUT) as c:
        c.connect()
        t0 = time.monotonic()
        assert c.recv() == b""  # the server gave up on the silent client
        waited = time.monotonic() - t0
        assert 0.2 <= waited < TIMEOUT, waited
        assert srv.wait_idle(TIMEOUT)
        assert [exp.title for _, exp in srv.errors] == ["Idle connection closed"], srv.errors
        notes = [e.args[0] for e in srv.trace if e.call == "note"]
        assert any("no data for idle_timeout=0.3 s: the server closes" in n for n in notes), notes
        assert any("the server had closed this connection" in n for n in notes), notes


def test_a_request_on_a_connection_closed_for_idleness_says_so(leakcheck):
    """A learner who pauses between connect() and request() longer than idle_timeout is told why
    no reply comes, not handed b''."""
    with Server(idle_timeout=0.3, name="sec-idle-req") as srv, Client(srv, timeout=TIMEOUT) as c:
        closed = threading.Event()
        srv.trace.subscribe(lambda ev: ev.call == "note" and "the server closes" in ev.args[0]
                            and closed.set())
        c.connect()
        assert closed.wait(TIMEOUT)  # then the request goes to a connection the server gave up on
        with pytest.raises(ConnectionError) as info:
            c.request(b"hello")
        assert info.value.explanation.title == "Idle connection closed"
        assert "idle_timeout=0.3 s" in info.value.explanation.what
    with Server(idle_timeout=TIMEOUT, name="sec-busy") as srv, Client(srv, timeout=TIMEOUT) as c:
        c.connect()
        srv.stop()  # closed by the stop, not for idleness: no idle story
        try:
            got = c.request(b"hello")
        except ConnectionError as exc:  # a reset, if the data arrived after the close
            assert exc.explanation.title != "Idle connection closed", exc
        else:
            assert got == b""


@needs_linux
def test_server_stops_by_itself_after_lifetime(leakcheck):
    t0 = time.monotonic()
    srv = Server(lifetime=0.5, name="sec-life").start()
    port = srv.address[1]
    c = Client(srv)
    c.connect()  # a live, idle connection does not keep the server alive
    assert srv.stopped.wait(TIMEOUT), "the server did not stop by itself"
    assert time.monotonic() - t0 >= 0.5
    assert c.recv() == b""  # its connection was shut down too
    c.close()
    assert not srv.running and srv not in socklab.running()
    assert ("tcp", ("127.0.0.1", port)) not in kstate.listening()
    assert any(e.call == "note" and "lifetime=0.5 s reached" in e.args[0] for e in srv.trace)
    assert srv.ended_by_lifetime
    srv.stop()  # harmless afterwards


def test_a_connect_after_the_lifetime_is_told_so_until_a_server_listens_there_again(leakcheck):
    srv = Server(lifetime=0.2, name="sec-life-told").start()
    assert srv.stopped.wait(TIMEOUT)
    with Client(srv, timeout=TIMEOUT) as c, pytest.raises(ConnectionRefusedError) as info:
        c.connect()
    assert info.value.explanation.title == "Server stopped itself"
    assert "lifetime of 0.2 s" in info.value.explanation.what
    with socket.socket() as plain:  # plain socket code too: explain() is told the address
        plain.settimeout(TIMEOUT)
        with pytest.raises(ConnectionRefusedError) as info:
            plain.connect(srv.address)
    assert socklab.explain(info.value, srv.address, "connect").title == "Server stopped itself"
    srv.stop()
    # A new server on that port: a later refusal there has another cause.
    again = Server(port=srv.address[1], name="sec-life-again").start()
    again.stop()
    with socket.socket() as plain:
        plain.settimeout(TIMEOUT)
        with pytest.raises(ConnectionRefusedError) as info:
            plain.connect(srv.address)
    assert socklab.explain(info.value, srv.address, "connect").title == "Connection refused"


# ===================================================================== nothing received is evaluated

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml", "jsonpickle"}


def forbidden(source: str, filename: str = "<src>") -> list:
    """Places in ``source`` that could evaluate data: eval/exec/compile/__import__ calls, imports of
    pickle/marshal/shelve/yaml and the like, yaml.load, os.system, subprocess with shell=True."""
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            # the builtins by name (re.compile and the like are fine), or as builtins.eval
            name = f.id if isinstance(f, ast.Name) else f.attr if (
                isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "builtins") else None
            if name in FORBIDDEN_CALLS:
                found.append(f"{filename}:{node.lineno}: {name}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if (f.value.id, f.attr) in {("yaml", "load"), ("yaml", "unsafe_load"), ("os", "system"),
                                            ("os", "popen"), ("pickle", "loads"), ("marshal", "loads")}:
                    found.append(f"{filename}:{node.lineno}: {f.value.id}.{f.attr}()")
            if any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords):
                found.append(f"{filename}:{node.lineno}: shell=True")
        elif isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
    return found


SOURCES = sorted((ROOT / "socklab").rglob("*.py"))


def test_scanner_finds_what_it_looks_for():
    bad = ("import pickle\nimport yaml\nfrom marshal import loads\neval(data)\nexec(code)\n"
           "yaml.load(text)\nos.system(cmd)\nsubprocess.run(cmd, shell=True)\n__import__(name)\n")
    found = forbidden(bad)
    assert len(found) == 9, found
    assert forbidden("builtins.exec(code)\n") == ["<src>:1: exec()"]
    assert forbidden("json.loads(data)\nast.parse(src)\nre.compile(p)\nyaml_safe = 1\n") == []


def test_socklab_never_evaluates_data():
    assert len(SOURCES) >= 10
    found = [f for p in SOURCES for f in forbidden(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, "socklab could evaluate received data:\n" + "\n".join(found)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /nonexistent",))


def payloads(marker: str) -> list:
    return [f"__import__('os').system('touch {marker}')".encode(),
            f"exec(\"open('{marker}', 'w').close()\")".encode(),
            b"{{7*7}} ${7*7} %(x)s {0.__class__}",
            pickle.dumps(_Evil()).replace(b"/nonexistent", marker.encode()),  # never loaded here
            b"\x80\x04\x95 not really a pickle \xff"]


@pytest.mark.parametrize("family,type_", [("AF_INET", "SOCK_STREAM"), ("AF_INET", "SOCK_DGRAM"),
                                          pytest.param("AF_UNIX", "SOCK_STREAM", marks=needs_unix)])
def test_payloads_that_would_run_code_come_back_as_bytes(family, type_, tmp_path, leakcheck):
    marker = str(tmp_path / "evaluated")
    with Server(family=family, type=type_, name="sec-eval") as srv, Client(srv) as c:
        for p in payloads(marker):
            assert c.request(p) == p
            text = socklab.transcript(c.trace)  # shown, never interpreted
            assert "49" not in text.split("{{7*7}}")[-1][:3]
    assert not os.path.exists(marker)


def test_panel_shows_payloads_as_text(tmp_path, leakcheck):
    from socklab.widgets import LabPanel
    marker = str(tmp_path / "evaluated")
    p = LabPanel(name="sec-panel")
    p.start_server()
    for payload in (f"__import__('os').system('touch {marker}')", "<img src=x onerror=alert(1)>"):
        p.message.value = payload
        p.send_message()
        assert p.alert.value == "", p.alert.value
    assert "<img" not in p.status.value and "&lt;img" in p.status.value
    assert "<img" not in p.diagram_view.value
    p.stop()
    assert not os.path.exists(marker)


# ===================================================================== where sockets live

def test_default_binds_are_loopback(leakcheck):
    with Server(name="sec-v4") as s4:
        assert s4.address[0] == "127.0.0.1" and s4.warnings == ()
    if HAS_V6:
        with Server(family="AF_INET6", name="sec-v6") as s6:
            assert s6.address[0] == "::1"
    with Server(type="SOCK_DGRAM", name="sec-udp4") as su:
        assert su.address[0] == "127.0.0.1"
    from socklab.widgets import LabPanel
    p = LabPanel(name="sec-panel-default")
    p.start_server()
    assert p.server.address[0] == "127.0.0.1" and p.alert.value == ""
    p.stop()
    for host in ("0.0.0.0", "", "::"):
        with pytest.raises(socklab.ConfigError, match="all interfaces"):
            Server(family="AF_INET6" if host == "::" else "AF_INET", host=host, name="sec-any")


@needs_unix
def test_rundir_is_private(leakcheck):
    d = runtime.rundir()
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert st.st_uid == os.geteuid()
    assert len(os.fsencode(d)) < 40  # room for socket names within AF_UNIX's 108 bytes
    assert os.path.dirname(d) == "/tmp" or not os.path.isdir("/tmp")


@needs_unix
def test_default_unix_paths_are_inside_the_rundir(leakcheck):
    d = runtime.rundir()
    with Server(family="AF_UNIX", name="sec-unix") as srv:
        assert os.path.dirname(srv.address) == d
        assert stat.S_ISSOCK(os.lstat(srv.address).st_mode)
        with Client(srv) as c:
            assert c.request(b"private") == b"private"
    assert not os.path.exists(srv.address)  # removed at stop
    with Server(family="AF_UNIX", type="SOCK_DGRAM", name="sec-unix-dgram") as srv, Client(srv) as c:
        assert os.path.dirname(srv.address) == d
        assert c.request(b"dgram") == b"dgram"
        assert c._own_path is not None and os.path.dirname(c._own_path) == d  # the client's reply address
    from socklab.widgets import LabPanel
    p = LabPanel(family="AF_UNIX", name="sec-panel-unix")
    p.start_server()
    assert os.path.dirname(p.server.address) == d, p.alert.value
    p.stop()
    left = [n for n in os.listdir(d) if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode)]
    assert left == [], left  # every socket file went with its server or client


NOBODY_CONNECT = """
import json, socket
out = {{}}
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(2)
    try:
        s.connect({path!r})
        out["connect"] = "connected"
    except OSError as exc:
        out["connect"] = [type(exc).__name__, exc.errno]
try:
    out["list"] = len(__import__("os").listdir({rundir!r}))
except OSError as exc:
    out["list"] = [type(exc).__name__, exc.errno]
print(json.dumps(out))
"""


@needs_unix
@needs_linux
def test_other_users_cannot_reach_the_rundir(as_nobody, leakcheck):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a snippet as another user")
    with Server(family="AF_UNIX", name="sec-unix-other") as srv:
        r = as_nobody(NOBODY_CONNECT.format(path=srv.address, rundir=runtime.rundir()))
        assert r["connect"] == ["PermissionError", 13], r  # EACCES: the directory is closed to them
        assert r["list"] == ["PermissionError", 13], r
        with Client(srv) as c:
            assert c.request(b"still mine") == b"still mine"


EXIT_SNIPPET = r"""
import os, sys, socklab
srv = socklab.Server(family="AF_UNIX").start()
h = socklab.socket("AF_UNIX")
h.bind(socklab.runtime.private_path("hand"))
h.close()  # a closed socket's file stays: the directory removal must take it too
c = socklab.Client(srv, timeout=60)
c.connect()
print(socklab.runtime.rundir(), sorted(os.listdir(socklab.runtime.rundir())), flush=True)
if sys.argv[1] == "block":
    c.recv()  # blocks until SIGINT
else:
    sys.stdin.readline()  # exits once the test has looked (its stdin closes)
"""


def _start(mode):
    return subprocess.Popen([sys.executable, "-c", EXIT_SNIPPET, mode], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _first_line(proc, timeout=30.0) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "no readiness line"
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return line


@needs_unix
def test_rundir_removed_at_exit():
    proc = _start("exit")
    try:
        rundir, files = _first_line(proc).split(" ", 1)
        # The child waits on its stdin: its atexit cannot have removed the directory yet.
        assert os.path.isdir(rundir)
        assert "sock-" in files and "hand-" in files
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err == "", err
    assert not os.path.exists(rundir)


@needs_unix
def test_rundir_removed_after_keyboard_interrupt():
    proc = _start("block")
    try:
        rundir, _ = _first_line(proc).split(" ", 1)
        assert os.path.isdir(rundir)
        proc.send_signal(signal.SIGINT)  # our own child: KeyboardInterrupt in its recv()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert not os.path.exists(rundir), f"{rundir} survived the interrupt"


# ===================================================================== nothing left behind

def test_client_reopened_after_close_is_still_stopped(leakcheck):
    """close() unregisters a client; using it again opens a new socket, which stop_all() must reach."""
    with Server(name="sec-reopen") as srv:
        c = Client(srv, name="sec-reopen-client")
        c.close()  # before any socket: unregistered
        c.connect()  # a new socket
        assert c in socklab.running()
        c.close()
        c.connect()  # and again
        assert c.request(b"again") == b"again"
        assert socklab.stop_all() >= 1
        assert c.sock.closed


@needs_unix
@needs_linux
def test_stop_all_removes_stale_socket_files_only(tmp_path, leakcheck):
    d = runtime.rundir()
    before = set(os.listdir(d))  # files earlier tests in this process left (e.g. TLS certificates)
    stale = runtime.private_path("stale")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(stale)  # closed at once: the file outlives close()
    hand = socklab.socket("AF_UNIX", name="sec-hand")
    hand.bind(runtime.private_path("hand"))
    hand.close()  # a closed socklab.socket(): its file stays until stop_all()
    other = os.path.join(d, "notes.txt")
    with open(other, "w") as f:
        f.write("not a socket")
    outside = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(outside)  # a stale socket file outside the private directory: the learner's
    live = socket.socket(socket.AF_UNIX)
    live.bind(runtime.private_path("live"))
    live.listen()
    try:
        socklab.stop_all()
        left = sorted(set(os.listdir(d)) - before)
        assert left == sorted(["notes.txt", os.path.basename(live.getsockname())]), left
        assert os.path.exists(outside)
    finally:
        live.close()
        for name in ("notes.txt", *[n for n in os.listdir(d) if n.startswith("live-")]):
            os.unlink(os.path.join(d, name))


@pytest.mark.skipif(os.name != "posix", reason="process ids and owners are POSIX's")
def test_a_killed_processs_private_directory_is_removed_by_the_next_one(tmp_path):
    """A kernel that is killed (not shut down) runs no atexit: its private directory stays until
    the next socklab process of the same user makes its own. One of a live process stays."""
    code = ("import sys, socklab.runtime as r; print(r.rundir(), flush=True); sys.stdin.readline()")
    killed = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    alive = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        dead_dir, live_dir = killed.stdout.readline().strip(), alive.stdout.readline().strip()
        killed.kill()
        killed.wait(10)
        assert os.path.isdir(dead_dir) and os.path.isdir(live_dir)
        later = subprocess.run([sys.executable, "-c", "import socklab.runtime as r; print(r.rundir())"],
                               capture_output=True, text=True, timeout=60, check=True)
        assert not os.path.exists(dead_dir), dead_dir
        assert os.path.isdir(live_dir)
        assert not os.path.exists(later.stdout.strip())  # that one ended normally: atexit removed it
    finally:
        alive.stdin.close()
        alive.wait(10)
        killed.stdout.close()
        alive.stdout.close()
    assert not os.path.exists(live_dir)


def test_the_default_limits_leave_a_learner_minutes_between_cells():
    """Notebooks drive a server one cell at a time, and a learner reads between cells: the default
    idle limit must not end a connection during a pause (it was 30 s, and lessons broke at reading
    pace), and a server must outlast a lesson."""
    from socklab import concurrency
    assert Server().idle_timeout >= 900 and Server().lifetime >= 3600
    for style in concurrency.STYLES:
        srv = concurrency.make_server(style)
        assert srv.idle_timeout >= 900 and srv.lifetime >= 3600, style


def test_a_send_that_times_out_is_not_told_as_an_idle_connection(leakcheck):
    """A client that stops reading makes the server's send wait; when it gives up, the trace says
    so, and no 'Idle connection closed' is claimed (the client sent its request)."""
    def flood(conn, server):
        conn.recv(100)
        conn.sendall(b"x" * (64 << 20))  # far more than the socket buffers hold

    gave_up = threading.Event()
    with Server(handler=flood, idle_timeout=0.3, name="sec-send-timeout") as srv:
        srv.trace.subscribe(lambda ev: ev.call == "note" and "read nothing" in ev.args[0]
                            and gave_up.set())
        with Client(srv, timeout=TIMEOUT) as c:
            c.connect()
            c.sendall(b"send me a lot")
            assert gave_up.wait(TIMEOUT)
            assert srv.wait_idle(TIMEOUT)
            local = c.sock.getsockname()
            assert srv.closed_idle(local) == 0
        assert [exp.title for _, exp in srv.errors] != ["Idle connection closed"], srv.errors
