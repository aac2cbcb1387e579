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
