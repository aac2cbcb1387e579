"""socklab.Background on real sockets: a blocking call in a thread, collected with result();
stopping a waiting reading call (a re-run of its cell) leaves the socket it waited on as it was."""
from __future__ import annotations

import socket
import threading

import pytest

import socklab
from socklab.errors import SocklabError


def listener(timeout=5.0):
    srv = socklab.socket("AF_INET", "SOCK_STREAM", side="server", name="bg-test/listener")
    srv.settimeout(timeout)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    return srv


def listening(sock) -> bool:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def connect_and_collect(srv, job):
    """A client connects to ``srv``; ``job`` (a background accept) returns its connection, which is
    closed here. Returns (the address accept() gave, the client's own address)."""
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        conn, addr = job.result(timeout=5)
        conn.close()
        return addr, c.getsockname()


def test_accept_in_the_background_returns_the_connection(leakcheck):
    srv = listener()
    pending = socklab.Background(srv.accept, name="bg-test/accept")
    assert not pending.done()
    addr, client = connect_and_collect(srv, pending)
    assert addr == client
    pending.stop()
    srv.close()


def test_stopping_a_waiting_accept_leaves_the_listener_listening(leakcheck):
    """It used to shut the listener down: the cell that made it could not accept any more."""
    srv = listener()
    old = socklab.Background(srv.accept, name="bg-test/accept")
    old.stop()
    assert old.done()
    with pytest.raises(SocklabError) as info:
        old.result(timeout=1)
    assert info.value.explanation.title == "Stopped before it returned"
    assert listening(srv)
    assert [e.call for e in srv.trace if e.side == "server"] == ["socket", "settimeout", "bind", "listen",
                                                                  "note"]
    assert "stopped while waiting" in list(srv.trace)[-1].args[0]
    new = socklab.Background(srv.accept, name="bg-test/accept")  # what re-running the cell does
    connect_and_collect(srv, new)
    new.stop()
    srv.close()


def test_rerunning_registers_stops_the_old_wait_only(leakcheck):
    srv = listener()
    first = socklab.Background(srv.accept, name="bg-test/same-cell")
    second = socklab.Background(srv.accept, name="bg-test/same-cell")  # the registry stops `first`
    assert first.done() and not second.done() and listening(srv)
    connect_and_collect(srv, second)
    second.stop()
    srv.close()


def test_stopping_a_waiting_recv_leaves_the_connection_usable(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        t = socklab.trace.Trace()
        ta = socklab.trace.TracedSocket(a, trace=t, side="a")
        ta.settimeout(5)
        waiting = socklab.Background(ta.recv, 100, name="bg-test/recv")
        waiting.stop()
        b.sendall(b"still here")
        assert ta.recv(100) == b"still here"
        again = socklab.Background(ta.recv, 100, name="bg-test/recv")
        b.sendall(b"and again")
        assert again.result(timeout=5) == b"and again"
        again.stop()


def test_a_reading_call_still_times_out_and_the_trace_shows_it(leakcheck):
    srv = listener(timeout=0.1)
    pending = socklab.Background(srv.accept, name="bg-test/timeout")
    with pytest.raises(TimeoutError):
        pending.result(timeout=5)
    accepts = [e for e in srv.trace if e.call == "accept"]
    assert len(accepts) == 1 and isinstance(accepts[0].error, TimeoutError)
    assert srv.gettimeout() == 0.1  # the untraced bookkeeping put the timeout back
    pending.stop()
    srv.close()


def test_other_calls_are_still_woken_by_shutdown(leakcheck):
    """A function blocked on a socket it was given (``wake=``) cannot be made to wait for
    readability: stop() shuts that socket down, as before."""
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(10)
        job = socklab.Background(lambda: a.recv(100), name="bg-test/wake", wake=a)
        job.stop(timeout=5)
        assert job.result(timeout=1) == b""  # shutdown(SHUT_RDWR) ended the recv with EOF


def test_a_closed_socket_gives_its_own_error(leakcheck):
    """Out of order in a notebook: the socket was closed before the cell ran."""
    srv = listener()
    srv.close()
    pending = socklab.Background(srv.accept, name="bg-test/closed")
    with pytest.raises(OSError) as info:
        pending.result(timeout=5)
    assert info.value.errno == 9  # EBADF, as accept() on a closed socket gives
    pending.stop()


def test_two_waiters_on_one_socket_both_end(leakcheck):
    """Readable is not 'mine': when another waiter takes the data first, this one waits again and
    still stops at once (it used to block inside recv() where stop() could not reach it)."""
    import threading
    for _ in range(10):
        a, b = socket.socketpair()
        with a, b:
            t = socklab.trace.Trace()
            tb = socklab.trace.TracedSocket(b, trace=t, side="b")
            tb.settimeout(5)
            got = threading.Event()
            t.subscribe(lambda ev: got.set() if ev.call == "recv" and ev.error is None else None)
            jobs = [socklab.Background(tb.recv, 100, name=f"bg-test/{n}") for n in ("one", "two")]
            a.sendall(b"only one message")
            assert got.wait(5)
            for job in jobs:
                job.stop(timeout=2)  # raises if its thread did not end
            outcomes = []
            for job in jobs:
                try:
                    outcomes.append(job.result(timeout=0))
                except SocklabError as exc:
                    outcomes.append(exc.explanation.title)
            assert sorted(outcomes, key=str) == ["Stopped before it returned", b"only one message"]


def test_a_tls_socket_is_not_waited_on_by_readability(leakcheck):
    """An SSLSocket may hold decrypted data while its TCP socket is not readable (and be readable
    with no data for the program): its recv() is called directly, as a plain call would be."""
    import ssl
    trustme = pytest.importorskip("trustme", reason="socklab.tls needs trustme")
    from socklab import tls
    certs = tls.Certificates()
    with tls.echo_server(certs) as srv:
        raw = socket.create_connection(srv.address, timeout=5)
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as cli:
            cli.sendall(b"hello world")
            got = b""
            while len(got) < 5:
                got += cli.recv(5 - len(got))
            assert got == b"hello"
            rest = socklab.Background(cli.recv, 100, name="bg-test/tls")
            assert rest.result(timeout=2) == b" world"  # already decrypted, inside the SSL object
            rest.stop()
    assert trustme and ssl


def test_a_failed_call_stopped_and_dropped_frees_its_socket_at_once(leakcheck):
    """Notebook 08 (the parent and child over socketpair()): a re-run dropped a Background whose
    call had failed, and its socket stayed open until the garbage collector ran. The error's
    frames held the socket, and held the Background itself through the frame of its thread."""
    import gc
    import weakref

    def child(sock):
        sock.settimeout(0.05)
        return sock.recv(10)  # nothing comes: TimeoutError

    a, b = socket.socketpair()
    job = socklab.Background(child, b, name="bg-test/child")
    with pytest.raises(TimeoutError):
        job.result(timeout=5)
    was_enabled = gc.isenabled()
    gc.disable()  # freed by reference counting alone, not by a collection that happens to run
    try:
        job.stop()
        gone_job, gone_sock = weakref.ref(job), weakref.ref(b)
        del job, b
        assert gone_job() is None and gone_sock() is None
    finally:
        if was_enabled:
            gc.enable()
        a.close()


def test_a_stopped_failed_call_still_explains_its_error(leakcheck):
    srv = listener(timeout=0.05)
    job = socklab.Background(srv.accept, name="bg-test/accept-timeout")
    first = pytest.raises(TimeoutError, job.result, timeout=5).value
    job.stop()  # its frames are cleared now
    again = pytest.raises(TimeoutError, job.result, timeout=5).value
    assert socklab.explain(again).text() == socklab.explain(first).text()
    assert "accept" in socklab.explain(again).what
    srv.close()


def test_a_stopped_call_lets_go_of_its_socket_while_the_object_is_still_held(leakcheck):
    """IPython keeps the last error's traceback: a result() that raised holds its Background. The
    socket given to the call stayed open after stop_all() (notebook 08, cells run out of order)."""
    import gc
    import weakref

    def child(sock):
        sock.settimeout(0.05)
        return sock.recv(10)

    a, b = socket.socketpair()
    job = socklab.Background(child, b, name="bg-test/held")
    with pytest.raises(TimeoutError):
        job.result(timeout=5)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        socklab.stop_all()
        gone = weakref.ref(b)
        del b
        assert gone() is None and job.done()  # job itself is still here, as a traceback keeps it
        assert "child" in repr(job)
    finally:
        if was_enabled:
            gc.enable()
        a.close()


@pytest.mark.parametrize("in_background", [False, True], ids=["accept() in the cell", "in a Background"])
def test_connections_a_socklab_listener_accepted_are_closed_by_stop_all(in_background, leakcheck):
    """A listener from socklab.socket() was closed by stop_all(), its accepted connections were
    not (notebook 08: an AF_UNIX connection kept its listener's socket file in use)."""
    srv = listener()
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        if in_background:
            job = socklab.Background(srv.accept, name="bg-test/accept-conn")
            conn, _ = job.result(timeout=5)
        else:
            conn, _ = srv.accept()
        assert any(o is conn for o in socklab.running())
        socklab.stop_all()
        assert conn.closed and srv.closed
        c.settimeout(5)
        assert c.recv(10) == b""  # the peer sees the close


def test_stop_all_closes_the_sockets_a_background_call_waits_on_first(leakcheck):
    """urllib in the background, connected to a socklab listener nobody accepts on (notebook 11's
    'reverse' section): stop_all() closes the listener before it stops the call, so the call ends
    (its connection is reset) instead of holding stop_all() for its whole timeout."""
    srv = listener()
    sent = threading.Event()

    def fetch():  # a client socklab cannot reach: only the listener's close ends its wait
        with socket.create_connection(srv.getsockname(), timeout=30) as c:
            c.sendall(b"GET / HTTP/1.1\r\n\r\n")
            sent.set()
            return c.recv(100)

    job = socklab.Background(fetch, name="bg-test/fetch")  # made after the listener: newer
    assert sent.wait(5)
    assert socklab.stop_all() == 2  # no SocklabError: nothing was left running
    assert job.done()
    with pytest.raises(ConnectionResetError):
        job.result(timeout=1)
