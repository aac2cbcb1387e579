"""The accept-queue experiment: a listener that does not accept(), and more clients than it queues.

``run_backlog_experiment(backlog, clients)`` shows what listen(backlog) really means on this
machine: on Linux the queue holds backlog + 1 connections; further clients are not refused, their
SYN is dropped and connect() times out, unless the server accept()s while they wait and a
retried SYN gets in. Real sockets, one thread per client, waits on events and selectors only;
everything is closed and joined before it returns. Knows nothing of Jupyter.
"""
from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from . import kstate
from .config import SocketConfig
from .errors import ConfigError, Explanation, explained
from .trace import Trace, TracedSocket, as_trace
from .runtime import Thread

LAUNCH_GRACE = 0.05  # s a client may take to connect before the next starts: keeps the order stable
CALLING_WAIT = 1.0   # s at most for the last client's thread to reach connect() (it takes ~1 ms)
SAMPLE_EVERY = 0.1   # s between kernel-state samples while clients wait
MAX_CLIENTS = 64     # one thread each: keep a shared classroom host safe
MAX_WAIT = 60.0      # s at most for connect_timeout and accept_after: an experiment, not a service
# A connect() that took this long waited for room: it got in on a retried SYN (Linux resends the
# first after 1 s), or, for AF_UNIX, waited in connect(). Quicker ones fitted at once.
LATE = 0.5


class StopSignal:
    """Ends a running experiment at once, from any thread: ``set()`` wakes its wait through a
    wake-up socket (no polling) and its pending connect()s are shut down."""

    def __init__(self):
        self._set = False
        self._lock = threading.Lock()
        self._wakes: list = []

    def set(self) -> None:
        with self._lock:
            self._set = True
            for w in self._wakes:
                w.send(b"s")

    def is_set(self) -> bool:
        return self._set

    def _attach(self, wake) -> None:
        with self._lock:
            self._wakes.append(wake)
            if self._set:
                wake.send(b"s")

    def _detach(self, wake) -> None:
        with self._lock:
            self._wakes.remove(wake)


@dataclass
class ClientOutcome:
    """What connect() did for one client."""

    side: str
    outcome: str = "pending"  # connected | connected after accept | timed out | refused | would block | error
    error: str = ""           # e.g. 'TimeoutError: timed out'
    seconds: float | None = None  # how long connect() took
    local: object = None      # the client's own address
    accepted_as: str = ""     # 'server/conn1' once the server accept()ed it
    done_at: float = 0.0      # perf_counter() when connect() returned

    @property
    def connected(self) -> bool:
        return self.outcome.startswith("connected")


@dataclass
class Sample:
    """The kernel's view of the listener at one moment."""

    t: float                 # s since the first client started
    why: str
    queue: int | None        # connections waiting in the accept queue
    backlog: int | None      # backlog in force
    syn_sent: int | None     # clients whose SYN is unanswered


@dataclass
class BacklogResult:
    """Outcome of ``run_backlog_experiment``: per-client table, queue seen, backlog in force."""

    backlog: int | None
    family: str
    connect_timeout: float
    accept_after: float | None
    clients: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    backlog_in_force: int | None = None
    trace: Trace | None = None
    reason: str = ""         # why kernel columns are missing, if they are
    peers: dict = field(default_factory=dict)  # client side -> accepted side, for diagram(peers=...)
    stopped: bool = False    # ended early by its StopSignal (or an interrupt)

    @property
    def queue_seen(self) -> int | None:
        """The longest accept queue sampled."""
        qs = [s.queue for s in self.samples if s.queue is not None]
        return max(qs) if qs else None

    @property
    def syn_sent_seen(self) -> int | None:
        """The most clients seen waiting in SYN-SENT at once."""
        qs = [s.syn_sent for s in self.samples if s.syn_sent is not None]
        return max(qs) if qs else None

    @property
    def capacity(self) -> int | None:
        """How many connections the queue holds: backlog in force + 1 on Linux."""
        return None if self.backlog_in_force is None else self.backlog_in_force + 1

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.clients)

    @property
    def connected(self) -> int:
        return sum(c.connected for c in self.clients)

    def text(self) -> str:
        """A plain-text report: setup, what the kernel showed, one line per client."""
        arg = "" if self.backlog is None else str(self.backlog)
        lines = [f"listen({arg}) on {self.family}; {len(self.clients)} clients, started one after another "
                 f"(the next when the one before connected, or after {LAUNCH_GRACE * 1000:g} ms), each with a "
                 f"{self.connect_timeout:g} s timeout; the server "
                 + ("never calls accept()." if self.accept_after is None else
                    f"starts accept() {self.accept_after:g} s after the last client called "
                    "connect().")]
        if self.backlog_in_force is not None:
            lines.append(f"backlog in force: {self.backlog_in_force} (Send-Q in ss -l) -> the accept queue "
                         f"holds {self.capacity}")
        if self.queue_seen is not None:
            syn = f"; clients seen waiting in SYN-SENT: {self.syn_sent_seen}" \
                if self.syn_sent_seen is not None else ""
            lines.append(f"longest accept queue seen: {self.queue_seen}{syn}")
        if self.reason:
            lines.append(f"Note: {self.reason}.")
        if self.stopped:
            lines.append("Stopped early: the clients still waiting in connect() were ended.")
        w = max((len(c.side) for c in self.clients), default=6)
        for c in self.clients:
            extra = f"  ({c.error})" if c.error else ""
            acc = f"  accepted as {c.accepted_as}" if c.accepted_as else ""
            lines.append(f"  {c.side:<{w}}  {c.outcome}{acc}{extra}")
        lines.append(f"{self.connected} connected, {self.count('timed out')} timed out, "
                     f"{self.count('refused')} refused"
                     + "".join(f", {self.count(o)} {o}" for o in ("would block", "stopped") if self.count(o))
                     + ".")
        return "\n".join(lines)


def _check(backlog, clients, connect_timeout, accept_after):
    def bad(what, fix):
        return ConfigError(Explanation("Bad experiment setting", what, "The experiment runs real "
                                       "sockets and one thread per client.", fix))
    if isinstance(clients, bool) or not isinstance(clients, int) or not 0 <= clients <= MAX_CLIENTS:
        raise bad(f"clients={clients!r} is not a number from 0 to {MAX_CLIENTS}.",
                  "Use a few clients, e.g. 4.")
    # "0 < x <= limit" is False for NaN too; the limits keep every wait of the experiment short
    if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) \
            or not 0 < connect_timeout <= MAX_WAIT:
        raise bad(f"connect_timeout={connect_timeout!r} must be a number of seconds above 0 and at "
                  f"most {MAX_WAIT:g}.", "Use e.g. 1.5 (the kernel retries a dropped SYN after about 1 s).")
    if accept_after is not None and (isinstance(accept_after, bool)
                                     or not isinstance(accept_after, (int, float))
                                     or not 0 <= accept_after <= MAX_WAIT):
        raise bad(f"accept_after={accept_after!r} must be None or seconds from 0 to {MAX_WAIT:g}.",
                  "Use None (never accept) or e.g. 0.2.")


def run_backlog_experiment(backlog: int | None = 1, clients: int = 4, connect_timeout: float = 1.5,
                           family: str = "AF_INET", accept_after: float | None = None,
                           trace: Trace | None = None, stop: StopSignal | None = None) -> BacklogResult:
    """Listen with ``backlog`` (None: listen() without argument), never accept, start ``clients``.

    Clients start one after another (each gets ``LAUNCH_GRACE`` to finish) but wait concurrently.
    The listener's queue, backlog in force and SYN-SENT clients are sampled after each connect()
    returns and every ``SAMPLE_EVERY`` s while some wait. With ``accept_after`` (seconds after the
    last client called connect()) the server then accept()s everything, letting waiting clients in.
    ``stop.set()`` (a StopSignal, from another thread) ends it at once: clients still in connect()
    are shut down and marked "stopped".
    """
    _check(backlog, clients, connect_timeout, accept_after)
    cfg = SocketConfig(family=family, type="SOCK_STREAM", backlog=backlog).validate()
    trace = as_trace(trace, "run_backlog_experiment(trace=)", optional=True)
    if stop is not None and not isinstance(stop, StopSignal):
        raise ConfigError(Explanation(
            "stop must be a StopSignal", f"stop={stop!r:.40} is a {type(stop).__name__}.",
            "The experiment ends early when another thread calls stop.set() on the StopSignal it "
            "was given.", "Pass stop=socklab.backlog.StopSignal(), or leave it out."))
    res = BacklogResult(backlog, cfg.family, connect_timeout, accept_after, trace=trace)
    try:
        return _run(res, cfg, backlog, clients, connect_timeout, trace, stop)
    except (OSError, RuntimeError) as exc:  # out of descriptors or threads (a host's limits): explained
        raise explained(exc, call="start" if isinstance(exc, RuntimeError) else None) from None


def _run(res, cfg, backlog, clients, connect_timeout, trace, stop) -> BacklogResult:
    listener = wake_r = wake_w = sel = None
    socks, threads, conns, done, attached = [], [], [], [], False
    try:
        listener = TracedSocket.create(cfg.af, cfg.kind, trace=trace, side="server")
        wake_r, wake_w = socket.socketpair()
        sel = selectors.DefaultSelector()
        if stop is not None:
            stop._attach(wake_w)
            attached = True
        listener.bind(cfg.address)
        listener.listen(*(() if backlog is None else (backlog,)))
        address = listener.getsockname()
        trace.note("server", "not calling accept(): connections wait in the accept queue")
        for _ in range(clients):
            s = TracedSocket.create(cfg.af, cfg.kind, trace=trace, side=trace.new_side("client", numbered=True))
            socks.append(s)
            s.settimeout(connect_timeout)
        res.clients = [ClientOutcome(s.side) for s in socks]
        done = [threading.Event() for _ in socks]
        calling = threading.Event()  # the last client started is about to call connect()
        t0 = time.perf_counter()
        for i, s in enumerate(socks):
            calling.clear()
            t = Thread(target=_connect, args=(s, address, res.clients[i], done[i], wake_w, calling),
                       name=f"socklab-backlog-{s.side}")
            t.start()
            threads.append(t)
            if i + 1 < len(socks):  # the last client has no successor to keep in order
                done[i].wait(LAUNCH_GRACE)
            if stop is not None and stop.is_set():
                break
        # accept_after counts from the last client's connect(), not from its thread's start: on a
        # busy machine a thread can take a while to run, and an accept() before its SYN would let
        # it in at once, as if the queue had never been full.
        if stop is None or not stop.is_set():
            calling.wait(CALLING_WAIT)
        _watch(res, listener, address, done[:len(threads)], wake_r, sel, conns, t0, stop)
    finally:
        if attached:
            stop._detach(wake_w)
        ended = []
        for c, s, d in zip(res.clients, socks, done):
            if not d.is_set():  # still in connect() (or never started): stopped, interrupted, or
                ended.append(c)  # past the hard stop
                try:
                    s.sock.shutdown(socket.SHUT_RDWR)  # ends a pending connect() at once (untraced)
                except OSError:
                    pass  # it connected or failed meanwhile: its thread is returning anyway
        for t in threads:
            t.join(connect_timeout + 5)
        if stop is not None and stop.is_set():
            res.stopped = True
            for c in ended:
                if not c.connected:
                    c.outcome, c.error = "stopped", ""
        for s in [c for c, _ in conns] + socks + [listener, sel, wake_r, wake_w]:
            if s is not None:
                s.close()
        if cfg.family == "AF_UNIX" and listener is not None and os.path.exists(cfg.path):
            os.unlink(cfg.path)
    return res


def _connect(sock, address, out: ClientOutcome, done: threading.Event, wake,
             calling: threading.Event):
    """One client: connect, record the outcome; close at once on failure, as a real program would."""
    start = time.perf_counter()
    calling.set()
    try:
        sock.connect(address)
        out.outcome = "connected"
    except TimeoutError as exc:
        out.outcome, out.error = "timed out", f"TimeoutError: {exc}"
    except ConnectionRefusedError as exc:
        out.outcome, out.error = "refused", f"ConnectionRefusedError: {exc}"
    except BlockingIOError as exc:  # AF_UNIX with a full queue and a timeout set
        out.outcome, out.error = "would block", f"BlockingIOError: {exc}"
    except OSError as exc:
        out.outcome, out.error = "error", f"{type(exc).__name__}: {exc}"
    out.done_at = time.perf_counter()
    out.seconds = out.done_at - start
    try:
        out.local = sock.getsockname()
    except OSError:
        pass  # no address to report
    if not out.connected:
        sock.close()  # a timed-out socket would otherwise keep retrying its SYN in the background
    done.set()
    try:
        wake.send(b"x")
    except OSError:
        pass  # the experiment is already over


def _sample(res, address, t0, why) -> None:
    if isinstance(address, str):
        rows = kstate.unix_sockets_at(address)
        syn = None
    else:
        rows = kstate.sockets_on_ports(address[1])
        syn = sum(r.state == "SYN-SENT" and r.remote[1] == address[1] for r in rows) \
            if rows.source in ("sock_diag", "/proc/net") else None
    listen = [r for r in rows if r.state == "LISTEN"]
    row = listen[0] if listen else None
    res.reason = rows.reason or ("" if row else "the kernel's socket table is not readable here")
    if row is not None and row.backlog is not None and res.backlog_in_force is None:
        res.backlog_in_force = row.backlog
    res.samples.append(Sample(time.perf_counter() - t0, why, row.recv_q if row else None,
                              row.backlog if row else None, syn))


def _watch(res, listener, address, done, wake_r, sel, conns, t0, stop=None):
    """Sample while clients wait; accept() everything once ``accept_after`` has passed."""
    sel.register(wake_r, selectors.EVENT_READ)
    launched = time.perf_counter()
    accept_at = None if res.accept_after is None else launched + res.accept_after
    hard_stop = launched + res.connect_timeout + (res.accept_after or 0) + 5
    accepting = False
    _sample(res, address, t0, "all clients started")
    while not all(d.is_set() for d in done) and time.perf_counter() < hard_stop:
        now = time.perf_counter()
        if accept_at is not None and not accepting and now >= accept_at:
            accepting = True
            res.trace.note("server", "now calling accept()")
            sel.register(listener.sock, selectors.EVENT_READ)
        wait = SAMPLE_EVERY if accepting or accept_at is None else min(SAMPLE_EVERY, accept_at - now)
        ready = sel.select(max(wait, 0))
        if stop is not None and stop.is_set():
            break
        returned = False
        for key, _ in ready:
            if key.fileobj is wake_r:
                wake_r.recv(1024)
                returned = True
            else:
                _accept(res, listener, conns)
        pending = sum(not d.is_set() for d in done)
        if returned:
            _sample(res, address, t0, f"a connect() returned; {pending} still waiting")
        elif not ready:
            _sample(res, address, t0, f"{pending} waiting")
    while accepting:  # take whatever is still queued
        if not any(k.fileobj is listener.sock for k, _ in sel.select(0)):
            break
        _accept(res, listener, conns)
    _sample(res, address, t0, "stopped" if stop is not None and stop.is_set() else "all clients finished")
    by_addr = {c.local: c for c in res.clients if c.local}  # AF_UNIX clients are unnamed: no match
    for conn, addr in conns:
        c = by_addr.get(addr)
        if c is not None:
            c.accepted_as = res.peers[c.side] = conn.side
    for c in res.clients:
        if c.connected and accept_at is not None and c.done_at > accept_at and c.seconds >= LATE:
            c.outcome = "connected after accept"


def _accept(res, listener, conns):
    conns.append(listener.accept())
