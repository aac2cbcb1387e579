"""The accept-queue experiment on real sockets: backlog + 1 get in, the rest time out (Linux)."""
import selectors
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from socklab.backlog import LAUNCH_GRACE, run_backlog_experiment
from socklab.errors import ConfigError
from socklab.render.diagram import diagram_text
from socklab.render.state import queue_gauge_html, queue_gauge_text

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measured on Linux")


@pytest.mark.parametrize("backlog", [0, 1, 2])
def test_backlog_plus_one_connect_and_the_rest_time_out(backlog, leakcheck):
    r = run_backlog_experiment(backlog, clients=backlog + 3, connect_timeout=0.5)
    assert r.backlog_in_force == backlog and r.capacity == backlog + 1
    assert [c.outcome for c in r.clients] == ["connected"] * (backlog + 1) + ["timed out"] * 2
    assert r.count("refused") == 0  # dropped SYNs, not refusals
    assert r.queue_seen == backlog + 1
    assert all(c.error.startswith("TimeoutError") for c in r.clients if not c.connected)
    text = r.text()
    assert f"listen({backlog})" in text and f"holds {backlog + 1}" in text
    assert f"{backlog + 1} connected, 2 timed out, 0 refused." in text


def test_text_says_the_clients_start_one_after_another(leakcheck):
    """The report used to say the clients 'connect at once'. They start one after another: the next
    as soon as the one before connected, or after LAUNCH_GRACE while it still waits."""
    r = run_backlog_experiment(0, clients=3, connect_timeout=0.3)
    first = r.text().splitlines()[0]
    assert "at once" not in first
    assert ("3 clients, started one after another (the next when the one before connected, or after "
            f"{LAUNCH_GRACE * 1000:g} ms), each with a 0.3 s timeout") in first
    start = {e.side: e.t for e in r.trace if e.call == "connect"}
    assert start["client1"] < start["client2"] < start["client3"]
    # listen(0) holds one: client2's SYN was dropped, so client3 waited LAUNCH_GRACE for it before
    # starting (a loose bound: thread start-up varies on a busy machine)
    assert start["client3"] - start["client2"] > LAUNCH_GRACE / 2


def test_waiting_clients_get_in_when_the_server_accepts(leakcheck):
    # the kernel retries a dropped SYN after about 1 s; the connect timeout leaves room for that.
    # accept() starts 0.5 s after the last client called connect(): its first SYN was surely dropped by then.
    r = run_backlog_experiment(1, clients=3, connect_timeout=3.0, accept_after=0.5)
    assert [c.outcome for c in r.clients] == ["connected", "connected", "connected after accept"]
    assert sorted(c.accepted_as for c in r.clients) == ["server/conn1", "server/conn2", "server/conn3"]
    assert r.peers == {c.side: c.accepted_as for c in r.clients}
    assert "let in after accept()" in queue_gauge_text(r)
    lines = diagram_text(r.trace, peers=r.peers).splitlines()
    assert "server: [now calling accept()]" in lines
    assert "client3 ──connect──▶ server" in lines


def test_a_client_that_fitted_at_once_is_not_called_late(leakcheck):
    """Room for all, accept() at once: a client finishing its handshake just after accept() began
    got in on its first SYN, not on a retried one (it used to be counted 'late')."""
    for _ in range(3):
        r = run_backlog_experiment(3, clients=2, connect_timeout=3.0, accept_after=0)
        assert [c.outcome for c in r.clients] == ["connected", "connected"]
        assert "let in after accept()" not in queue_gauge_text(r)


def test_listen_without_argument_uses_128(leakcheck):
    r = run_backlog_experiment(None, clients=2, connect_timeout=0.5)
    assert r.backlog_in_force == min(socket.SOMAXCONN, 128) == 128
    assert [c.outcome for c in r.clients] == ["connected", "connected"]
    assert "listen()" in r.text()
    assert "+109 more places" in queue_gauge_text(r)


def test_unix_stream_full_queue_would_block(leakcheck):
    r = run_backlog_experiment(1, clients=3, connect_timeout=0.5, family="AF_UNIX")
    assert [c.outcome for c in r.clients] == ["connected", "connected", "would block"]
    assert r.backlog_in_force == 1 and r.queue_seen == 2


def test_gauge_views(leakcheck):
    r = run_backlog_experiment(0, clients=2, connect_timeout=0.5)
    text = queue_gauge_text(r)
    assert text.splitlines()[0] == \
        "accept queue (backlog 0 in force, holds 1): [#]  at most 1 waiting (full)"
    assert "turned away: client2 (timed out)" in text and "SYN was dropped, not refused" in text
    html = queue_gauge_html(r)
    svg = html[html.index("<svg"):html.index("</svg>") + 6]
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "client1" in texts and "client2" in texts and "timed out" in texts


def test_gauge_without_a_known_queue_size_does_not_call_it_full(leakcheck):
    """Where the kernel state comes from psutil (macOS, Windows) the queue's size is unknown: the
    gauge says so instead of drawing as many places as were filled and calling them full."""
    import dataclasses
    r = dataclasses.replace(run_backlog_experiment(5, clients=2, connect_timeout=0.5),
                            backlog_in_force=None)  # capacity follows it
    first = queue_gauge_text(r).splitlines()[0]
    assert first == "accept queue (its size is not shown on this system): 2 waiting"
    assert "accept queue (size not known here)" in queue_gauge_html(r)


def test_bad_settings_are_explained():
    with pytest.raises(ConfigError):
        run_backlog_experiment(1, clients=1000)
    with pytest.raises(ConfigError):
        run_backlog_experiment(1, clients=2, connect_timeout=0)
    with pytest.raises(ConfigError):
        run_backlog_experiment("5", clients=2)


INTERRUPTED = r"""
import sys, socklab
from socklab.trace import Trace
t = Trace()
def marker(ev):
    if ev.call == "connect" and ev.ok:  # the first client is in: the others are waiting
        print("WAITING", flush=True)
t.subscribe(marker)
socklab.run_backlog_experiment(backlog=0, clients=4, connect_timeout=30, trace=t)
"""


def test_an_interrupt_ends_the_experiment_without_waiting_for_the_connect_timeout():
    """Waiting clients are shut down (their connect() returns at once) instead of joined for
    their whole 30 s connect_timeout."""
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(20), "the experiment never got its first client in"
        assert proc.stdout.readline().strip() == "WAITING"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)  # well under the 30 s connect_timeout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err, err


@pytest.mark.parametrize("kwargs", [dict(connect_timeout=float("nan")), dict(connect_timeout=float("inf")),
                                    dict(connect_timeout=3600), dict(accept_after=float("nan")),
                                    dict(connect_timeout=True)])
def test_experiment_waits_are_finite_and_bounded(kwargs):
    with pytest.raises(ConfigError) as err:
        run_backlog_experiment(**kwargs)
    assert "seconds" in err.value.explanation.what
