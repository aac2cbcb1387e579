"""socklab.Background on real sockets: a blocking call in a thread, collected with result();
stopping a waiting reading call (a re-run of its cell) leaves the socket it waited on as it was."""
from __future__ import annotations

import socket

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


def test_accept_in_the_background_returns_the_connection(leakcheck):
    srv = listener()
    pending = socklab.Background(srv.accept, name="bg-test/accept")
    assert not pending.done()
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        conn, addr = pending.result(timeout=5)
        assert addr == c.getsockname()
        conn.close()
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
    with socket.create_connection(srv.getsockname(), timeout=5):
        conn, _ = new.result(timeout=5)
        conn.close()
    new.stop()
    srv.close()


def test_rerunning_registers_stops_the_old_wait_only(leakcheck):
    srv = listener()
    first = socklab.Background(srv.accept, name="bg-test/same-cell")
    second = socklab.Background(srv.accept, name="bg-test/same-cell")  # the registry stops `first`
    assert first.done() and not second.done() and listening(srv)
    with socket.create_connection(srv.getsockname(), timeout=5):
        conn, _ = second.result(timeout=5)
        conn.close()
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
