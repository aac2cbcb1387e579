"""A classroom kernel stays open all day: what socklab keeps must level off under repeated use.

Each test repeats one use (connections to one server, re-runs of a panel's cell, clicks of a
panel's button, ...) past a bound, on real sockets, and asserts counts and sizes, never times.
"""
from __future__ import annotations

import gc
import socket
import warnings
import weakref

import pytest

import socklab
from socklab import concurrency, runtime, servers
from socklab.bgclient import BackgroundClient

W = pytest.importorskip("ipywidgets")

# The documented bounds (servers.ERRORS_KEPT, widgets.base.KEPT, the panels' RUNS_KEPT): written out,
# so that on code without them the tests fail on the growth, not on a missing name.
ERRORS_KEPT, KEPT, RUNS_KEPT = 100, 200, 50


def _fail(conn, server):
    """A handler that fails on every connection, after reading the client's one byte."""
    conn.recv(1)
    raise ValueError("this handler always fails")


def _one_connection(address, data=b"x"):
    """Connect, send ``data``, and wait until the server has closed its end (its handler is done)."""
    with socket.create_connection(address, timeout=5) as c:
        c.sendall(data)
        try:
            while c.recv(4096):
                pass
        except ConnectionResetError:
            pass  # the server closed with our bytes unread: a reset, also the end


def test_server_errors_keep_the_latest_only(leakcheck):
    """A handler that fails on each of ERRORS_KEPT + 30 connections: ``errors`` keeps the latest
    ERRORS_KEPT and counts the rest in ``errors.dropped`` (it used to keep every one)."""
    keep = ERRORS_KEPT
    with socklab.Server(handler=_fail, name="t-soak-errors") as srv:
        for _ in range(keep + 30):
            _one_connection(srv.address)
        assert srv.wait_idle()
        assert len(srv.errors) == keep
        assert srv.errors.dropped == 30 and srv.errors.total == keep + 30
        side, exp = srv.errors[-1]
        assert "always fails" in exp.text()
        assert len(srv._threads) <= 1 and not srv._conns  # handler threads are not kept either
    assert servers.ERRORS_KEPT == keep


def test_style_server_errors_keep_the_latest_only(leakcheck):
    """An over-long request line on each of ERRORS_KEPT + 20 connections to the iterative server."""
    keep = ERRORS_KEPT
    with concurrency.make_server("iterative", 0.001, name="t-soak-style") as srv:
        for _ in range(keep + 20):
            _one_connection(srv.address, b"x" * (concurrency.MAX_REQUEST + 10))
        assert len(srv.errors) == keep and srv.errors.dropped == 20
        assert not srv._conns


def test_a_failing_trace_listener_keeps_the_latest_errors_only():
    """A listener that fails on every event: ``listener_errors`` levels off."""
    t = socklab.Trace()

    def broken(ev):
        raise RuntimeError("broken view")
    t.subscribe(broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(300):
            t.note("panel", f"note {i}")
    assert len(t.listener_errors) == 100
    assert t.listener_errors.dropped == 200


def test_a_failing_trace_listener_is_warned_about_once_per_kind_of_error():
    """Each failure's message differs (as a real one's would: a count, an address), yet only the
    first of each kind is printed: every distinct warning would be printed and remembered."""
    t = socklab.Trace()

    def broken(ev):
        if ev.args and ev.args[0].endswith("7"):
            raise KeyError(ev.args[0])
        raise RuntimeError(f"broken view at {ev.args[0]}")
    t.subscribe(broken)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default", RuntimeWarning)
        for i in range(300):
            t.note("panel", f"note {i}")
    said = [str(w.message) for w in seen]
    assert len(said) == 2, said
    assert "RuntimeError('broken view at note 0')" in said[0] and "listener_errors" in said[0]
    assert "KeyError('note 7')" in said[1]
    assert len(t.listener_errors) == 100
    t.unsubscribe(broken)
    t.subscribe(broken)  # subscribed again: said again
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default", RuntimeWarning)
        t.note("panel", "note again")
    assert len(seen) == 1


def test_trace_events_stay_within_max_events_also_for_notes_and_folded_data(leakcheck):
    """Notes and folded data calls count against max_events like every other event."""
    t = socklab.Trace(max_events=50)
    a, b = socket.socketpair()
    with a, b:
        x = socklab.trace.TracedSocket(a, t, "a")
        for i in range(200):
            t.note("a", f"note {i}")
            x.send(b"y")  # past the run's first calls these fold into one event
        x.close()
    assert len(t.events) == 50 and t.dropped >= 200


def test_finished_background_clients_leave_the_registry(leakcheck):
    """40 background clients from one line, each finished: none stays in the re-run registry
    (each kept its trace and messages until the kernel ended)."""
    with socklab.Server(name="t-soak-bg") as srv:
        before = len(runtime.running())
        clients = []
        for _ in range(40):
            c = BackgroundClient(srv.address, [b"hi"], timeout=5)
            assert c.wait() == [b"hi"]
            clients.append(c)
        assert all(c.done.wait(5) for c in clients)
        assert len(runtime.running()) == before
        assert srv.wait_idle()


def _models() -> int:
    """Widget models open in this process (ipywidgets keeps each one until it is closed)."""
    from ipywidgets.widgets import widget
    return len(widget._instances)


def _panel_widgets_after(make, name, times):
    """Make a panel ``times`` times under ``name`` (a cell re-run): the widget models left open
    and how many of those panels are still alive."""
    gc.collect()
    start = _models()
    refs = [weakref.ref(make(name)) for _ in range(times)]
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    grown = _models() - start
    for p in alive:
        p.stop()
    return grown, len(alive)


def _panel(module, cls):
    return lambda name: getattr(__import__(f"socklab.widgets.{module}", fromlist=[cls]), cls)(name=name)


@pytest.mark.parametrize("make", [_panel("panel", "LabPanel"), _panel("errorlab", "ErrorExplorer"),
                                  _panel("steps", "StepPanel"), _panel("manyclients", "ManyClientsPanel")],
                         ids=["LabPanel", "ErrorExplorer", "StepPanel", "ManyClientsPanel"])
def test_a_panel_made_again_under_its_name_closes_the_one_it_replaces(make, leakcheck):
    """Re-running a panel's cell 12 times leaves the widget models of one panel, not of 12, and
    the replaced panels (with their traces) are freed."""
    one, _ = _panel_widgets_after(make, "t-soak-once", 1)
    twelve, alive = _panel_widgets_after(make, "t-soak-rerun", 12)
    assert alive == 1
    assert twelve == one > 0


def test_a_replaced_panel_in_use_is_closed_and_the_new_one_works(leakcheck):
    from socklab.widgets import LabPanel
    old = LabPanel(name="t-soak-inuse")
    assert old.run_demo("one").text
    new = LabPanel(name="t-soak-inuse")
    assert old.comm is None and old.events.comm is None  # closed: its view leaves the page
    assert "two" in new.run_demo("two").text
    new.stop()


def test_error_explorer_keeps_the_latest_runs():
    from socklab.widgets import errorlab
    p = errorlab.ErrorExplorer(name="t-soak-errx")
    for _ in range(RUNS_KEPT + 5):
        p.run("refused")
    assert len(p.outcomes) == RUNS_KEPT
    assert errorlab.RUNS_KEPT == RUNS_KEPT
    text = p.transcript().text
    assert text.startswith(f"(5 earlier scenarios not kept: the latest {RUNS_KEPT} are)")
    assert text.count("Connection refused") >= RUNS_KEPT
    p.stop()


def test_ping_and_bind_panels_keep_the_latest_lines(leakcheck):
    from socklab.widgets import addresses, icmp
    ping = icmp.PingPanel(name="t-soak-ping", timeout=0.5)
    bind = addresses.BindExplorer(name="t-soak-bind")
    widgets = _models()
    for _ in range(KEPT + 10):
        ping.ping(count=1)
        bind.try_bind()
        bind.release()
    assert _models() == widgets  # clicks make no new widget models
    assert len(ping.steps) == KEPT and len(bind.attempts) == KEPT
    assert ping.steps.dropped == 10
    assert ping.transcript().text.startswith("(10 earlier lines not kept")
    assert bind.summary().startswith("(10 earlier tries not kept")
    # the event logs keep their last LOG_LINES, saying how many they dropped
    for p in (ping, bind):
        text = p.events.outputs[-1]["text"]
        assert len(text.splitlines()) <= p.LOG_LINES + 1
    ping.stop()
    bind.stop()


def test_many_clients_panel_keeps_the_latest_runs(leakcheck):
    from socklab.widgets import manyclients
    p = manyclients.ManyClientsPanel(clients=1, service_ms=1, name="t-soak-many")
    for _ in range(RUNS_KEPT + 3):
        new = p.run(style="iterative", clients=1, service_ms=1)
        assert len(new) == 1  # the run's own measurement, also once older ones are dropped
    assert len(p.measurements) == RUNS_KEPT
    assert manyclients.RUNS_KEPT == RUNS_KEPT
    assert p.transcript().text.startswith("(3 earlier runs not kept")
    assert p._table_html().count("<tr") <= RUNS_KEPT + 1
    p.stop()


def test_tls_server_and_panel_keep_the_latest(leakcheck):
    """ERRORS_KEPT + 10 rejected handshakes from the TLS panel: the server keeps the latest streams
    and errors, the panel its latest transcript lines, and it still reports each new server error
    once older ones were dropped."""
    from socklab import tls
    from socklab.widgets.tls import TLSPanel
    p = TLSPanel(name="t-soak-tls", trust_ca=False)
    p.start_server()
    for _ in range(ERRORS_KEPT + 10):
        assert p.connect() is None  # the client does not trust the server's CA
    assert p.server.wait_idle()
    assert len(p.server.handler.streams) == 100
    assert tls.STREAMS_KEPT == 100
    assert len(p.server.errors) == ERRORS_KEPT
    assert len(p.steps) == KEPT and p.steps.dropped == 2 * (ERRORS_KEPT + 10) + 1 - KEPT
    # each failed connect adds two lines: FAILED, and what the server saw (none missed)
    assert sum("the server saw" in line for line in p.steps) == KEPT // 2
    assert p.transcript().text.startswith(f"({p.steps.dropped} earlier lines not kept")
    p.stop()
