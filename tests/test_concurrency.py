"""The four server styles of socklab.concurrency on real sockets: they answer, they overlap (or not),
they stop promptly and leave nothing behind."""
from __future__ import annotations

import ast
import errno
import inspect
import socket
import sys
import threading
import time

import pytest

import socklab
from socklab import concurrency, kstate, runtime
from socklab.concurrency import STYLES, make_server, measure, read_line, run_clients

FAST = 1.0  # seconds: "promptly", with room for a loaded CI machine


def ask(address, text=b"hello\n", timeout=5.0) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(text)
        return read_line(s)


def recv_or_error(s, timeout=5.0):
    s.settimeout(timeout)
    try:
        return s.recv(100)
    except OSError as exc:
        return type(exc).__name__


@pytest.mark.parametrize("style", STYLES)
def test_each_style_answers_one_request(style, leakcheck):
    with make_server(style, 0.001).start() as srv:
        assert srv.running
        assert ask(srv.address, b"request 7\n") == b"done: request 7\n"
    assert srv.served == 1
    assert srv.peak == 1
    assert not srv.running
    assert srv.errors == []


@pytest.mark.parametrize("style", STYLES)
def test_each_style_answers_many_concurrent_clients(style, leakcheck):
    m = measure(style, 12, 0.01)
    assert m.answered == 12
    assert all(r.error == "" for r in m.results)
    assert len(m.latencies) == 12


@pytest.mark.parametrize("style", STYLES)
def test_each_style_closes_a_silent_connection_after_idle_timeout(style, leakcheck):
    """idle_timeout holds in every style: blocking sockets have settimeout(), the selectors loop
    keeps each client's clock itself, asyncio wraps its reads in wait_for()."""
    with make_server(style, 0.01, idle_timeout=0.3).start() as srv, \
            socket.create_connection(srv.address, timeout=5) as silent, \
            socket.create_connection(srv.address, timeout=5) as half:
        half.sendall(b"half a requ")  # a request that never ends is as idle as no request
        t0 = time.monotonic()
        assert recv_or_error(silent) == b"" and recv_or_error(half) in (b"", "ConnectionResetError")
        assert time.monotonic() - t0 < 4.0  # the 0.3 s limit ended them, not our own 5 s timeout
        assert ask(srv.address, b"request 1\n") == b"done: request 1\n"  # others are served
        assert srv.running
    assert srv.idle_closed == 2 and srv.errors == [], (srv.idle_closed, srv.errors)


@pytest.mark.parametrize("style", STYLES)
def test_each_style_stops_itself_after_its_lifetime(style, leakcheck):
    before = set(threading.enumerate())
    srv = make_server(style, 0.01, lifetime=0.3).start()
    assert ask(srv.address) == b"done: hello\n"
    assert srv.stopping.wait(5), "the server did not stop itself"
    srv._thread.join(5)
    assert srv.ended_by_lifetime and not srv.running and srv.sock.fileno() == -1
    assert set(threading.enumerate()) - before == set()
    assert srv not in runtime.running()
    client = socklab.Client(srv.address, timeout=2)
    try:
        with pytest.raises(ConnectionRefusedError) as info:
            client.connect()
    finally:
        client.close()
    exp = info.value.explanation
    assert exp.title == "Server stopped itself" and "lifetime of 0.3 s" in exp.what
    assert f"concurrency.make_server({style!r}, lifetime=" in exp.fix
    with make_server(style, 0.01, port=srv.address[1]).start() as again:  # listening there again
        assert ask(again.address) == b"done: hello\n"
    assert not again.ended_by_lifetime


def test_iterative_serves_one_at_a_time_and_its_total_grows_with_n(leakcheck):
    m = measure("iterative", 8, 0.03)
    assert m.peak == 1 and not m.overlapped
    assert m.total >= 8 * 0.03 * 0.9
    lat = m.latencies
    assert lat[-1] >= 7 * 0.03          # the last client waited for the seven before it
    assert lat[0] < 3 * 0.03


@pytest.mark.parametrize("style", ["threads", "selectors", "asyncio"])
def test_concurrent_styles_overlap_and_do_not_grow_linearly(style, leakcheck):
    m = measure(style, 10, 0.05)
    assert m.overlapped and m.peak > 1
    assert m.total < 10 * 0.05 / 2      # far below the iterative server's 0.5 s
    assert m.max < 10 * 0.05 / 2


def test_simulated_work_never_uses_time_sleep():
    tree = ast.parse(inspect.getsource(concurrency))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "time.sleep" not in calls
    assert "self.stopping.wait(self.service_time)" in inspect.getsource(concurrency._AcceptLoop.handle)


@pytest.mark.parametrize("style", STYLES)
def test_stop_is_prompt_during_long_work(style, leakcheck):
    srv = make_server(style, 30.0).start()
    with socket.create_connection(srv.address, timeout=5) as c:
        c.sendall(b"slow\n")
        assert srv.wait_working(1), "the request never started its work"
        assert srv.peak == 1
        t0 = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - t0 < FAST
        assert recv_or_error(c) in (b"", "ConnectionResetError")  # no reply: the work was cut short
    assert srv.served == 0


@pytest.mark.parametrize("style", STYLES)
def test_stop_is_prompt_with_silent_and_queued_clients(style, leakcheck):
    srv = make_server(style, 30.0).start()
    silent = socket.create_connection(srv.address, timeout=5)     # connects, sends nothing
    queued = [socket.create_connection(srv.address, timeout=5) for _ in range(3)]
    try:
        t0 = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - t0 < FAST
        for s in [silent] + queued:
            assert recv_or_error(s) in (b"", "ConnectionResetError")
    finally:
        for s in [silent] + queued:
            s.close()


@pytest.mark.parametrize("style", STYLES)
def test_stop_twice_and_from_two_threads(style, leakcheck):
    srv = make_server(style, 1.0).start()
    t = threading.Thread(target=srv.stop)
    t.start()
    srv.stop()
    t.join(5)
    assert not t.is_alive()
    srv.stop()
    assert not srv.running


def test_stop_before_start_is_harmless(leakcheck):
    make_server("threads").stop()


def test_start_twice_is_refused(leakcheck):
    with make_server("selectors").start() as srv:
        with pytest.raises(RuntimeError):
            srv.start()


def test_bind_error_is_explained_and_leaves_nothing(leakcheck):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for style in STYLES:
            with pytest.raises(OSError) as info:
                make_server(style, port=port).start()
            assert info.value.errno == errno.EADDRINUSE
            assert isinstance(info.value, socklab.SocklabError)
            assert info.value.explanation.title == "Address already in use"
    assert runtime.running() == []


def test_unknown_style_and_bad_service_time():
    with pytest.raises(ValueError, match="pick one of"):
        make_server("forking")
    with pytest.raises(ValueError):
        make_server("threads", -1)


def test_registered_while_running_and_stop_all_stops_it(leakcheck):
    srv = make_server("asyncio", name="test-conc").start()
    assert srv in runtime.running()
    assert socklab.stop_all() >= 1
    assert not srv.running
    assert srv not in runtime.running()


def test_same_name_replaces_the_old_server(leakcheck):
    a = make_server("threads", name="test-same").start()
    b = make_server("iterative", name="test-same").start()
    assert not a.running and b.running
    b.stop()


def test_threads_over_max_connections_are_closed(leakcheck):
    with make_server("threads", 30.0, max_connections=2).start() as srv:
        held = [socket.create_connection(srv.address, timeout=5) for _ in range(2)]
        try:
            for s in held:
                s.sendall(b"hold\n")
            extra = socket.create_connection(srv.address, timeout=5)
            with extra:
                extra.sendall(b"one too many\n")
                assert recv_or_error(extra) in (b"", "ConnectionResetError")
            assert srv.rejected == 1
        finally:
            for s in held:
                s.close()


@pytest.mark.parametrize("style", STYLES)
def test_client_that_closes_without_a_request_is_dropped(style, leakcheck):
    with make_server(style, 0.001).start() as srv:
        socket.create_connection(srv.address, timeout=5).close()
        assert ask(srv.address) == b"done: hello\n"      # the server is still fine
    assert srv.served == 1


@pytest.mark.parametrize("style", STYLES)
def test_overlong_request_is_refused(style, leakcheck):
    with make_server(style, 0.001).start() as srv:
        with socket.create_connection(srv.address, timeout=5) as s:
            try:
                s.sendall(b"x" * (concurrency.MAX_REQUEST * 3))
            except OSError:
                pass  # the server may already have closed: that is the refusal
            assert recv_or_error(s) in (b"", "ConnectionResetError", "BrokenPipeError")
        assert ask(srv.address) == b"done: hello\n"


def test_run_clients_against_nothing_reports_refused(leakcheck):
    with socket.socket() as lonely:           # bound, not listening: nobody accepts on this port
        lonely.bind(("127.0.0.1", 0))
        total, results = run_clients(lonely.getsockname(), 3, timeout=2)
    assert [r.error for r in results] == ["ConnectionRefusedError"] * 3
    assert total < 2


def test_run_clients_needs_one_client():
    with pytest.raises(ValueError):
        run_clients(("127.0.0.1", 1), 0)


def test_measure_reports_progress_from_client_threads(leakcheck):
    seen = []
    lock = threading.Lock()

    def on_done(res):
        with lock:
            seen.append(res.index)

    servers = []
    m = measure("selectors", 6, 0.005, on_done=on_done, on_server=servers.append)
    assert sorted(seen) == list(range(6))
    assert len(servers) == 1 and not servers[0].running
    assert m.style == "selectors" and m.clients == 6 and m.service_time == 0.005


def test_stopping_the_server_mid_measurement_ends_it_promptly(leakcheck):
    servers = []
    result = {}
    server_up = threading.Event()

    def on_server(srv):
        servers.append(srv)
        server_up.set()

    def run():
        result["m"] = measure("iterative", 20, 0.5, on_server=on_server)

    t = threading.Thread(target=run)
    t0 = time.perf_counter()
    t.start()
    assert server_up.wait(5) and servers[0].wait_working(1)
    servers[0].stop()
    t.join(5)
    assert not t.is_alive()
    assert time.perf_counter() - t0 < 3      # instead of 20 x 0.5 s
    m = result["m"]
    assert m.answered < 20
    assert all(r.error for r in m.results if not r.ok)


def test_compare_table_row_and_chart(leakcheck):
    ms = concurrency.compare(3, service_time=0.005)
    assert [m.style for m in ms] == list(STYLES)
    text = concurrency.table(ms)
    assert text.splitlines()[0].split() == ["style", "clients", "answered", "total", "ms", "mean", "ms",
                                             "max", "ms", "peak"]
    assert all(s in text for s in STYLES)
    row = ms[0].row()
    assert row.startswith("iterative  clients=3  answered=3/3  total ")
    assert row.endswith("one request at a time")
    chart = concurrency.latency_chart(ms[0], width=10)
    assert chart.count("answer ") == 4 and "#" in chart    # the title, and one row per answer
    assert "sorted: fastest answer first" in chart.splitlines()[0]
    assert "client " not in chart    # rows are answers in order, not client numbers
    empty = concurrency.Measurement("threads", 2, 0.01, 0.1,
                                    [concurrency.ClientResult(0, None, "ConnectionRefusedError")])
    assert "no client got an answer" in concurrency.latency_chart(empty)
    assert empty.answered == 0


# ---- bad input is explained before anything starts; caps hold for every style

BAD_RUNS = [
    ("clients '5'", lambda: measure("threads", "5"), "Invalid clients"),
    ("clients 2.5", lambda: measure("threads", 2.5), "Invalid clients"),
    ("clients None", lambda: measure("threads", None), "Invalid clients"),
    ("clients 0", lambda: measure("threads", 0), "Invalid clients"),
    ("too many clients", lambda: measure("threads", concurrency.MAX_CLIENTS + 1), "Invalid clients"),
    ("run_clients too many", lambda: run_clients(("127.0.0.1", 1), 1000), "Invalid clients"),
    ("service_time None", lambda: measure("threads", 2, None), "Invalid service_time"),
    ("service_time -1", lambda: measure("threads", 2, -1), "Invalid service_time"),
    ("timeout '1'", lambda: measure("threads", 2, timeout="1"), "Invalid timeout"),
    ("timeout 0", lambda: measure("threads", 2, timeout=0), "Invalid timeout"),
    ("backlog 2**40", lambda: measure("threads", 2, backlog=2 ** 40), "Invalid backlog"),
    ("backlog 'x'", lambda: measure("threads", 2, backlog="x"), "Invalid backlog"),
    ("max_connections None", lambda: measure("threads", 2, max_connections=None),
     "Invalid max_connections"),
    ("idle_timeout 0", lambda: measure("iterative", 2, idle_timeout=0), "Invalid idle_timeout"),
    ("lifetime 0", lambda: measure("selectors", 2, lifetime=0), "Invalid lifetime"),
    ("lifetime inf", lambda: make_server("asyncio", lifetime=float("inf")), "Invalid lifetime"),
    ("port '80'", lambda: measure("threads", 2, port="80"), "Invalid port"),
    ("style None", lambda: measure(None, 2), "Unknown server style"),
    ("styles as one str", lambda: concurrency.compare(2, styles="threads"),
     "styles must be a list of style names"),
    ("one bad style in the list", lambda: concurrency.compare(2, styles=["threads", "forking"]),
     "Unknown server style"),
    ("unknown setting", lambda: measure("threads", 2, bogus=1), "Unknown server setting"),
    ("on_done not callable", lambda: measure("threads", 2, on_done=5), "on_done must be a function"),
]


@pytest.mark.parametrize("call, title", [pytest.param(c, t, id=i) for i, c, t in BAD_RUNS])
def test_bad_settings_are_explained_before_anything_runs(call, title, leakcheck):
    threads = threading.active_count()
    with pytest.raises(socklab.ConfigError) as info:
        call()
    assert info.value.explanation.title == title
    assert info.value.explanation.fix
    assert threading.active_count() == threads    # no server, no client thread was started
    assert runtime.running() == []


def test_styles_as_one_str_suggests_a_list():
    with pytest.raises(socklab.ConfigError) as info:
        concurrency.compare(2, styles="threads")
    assert "['threads']" in info.value.explanation.fix


@pytest.mark.parametrize("style", ["threads", "selectors", "asyncio"])
def test_every_concurrent_style_honours_max_connections(style, leakcheck):
    with make_server(style, 30.0, max_connections=2).start() as srv:
        held = [socket.create_connection(srv.address, timeout=5) for _ in range(2)]
        try:
            for s in held:
                s.sendall(b"hold\n")
            assert srv.wait_working(2), "the two held requests never were in their work together"
            with socket.create_connection(srv.address, timeout=5) as extra:
                extra.sendall(b"one too many\n")
                assert recv_or_error(extra) in (b"", "ConnectionResetError")
            assert srv.rejected == 1 and srv.peak == 2
        finally:
            for s in held:
                s.close()


@pytest.mark.parametrize("style", ["threads", "asyncio"])
def test_a_measurement_says_how_many_clients_the_cap_turned_away(style, leakcheck):
    # Each request holds its connection for 0.5 s: the clients that start with the first find the
    # one place taken.
    m = concurrency.measure(style, 3, service_time=0.5, max_connections=1)
    failed = [r for r in m.results if not r.ok]
    assert m.turned_away == len(failed) >= 1 and m.max_connections == 1
    assert f"({len(failed)} closed at once by the server: over its max_connections=1)" in m.row()
    assert "closed at once" not in concurrency.measure(style, 2, service_time=0.001).row()


class _BrokenServer(concurrency.ThreadedServer):
    """A server whose accept loop dies on its first connection (a bug while serving)."""

    def on_connection(self, conn):
        raise RuntimeError("bug in on_connection")


def test_a_server_that_dies_refuses_clients_at_once_and_leaks_nothing(leakcheck):
    srv = _BrokenServer(0.01).start()
    try:
        t0 = time.perf_counter()
        total, results = run_clients(srv.address, 3, timeout=5)
        assert time.perf_counter() - t0 < FAST     # refused, not left to time out
        assert all(r.error for r in results)       # refused, reset or closed: each one failed
        assert [e.error for e in srv.errors] == ["RuntimeError('bug in on_connection')"]
    finally:
        srv.stop()


def test_an_error_in_on_done_is_raised_in_the_caller(leakcheck):
    def on_done(result):
        raise ZeroDivisionError("progress view broke")

    with pytest.raises(ZeroDivisionError, match="progress view broke"):
        measure("threads", 2, 0.001, on_done=on_done)


def test_a_run_stopped_before_any_answer_shows_no_latency_not_nan():
    """A run stopped before its first client was answered has no latency: '-', not 'nan ms'."""
    from socklab.concurrency import Measurement
    m = Measurement("threaded", clients=5, service_time=0.02, total=0.01, stopped=True)
    assert "mean latency -  max latency -" in m.row() and "nan" not in m.row()
    pytest.importorskip("ipywidgets")
    from socklab.widgets.manyclients import ManyClientsPanel
    panel = ManyClientsPanel(name="t-mc-nan")
    try:
        panel.measurements.append(m)
        table = panel._table_html()
        assert "<td>-</td><td>-</td>" in table and "nan" not in table
    finally:
        panel.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the backlog in force, read from Linux")
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("backlog", [None, 2])
def test_every_style_listens_with_the_backlog_it_was_given(style, backlog, leakcheck):
    """asyncio.start_server(sock=...) calls listen() again, with its own default (100) unless it is
    given backlog=: every style must listen with the server's backlog (128 unless set)."""
    kw = {} if backlog is None else {"backlog": backlog}
    with make_server(style, 0.01, **kw).start() as srv:
        row = kstate.listener_state(srv.address[1])
        if row is None or row.backlog is None:
            pytest.skip("the kernel does not show the backlog in force here (no sock_diag)")
        assert row.backlog == (128 if backlog is None else backlog)


def test_asyncio_accept_queue_holds_backlog_plus_one_while_its_loop_is_busy(leakcheck):
    """With its event loop held up, the asyncio server accepts nothing: the kernel's accept queue
    fills. backlog=2 lets 3 connections complete; the 4th SYN is dropped and its connect() times
    out (with asyncio's default backlog of 100 it would connect)."""
    srv = make_server("asyncio", 0.01, backlog=2).start()
    held, release = threading.Event(), threading.Event()

    def hold_the_loop():          # runs in the event loop's thread: nothing else runs meanwhile
        held.set()
        release.wait(10)

    clients = []
    try:
        srv._loop.call_soon_threadsafe(hold_the_loop)
        assert held.wait(5), "the event loop never ran the callback"
        for _ in range(3):        # backlog + 1 fit in the queue
            clients.append(socket.create_connection(srv.address, timeout=2))
        with pytest.raises(TimeoutError):
            clients.append(socket.create_connection(srv.address, timeout=0.5))
    finally:
        release.set()
        for c in clients:
            c.close()
        srv.stop()
