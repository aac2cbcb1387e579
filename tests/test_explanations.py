"""Each explanation is checked against the real error it explains: the error is provoked on real
loopback sockets, and the text must name the cause that produced it (and not advise what would
not help, or would harm, there)."""
from __future__ import annotations

import concurrent.futures
import errno
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest

import socklab
from socklab.errors import explain, note_call, socket_call_of, watch_socket_calls

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="errno values are Linux's")


def provoke(fn, kind=OSError):
    try:
        fn()
    except kind as exc:
        return exc
    raise AssertionError("no error")


def full_listener():
    """A listener with backlog 0 whose one queue place is taken: a new SYN is dropped."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    filler = socket.create_connection(srv.getsockname(), timeout=5)
    return srv, filler


def test_connect_again_after_a_timeout_is_ealready(leakcheck):
    """The typical wrong retry: the same socket's earlier connect() is still being retried."""
    srv, filler = full_listener()
    address = srv.getsockname()
    with srv, filler, socket.socket() as c:
        c.settimeout(0.1)
        with pytest.raises(TimeoutError):
            c.connect(address)
        exc = provoke(lambda: c.connect(address))
    assert isinstance(exc, BlockingIOError) and exc.errno == errno.EALREADY
    e = explain(exc, address, "connect")
    assert e.title == "Connection attempt already in progress"
    assert "create a new one for every try" in e.fix


def test_unix_address_in_use_does_not_advise_deleting_any_file(leakcheck, tmp_path):
    """A regular file at the path gives the same EADDRINUSE as a stale socket file."""
    path = tmp_path / "notes.txt"
    path.write_text("somebody's data")
    with socket.socket(socket.AF_UNIX) as s:
        exc = provoke(lambda: s.bind(str(path)))
    assert exc.errno == errno.EADDRINUSE
    e = explain(exc, str(path), "bind")
    assert "ordinary file" in e.why and "S_ISSOCK" in e.fix and "somebody's data" in e.fix


def test_listen_can_be_address_in_use_too(leakcheck):
    a, b = socket.socket(), socket.socket()
    with a, b:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        a.bind(("127.0.0.1", 0))
        b.bind(a.getsockname())
        a.listen()
        exc = provoke(b.listen)
    assert exc.errno == errno.EADDRINUSE
    assert "bind() (or listen()) failed" in explain(exc, call="listen").what


def test_broadcast_without_so_broadcast_is_explained_as_such(leakcheck):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        exc = provoke(lambda: s.sendto(b"x", ("255.255.255.255", 9)))
    assert exc.errno == errno.EACCES
    e = explain(exc, ("255.255.255.255", 9), "sendto")
    assert "SO_BROADCAST, 1) before sendto()" in e.fix


@pytest.mark.parametrize("family, type_, proto", [
    (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP),
    (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_TCP),
    (socket.AF_UNIX, socket.SOCK_STREAM, socket.IPPROTO_TCP),
    (socket.AF_INET, socket.SOCK_RAW, 0),
])
def test_protocol_mismatch_is_not_sent_to_raw_sockets(family, type_, proto, leakcheck):
    exc = provoke(lambda: socket.socket(family, type_, proto).close())
    assert exc.errno == errno.EPROTONOSUPPORT
    e = explain(exc, call="socket")
    assert "SOCK_STREAM carries TCP" in e.why and "Leave the protocol out (0)" in e.fix


def test_a_queued_client_is_reset_when_the_listener_closes(leakcheck):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        srv.close()  # never accepted
        exc = provoke(lambda: c.recv(10))
    assert isinstance(exc, ConnectionResetError)
    assert "still waited in the accept queue" in explain(exc, call="recv").why


def test_shutdown_after_a_reset_is_not_told_to_connect_first(leakcheck):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with srv, socket.create_connection(srv.getsockname(), timeout=5) as c:
        conn, _ = srv.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # an RST
        assert isinstance(provoke(lambda: c.recv(10)), ConnectionResetError)
        exc = provoke(lambda: c.shutdown(socket.SHUT_RDWR))
    assert exc.errno == errno.ENOTCONN
    e = explain(exc, call="shutdown")
    assert "(or no longer) connected" in e.what and "just close() your socket" in e.fix


def test_the_kernels_own_connect_timeout_is_not_fixed_by_settimeout(leakcheck):
    """errno 110 comes from the kernel's SYN retries (one retry here: about 3 s), not settimeout()."""
    srv, filler = full_listener()
    address = srv.getsockname()
    with srv, filler, socket.socket() as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
        c.settimeout(30)
        exc = provoke(lambda: c.connect(address))
    assert isinstance(exc, TimeoutError) and exc.errno == errno.ETIMEDOUT
    e = explain(exc, address, "connect")
    assert "kernel gave up" in e.what and "longer settimeout() does not help" in e.fix


def test_af_unix_datagram_too_long_names_its_own_limit(leakcheck):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as r, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            r.bind(path)
            exc = provoke(lambda: s.sendto(b"x" * 1_000_000, path))
    assert exc.errno == errno.EMSGSIZE
    assert "AF_UNIX datagram is limited by the socket's send buffer" in explain(exc, call="sendto").why


def test_family_mismatch_names_the_code_linux_raises(leakcheck):
    with socket.socket(socket.AF_INET) as s:
        exc = provoke(lambda: s.bind(("::1", 0)))
    assert isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_ADDRFAMILY
    with pytest.raises(socklab.ConfigError) as info:
        socklab.SocketConfig(family="AF_INET", host="::1").validate()
    assert "EAI_ADDRFAMILY" in info.value.explanation.what


def test_a_numeric_zone_on_a_non_link_local_address_is_ignored_not_rejected(leakcheck):
    """The zone check's text: the resolver rejects '::1%lo' but binds '::1%1'."""
    if not socklab.runtime.has_ipv6():
        pytest.skip("no IPv6 loopback here")
    with socket.socket(socket.AF_INET6) as s:
        assert isinstance(provoke(lambda: s.bind(("::1%lo", 0))), socket.gaierror)
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1%1", 0))
    with pytest.raises(socklab.ConfigError) as info:
        socklab.SocketConfig(family="AF_INET6", host="::1%lo").validate()
    assert "rejects a named zone there (socket.gaierror) and ignores a numeric one" in \
        info.value.explanation.what


def test_a_bad_port_string_with_localhost_is_not_blamed_on_the_hosts_file(leakcheck):
    """gaierror for a port typed with a space: the name 'localhost' was fine."""
    exc = provoke(lambda: socket.create_connection(("localhost", "8080 "), timeout=1).close())
    assert isinstance(exc, socket.gaierror) and exc.errno not in (socket.EAI_NONAME,)
    assert "has no IPv" not in explain(exc, ("localhost", "8080 "), "connect").title


def test_a_full_af_unix_queue_with_a_timeout_is_not_told_to_add_a_timeout(leakcheck, tmp_path):
    """Linux: a socket with a timeout is non-blocking underneath, so connect() to a full AF_UNIX
    accept queue fails at once with EAGAIN; the cure is on the server's side."""
    path = str(tmp_path / "q.sock")
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path)
        srv.listen(0)
        waiting = []
        try:
            for _ in range(4):
                c = socket.socket(socket.AF_UNIX)
                waiting.append(c)
                c.settimeout(1)
                try:
                    c.connect(path)
                except BlockingIOError as exc:
                    error = exc
                    break
            else:
                raise AssertionError("the queue never filled")
        finally:
            for c in waiting:
                c.close()
    assert error.errno == errno.EAGAIN
    e = explain(error, path, "connect")
    assert e.title == "Accept queue full (AF_UNIX)" and "accept() sooner" in e.fix
    assert "timeout" not in e.fix
    generic = explain(error)  # no call or address known: it still names this case
    assert "full accept queue" in generic.why and "use a blocking socket" not in generic.fix


def test_af_unix_refused_names_the_stale_file_not_ports(leakcheck, tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)                    # and closed: the file stays, nobody behind it
    with socket.socket(socket.AF_UNIX) as c:
        exc = provoke(lambda: c.connect(path))
    assert isinstance(exc, ConnectionRefusedError)
    e = explain(exc, path, "connect")
    assert "stale socket file" in e.why and "S_ISSOCK" in e.fix
    assert "port" not in e.what + e.why + e.fix and "IPv6" not in e.fix
    assert "stale socket file" in explain(exc).why  # no address known: the generic text says it too
    name = "\0socklab-test-gone-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(name)                   # released when it closes
    with socket.socket(socket.AF_UNIX) as c:
        exc = provoke(lambda: c.connect(name))
    e = explain(exc, name, "connect")
    assert isinstance(exc, ConnectionRefusedError) and "abstract" in e.what and "released" in e.why


def test_a_name_from_a_cell_not_run_yet_is_explained():
    try:
        conn1  # noqa: F821  (a learner ran the clean-up cell before the cell that makes conn1)
    except NameError as exc:
        e = explain(exc)
    assert e.title == "Name not defined yet" and "'conn1'" in e.what
    assert "Run All Above" in e.fix


# ---- timeouts: each kind of call waits for something else, and says so

def connected_pair(small_buffers=False):
    """(listener, client, server end) on loopback; small buffers fill after a few KB."""
    srv = socket.socket()
    if small_buffers:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the accepted socket inherits it
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.socket()
    if small_buffers:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    c.settimeout(5)
    c.connect(srv.getsockname())
    conn, _ = srv.accept()
    return srv, c, conn


def test_a_sendall_to_a_peer_that_does_not_read_says_so(leakcheck):
    """The send buffer is full because the peer never calls recv(); part of the data went out."""
    srv, c, conn = connected_pair(small_buffers=True)
    with srv, c, conn:
        c.settimeout(0.2)
        exc = provoke(lambda: c.sendall(b"x" * 4_000_000))
        again = provoke(lambda: c.send(b"y" * 65536))   # the buffers are still full: nothing taken
        assert len(conn.recv(65536, socket.MSG_DONTWAIT)) > 0  # part of the data did arrive
    assert isinstance(exc, TimeoutError) and exc.errno is None
    for e in (explain(exc), explain(exc, call="sendall")):  # from the traceback, or as told
        assert e.title == "Timed out"
        assert "sendall() waited" in e.what and "the peer is not reading" in e.what
        assert "Part of the data may have been sent already" in e.what
        assert "close the connection rather than send the rest" in e.fix
        assert "backlog" not in e.fix and "accept" not in e.why + e.fix and "actually sends" not in e.fix
    e = explain(again)
    assert "send() waited" in e.what and "has sent nothing" in e.fix


def test_a_recv_timeout_names_the_recv_even_when_told_a_step_name(leakcheck):
    """A panel passes its button's name ('send' = connect, sendall, recv): the traceback knows better."""
    srv, c, conn = connected_pair()
    with srv, c, conn:
        c.settimeout(0.1)
        exc = provoke(lambda: c.recv(10))
    for e in (explain(exc), explain(exc, call="send"), explain(exc, call="exchange")):
        assert e.title == "Timed out" and e.what == "recv() waited for its whole timeout and no data arrived."
        assert "who sends first" in e.fix and "backlog" not in e.fix and "not reading" not in e.what


def test_an_accept_timeout_says_no_client_connected(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(0.1)
        exc = provoke(srv.accept)  # socket.py's accept() calls _accept(): named after the first
    e = explain(exc)
    assert e.what == "accept() waited for its whole timeout and no client connected."
    assert "Connect a client" in e.fix and "backlog" not in e.fix


def test_a_connect_timeout_names_the_full_accept_queue(leakcheck):
    srv, filler = full_listener()
    address = srv.getsockname()
    with srv, filler, socket.socket() as c:
        c.settimeout(0.1)
        exc = provoke(lambda: c.connect(address))
    assert isinstance(exc, TimeoutError) and exc.errno is None
    for e in (explain(exc), explain(exc, address, "connect")):
        assert e.what == "connect() waited for its whole timeout and the connection was not set up."
        assert "accept queue is full" in e.why and "larger backlog" in e.fix and "EALREADY" in e.fix


def test_a_send_on_a_socket_whose_connect_timed_out_says_it_never_connected(leakcheck):
    """Notebook 04: c2's connect() timed out (a full queue); c2.sendall() then waits for the
    connection, and was explained as a peer that is not reading."""
    from socklab.trace import TracedSocket, Trace
    srv, filler = full_listener()
    with srv, filler, TracedSocket.create(trace=Trace(), side="client2") as c:
        c.settimeout(0.1)
        assert isinstance(provoke(lambda: c.connect(srv.getsockname())), TimeoutError)
        for call in (lambda: c.sendall(b"bye"), lambda: c.send(b"bye")):
            exc = provoke(call)
            e = explain(exc)
            assert isinstance(exc, TimeoutError) and "never connected" in e.what, e.text()
            assert "not reading" not in e.text() and "connect a new one" in e.fix


def test_a_send_on_a_socket_never_connected_is_not_called_a_peer_that_closed(leakcheck):
    """Linux answers EPIPE, as for a peer that has gone; the explanation said 'the peer closed it'."""
    from socklab.trace import TracedSocket, Trace
    with TracedSocket.create(trace=Trace(), side="client") as c:
        for call in (lambda: c.sendall(b"hi"), lambda: c.send(b"hi")):
            exc = provoke(call)
            e = explain(exc)
            assert isinstance(exc, BrokenPipeError) and e.title == "Not connected", e.text()
            assert "never connected" in e.what and "connect((host, port))" in e.fix
    srv, filler = full_listener()  # a connection whose peer has gone keeps 'Broken pipe'
    with srv, filler:
        conn, _ = srv.accept()
        conn.close()
        c = TracedSocket(filler, Trace(), "client")
        exc = None
        for _ in range(100):  # the first send may still go out; the peer's reset ends the rest
            try:
                c.send(b"x")
            except OSError as e:
                exc = e
                break
        assert exc is not None, "no error after 100 sends to a closed peer"
    assert explain(exc).title != "Not connected"


def test_a_background_result_that_gives_up_is_not_called_an_accept_timeout(leakcheck):
    """Background.result(timeout) gave up; the accept() it waits for is still waiting."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        pending = socklab.Background(srv.accept, name="t-explain/accept")
        try:
            exc = provoke(lambda: pending.result(timeout=0.1))
            assert not pending.done()  # accept() goes on
        finally:
            pending.stop()
    assert isinstance(exc, TimeoutError)
    e = exc.explanation
    assert explain(exc) is e
    assert e.title == "Gave up waiting for another thread"
    assert e.what.startswith("result() waited for its whole timeout")
    assert "(the background accept())" in e.what
    assert "accept() waited" not in e.what and "That work goes on" in e.what
    assert "none has connected yet" in e.why and "Connect a client" in e.fix and "backlog" not in e.fix


def test_a_future_result_that_gives_up_says_the_work_goes_on(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as srv, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        srv.settimeout(5)
        fut = pool.submit(srv.accept)
        exc = provoke(lambda: fut.result(timeout=0.1))
        with socket.create_connection(srv.getsockname(), timeout=5):  # the fix: connect, wait again
            conn, _ = fut.result(timeout=5)
            conn.close()
    assert isinstance(exc, TimeoutError)
    e = explain(exc)
    assert e.title == "Gave up waiting for another thread"
    assert e.what.startswith("result() waited") and "That work goes on" in e.what
    assert "settimeout" not in e.why and "backlog" not in e.fix


def test_a_full_af_unix_queue_makes_only_a_connect_with_a_timeout_fail_at_once(tmp_path):
    """The explanation said it fails at once 'timeout or not'; a blocking connect() waits for room
    (measured here: it connects once the server accept()s)."""
    path = str(tmp_path / "q.sock")
    with socket.socket(socket.AF_UNIX) as srv, socket.socket(socket.AF_UNIX) as first:
        srv.bind(path)
        srv.listen(0)
        first.connect(path)  # the queue's one place
        timed = socket.socket(socket.AF_UNIX)
        timed.settimeout(5)
        with timed:
            exc = provoke(lambda: timed.connect(path))
        assert isinstance(exc, BlockingIOError)
        waiting = socket.socket(socket.AF_UNIX)  # no timeout: blocks until there is room
        done = threading.Event()
        t = threading.Thread(target=lambda: (waiting.connect(path), done.set()))
        t.start()
        assert not done.wait(0.2)  # still waiting for room, not failed
        conn, _ = srv.accept()
        assert done.wait(5)
        t.join(5)
        conn.close()
        waiting.close()
    e = explain(exc)
    assert "however long its timeout" in e.why and "one with no timeout at all waits" in e.why
    assert "timeout or not" not in e.text()


@pytest.mark.parametrize("join", [lambda data: "done: " + data, lambda data: data + "\n"])
def test_str_and_bytes_added_together_are_named(join):
    exc = provoke(lambda: join(b"hello"), TypeError)
    e = explain(exc)
    assert e.title == "str and bytes mixed" and "b'done: ' + data" in e.fix, e.text()


def test_explain_never_raises_even_for_an_exception_that_cannot_be_printed():
    class Unprintable(OSError):
        def __str__(self):
            raise RuntimeError("no")
    e = explain(Unprintable(5, "x"))
    assert e.title == "Unprintable (not explained)" and "RuntimeError" in e.what
    with socklab.notebook.explain_errors() as box:  # and the cell goes on
        raise Unprintable(5, "x")
    assert isinstance(box.error, Unprintable)


def test_a_misspelt_method_is_named_with_its_line_and_the_likely_one():
    """An AttributeError was 'not a socket error ... Check the arguments of the call'."""
    with socket.socket() as s:
        exc = provoke(lambda: s.sned(b"hi"), AttributeError)
    e = explain(exc)
    assert e.title == "No such attribute" and "Did you mean 'send'?" in e.fix
    assert 'provoke(lambda: s.sned(b"hi"), AttributeError)' in e.what and "arguments" not in e.fix


def test_a_host_lookup_error_is_not_read_as_an_errno():
    """herror's number is the resolver's h_errno: 1 is HOST_NOT_FOUND, not EPERM (it was explained
    as 'raw sockets need root')."""
    e = explain(socket.herror(1, "Unknown host"))
    assert e.title == "Host lookup failed" and "Unknown host" in e.what
    assert "root" not in e.text() and "not an errno" in e.fix


def test_too_many_open_files_says_which_limit_and_why(tmp_path):
    """A loop that never closes its sockets, in a child whose descriptor limit is 64."""
    code = textwrap.dedent("""
        import resource, socket
        from socklab.errors import explain, note_call, socket_call_of, watch_socket_calls
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        kept = []
        try:
            while True:
                kept.append(socket.socket())
        except OSError as exc:
            e = explain(exc)
            print(e.title, "|", e.what, "|", e.fix)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("Too many open files |"), out
    assert "ulimit -n" in out.stdout and "with` block" in out.stdout


def test_a_timeout_error_the_learner_raised_is_not_given_socket_advice():
    def ask_server():
        raise TimeoutError("no answer")
    exc = provoke(ask_server)
    for e in (explain(exc), explain(exc, call="connect")):  # a raise statement is not connect()'s timeout
        assert e.title == "TimeoutError raised by code"
        assert "('no answer')" in e.what and "in ask_server()" in e.what
        assert "not by a socket call" in e.what
        text = e.why + e.fix
        assert "backlog" not in text and "accept" not in text and "connect" not in text


# ---- wrong addresses: what exactly is wrong with this one

@pytest.mark.parametrize("address, problem, fix", [
    (("127.0.0.1",), "The tuple ('127.0.0.1',) has no port", "('127.0.0.1', 8080)"),
    (("127.0.0.1", "80"), "The port is the str '80', not an int", "Write ('127.0.0.1', 80)"),
    ("localhost", "'localhost' is a host alone, one str; the port is missing", "('localhost', 8080)"),
    (("127.0.0.1", 80, 3), "The tuple has 3 items; AF_INET takes exactly two", "Write ('127.0.0.1', 80)."),
    ("127.0.0.1:8080", "host and port in one string are not split", "Write ('127.0.0.1', 8080)"),
    ((80, "127.0.0.1"), "Host and port are swapped", "Write ('127.0.0.1', 80)."),
    (["127.0.0.1", 80], "a list; it must be a tuple", "Write ('127.0.0.1', 80)."),
])
def test_a_wrong_address_says_what_is_wrong_with_it(address, problem, fix, leakcheck):
    with socket.socket() as s:
        exc = provoke(lambda: s.connect(address), TypeError)
    e = explain(exc, address, "connect")
    assert e.title == "Wrong address format"
    assert problem in e.why and fix in e.fix
    assert "'8080' is a str" not in e.why


def test_a_wrong_address_without_the_address_is_read_from_the_message(leakcheck):
    with socket.socket() as s:
        short = provoke(lambda: s.connect(("127.0.0.1",)), TypeError)
        port_str = provoke(lambda: s.connect(("127.0.0.1", "80")), TypeError)
    e = explain(short)  # no call, no address: CPython's message and the traceback say enough
    assert e.title == "Wrong address format" and "the port is missing" in e.why
    e = explain(port_str)
    assert e.title == "Wrong address format" and "a str, not an int" in e.why
    assert "'127.0.0.1:8080' is one string" not in e.why


def test_a_str_bufsize_is_not_called_an_address_problem(leakcheck):
    a, b = socket.socketpair()
    with a, b, socklab.TracedSocket.create() as t:
        plain = provoke(lambda: a.recv("1024"), TypeError)
        traced = provoke(lambda: t.recv("1024"), TypeError)
    for exc in (plain, traced):
        for e in (explain(exc), explain(exc, call="recv"), explain(exc, call="server recv")):
            assert e.title == "Wrong argument type", e.text()
            assert "recv(1024) rather than recv('1024')" in e.fix


def test_a_descriptor_taken_over_by_wrap_socket_or_detach_is_explained(leakcheck):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with socket.socket() as plain:
        with ctx.wrap_socket(plain, server_hostname="localhost", do_handshake_on_connect=False):
            assert plain.fileno() == -1  # the descriptor is the SSLSocket's now
            wrapped = provoke(lambda: plain.connect(("127.0.0.1", 9)))
    a, b = socket.socketpair()
    with b, socket.socket(fileno=a.detach()):
        detached = provoke(lambda: a.sendall(b"x"))
    for exc, call in ((wrapped, "connect"), (detached, "sendall")):
        assert exc.errno == errno.EBADF
        e = explain(exc, call=call)
        assert e.title == "Bad file descriptor" and "already closed" in e.what
        assert "wrap_socket(sock) and sock.detach()" in e.why and "fileno() -1" in e.why
        assert "After wrap_socket(), use the socket it returned" in e.fix


def test_a_tls_sendall_or_recv_timeout_is_named_as_the_learner_called_it(leakcheck):
    """ssl's sendall() loops over its send(), its recv() calls read(): the explanation names the
    call the code made (a sendall may have sent part of the data; a send, nothing)."""
    import threading
    import socklab.tls
    certs = socklab.tls.Certificates()
    srv, c, conn = connected_pair(small_buffers=True)
    server_side = []

    def handshake():  # the server's side of the handshake, then it never reads
        server_side.append(certs.server_context().wrap_socket(conn, server_side=True))
    t = threading.Thread(target=handshake)
    t.start()
    tls = certs.client_context().wrap_socket(c, server_hostname="localhost")
    t.join(5)
    with srv, tls, server_side[0]:
        tls.settimeout(0.2)
        recv_exc = provoke(lambda: tls.recv(10))
        send_exc = provoke(lambda: tls.sendall(b"x" * 4_000_000))
    e = explain(send_exc)
    assert "sendall() waited" in e.what and "Part of the data may have been sent" in e.what, e.what
    assert "has sent nothing" not in e.fix
    assert explain(recv_exc).what == "recv() waited for its whole timeout and no data arrived."


@pytest.mark.parametrize("address", ["::1:8080", "fe80::1%lo:8080"])
def test_an_ipv6_host_and_port_in_one_str_is_not_split_wrongly(address, leakcheck):
    with socket.socket(socket.AF_INET6) as s:
        exc = provoke(lambda: s.connect(address), TypeError)
    e = explain(exc, address, "connect")
    assert "IPv6" in e.why and "('::1', 8080)" in e.fix, e.text()
    assert f"({address!r}, 8080)" not in e.fix  # not a tuple whose host still holds the port


def test_a_send_on_a_socket_that_never_connected_is_not_only_blamed_on_a_peer():
    """Linux answers EPIPE there too: the explanation told only of a peer that closed."""
    with socket.socket() as s:
        s.settimeout(2)
        with pytest.raises(BrokenPipeError) as info:
            s.send(b"hello")
    e = socklab.explain(info.value)
    assert "never connected" in e.what and "connect() it first" in e.fix, e.text()


@pytest.mark.parametrize("kind, call, says", [
    (socket.SOCK_DGRAM, "accept", "a SOCK_DGRAM socket, which can never accept, ends here too"),
    (socket.SOCK_STREAM, "recv", "A listening socket never has data"),
], ids=["accept() on UDP", "recv() on a listener"])
def test_a_call_that_can_never_succeed_times_out_and_says_why_that_may_be(kind, call, says):
    """With a timeout, Python waits for readiness before the call, so the OS never refuses it:
    the explanation only said that no client came (or that the peer sent nothing)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen()
        s.settimeout(0.05)
        with pytest.raises(TimeoutError) as info:
            if call == "accept":
                s.accept()
            else:
                s.recv(10)
    assert says in socklab.explain(info.value).text()


def refused_port() -> int:
    """A loopback port nothing listens on: bound, then closed (it stays free for these tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_tcp_connect_speaks_of_tcp_only_where_the_call_is_known(leakcheck):
    address = ("127.0.0.1", refused_port())
    with socket.socket() as c:
        exc = provoke(lambda: c.connect(address))
    assert isinstance(exc, ConnectionRefusedError)
    e = explain(exc, address, "connect")
    assert "No socket is listening" in e.why and "accept queue does NOT" in e.why
    assert "UDP" not in e.why and "AF_UNIX" not in e.why + e.fix
    plain = explain(exc, call="connect")  # plain socket code: the family is not known
    assert "UDP" not in plain.why and "stale socket file" in plain.why
    assert "path the server bound" in plain.fix
    unknown = explain(exc)  # not even the call: every case stays in
    assert "UDP" in unknown.why and "AF_UNIX" in unknown.why


def test_refused_on_a_connected_udp_socket_is_the_earlier_datagram(leakcheck):
    address = ("127.0.0.1", refused_port())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.connect(address)
        u.send(b"ping")                   # answered by ICMP port unreachable
        exc = provoke(lambda: u.recv(100))
    assert isinstance(exc, ConnectionRefusedError)
    unknown = explain(exc, address, "recv")  # the socket's type is not known: every case
    assert "connected UDP socket" in unknown.why and "non-blocking connect()" in unknown.why
    note_call(exc, "recv")  # as a cell's error display does: `u` is the socket recv() was called on
    e = explain(exc)
    assert "earlier datagram" in e.what and "port unreachable" in e.what
    assert "accept queue" not in e.why and "connected UDP socket" in e.why
    assert "server.address" not in e.fix and "still usable" in e.fix
    assert "AF_UNIX" not in e.why + e.fix and "non-blocking" not in e.why


def test_refused_send_on_a_connected_af_unix_datagram_socket_names_the_closed_peer(leakcheck):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.close()
    with a:
        exc = provoke(lambda: a.send(b"x"))
    assert isinstance(exc, ConnectionRefusedError)
    assert "AF_UNIX datagram socket" in explain(exc, call="send").why  # type unknown: among others
    note_call(exc, "send")
    e = explain(exc)
    assert "AF_UNIX datagram socket" in e.what and "receiver closed" in e.why
    assert "ENOTCONN" in e.why and "connect() an AF_UNIX datagram socket again" in e.fix
    assert "earlier datagram" not in e.what and "listening" not in e.why and "UDP" not in e.why


def test_bind_in_a_missing_directory_says_create_it_not_start_the_server(leakcheck, tmp_path):
    path = str(tmp_path / "no-such-dir" / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        exc = provoke(lambda: s.bind(path))
    assert isinstance(exc, FileNotFoundError)
    e = explain(exc, path, "bind")
    assert "directory" in e.what and "makedirs" in e.fix and "Start the server" not in e.fix
    with socket.socket(socket.AF_UNIX) as c:  # connect() to it: that is the missing server
        exc = provoke(lambda: c.connect(path))
    assert "Start the server first" in explain(exc, path, "connect").fix


@pytest.mark.parametrize("family, type_, level, option", [
    (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_TCP, socket.TCP_NODELAY),
    (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
    (socket.AF_INET, socket.SOCK_STREAM, socket.SOL_SOCKET, 9999),
])
def test_an_option_the_socket_lacks_is_explained(leakcheck, family, type_, level, option):
    with socket.socket(family, type_) as s:
        exc = provoke(lambda: s.setsockopt(level, option, 1))
    assert exc.errno == errno.ENOPROTOOPT
    e = explain(exc, call="setsockopt")
    assert e.title == "Option not available" and "level" in e.why and "TCP_NODELAY" in e.fix


def test_a_tls_handshake_with_a_peer_that_does_not_speak_tls_times_out_explained(leakcheck):
    ctx = ssl.create_default_context()
    with socket.create_server(("127.0.0.1", 0)) as plain:  # accepts (in the kernel), never answers
        with socket.create_connection(plain.getsockname(), timeout=0.2) as tcp:
            exc = provoke(lambda: ctx.wrap_socket(tcp, server_hostname="localhost"), TimeoutError)
            conn, _ = plain.accept()
            conn.close()
    e = explain(exc)  # the call is read from the traceback
    assert "TLS handshake" in e.what and "ClientHello" in e.why and "server_side=True" in e.fix


def test_a_makefile_read_timeout_names_the_file_and_what_follows(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        f = a.makefile("rb")
        with f:
            exc = provoke(f.readline, TimeoutError)
            e = explain(exc)
            assert "makefile()" in e.what and "readinto" not in e.what
            assert "cannot read from timed out object" in e.fix
            b.sendall(b"late\n")
            after = provoke(f.readline)  # the file is done for, though the line has arrived
    assert str(after) == "cannot read from timed out object"
    e = explain(after)
    assert e.title == "File unusable after a timeout" and "makefile()" in e.fix


def test_explain_errors_reads_the_failed_call_from_the_traceback(leakcheck, capsys):
    """``with explain_errors(): u.recv(...)`` is told as UDP's refusal, not as a refused connect()."""
    from socklab.notebook import explain_errors
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.connect(("127.0.0.1", refused_port()))
        u.send(b"ping")
        with explain_errors() as caught:
            u.recv(100)
    assert isinstance(caught.error, ConnectionRefusedError)
    shown = capsys.readouterr().out
    assert "connected UDP socket" in shown and "accept queue" not in shown


def test_a_traced_socket_notes_its_call_and_address_for_the_explanation(leakcheck, tmp_path):
    """explain(exc) alone, as a cell's error display calls it, knows what a socklab socket was doing."""
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)
    with socklab.socket("AF_UNIX") as c:
        exc = provoke(lambda: c.connect(path))
    e = explain(exc)
    assert "stale socket file" in e.why and "port" not in e.what + e.why + e.fix
    with socklab.socket() as c:
        exc = provoke(lambda: c.connect(("127.0.0.1", refused_port())))
    e = explain(exc)
    assert "No socket is listening" in e.why and "AF_UNIX" not in e.why + e.fix
    with socklab.socket("AF_INET", "SOCK_DGRAM") as u:
        u.settimeout(5)
        u.connect(("127.0.0.1", refused_port()))
        u.send(b"ping")
        exc = provoke(lambda: u.recv(100))
    assert "connected UDP socket" in explain(exc).why


# ---- a learner's plain socket code, as a cell's error display sees it: socket_call_of() finds
# the call, note_call() what it was called on (and, with watch_socket_calls(), the address)

def noted(fn, kind=OSError):
    """The error ``fn`` raises, with what note_call() notes on it, as the notebook handler does."""
    watch_socket_calls()
    exc = provoke(fn, kind)
    note_call(exc, socket_call_of(exc))
    return exc


def test_sending_on_the_listening_socket_is_named(leakcheck):
    """The classic slip `srv.sendall(...)` for `conn.sendall(...)`, with and without a timeout."""
    with socket.create_server(("127.0.0.1", 0)) as srv, \
            socket.create_connection(srv.getsockname(), timeout=5) as cli:
        conn, _ = srv.accept()
        with conn:
            srv.settimeout(0.1)
            exc = noted(lambda: srv.sendall(b"welcome\n"), TimeoutError)
            e = explain(exc)
            assert e.title == "Not a connection" and "conn, addr = srv.accept()" in e.fix
            assert "not reading" not in e.what
            srv.settimeout(None)
            exc = noted(lambda: srv.send(b"welcome\n"), BrokenPipeError)
            assert explain(exc).title == "Not a connection"
            srv.settimeout(0.1)
            exc = noted(lambda: srv.recv(100), TimeoutError)
            assert explain(exc).title == "Not a connection"
        plain = explain(provoke(lambda: srv.sendall(b"x"), TimeoutError), call="sendall")
        assert "listening socket" in plain.what  # nothing noted: the text still names the case
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the fix uses the learner's name
        listener.settimeout(0.05)
        exc = noted(lambda: listener.recv(10), TimeoutError)
        assert "conn, addr = listener.accept()" in explain(exc).fix
    with socklab.socket() as lst:  # a traced listener says it by itself
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        lst.settimeout(0.1)
        exc = provoke(lambda: lst.sendall(b"x"), TimeoutError)
        e = explain(exc)
        assert e.title == "Not a connection" and "SYN-SENT" not in e.why


def test_tcp_options_on_an_af_unix_socket_and_an_inet_socketpair(leakcheck):
    with socket.socket(socket.AF_UNIX) as s:
        exc = noted(lambda: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
    assert exc.errno == errno.EOPNOTSUPP
    e = explain(exc)
    assert "AF_UNIX socket has only SOL_SOCKET options" in e.why and "listen" not in e.why
    exc = noted(lambda: socket.socketpair(socket.AF_INET))
    e = explain(exc, call="socketpair")
    assert exc.errno == errno.EOPNOTSUPP and "only AF_UNIX pairs" in e.why


def test_the_file_after_a_makefile_timeout_is_a_socket_matter(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        with a.makefile("rb") as f:
            provoke(f.readline, TimeoutError)
            exc = provoke(f.readline)
    assert socket_call_of(exc) == "readinto"  # so a cell's handler explains it


def test_plain_code_gets_the_address_it_passed_explained(leakcheck, tmp_path):
    """With watch_socket_calls(), a plain connect() or bind() is explained with its address."""
    name = "\0socklab-test-nobody-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX) as c:
        exc = noted(lambda: c.connect(name))
    e = explain(exc)
    assert "abstract" in e.what and "stale" not in e.why + e.fix
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(name)
        srv.listen()
        with socket.socket(socket.AF_UNIX) as c:  # the '@' that ss shows for the NUL byte
            exc = noted(lambda: c.connect("@" + name[1:]))
    e = explain(exc)
    assert isinstance(exc, FileNotFoundError) and "'\\0" in e.fix and "ss" in e.why
    with socket.socket(socket.AF_INET6) as s:
        exc = noted(lambda: s.bind(("fe80::1", 0)))
    assert exc.errno in (errno.EINVAL, errno.EADDRNOTAVAIL)
    if exc.errno == errno.EINVAL:
        assert "link-local" in explain(exc).what


def test_udp_address_in_use_never_advises_so_reuseaddr(leakcheck):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
        first.bind(("127.0.0.1", 0))
        exc = noted(lambda: second.bind(first.getsockname()))
    e = explain(exc)
    assert exc.errno == errno.EADDRINUSE and "UDP socket" in e.what
    assert "TIME_WAIT" in e.why and "Do not set SO_REUSEADDR" in e.fix and "AF_UNIX" not in e.fix
    with socket.create_server(("127.0.0.1", 0)) as lst, socket.socket() as other:
        exc = noted(lambda: other.bind(lst.getsockname()))
    e = explain(exc)
    assert "still listening" in e.why and "AF_UNIX" not in e.why + e.fix


def test_errors_whose_meaning_depends_on_the_call(leakcheck):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        exc = noted(lambda: u.send(b"hello"))
    assert exc.errno == errno.EDESTADDRREQ and "sendto(data, (host, port))" in explain(exc).fix
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        exc = noted(lambda: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0))
    assert exc.errno == errno.EINVAL and "before bind()" in explain(exc).why
    with socket.create_server(("127.0.0.1", 0)) as lst, \
            socket.create_connection(lst.getsockname(), timeout=5) as c:
        exc = noted(lambda: c.listen())
    assert exc.errno == errno.EINVAL and "connect()ed" in explain(exc).why
    exc = noted(lambda: socket.create_server(("127.0.0.1", 0), family=socket.AF_INET6))
    e = explain(exc)
    assert e.title == "Address family does not match the address" and "man 2" not in e.fix
    with socket.create_server(("127.0.0.1", 0)) as lst, socket.socket() as c:
        c.setblocking(False)
        exc = noted(lambda: c.connect(lst.getsockname()), BlockingIOError)
    assert exc.errno == errno.EINPROGRESS
    e = explain(exc)
    assert "not a failure" in e.what and "SO_ERROR" in e.fix and "try again" not in e.fix


def test_a_non_blocking_sendall_warns_that_part_may_be_sent(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        exc = noted(lambda: a.sendall(b"x" * 50_000_000), BlockingIOError)
    e = explain(exc)
    assert "part of the data" in e.why and "send() in a loop" in e.fix


def test_the_wrong_level_for_tcp_nodelay_as_an_unprivileged_user(as_nobody):
    r = as_nobody(textwrap.dedent("""
        import json, socket
        from socklab.errors import explain, note_call, socket_call_of
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.TCP_NODELAY, 1)
        except OSError as exc:
            note_call(exc, socket_call_of(exc))
            e = explain(exc)
            print(json.dumps({"errno": exc.errno, "why": e.why, "fix": e.fix}))
        else:
            print(json.dumps({"errno": 0}))
        s.close()
    """))
    assert r["errno"] == errno.EACCES
    assert "SO_DEBUG" in r["why"] and "IPPROTO_TCP" in r["fix"] and "port" not in r["fix"]


def test_replying_to_an_unbound_af_unix_datagram_client_names_the_missing_address(leakcheck, tmp_path):
    path = str(tmp_path / "srv.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:  # never binds a path
        srv.bind(path)
        srv.settimeout(5)
        client.sendto(b"ping", path)
        data, addr = srv.recvfrom(100)
        assert addr is None
        exc = provoke(lambda: srv.sendto(b"pong", addr), TypeError)
    e = explain(exc)
    assert e.title == "No address to send to" and "bind() a path of its own" in e.fix
    assert "bytes, not str" not in e.title


def test_a_tls_server_waiting_for_a_plain_client_is_told_from_the_server_side(leakcheck):
    server_ctx = socklab.tls.Certificates().server_context()  # in memory: nothing to clean up
    with socket.create_server(("127.0.0.1", 0)) as lst, \
            socket.create_connection(lst.getsockname(), timeout=5):  # a client that never wraps
        conn, _ = lst.accept()
        with conn:
            conn.settimeout(0.2)
            exc = provoke(lambda: server_ctx.wrap_socket(conn, server_side=True), TimeoutError)
    e = explain(exc)
    assert "server's TLS handshake" in e.what and "client's ClientHello" in e.what
    assert "server_hostname" in e.fix and "server_side=True" not in e.fix


def test_connecting_to_port_zero_is_told_what_port_zero_means(leakcheck):
    with socket.socket() as c:
        exc = noted(lambda: c.connect(("127.0.0.1", 0)))
    e = explain(exc)
    assert isinstance(exc, ConnectionRefusedError) and "only to bind()" in e.why
    assert "getsockname()" in e.fix


def test_a_refused_connect_names_the_race_with_a_server_thread(leakcheck):
    """socket-facts: a client connecting right after Thread.start() is refused now and then."""
    with socket.socket() as c:
        exc = noted(lambda: c.connect(("127.0.0.1", refused_port())))
    assert "threading.Event after listen()" in explain(exc).fix


def test_permission_denied_names_only_the_case_of_the_call(as_nobody):
    r = as_nobody(textwrap.dedent("""
        import json, socket
        from socklab.errors import explain, note_call, socket_call_of, watch_socket_calls
        watch_socket_calls()
        out = {}

        def told(key, exc):
            note_call(exc, socket_call_of(exc))
            e = explain(exc)
            out[key] = [exc.errno, e.why, e.fix]

        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 80))
            except OSError as exc:
                told("port 80", exc)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.sendto(b"x", ("255.255.255.255", 9))
            except OSError as exc:
                told("broadcast", exc)
        print(json.dumps(out))
    """))
    port, broadcast = r["port 80"], r["broadcast"]
    assert port[0] == errno.EACCES and "1024" in port[1] and "AF_UNIX" not in port[1] + port[2]
    assert "broadcast" not in port[1].lower()
    assert broadcast[0] == errno.EACCES and "SO_BROADCAST" in broadcast[2] and "1024" not in broadcast[1]


def test_timeouts_and_would_block_are_told_for_the_socket_type(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as lst, \
            socket.create_connection(lst.getsockname(), timeout=5) as c:
        conn, _ = lst.accept()
        with conn:
            c.settimeout(0.05)
            tcp = explain(noted(lambda: c.recv(10), TimeoutError))
            c.setblocking(False)
            eagain = explain(noted(lambda: c.recv(10), BlockingIOError))
    assert "UDP" not in tcp.why + tcp.fix and "who sends first" in tcp.fix
    assert "AF_UNIX" not in eagain.why + eagain.fix and "selectors" in eagain.fix
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        u.settimeout(0.05)
        udp = explain(noted(lambda: u.recvfrom(10), TimeoutError))
    assert "no datagram arrived" in udp.what and "send the request again" in udp.fix
    assert "makefile" not in udp.why


def test_af_unix_datagram_timeouts_are_not_told_as_udp(leakcheck, tmp_path):
    """A full AF_UNIX receiver makes a sender wait (UDP would drop), its datagrams are never lost,
    and an unbound one has no path (not port 0): no timeout is told with UDP's loss or TCP's send
    buffer, for plain sockets and traced ones."""
    path = str(tmp_path / "r")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as r:
        r.bind(path)
        r.setblocking(False)
        for make in (lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
                     lambda: socklab.socket("AF_UNIX", "SOCK_DGRAM")):
            for bound in (False, True):
                with make() as s:
                    if bound:
                        s.bind(str(tmp_path / "client"))
                    s.settimeout(0.05)
                    s.connect(path)

                    def fill():
                        while True:
                            s.send(b"x")
                    sent = noted(fill, TimeoutError)
                    got = noted(lambda: s.recv(10), TimeoutError)
                if bound:
                    os.unlink(str(tmp_path / "client"))
                e = explain(sent)
                assert "receiver's queue" in e.what and "send buffer" not in e.what + e.why, e.text()
                e = explain(got)
                assert "UDP" not in e.what + e.why and "port" not in e.what + e.why, e.text()
                assert ("AF_UNIX datagrams are not lost" in e.why if bound else
                        "never bound" in e.what and "None" in e.why), e.text()
                with pytest.raises(BlockingIOError):
                    while True:  # empty the queue for the next sender
                        r.recv(10)


@pytest.mark.parametrize("name, near", [("OSEror", "OSError"), ("TimeoutErorr", "TimeoutError"),
                                        ("AF_INTE", "AF_INET"), ("sock", None), ("conn", None),
                                        ("lisener", None)])
def test_a_misspelt_name_is_told_as_a_typo_and_a_missing_variable_is_not(name, near):
    """Inside a check, `raise OSEror(path)` used to be told 'run the cells above first'."""
    exc = provoke(lambda: eval(name), NameError)
    e = explain(exc)
    if near:
        assert f"a typo of '{near}'" in e.what and e.fix == f"Write {near}.", e.text()
    else:
        assert "typo" not in e.text() and "never assigned" in e.what, e.text()
