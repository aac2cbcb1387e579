"""The HTTP panel in plain Python: buttons as methods, real sockets, assertions on trace and widgets."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab.widgets.http import HTTPPanel  # noqa: E402


def test_panel_round_trip(leakcheck):
    p = HTTPPanel(name="t-http-panel")
    p.start_server()
    assert p.server.running and "listening" in p.status.value
    r = p.send_request("GET", "/")
    assert r.status == 200 and r.body == b"Hello from socklab's HTTP server!\n"
    r = p.send_request("POST", "/echo", "héllo")
    assert r.body == "héllo".encode() and "200 OK" in p.status.value
    p.method.value, p.path.value = "DELETE", "/"
    r = p.send_request()
    assert r.status == 405
    p.stop_server()
    assert p.server is None and "stopped" in p.status.value
    text = p.transcript().text
    assert "client:" in text and "client3:" in text and "server/conn3:" in text
    wire = p.wire().text
    assert "GET / HTTP/1.1\\r\\n" in wire and "HTTP/1.1 405 Method Not Allowed\\r\\n" in wire
    assert "Date" not in wire
    assert "POST /echo" in p.wire_view.value
    socklab.runtime.unregister(p.key, p)


def test_send_starts_server_and_run_demo():
    p = HTTPPanel(name="t-http-panel2")
    assert p.send_request().status == 200 and p.server.running
    text = p.run_demo().text
    assert "server/conn" in text
    assert p.server is None


def test_errors_are_explained_not_raised():
    p = HTTPPanel(name="t-http-panel3")
    p.start_server()
    port = p.server.address[1]
    p.server.stop()
    assert p.server.running is False
    # the panel restarts a stopped server on send; a broken request shows up as an explanation
    p.server = None
    p._act("send request", lambda: socklab.http.request(("127.0.0.1", port), timeout=1))
    assert isinstance(p.last, ConnectionRefusedError)
    assert "Connection refused" in p.alert.value
    p.stop()


def test_rerun_stops_old_panel():
    a = HTTPPanel(name="t-http-rerun")
    a.start_server()
    b = HTTPPanel(name="t-http-rerun")
    assert a.server is None
    b.stop()


def test_text_repr():
    p = HTTPPanel(name="t-http-repr")
    assert "HTTP panel" in p._repr_mimebundle_()["text/plain"]
    assert p.wire().text == "(no requests yet)"
    p.stop()


def test_an_unknown_method_is_explained_with_the_choices():
    with pytest.raises(socklab.ConfigError) as err:
        HTTPPanel(method="BREW", name="t-http-bad")
    assert "'GET', 'HEAD', 'POST', 'DELETE'" in err.value.explanation.text()


@pytest.mark.parametrize("kwargs,words", [
    (dict(path=123), "path must be text (str or bytes), got int 123"),
    (dict(path="echo"), "path='echo' is not a path this panel can put in a request line"),
    (dict(path="/a b"), "path='/a b' is not a path"),
    (dict(path="/café"), "path='/café' is not a path"),
    (dict(body=5), "body must be text (str or bytes), got int 5"),
    (dict(body=b"\xff"), "body=b'\\xff' is not UTF-8 text"),
])
def test_a_setting_of_the_wrong_type_or_shape_is_explained(kwargs, words):
    """path=123 used to end in ipywidgets' TraitError traceback; path='/a b' was sent as it was."""
    with pytest.raises(socklab.ConfigError) as err:
        HTTPPanel(name="t-http-type", **kwargs)
    assert words in err.value.explanation.what
    if "path" in kwargs:
        assert "'/echo'" in err.value.explanation.fix  # an example that is a path


def test_send_request_checks_its_arguments_as_the_constructor_does(leakcheck):
    """PUT used to reach the server (405); method=5 put '5 / HTTP/1.1' on the wire, then failed
    with an AttributeError. Now each is refused before anything starts or is sent."""
    p = HTTPPanel(name="t-http-args")
    try:
        for kwargs, words in ((dict(method="PUT"), "method='PUT' is not one of this panel's choices"),
                              (dict(method=5), "method=5 is not one of"),
                              (dict(path="/a b"), "path='/a b' is not a path"),
                              (dict(path=7), "path must be text"),
                              (dict(body=5), "body must be a str or bytes, got int 5")):
            with pytest.raises(socklab.ConfigError) as err:
                p.send_request(**kwargs)
            assert words in err.value.explanation.what
        assert p.server is None and list(p.trace) == [] and p.last is None
    finally:
        p.stop()


def test_a_body_may_be_str_or_bytes(leakcheck):
    """b'raw bytes' used to come back as AttributeError("'bytes' object has no attribute 'encode'")."""
    p = HTTPPanel(body=b"from the box", name="t-http-bytes")
    try:
        assert p.body.value == "from the box"
        assert p.send_request("POST", "/echo", b"raw \xff bytes").body == b"raw \xff bytes"
        assert p.send_request("POST", "/echo", "héllo").body == "héllo".encode("utf-8")
        assert p.send_request("POST", "/echo").body == b"from the box"
    finally:
        p.stop()


def test_a_failure_from_code_is_explained_and_returns_none(leakcheck):
    """A failed request used to return the bare exception (a cell showed its repr). As LabPanel
    does: None, the explanation in the alert box, and the failure noted in the transcript."""
    import socket
    import struct

    from socklab import Server

    def reset(conn, server):
        """Read the request, then close with SO_LINGER (1, 0): the kernel sends RST, not FIN."""
        f = conn.makefile("rb")
        while f.readline() not in (b"\r\n", b""):
            pass
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    p = HTTPPanel(name="t-http-fail")
    p.server = Server(handler=reset, name="t-http-fail/reset").start()
    try:
        assert p.send_request() is None
        assert isinstance(p.last, ConnectionResetError)
        assert "socklab-err" in p.alert.value and "Connection reset" in p.alert.value
        assert "[send request: Connection reset by peer]" in p.transcript().text
        p.path.value = "no slash"  # a box's bad value: explained in the alert, nothing sent
        calls = [e for e in p.trace if e.call != "note"]
        assert p.send_request() is None and isinstance(p.last, socklab.ConfigError)
        assert "is not a path this panel can put in a request line" in p.alert.value
        assert [e for e in p.trace if e.call != "note"] == calls
    finally:
        p.stop()


def test_wire_shows_the_last_n_exchanges(leakcheck):
    """wire(last=0) used to show every exchange (exchanges[-0:]) and wire(last=-1) all but one."""
    p = HTTPPanel(name="t-http-wire")
    try:
        for path in ("/", "/echo", "/missing"):
            p.send_request("GET", path)
        assert p.wire().text.count("--- ") == 3
        assert p.wire(last=0).text == "(no requests shown: last=0)"
        one = p.wire(last=1).text
        assert one.count("--- ") == 1 and "GET /missing" in one
        assert p.wire(last=10).text.count("--- ") == 3
        for bad in (-1, 1.5, True, "1"):
            with pytest.raises(socklab.ConfigError) as err:
                p.wire(last=bad)
            assert f"last={bad!r} is not a number of exchanges" in err.value.explanation.what
    finally:
        p.stop()
