"""A learner's slips in what they pass to socklab: a value of the wrong type, or the wrong object.

Each is explained (a ConfigError or an explained socket error, never a bare TypeError or
AttributeError from deep inside), leaves nothing open (leakcheck), and where the learner's intent is
plain, it simply works: ``show(srv)`` shows the server's trace, ``server_code(srv)`` writes the
code for the server's configuration, ``table(m)`` takes one measurement.
"""
from __future__ import annotations

import socket

import pytest

import socklab
from socklab import concurrency, notebook
from socklab.render.state import state_html, state_text


def _server():
    return socklab.Server(name="wa-srv").start()


CASES = [  # (id, call, title of the explanation)
    ("show a str", lambda: notebook.show("trace"), "Not a trace"),
    ("show None", lambda: notebook.show(None), "Not a trace"),
    ("show, order unknown", lambda: notebook.show(socklab.Trace(), order="sides"), "Invalid order"),
    ("transcript of a list", lambda: socklab.transcript([socklab.Trace()]), "Not a trace"),
    ("side_by_side of a number", lambda: socklab.side_by_side(3), "Not a trace"),
    ("diagram of None", lambda: socklab.diagram_text(None), "Not a trace"),
    ("diagram, last a str", lambda: socklab.diagram_text(socklab.Trace(), last="10"), "Invalid last"),
    ("diagram, peers a list", lambda: socklab.diagram_svg(socklab.Trace(), peers=["a", "b"]),
     "Invalid peers"),
    ("Client, trace a number", lambda: socklab.Client(("127.0.0.1", 1), trace=-1), "Not a trace"),
    ("socket, trace a str", lambda: socklab.socket(trace="t"), "Not a trace"),
    ("socket, name a list", lambda: socklab.socket(name=["a"]), "Invalid name"),
    ("Client, name a list", lambda: socklab.Client(("127.0.0.1", 1), name=["a"]), "Invalid name"),
    ("Server, name a dict", lambda: socklab.Server(name={}).start(), "Invalid name"),
    ("Background, name a list", lambda: socklab.Background(print, name=["a"]), "Invalid name"),
    ("Trace, max_events negative", lambda: socklab.Trace(max_events=-1), "Invalid max_events"),
    ("Trace, max_events huge", lambda: socklab.Trace(max_events=2 ** 70), "Invalid max_events"),
    ("ping, side a list", lambda: socklab.ping(side=[]), "Invalid side"),
    ("backlog run, trace a number", lambda: socklab.run_backlog_experiment(trace=-1), "Not a trace"),
    ("backlog run, stop a number", lambda: socklab.run_backlog_experiment(stop=-1),
     "stop must be a StopSignal"),
    ("server_code of a number", lambda: socklab.server_code(-1), "Not a socket configuration"),
    ("client_code of a str", lambda: socklab.client_code("AF_INET"), "Not a socket configuration"),
    ("table of a str", lambda: concurrency.table("results"), "Not measurements"),
    ("table of None", lambda: concurrency.table(None), "Not measurements"),
    ("latency_chart of None", lambda: concurrency.latency_chart(None), "Not measurements"),
    ("latency_chart, width a str", lambda: concurrency.latency_chart(_measured(), width="40"),
     "Invalid width"),
    ("latency_chart, scale 0", lambda: concurrency.latency_chart(_measured(), scale=0), "Invalid scale"),
    ("code of None", lambda: notebook.code(None), "Invalid source"),
    ("code of bytes", lambda: notebook.code(b"print(1)"), "Invalid source"),
    ("state_text of a str", lambda: state_text("rows"), "Not kernel socket rows"),
    ("state_html of None", lambda: state_html(None), "Not kernel socket rows"),
    ("StyleServer, lifetime 0", lambda: concurrency.make_server("threads", lifetime=0), "Invalid lifetime"),
]

PANEL_CASES = [  # (id, panel module, class, keyword arguments, words of the explanation)
    ("LabPanel message a number", "panel", "LabPanel", dict(message=3), "message must be text"),
    ("LabPanel views None", "panel", "LabPanel", dict(views=None), "views=None is not a list"),
    ("LabPanel views unknown", "panel", "LabPanel", dict(views=("log", "graph")), "is not a list of view"),
    ("StepPanel message a number", "steps", "StepPanel", dict(message=-1), "message must be text"),
    ("BindExplorer host a number", "addresses", "BindExplorer", dict(host=-1), "host must be text"),
    ("BindExplorer port a str", "addresses", "BindExplorer", dict(port="8080"), "port must be"),
    ("ManyClientsPanel name a list", "manyclients", "ManyClientsPanel", dict(name=["a"]), "name=['a']"),
]

_measurement = []


def _measured():
    if not _measurement:
        _measurement.append(concurrency.measure("threads", 2, 0.001))
    return _measurement[0]


@pytest.mark.parametrize("call,title", [pytest.param(c, t, id=i) for i, c, t in CASES])
def test_a_wrong_argument_is_explained(call, title, leakcheck):
    with pytest.raises(socklab.SocklabError) as info:
        call()
    assert info.value.explanation.title == title, info.value.explanation.text()
    assert info.value.explanation.fix


@pytest.mark.parametrize("module,cls,kw,words", [pytest.param(m, c, k, w, id=i)
                                                 for i, m, c, k, w in PANEL_CASES])
def test_a_wrong_panel_argument_is_explained(module, cls, kw, words, leakcheck):
    import importlib
    panel_class = getattr(importlib.import_module(f"socklab.widgets.{module}"), cls)
    with pytest.raises(socklab.ConfigError) as info:
        panel_class(**kw)
    assert words in info.value.explanation.what, info.value.explanation.text()


def test_the_bind_explorer_still_takes_a_port_out_of_range_to_try(leakcheck):
    from socklab.widgets.addresses import BindExplorer
    panel = BindExplorer(port=70000, name="wa-bind")  # trying it is the lesson: bind() refuses it
    try:
        panel.try_bind()
        text = panel.transcript().text
        assert "65535" in text, text
    finally:
        panel.stop()


def test_an_unknown_host_to_ping_is_explained(leakcheck):
    if not socklab.config.can_raw():
        pytest.skip("raw ICMP sockets need root or CAP_NET_RAW here (explained before any lookup)")
    with pytest.raises(socket.gaierror) as info:
        socklab.ping("no-such-host.invalid")
    assert info.value.explanation.title == "Unknown host name"


def test_where_the_intent_is_plain_it_just_works(leakcheck):
    with _server() as srv, socklab.Client(srv, name="wa-client") as c:
        assert c.request(b"hi") == b"hi"
        srv.wait_idle()
        for shown in (srv, c, c.sock):  # a Server, a Client, a socket: each shows its own trace
            view = notebook.show(shown, order="side")
            assert "recv(65536)" in view.text and "b'hi'" in view.text
        assert socklab.transcript(srv) == socklab.transcript(srv.trace)
        assert socklab.diagram_text(c) == socklab.diagram_text(srv.trace)
        assert socklab.server_code(srv) == socklab.server_code(srv.config)
        assert socklab.client_code(c) == socklab.client_code(c.config)
        with socklab.Client(srv.address, trace=srv, name="wa-client2") as c2:  # a Server as trace=
            c2.request(b"yo")
            assert c2.trace is srv.trace
    m = _measured()
    assert concurrency.table(m) == concurrency.table([m])


def test_every_wait_refuses_a_timeout_that_would_never_end(leakcheck):
    """None (wait for ever), a str, NaN: refused before waiting, so no cell can hang on them."""
    from socklab.widgets.backlog import wait_for_state
    with _server() as srv, socklab.Client(srv, name="wa-busy") as c, \
            concurrency.make_server("threads", name="wa-style").start() as style:
        c.request(b"x")  # accepted and open: wait_idle() would wait for it
        for bad in (None, "5", float("nan"), -1):
            with pytest.raises(socklab.ConfigError, match="Invalid timeout"):
                srv.wait_idle(bad)
            with pytest.raises(socklab.ConfigError, match="Invalid timeout"):
                style.wait_working(1, timeout=bad)
            with pytest.raises(socklab.ConfigError, match="Invalid timeout"):
                wait_for_state(srv, "LISTEN", timeout=bad)
        with pytest.raises(socklab.ConfigError, match="Invalid n"):
            style.wait_working(None)
        with pytest.raises(socklab.ConfigError, match="Invalid count"):
            wait_for_state(srv, "LISTEN", count="1")
        with pytest.raises(socklab.ConfigError, match="Invalid state"):
            wait_for_state(srv, 10)
        assert srv.wait_idle(0) is False and wait_for_state(srv, "LISTEN", timeout=0)


def test_the_step_panel_names_its_sides(leakcheck):
    from socklab.widgets.steps import StepPanel
    panel = StepPanel(name="wa-steps")
    try:
        for bad in (None, "clients", ["server"]):
            with pytest.raises(socklab.ConfigError) as info:
                panel.next_step(bad)
            assert "'server', 'client'" in info.value.explanation.fix
        assert panel.next_step("server") == "socket"
    finally:
        panel.stop()
