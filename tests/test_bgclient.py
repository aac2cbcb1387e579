"""BackgroundClient on real sockets: bad arguments are explained up front and leave nothing behind."""
from __future__ import annotations

import os
import socket

import pytest

import socklab
from socklab import runtime
from socklab.bgclient import BackgroundClient


@pytest.fixture
def echo_server():
    with socklab.Server() as srv:
        yield srv


@pytest.mark.parametrize("args, kw, title", [
    pytest.param((b"hello",), {}, "messages must be a list of messages", id="one bytes"),
    pytest.param(("hello",), {}, "messages must be a list of messages", id="one str"),
    pytest.param((bytearray(b"hi"),), {}, "messages must be a list of messages", id="one bytearray"),
    pytest.param((None,), {}, "messages must be a list of messages", id="None"),
    pytest.param(([b"a", 7],), {}, "A message must be bytes or str", id="an int message"),
    pytest.param(([b"a"],), {"timeout": "5"}, "Invalid timeout", id="timeout str"),
    pytest.param(([b"a"],), {"timeout": 0}, "Invalid timeout", id="timeout 0"),
    pytest.param(([b"a"],), {"timeout": None}, "Invalid timeout", id="timeout None"),
])
def test_bad_arguments_are_explained_and_nothing_starts(echo_server, args, kw, title, leakcheck):
    with pytest.raises(socklab.ConfigError) as info:
        BackgroundClient(echo_server.address, *args, name="bg-bad", **kw)
    assert info.value.explanation.title == title
    assert [o for o in runtime.running() if isinstance(o, BackgroundClient)] == []


def test_single_message_explanation_suggests_a_list(echo_server):
    with pytest.raises(socklab.ConfigError) as info:
        BackgroundClient(echo_server.address, "hello", name="bg-one")
    assert "one character at a time" in info.value.explanation.what
    assert "['hello']" in info.value.explanation.fix


def test_str_and_bytes_like_messages_are_sent_as_bytes(echo_server, leakcheck):
    bg = BackgroundClient(echo_server.address, [b"a", "\u00e9", bytearray(b"b"), memoryview(b"mv")],
                          name="bg-good", timeout=5)
    try:
        assert bg.wait(10) == [b"a", "\u00e9".encode(), b"b", b"mv"]
        assert bg.error is None
    finally:
        bg.stop()


def test_a_finished_client_holds_no_fds_before_stop(echo_server, leakcheck):
    before = leakcheck.fds  # taken once echo_server runs, as the test starts
    clients = [BackgroundClient(echo_server.address, [b"hi"], name=f"bg-finished-{i}", timeout=5)
               for i in range(20)]
    try:
        for bg in clients:
            assert bg.wait(10) == [b"hi"] and bg.error is None
            bg._thread.join(5)  # done is set inside the clean-up; the thread ends just after
        assert echo_server.wait_idle(5)  # the server has closed its end of every connection
        # not 2 more per finished client (its wake-up pair) until stop()
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        for bg in clients:
            bg.stop()  # still fine after it closed its own sockets


def test_a_silent_server_costs_one_timeout_not_two(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (in the kernel), never replies
        bg = BackgroundClient(silent.getsockname(), [b"hi"], name="bg-silent", timeout=0.5)
        try:
            assert bg.done.wait(10)
            assert bg.error is not None and "timed out" in bg.error.error
            recv = [e for e in bg.trace if e.call == "recv"]
            assert len(recv) == 1 and not recv[0].ok
            # The wait for a reply took the timeout; the recv that reports it must not wait again.
            assert recv[0].dt < 0.25, recv[0]
        finally:
            bg.stop()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")
def test_unix_datagram_client_binds_so_that_a_plain_server_can_reply(leakcheck):
    path = runtime.private_path("plain-dgram")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(5)
        bg = BackgroundClient(path, [b"one", b"two"], family="AF_UNIX", type="SOCK_DGRAM",
                              name="bg-unix-dgram", timeout=5)
        try:
            for _ in range(2):
                data, addr = srv.recvfrom(100)
                assert addr and addr.startswith(runtime.rundir())  # an address to reply to
                srv.sendto(data.upper(), addr)
            assert bg.wait(10) == [b"ONE", b"TWO"] and bg.error is None
            calls = [e.call for e in bg.trace]
            assert calls.index("bind") < calls.index("connect") < calls.index("send")
            assert "sendto" not in calls
            bg._thread.join(5)
            assert not os.path.exists(addr)  # the client's own file went with it
        finally:
            bg.stop()
    os.unlink(path)


def test_the_client_waits_at_reading_pace_but_wait_does_not(monkeypatch, leakcheck):
    """The learner writes the server's answer cells later: the client waits minutes for a reply.
    wait(), called once the server has answered, does not wait that long for a silent server."""
    from socklab import bgclient
    monkeypatch.setattr(bgclient, "WAIT", 0.2)  # the default cap of wait(), shortened for the test
    with socket.create_server(("127.0.0.1", 0)) as silent:
        bg = BackgroundClient(silent.getsockname(), [b"hi"], name="bg-reading-pace")
        try:
            assert bg.timeout >= 300
            with pytest.raises(TimeoutError):
                bg.wait()
            assert not bg.done.is_set()  # still waiting for the learner's server
        finally:
            bg.stop()
