"""BacklogPanel driven from plain Python: real sockets, live widget updates, results, transcript."""
from __future__ import annotations

import re
import signal
import socket
import struct
import sys
import threading

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab import ConfigError  # noqa: E402
from socklab.backlog import LAUNCH_GRACE  # noqa: E402
from socklab.widgets.backlog import (BacklogPanel, chart_text, kernel_rows, kernel_view,  # noqa: E402
                                     sweep_text, wait_for_state)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measured on Linux")


def masked(text: str) -> str:
    return re.sub(r"(127\.0\.0\.1:)\d+", r"\1PORT", text)


class Recorder:
    """Counts a widget's value changes and the threads that made them."""

    def __init__(self, widget):
        self.values, self.threads = [], []
        widget.observe(self, names="value")

    def __call__(self, change):
        self.values.append(change["new"])
        self.threads.append(threading.current_thread())


def test_backlog_1_four_clients_two_connect_two_time_out_live(leakcheck):
    panel = BacklogPanel(name="t-bl1")
    gauge, state, status = Recorder(panel.gauge), Recorder(panel.state_view), Recorder(panel.status)
    r = panel.run(backlog=1, clients=4, connect_timeout=0.6)
    assert [c.outcome for c in r.clients] == ["connected", "connected", "timed out", "timed out"]
    assert r.backlog_in_force == 1 and r.capacity == 2 and r.count("refused") == 0
    assert (panel.backlog.value, panel.clients.value, panel.timeout.value) == (1, 4, 0.6)
    # live: the gauge, the kernel view and the status changed from the panel's thread mid-run
    main = threading.main_thread()
    live_gauges = [v for v, t in zip(gauge.values, gauge.threads) if t is not main and "waiting" in v]
    assert live_gauges, "the gauge never showed clients waiting outside the queue"
    live_states = [v for v, t in zip(state.values, state.threads) if t is not main]
    assert any("SYN-SENT" in v and "LISTEN" in v for v in live_states)
    assert sum("running" in v for v in status.values) >= 3
    assert all(t is not main for t in gauge.threads)
    # the end: final gauge, results table, chart
    assert "timed out" in panel.gauge.value and "client4" in panel.gauge.value
    assert panel.table.value.count("timed out: its SYN was dropped") == 2
    assert "<svg" in panel.plot.value and "listen(1)" in panel.plot.value
    assert "finished" in panel.status.value and not panel.busy
    # the kernel's view while everybody waited: queue full, two clients in SYN-SENT, named
    snap = [(row.side, row.state) for row in panel.snapshot]
    assert snap == [("server", "LISTEN"), ("client1", "ESTABLISHED"), ("(in accept queue)", "ESTABLISHED"),
                    ("client2", "ESTABLISHED"), ("(in accept queue)", "ESTABLISHED"),
                    ("client3", "SYN-SENT"), ("client4", "SYN-SENT")]
    assert panel.snapshot[0].recv_q == 2 and panel.snapshot[0].backlog == 1


def test_transcript_is_stable_and_has_no_times(leakcheck):
    panel = BacklogPanel(name="t-bl2")
    texts = []
    for _ in range(2):
        panel.run(backlog=0, clients=2, connect_timeout=0.3)
        texts.append(masked(panel.transcript().text))
    assert texts[0] == texts[1]
    text = texts[0]
    assert "1 connected, 1 timed out, 0 refused." in text
    assert "accept queue (backlog 0 in force, holds 1): [#]" in text
    assert "client2  timed out  (TimeoutError: timed out)" in text
    assert "turned away: client2 (timed out)" in text
    assert "listen(0)  #." in text
    # no measured times, only the settings: the 0.3 s timeout and the clients' start-up grace
    assert f"or after {LAUNCH_GRACE * 1000:g} ms)" in text
    assert not re.search(r"\d+\.\d\d s|\d ms", text.replace(f"after {LAUNCH_GRACE * 1000:g} ms)", ""))
    assert "connect() took" not in panel.transcript().html
    assert "connect() took" in panel.table.value  # the live table shows them


def test_sweep_counts_every_client_turned_away_not_only_timeouts(leakcheck):
    """AF_UNIX: the extra client is turned away with 'would block', not a timeout; the table's
    'turned away' column counts it (a 'timed out' column showed 0 and lost that client)."""
    panel = BacklogPanel(family="AF_UNIX", name="t-bl-unix-sweep")
    results = panel.sweep(backlogs=(0, 1), connect_timeout=0.3)
    assert [[c.outcome for c in r.clients] for r in results] == [
        ["connected", "would block"], ["connected", "connected", "would block"]]
    assert [ln.split()[:4] for ln in sweep_text(results).splitlines()[1:]] == [
        ["0", "2", "1", "1"], ["1", "3", "2", "1"]]


def test_sweep_tabulates_capacity_vs_backlog(leakcheck):
    panel = BacklogPanel(name="t-bl3")
    results = panel.sweep(connect_timeout=0.3)
    assert [r.backlog for r in results] == [0, 1, 2, 3]
    assert [r.capacity for r in results] == [1, 2, 3, 4]
    assert [r.connected for r in results] == [1, 2, 3, 4]
    assert all(r.count("timed out") == 1 for r in results)
    lines = sweep_text(results).splitlines()
    assert lines[0].split() == ["backlog", "clients", "connected", "turned", "away", "backlog", "in",
                                "force", "queue", "holds"]
    assert [ln.split() for ln in lines[1:]] == [
        ["0", "2", "1", "1", "0", "1"], ["1", "3", "2", "1", "1", "2"],
        ["2", "4", "3", "1", "2", "3"], ["3", "5", "4", "1", "3", "4"]]
    chart = chart_text(panel.history)
    assert "listen(3)  ####." in chart and "4 of 5 connected  (queue holds 4)" in chart
    assert "socklab-sweep" in panel.table.value and "sweep finished" in panel.status.value
    assert panel.chart().html.count("listen(") >= 4


def test_server_accepting_lets_a_waiting_client_in(leakcheck):
    panel = BacklogPanel(name="t-bl4")
    # accept() 0.3 s after the last client's connect(): its first SYN has surely been dropped.
    # (With 0 s, on a busy machine the accept() can come before that SYN: it gets in at once.)
    r = panel.run(backlog=0, clients=2, connect_timeout=2.5, accept_after=0.3)
    assert [c.outcome for c in r.clients] == ["connected", "connected after accept"]
    assert panel.accepts.value and panel.accept_after.value == 0.3
    assert "got in late: connect() waited for room (a resent SYN, the first about 1 s after)" in panel.table.value
    assert "listen(0)  #+" in panel.transcript().text
    r2 = panel.run(accept_after=None, connect_timeout=0.3)  # None: never accept again
    assert not panel.accepts.value
    assert [c.outcome for c in r2.clients] == ["connected", "timed out"]
    r3 = panel.run(clients=1, accept_after=0.0)  # 0 is "at once", not "never"
    assert panel.accepts.value and panel.accept_after.value == 0.0
    assert "starts accept() 0 s after the last client called connect()" in r3.text()


def test_af_unix_full_queue_would_block(leakcheck):
    panel = BacklogPanel(name="t-bl5")
    r = panel.run(backlog=1, clients=3, connect_timeout=0.5, family="AF_UNIX")
    assert [c.outcome for c in r.clients] == ["connected", "connected", "would block"]
    assert "BlockingIOError: AF_UNIX queue full" in panel.table.value
    assert "client3  would block  (BlockingIOError" in panel.transcript().text


def test_run_button_works_in_the_background(leakcheck):
    panel = BacklogPanel(backlog=0, clients=2, connect_timeout=0.5, name="t-bl6")
    assert "socklab-run-backlog" in panel.buttons["Run"]._dom_classes
    finished = threading.Event()
    panel.status.observe(lambda change: "finished" in change["new"] and finished.set(), names="value")
    panel.buttons["Run"].click()
    assert panel.busy
    panel.buttons["Run"].click()
    assert "in progress" in panel.alert.value
    assert finished.wait(10), panel.status.value  # the run ends on its own, in the background
    panel.stop()
    assert not panel.busy
    assert [c.outcome for c in panel.result.clients] == ["connected", "timed out"]


def test_css_classes_for_browser_tests():
    panel = BacklogPanel(name="t-bl7")
    assert "socklab-gauge" in panel.gauge._dom_classes
    assert "socklab-state" in panel.state_view._dom_classes
    assert "socklab-results" in panel.table._dom_classes
    assert "socklab-panel" in panel._dom_classes
    assert panel.transcript().text == "(no runs yet)"
    assert "interactive in JupyterLab" in panel._repr_mimebundle_()["text/plain"]
    panel.stop()


def test_bad_settings_are_explained_and_change_nothing():
    panel = BacklogPanel(name="t-bl8")
    for kwargs in (dict(backlog=20), dict(backlog=-1), dict(clients=0), dict(connect_timeout=0),
                   dict(accept_after=5), dict(family="AF_PACKET")):
        with pytest.raises(ConfigError):
            panel.run(**kwargs)
    with pytest.raises(ConfigError):
        panel.sweep(backlogs=(0, 9))
    for backlogs in (5, None, (), "0123"):  # a TypeError from iterating them, before
        with pytest.raises(ConfigError) as err:
            panel.sweep(backlogs=backlogs)
        assert "backlogs=(0, 1, 2, 3)" in err.value.explanation.fix
    for kwargs in (dict(backlog=9), dict(clients=100), dict(family="AF_BLUETOOTH")):
        with pytest.raises(ConfigError):
            BacklogPanel(name="t-bl8b", **kwargs)
    assert (panel.backlog.value, panel.clients.value) == (1, 4) and panel.result is None


def test_rerunning_the_cell_or_stop_all_stops_a_run(leakcheck):
    panel = BacklogPanel(backlog=0, clients=2, connect_timeout=0.5, name="t-bl9")
    panel.run(wait=False)
    new = BacklogPanel(name="t-bl9")  # the same name again: the old panel is stopped (its run finishes)
    assert not panel.busy and panel.result is not None
    new.sweep(connect_timeout=0.3, wait=False)
    assert new.busy
    socklab.stop_all()  # lets the current run finish, skips the rest of the sweep
    assert not new.busy and len(new.results) < 4


def test_clear_forgets_the_runs(leakcheck):
    panel = BacklogPanel(name="t-bl10")
    panel.run(backlog=0, clients=1, connect_timeout=0.3)
    assert panel.history
    panel.clear()
    assert (panel.result, panel.history, panel.table.value, panel.gauge.value) == (None, {}, "", "")


def test_kernel_view_of_sockets_built_by_hand(leakcheck):
    t = socklab.Trace()
    with socklab.socket(trace=t, side="server", name="t-bl-srv") as srv:
        srv.settimeout(2)
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        c1 = socklab.socket(trace=t, side="client1", name="t-bl-c1")
        c1.settimeout(1)
        c1.connect(srv.getsockname())
        c2 = socklab.socket(trace=t, side="client2", name="t-bl-c2")
        c2.settimeout(5)
        waiting = socklab.Background(c2.connect, srv.getsockname(), name="t-bl-bg")
        assert wait_for_state(srv, "SYN-SENT")
        rows = kernel_rows(srv, c2, c1)  # named clients come in the order given
        assert [(r.side, r.state) for r in rows] == [
            ("server", "LISTEN"), ("client2", "SYN-SENT"), ("client1", "ESTABLISHED"),
            ("(in accept queue)", "ESTABLISHED")]
        c1.sendall(b"early")
        c1.close()
        assert wait_for_state(srv, "FIN-WAIT-2")
        view = kernel_view(srv, c1, c2)  # a closed client keeps its name
        assert "client1" in view.text and "FIN-WAIT-2" in view.text and "socklab-state" in view.html
        conn, _ = srv.accept()
        waiting.result(5)  # the retried SYN got in once accept() made room
        assert conn.recv(100) == b"early" and conn.recv(100) == b""
        conn2, _ = srv.accept()
        conn.close()
        conn2.close()
        c2.close()
    assert not wait_for_state(("127.0.0.1", 1), "LISTEN", timeout=0.05)


def test_a_client_with_no_row_is_explained_not_dropped(leakcheck):
    t = socklab.Trace()
    with socklab.socket(trace=t, side="server", name="t-bl-srv2") as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        gone = socklab.socket(trace=t, side="client1", name="t-bl-gone")
        gone.settimeout(2)
        gone.connect(srv.getsockname())
        assert "client1" in kernel_view(srv, gone).text
        # A zero linger makes close() reset the connection: the kernel drops the client's end at
        # once, as it does after tcp_fin_timeout for a FIN-WAIT-2 (notebook 04 waits 60 s for that).
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
        idle = socklab.socket(trace=t, side="client2", name="t-bl-idle")
        try:
            rows = kernel_rows(srv, gone, idle)
            assert not {"client1", "client2"} & {r.side for r in rows}
            view = kernel_view(srv, gone, idle)
            assert "client1 has no row: it is closed and the kernel has forgotten its end" in view.text
            assert "tcp_fin_timeout" in view.text and "client2 has no row: it has no address yet" in view.text
            assert "client1 has no row" in view.html
        finally:
            idle.close()
        with socklab.socket(side="elsewhere", name="t-bl-else") as other, \
                socket.create_server(("127.0.0.1", 0)) as lst2:
            other.settimeout(2)
            other.connect(lst2.getsockname())
            assert "elsewhere has no row: it is not connected to this listener" in kernel_view(srv, other).text
            lst2.accept()[0].close()


def test_rows_that_only_share_the_port_number_are_left_out():
    from socklab.kstate import SockState
    from socklab.widgets.backlog import order_rows
    lst = ("127.0.0.1", 5000)
    rows = [SockState("tcp", ("127.0.0.1", 40001), lst, "TIME-WAIT", 0, 0, 0),  # an old client's
            SockState("tcp", ("127.0.0.1", 5000), ("127.0.0.1", 40002), "ESTABLISHED", 0, 0, 0),
            SockState("tcp", ("127.0.0.1", 6000), ("127.0.0.1", 5000), "TIME-WAIT", 0, 0, 0),
            SockState("tcp", ("127.0.0.1", 40002), lst, "ESTABLISHED", 0, 0, 7),
            SockState("tcp", ("127.0.0.1", 40003), lst, "SYN-SENT", 0, 1, 8),
            SockState("tcp", lst, ("0.0.0.0", 0), "LISTEN", 1, 1, 9, backlog=1)]
    out = order_rows(rows, {("127.0.0.1", 40003): "client2", ("127.0.0.1", 40002): "client"}, lst)
    assert [(r.side, r.state, r.local[1]) for r in out] == [
        ("", "LISTEN", 5000), ("client2", "SYN-SENT", 40003), ("client", "ESTABLISHED", 40002),
        ("", "ESTABLISHED", 5000)]


def test_backlog_panel_reads_the_family_as_socketconfig_does():
    p = BacklogPanel(family="inet", name="t-backlog-family")
    assert p.family.value == "AF_INET"
    p.stop()
    with pytest.raises(socklab.ConfigError) as err:
        BacklogPanel(family="tcp", name="t-backlog-family")
    assert "AF_INET" in err.value.explanation.fix


def test_an_interrupt_while_a_sweep_waits_stops_the_sweep_too(leakcheck, interrupt_when):
    """Jupyter's stop button raises KeyboardInterrupt in the main thread, here while sweep() waits."""
    panel = BacklogPanel(name="t-backlog-interrupt")
    running = threading.Event()
    panel.status.observe(lambda change: "running" in change["new"] and running.set(), names="value")
    with interrupt_when(running), pytest.raises(KeyboardInterrupt):
        panel.sweep(connect_timeout=3)  # four runs whose extra client waits 3 s each
    assert not panel.busy  # the sweep ended with the wait, not seconds later in the background
    assert len(panel.results) <= 1


class _InterruptedAtStart(BacklogPanel):
    """Its run interrupts the main thread first thing: while that thread may still be inside
    Thread.start(), before it waits for the run. (A stop button pressed at that moment.)"""

    def _work(self, job, done):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        super()._work(job, done)


def test_an_interrupt_while_the_run_is_being_started_stops_it_too(leakcheck):
    panel = _InterruptedAtStart(name="t-backlog-interrupt-start")
    with pytest.raises(KeyboardInterrupt):
        panel.sweep(connect_timeout=3)  # four runs whose extra client waits 3 s each
    assert not panel.busy and len(panel.results) <= 1


def test_stop_ends_a_run_at_once_its_waiting_clients_are_stopped_not_timed_out(leakcheck):
    from socklab.widgets.backlog import TIMEOUT_RANGE
    panel = BacklogPanel(name="t-backlog-stop")
    waiting = threading.Event()  # the kernel shows a client in SYN-SENT: its SYN was dropped
    panel.status.observe(lambda change: "running" in change["new"] and waiting.set(), names="value")
    panel.run(backlog=0, clients=3, connect_timeout=TIMEOUT_RANGE[1], wait=False)
    assert waiting.wait(10)
    panel.stop()
    assert not panel.busy
    r = panel.results[-1]
    assert r.stopped and r.count("timed out") == 0 and r.count("stopped") >= 1, r.text()
    assert "stopped" in panel.status.value and "Stopped early" in r.text()
