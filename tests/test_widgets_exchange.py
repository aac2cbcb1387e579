"""The exchange panel on a real TCP connection: both ends driven by method calls, as the buttons do."""
from __future__ import annotations

import sys

import pytest

from socklab import ConfigError
from socklab.widgets.exchange import ExchangePanel, unread


def test_connect_builds_one_connection_and_closes_the_listener(leakcheck):
    p = ExchangePanel(name="t-ex")
    p.connect()
    assert p.trace.calls("listener") == ["socket", "bind", "listen", "settimeout", "accept", "close"]
    assert p.trace.calls("client") == ["socket", "setsockopt", "settimeout", "connect"]
    assert p.trace.calls("server") == ["settimeout"]
    assert p.client.getpeername() == p.server.getsockname()
    assert "connected" in p.status.value
    p.stop()
    assert p.client is None and p.server is None


def test_two_sends_one_recv_no_message_boundaries(leakcheck):
    p = ExchangePanel(name="t-ex")
    assert p.client_send(b"hello") == 5  # connects on first use
    assert p.client_send(b"world") == 5
    if sys.platform.startswith("linux"):
        assert p.waiting() == {"client": 0, "server": 10}
        assert "10 bytes" in p.status.value
    assert p.server_recv(3) == b"hel"
    assert p.server_recv() == b"loworld"
    p.stop()


def test_recv_with_nothing_to_read_times_out_explained(leakcheck):
    p = ExchangePanel(name="t-ex", timeout=0.2)
    p.connect()
    assert p.server_recv() is None  # explained in the alert; the exception is in last
    assert isinstance(p.last, TimeoutError)
    assert "Timed out" in p.alert.value
    assert p.last_result() == "TimeoutError: Timed out"
    p.stop()


def test_a_str_is_encoded_unless_encode_is_unticked(leakcheck):
    """client_send('hi') used to return TypeError(...) while the other panels take a str: a str, from
    the box or from code, is encoded as UTF-8 while "encode" is ticked (the default). Unticked, it
    is sent as it is, and the real TypeError shows: the lesson that sockets carry bytes."""
    p = ExchangePanel(message=b"h\xc3\xa9", name="t-ex")
    assert p.message.value == "hé"
    assert p.client_send("héllo") == 6  # 6 bytes for 5 characters
    assert p.server_recv() == "héllo".encode("utf-8")
    assert p.client_send() == 3
    assert p.server_send(b"\xff raw") == 5
    assert p.client_recv() == b"\xff raw"
    p.encode.value = False
    assert p.client_send("hi") is None
    assert isinstance(p.last, TypeError) and "bytes-like" in str(p.last)
    ev = [e for e in p.trace if e.side == "client" and e.call == "send"][-1]
    assert ev.args == ("hi",) and isinstance(ev.error, TypeError)
    assert "Sockets send bytes, not str" in p.alert.value
    assert p.client_send() is None and isinstance(p.last, TypeError)
    p.stop()


def test_half_close_gives_b_empty_and_the_other_way_still_works(leakcheck):
    p = ExchangePanel(name="t-ex")
    p.client_send(b"request")
    p.client_shutdown()
    assert p.server_recv() == b"request"
    assert p.server_recv() == b""
    assert p.server_recv() == b""  # forever
    assert p.server_send(b"reply") == 5
    assert p.client_recv() == b"reply"
    notes = [e.args[0] for e in p.trace if e.call == "note" and e.side == "server"]
    assert len(notes) == 2 and "end of stream" in notes[0]
    p.stop()


def test_sendall_option_and_close_both(leakcheck):
    p = ExchangePanel(name="t-ex")
    p.call.value = "sendall"
    assert p.client_send(b"x" * 100) is None  # sendall returns None
    assert [e.call for e in p.trace if e.side == "client"][-1] == "sendall"
    p.close_both()
    assert p.client is None and p.status.value == "<i>not connected</i>"
    assert p.trace.calls("client")[-1] == "close" and p.trace.calls("server")[-1] == "close"
    p.stop()


def test_bad_side_and_unread_of_nothing():
    p = ExchangePanel(name="t-ex")
    with pytest.raises(ValueError):
        p._end("middle")
    assert unread(None) is None
    p.stop()


def test_rerun_closes_the_old_connection(leakcheck):
    old = ExchangePanel(name="t-ex-rerun")
    old.connect()
    new = ExchangePanel(name="t-ex-rerun")
    assert old.client is None and old.server is None
    new.stop()


def test_text_forms():
    p = ExchangePanel(name="t-ex")
    assert "exchange panel" in p._repr_mimebundle_()["text/plain"]
    p.client_send(b"hi")
    p.server_recv()
    text = p.transcript().text
    assert "client    send(b'hi')  -> 2" in text and "server    recv(1024)  -> b'hi'" in text
    p.stop()


@pytest.mark.parametrize("bad", [None, -1, 0, "10", True, float("nan"), float("inf"), 1e9])
def test_a_timeout_that_could_hang_or_fail_is_refused_when_the_panel_is_made(bad, leakcheck):
    """None would let server_recv() wait forever; -1 used to break connect() half-way."""
    with pytest.raises(ConfigError) as err:
        ExchangePanel(timeout=bad, name="t-ex-timeout")
    text = err.value.explanation.text()
    assert f"timeout={bad!r}" in text and "positive number of seconds" in text


def test_setting_a_bad_timeout_later_is_refused_too(leakcheck):
    p = ExchangePanel(timeout=0.05, name="t-ex-timeout-later")
    with pytest.raises(ConfigError):
        p.timeout = None
    assert p.timeout == 0.05
    assert p.server_recv() is None  # nothing to read: bounded, explained
    assert isinstance(p.last, TimeoutError)
    assert "Timed out" in p.alert.value
    p.stop()


def test_a_failed_connect_keeps_no_half_made_connection(leakcheck):
    """The settimeout() inside connect() fails (a value the public setter refuses, forced here):
    no end is kept, and the next call reports that failure again, not an AttributeError."""
    p = ExchangePanel(name="t-ex-half")
    p._timeout = -1
    assert p.connect() is None and isinstance(p.last, ValueError)
    assert p.client is None and p.server is None
    assert p.server_recv() is None and isinstance(p.last, ValueError)
    assert "Invalid timeout" in p.alert.value
    p._timeout = 0.1
    assert p.connect() is p.client and p.server is not None
    p.stop()


@pytest.mark.parametrize("kwargs", [dict(bufsize=0)])
def test_exchangepanel_refuses_numbers_outside_its_controls(kwargs):
    with pytest.raises(ConfigError) as err:
        ExchangePanel(name="t-range", **kwargs)
    assert "outside this panel's range" in err.value.explanation.what


@pytest.mark.parametrize("call,words", [
    (lambda p: p.client_send(5), "message must be a str or bytes, got int 5"),
    (lambda p: p.server_send(["hi"]), "message must be a str or bytes, got list"),
    (lambda p: p.server_recv(0), "bufsize=0 is outside this panel's range 1..1048576"),
    (lambda p: p.client_recv("10"), "bufsize must be a whole number (int), got str '10'"),
    (lambda p: p.server_recv(1 << 21), "bufsize=2097152 is outside this panel's range"),
    (lambda p: p.client_shutdown(7), "how=7 is not one of socket.SHUT_RD, socket.SHUT_WR"),
    (lambda p: p.server_shutdown(True), "how=True is not one of"),
], ids=["send-int", "send-list", "recv-0", "recv-str", "recv-huge", "shutdown-7", "shutdown-bool"])
def test_method_arguments_are_checked_as_the_constructor_checks_its_own(call, words, leakcheck):
    """These used to reach the socket (or fail inside it, returned as an exception). Now one
    explained ConfigError, before the panel connects or calls anything."""
    p = ExchangePanel(name="t-ex-args")
    try:
        with pytest.raises(ConfigError) as err:
            call(p)
        assert words in err.value.explanation.what
        assert p.client is None and list(p.trace) == [] and p.last is None
    finally:
        p.stop()


def test_a_message_setting_of_the_wrong_type_is_explained():
    """ExchangePanel(message=5) used to end in ipywidgets' TraitError traceback."""
    with pytest.raises(ConfigError) as err:
        ExchangePanel(message=5, name="t-ex-type")
    assert "message must be text (str or bytes), got int 5" in err.value.explanation.what


def test_recv_0_is_refused_and_not_called_the_end_of_the_stream(leakcheck):
    """recv(0) returns b'' at once with data waiting: the panel must not call that end of stream."""
    p = ExchangePanel(name="t-recv0")
    try:
        p.connect()
        p.client_send(b"abc")
        with pytest.raises(ConfigError) as err:
            p.server_recv(0)
        assert "recv(0) returns b'' at once" in str(err.value)
        assert "end of stream" not in p.transcript().text
        assert p.server_recv(1024) == b"abc"  # the data was there all along
    finally:
        p.stop()
