"""socklab.framing: delimiter and length-prefix framing, on bytes and on real sockets."""
from __future__ import annotations

import socket
import struct

import pytest

import socklab
from socklab import framing


# ---- decoders on bytes alone
def test_line_decoder_splits_and_keeps_the_rest():
    d = framing.LineDecoder()
    assert d.feed(b"hel") == []
    assert d.feed(b"lo\nwor") == [b"hello"]
    assert d.pending == b"wor"
    assert d.feed(b"ld\n\nlast\n") == [b"world", b"", b"last"]
    assert d.pending == b""
    d.eof()  # nothing pending: no error


def test_line_decoder_multibyte_delimiter_split_across_feeds():
    d = framing.LineDecoder(b"\r\n")
    assert d.feed(b"GET / HTTP/1.1\r") == []
    assert d.feed(b"\nHost: x\r\n") == [b"GET / HTTP/1.1", b"Host: x"]


def test_line_decoder_eof_mid_message_and_max_size():
    d = framing.LineDecoder()
    d.feed(b"no end")
    with pytest.raises(framing.IncompleteMessage) as err:
        d.eof()
    assert err.value.partial == b"no end" and err.value.expected is None
    assert isinstance(err.value, EOFError)
    small = framing.LineDecoder(max_size=8)
    with pytest.raises(framing.FramingError):
        small.feed(b"123456789")
    assert small.pending == b""
    with pytest.raises(ValueError):
        framing.LineDecoder(b"")


def test_line_decoder_caps_a_line_that_arrives_whole():
    d = framing.LineDecoder(max_size=1000)
    with pytest.raises(framing.FramingError, match="max_size=1000"):
        d.feed(b"x" * 50000 + b"\n")
    assert d.pending == b""
    assert d.feed(b"x" * 1000 + b"\n") == [b"x" * 1000]  # exactly max_size is allowed
    d.feed(b"y" * 900)
    with pytest.raises(framing.FramingError):  # completed by a second feed: 1800 bytes in all
        d.feed(b"y" * 900 + b"\n")


def test_encode_line_refuses_the_delimiter_inside():
    assert framing.encode_line(b"hi") == b"hi\n"
    with pytest.raises(framing.FramingError):
        framing.encode_line(b"two\nlines")


def test_prefix_decoder_byte_by_byte_and_binary_payloads():
    wire = framing.encode_message(b"hello") + framing.encode_message(b"") + \
        framing.encode_message(b"a\nb\x00c")
    assert wire[:4] == b"\x00\x00\x00\x05"
    d = framing.PrefixDecoder()
    out = []
    for i in range(len(wire)):
        out += d.feed(wire[i:i + 1])
    assert out == [b"hello", b"", b"a\nb\x00c"]
    assert d.pending == b""
    d.eof()


def test_prefix_decoder_eof_and_hostile_header():
    d = framing.PrefixDecoder()
    d.feed(framing.encode_message(b"hello")[:7])
    with pytest.raises(framing.IncompleteMessage) as err:
        d.eof()
    assert err.value.expected == 5 and err.value.partial == b"\x00\x00\x00\x05hel"
    d2 = framing.PrefixDecoder()
    d2.feed(b"\x00\x00")
    with pytest.raises(framing.IncompleteMessage) as err:
        d2.eof()
    assert err.value.expected is None
    with pytest.raises(framing.FramingError):
        framing.PrefixDecoder(max_size=10).feed(struct.pack("!I", 11))


# ---- on real sockets
def test_line_reader_over_a_stream(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5)
        b.settimeout(5)
        a.sendall(b"one\ntwo\nthr")
        a.sendall(b"ee\n")
        a.shutdown(socket.SHUT_WR)
        r = framing.LineReader(b, bufsize=5)
        assert list(r) == [b"one", b"two", b"three"]
        assert r.recv_calls >= 3
        assert r.read() is None  # stays at end of stream


def test_line_reader_stream_ends_mid_line(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(b"ok\npartial")
        a.close()
        r = framing.LineReader(b)
        assert r.read() == b"ok"
        with pytest.raises(framing.IncompleteMessage):
            r.read()


def test_line_reader_refuses_a_line_over_max_line_in_one_recv(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(b"x" * 70000 + b"\n")
        a.shutdown(socket.SHUT_WR)
        r = framing.LineReader(b, bufsize=1 << 20)
        with pytest.raises(framing.FramingError, match=f"max_size={framing.MAX_LINE}"):
            while r.read() is not None:  # however many recv() calls the kernel splits it into
                pass


def test_recv_message_and_recv_exactly(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        framing.send_message(a, b"hello")
        framing.send_message(a, b"x" * 200_000)
        a.sendall(b"\x00\x00\x00\x09abc")
        a.shutdown(socket.SHUT_WR)
        assert framing.recv_message(b) == b"hello"
        assert framing.recv_message(b) == b"x" * 200_000
        with pytest.raises(framing.IncompleteMessage) as err:
            framing.recv_message(b)
        assert err.value.expected == 9 and err.value.partial == b"abc"
        assert framing.recv_message(b) is None  # clean end: nothing more


def test_recv_message_refuses_a_huge_prefix(leakcheck):
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(struct.pack("!I", 2**31))
        with pytest.raises(framing.FramingError):
            framing.recv_message(b, max_size=1024)


def test_helpers_work_with_socklab_server_and_client(leakcheck):
    def upper_lines(conn, server):
        for line in framing.LineReader(conn):
            framing.send_line(conn, line.upper())

    with socklab.Server(handler=upper_lines, name="test-lines") as srv:
        cli = socklab.Client(srv, name="test-lines-client")
        cli.connect()
        cli.sendall(b"one\ntwo\nthr")
        cli.sendall(b"ee\n")
        reader = framing.LineReader(cli)
        assert [reader.read() for _ in range(3)] == [b"ONE", b"TWO", b"THREE"]
        cli.close()
        assert srv.wait_idle()
    assert not srv.errors


def test_round_trips_private_server_and_nagle_trap(leakcheck):
    fast = framing.round_trips(rounds=10, nodelay=True)
    single = framing.round_trips(rounds=10, split=False)
    slow = framing.round_trips(rounds=6)
    assert len(fast) == 10 and len(slow) == 6
    # write-write-read with Nagle on waits for the peer's delayed ACK (Linux: at least 40 ms)
    assert framing.median(slow) > 10 * framing.median(fast)
    assert framing.median(slow) > 0.020
    assert framing.median(single) < 0.010


def test_round_trips_against_a_socklab_server(leakcheck):
    def echo_messages(conn, server):
        while (msg := framing.recv_message(conn)) is not None:
            framing.send_message(conn, msg)

    with socklab.Server(handler=echo_messages, name="test-rt") as srv:
        times = framing.round_trips(srv.address, rounds=5, nodelay=True, size=10)
        assert len(times) == 5
        assert srv.wait_idle()


def test_fmt_time():
    assert framing.fmt_time(0.0441) == "44.1 ms"
    assert framing.fmt_time(27e-6) == "27 µs"
