"""Kernel socket state on real loopback sockets: states, accept queue, backlog in force."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from socklab import kstate
from socklab.errors import ConfigError
from socklab.config import somaxconn
from socklab.render.state import format_addr, state_html, state_text
from socklab.servers import Client, Server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel state")


@pytest.fixture
def listener():
    made = []

    def make(*backlog, family=socket.AF_INET, host="127.0.0.1"):
        s = socket.socket(family, socket.SOCK_STREAM)
        made.append(s)
        s.bind((host, 0))
        s.listen(*backlog)
        return s
    yield make
    for s in made:
        s.close()


def pair_rows(a: socket.socket, b_addr, port):
    """The rows of one connection, found by its two addresses (ephemeral ports get reused)."""
    a_addr = a if isinstance(a, tuple) else a.getsockname()
    rows = kstate.sockets_on_ports(port)
    mine = [r for r in rows if r.local[:2] == a_addr[:2] and r.remote[:2] == b_addr[:2]]
    theirs = [r for r in rows if r.local[:2] == b_addr[:2] and r.remote[:2] == a_addr[:2]]
    return mine, theirs


def test_listen_row_reports_backlog_and_empty_queue(listener):
    s = listener(3)
    row = kstate.listener_state(s)
    assert row.state == "LISTEN" and row.backlog == 3 and row.accept_queue == 0
    assert row.local == s.getsockname() and row.has_fd


def test_bound_only_socket_is_not_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert kstate.listener_state(s) is None
        assert all(r.state != "LISTEN" for r in kstate.sockets_on_ports(s.getsockname()[1]))


@pytest.mark.parametrize("arg, expected", [((0,), 0), ((1,), 1), ((5,), 5), ((-5,), 0), ((), None),
                                           ((100000,), "cap")])
def test_backlog_in_force_is_listens_argument(listener, arg, expected):
    s = listener(*arg)
    if expected is None:  # listen() without argument: min(SOMAXCONN, 128)
        expected = min(socket.SOMAXCONN, 128)
        assert expected == 128
    elif expected == "cap":
        expected = somaxconn()
    assert kstate.listener_state(s).backlog == expected


@pytest.mark.skipif(shutil.which("ss") is None, reason="iproute2 ss not installed")
def test_backlog_and_queue_agree_with_ss(listener):
    s = listener(7)
    port = s.getsockname()[1]
    with socket.create_connection(s.getsockname()):
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                             check=True).stdout.split()
        row = kstate.listener_state(port)
    assert out[0] == "LISTEN" and (int(out[1]), int(out[2])) == (row.recv_q, row.backlog) == (1, 7)


@pytest.mark.parametrize("waiting", [0, 1, 3])
def test_queue_length_counts_connected_unaccepted_clients(listener, waiting):
    s = listener(5)
    clients = [socket.create_connection(s.getsockname(), timeout=5) for _ in range(waiting)]
    try:
        assert kstate.listener_state(s).accept_queue == waiting
        if waiting:
            conn, _ = s.accept()  # one accept() takes one out of the queue
            conn.close()
            assert kstate.listener_state(s).accept_queue == waiting - 1
    finally:
        for c in clients:
            c.close()


def test_queued_connection_has_no_fd_until_accept(listener):
    s = listener(2)
    with socket.create_connection(s.getsockname(), timeout=5) as c:
        _, server_end = pair_rows(c, s.getsockname(), s.getsockname()[1])
        assert [r.state for r in server_end] == ["ESTABLISHED"] and server_end[0].has_fd is False
        conn, _ = s.accept()
        with conn:
            _, server_end = pair_rows(c, s.getsockname(), s.getsockname()[1])
            assert server_end[0].has_fd and server_end[0].inode == os.fstat(conn.fileno()).st_ino


def test_close_sequence_states(listener):
    s = listener(1)
    port = s.getsockname()[1]
    c = socket.create_connection(s.getsockname(), timeout=5)
    a, c_addr = s.accept()
    a.settimeout(5)
    client, server = pair_rows(c_addr, a.getsockname(), port)
    assert [r.state for r in client] == ["ESTABLISHED"] == [r.state for r in server]

    c.close()  # the client closes first
    assert a.recv(10) == b""
    assert kstate.ack_now(a)  # the FIN's ACK is otherwise delayed: client briefly FIN-WAIT-1
    client, server = pair_rows(c_addr, a.getsockname(), port)
    assert [r.state for r in client] == ["FIN-WAIT-2"]
    assert [r.state for r in server] == ["CLOSE-WAIT"]

    server_addr = a.getsockname()
    a.close()  # now the server: the side that closed first keeps TIME-WAIT, owned by no fd
    client, server = pair_rows(c_addr, server_addr, port)
    assert [(r.state, r.has_fd) for r in client] == [("TIME-WAIT", False)]
    assert server == []


def test_server_closing_first_gets_time_wait(listener):
    s = listener(1)
    port = s.getsockname()[1]
    with socket.create_connection(s.getsockname(), timeout=5) as c:
        a, c_addr = s.accept()
        server_addr = a.getsockname()
        a.close()
        c.settimeout(5)
        assert c.recv(10) == b""
        kstate.ack_now(c)
        client, server = pair_rows(c_addr, server_addr, port)
        assert [r.state for r in server] == ["FIN-WAIT-2"] and [r.state for r in client] == ["CLOSE-WAIT"]
    client, server = pair_rows(c_addr, server_addr, port)
    assert [r.state for r in server] == ["TIME-WAIT"] and client == []


def test_ipv6_rows(listener):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = listener(2, family=socket.AF_INET6, host="::1")
    except OSError:
        pytest.skip("IPv6 loopback not available")
    row = kstate.listener_state(s)
    assert row.proto == "tcp6" and row.local == ("::1", s.getsockname()[1]) and row.backlog == 2
    assert format_addr(row.local) == f"[::1]:{row.local[1]}"


def test_demo_state_labels_a_socklab_server():
    accepted = threading.Event()
    srv = Server(backlog=4, name="kstate-test")
    srv.trace.subscribe(lambda ev: ev.call == "accept" and accepted.set())
    srv.start()
    c = Client(srv, name="kstate-test-client")
    try:
        c.connect()
        assert accepted.wait(5)
        rows = kstate.demo_state(srv)
        assert rows.source == "sock_diag"
        assert [(r.side, r.state) for r in rows] == [
            ("server", "LISTEN"), ("client", "ESTABLISHED"), ("server/conn1", "ESTABLISHED")]
        assert rows[0].backlog == 4
        text = state_text(rows)
        assert "accept queue 0 of 5 (backlog 4" in text and "127.0.0.1:" in text
        assert "<table>" in state_html(rows) and "LISTEN" in state_html(rows)
    finally:
        c.close()
        srv.stop()


def test_demo_state_of_udp_server():
    srv = Server(type="SOCK_DGRAM", name="kstate-udp").start()
    try:
        rows = kstate.demo_state(srv)
        assert [(r.proto, r.state, r.side) for r in rows] == [("udp", "UNCONN", "server")]
    finally:
        srv.stop()


def test_unix_listener_queue_and_backlog(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen(3)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
            row = kstate.listener_state(path)
            assert (row.state, row.accept_queue, row.backlog) == ("LISTEN", 1, 3)
            rows = kstate.demo_state(path)
            assert [r.side for r in rows] == ["listener", "client (in accept queue)"]
            assert rows[1].inode == os.fstat(c.fileno()).st_ino


def test_proc_fallback_agrees_on_queue(listener):
    s = listener(2)
    port = s.getsockname()[1]
    with socket.create_connection(s.getsockname()):
        proc = [r for r in kstate._read_inet("tcp") if r.local[1] == port and r.state == "LISTEN"]
        assert proc[0].recv_q == kstate.listener_state(port).recv_q == 1


def test_psutil_fallback_has_fewer_columns(listener):
    pytest.importorskip("psutil")
    s = listener(2)
    rows = kstate.psutil_sockets("tcp")
    mine = [r for r in rows if r.local == s.getsockname()]
    assert rows.source == "psutil" and "no queue lengths" in rows.reason
    assert [(r.state, r.recv_q, r.backlog, r.has_fd) for r in mine] == [("LISTEN", None, None, None)]
    assert "?" in state_text(kstate.Rows(mine, "psutil", rows.reason))


def test_empty_rows_say_why():
    text = state_text(kstate.Rows([], "none", "no socket table on plan9 without psutil"))
    assert "(no sockets on this port)" in text and "without psutil" in text


# ---- unnamed AF_UNIX sockets show only themselves; bad targets are explained

OTHER_PROCESS = """
import socket, sys
pairs = [socket.socketpair() for _ in range(3)]   # unnamed AF_UNIX sockets of another process
print("ready", flush=True)
sys.stdin.read()                                  # holds them until the test closes stdin
"""


@pytest.fixture
def foreign_unnamed_sockets():
    """Unnamed AF_UNIX sockets held by this process and by another one, as any host has."""
    proc = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        assert proc.stdout.readline() == "ready\n"
        yield
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_unbound_unix_socket_shows_only_itself(foreign_unnamed_sockets):
    with socket.socket(socket.AF_UNIX) as u:
        rows = kstate.demo_state(u)
        assert [r.inode for r in rows] == [os.fstat(u.fileno()).st_ino]
        assert rows[0].state == "UNCONNECTED" and rows[0].side == "this socket"


def test_socketpair_end_shows_itself_and_its_peer(foreign_unnamed_sockets):
    a, b = socket.socketpair()
    with a, b:
        rows = kstate.demo_state(a)
        assert [(r.inode, r.side) for r in rows] == [(os.fstat(a.fileno()).st_ino, "this socket"),
                                                     (os.fstat(b.fileno()).st_ino, "peer")]


def test_closed_unix_socket_shows_nothing_and_says_why(foreign_unnamed_sockets):
    u = socket.socket(socket.AF_UNIX)
    u.close()
    rows = kstate.demo_state(u)
    assert list(rows) == [] and "closed" in rows.reason
    assert list(kstate.unix_sockets_at("")) == []


@pytest.mark.parametrize("call, title", [
    pytest.param(lambda: kstate.demo_state(""), "An empty AF_UNIX path", id="empty path"),
    pytest.param(lambda: kstate.demo_state(None), "Nothing to look up", id="None"),
    pytest.param(lambda: kstate.demo_state(3.5), "Nothing to look up", id="float"),
    pytest.param(lambda: kstate.demo_state(("127.0.0.1",)), "An address needs a port", id="no port"),
    pytest.param(lambda: kstate.demo_state(("127.0.0.1", "80")), "Ports must be port numbers",
                 id="port str"),
    pytest.param(lambda: kstate.demo_state(5000, kind="bogus"), "Unknown kind of socket", id="kind"),
    pytest.param(lambda: kstate.listener_state(None), "Nothing to look up", id="listener None"),
    pytest.param(lambda: kstate.sockets_on_ports("5000"), "Ports must be port numbers", id="ports str"),
    pytest.param(lambda: kstate.sockets_on_ports(None), "Ports must be port numbers", id="ports None"),
    pytest.param(lambda: kstate.sockets_on_ports(-1), "Ports must be port numbers", id="port -1"),
    pytest.param(lambda: kstate.sockets_on_ports([80, 1.5]), "Ports must be port numbers",
                 id="port 1.5"),
    pytest.param(lambda: kstate.sockets_on_ports(80, kind="x"), "Unknown kind of socket", id="ports kind"),
    pytest.param(lambda: kstate.listening("abc"), "Invalid pid", id="pid abc"),
])
def test_bad_targets_are_explained(call, title):
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.explanation.title == title and info.value.explanation.fix


def test_listening_of_a_process_that_does_not_exist_is_explained():
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1                 # no process can have this pid
    with pytest.raises(ConfigError) as info:
        kstate.listening(beyond)
    assert info.value.explanation.title == "No such process"


def test_a_half_open_connection_is_not_called_queued():
    """TCP_DEFER_ACCEPT keeps the server end in SYN-RECV (SYN queue) although the client's
    connect() returned: that row is '(half-open)', not '(in accept queue)'."""
    from socklab.render.state import NOTES, note
    with socket.socket() as srv:
        srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=5):
            rows = kstate.demo_state(srv.getsockname()[1])
            half = [r for r in rows if r.state == "SYN-RECV"]
            assert len(half) == 1 and half[0].side == "(half-open)"
            assert note(half[0]) == NOTES["SYN-RECV"] and "SYN queue" in note(half[0])
            listen = next(r for r in rows if r.state == "LISTEN")
            assert listen.recv_q == 0  # the accept queue is empty: nothing waits for accept() yet


def test_a_queued_connection_whose_client_closed_is_still_in_the_accept_queue():
    """Its server end is in CLOSE-WAIT with no fd: the program cannot close() it until accept()
    gives it one (the row was called 'server end', 'this side must close()')."""
    from socklab.render.state import note
    with socket.create_server(("127.0.0.1", 0), backlog=1) as srv:
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # closed before the server accepts it
        tick, deadline = threading.Event(), time.monotonic() + 5
        while True:  # until the kernel has taken the client's FIN (at once on loopback, as a rule)
            rows = [r for r in kstate.demo_state(port) if r.local[1] == port and r.state != "LISTEN"]
            if all(r.state == "CLOSE-WAIT" for r in rows) or time.monotonic() > deadline:
                break
            tick.wait(0.01)
        assert [(r.state, r.side) for r in rows] == [("CLOSE-WAIT", "(in accept queue)")]
        assert "accept queue" in note(rows[0]) and "must close" not in note(rows[0])
        conn, _ = srv.accept()
        with conn:
            assert conn.recv(10) == b""  # what the note says accept() gives


def test_demo_state_of_a_client_socket_names_each_end(listener):
    """A connected client socket: its own row is the client, the accepted end the server's (both
    rows used to be labelled 'server end')."""
    srv = listener(1)
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        conn, _ = srv.accept()
        with conn:
            for target, mine in ((c, c.getsockname()[1]), (conn, conn.getpeername()[1])):
                rows = kstate.demo_state(target)
                by_local = {r.local[1]: r.side for r in rows if r.state == "ESTABLISHED"}
                assert by_local[mine] == "client"
                assert by_local[srv.getsockname()[1]] == "server end"
                assert any(r.state == "LISTEN" for r in rows)
