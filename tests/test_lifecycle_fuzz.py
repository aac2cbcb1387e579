"""Sequences of lifecycle operations, in random orders, on real servers and clients.

A Hypothesis state machine drives a few objects at once: socklab Servers (every family x type
that works here, an echo and a slow handler), Clients, a concurrency style server, a background
client, a socklab.socket() with a Background accept(), registry re-runs (a new object under the
same ``name=``) and ``socklab.stop_all()`` at any point; some operations are issued from a second
thread while the first one is blocked (stop() while a client waits in recv(), stop_all() while a
server is starting). After every step: the step returned, or raised an explained error (one with
an ``.explanation``), within HANG seconds (else the stuck thread's stack is reported); and every
object that says it is running is in the registry, where stop_all() reaches it. After the final
stop_all(): fds, threads, listening sockets and files in the private directory are as before.

Deterministic (derandomize=True, no example database) and bounded. Below it, one plain
regression test per defect the fuzz found, each naming its sequence.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import traceback

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402

import socklab  # noqa: E402
from socklab import bgclient, concurrency, kstate, runtime  # noqa: E402

HANG = 20.0           # a step still running after this long is a hang
SHORT = 0.3           # clients' timeout: a recv with nothing to read ends quickly
JOIN = 5.0
FAMILIES = ["AF_INET", "AF_UNIX"] + (["AF_INET6"] if runtime.has_ipv6() else [])
TYPES = ["SOCK_STREAM", "SOCK_DGRAM"]
SLOTS = 2
_pause = threading.Event()  # never set: a bounded wait that is not a sleep


def slow_echo(conn, server):
    """Stream handler that takes its time over each reply."""
    while True:
        data = conn.recv(server.max_message)
        if not data:
            return
        _pause.wait(0.05)
        conn.sendall(data)


def slow_echo_datagram(sock, data, addr, server):
    _pause.wait(0.05)
    if addr:
        sock.sendto(data, addr)


HANDLERS = {("echo", True): None, ("echo", False): None,
            ("slow", True): slow_echo, ("slow", False): slow_echo_datagram}


# ---- running one step, watched

def _stacks(threads) -> str:
    frames = sys._current_frames()
    out = []
    for t in threads:
        f = frames.get(t.ident)
        if f is not None:
            out.append(f"--- {t.name}\n" + "".join(traceback.format_stack(f)))
    return "\n".join(out)


def _judge(label, out) -> None:
    e = out.get("error")
    if e is not None and getattr(e, "explanation", None) is None:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        raise AssertionError(f"{label}: unexplained {type(e).__name__}: {e}\n{tb}")


def _runner(fn, out):
    def go():
        try:
            out["value"] = fn()
        except BaseException as exc:  # judged by the caller: an explained error is a right answer
            out["error"] = exc
    return go


def watched(label, fn, *, concurrent=None):
    """Run ``fn`` (and ``concurrent``, once ``fn`` is under way) in threads; fail on a hang or an
    unexplained error. Returns fn's value, or None when it raised (explained)."""
    out, other = {}, {}
    t = threading.Thread(target=_runner(fn, out), daemon=True, name=f"fuzz-{label}")
    t.start()
    u = None
    if concurrent is not None:
        u = threading.Thread(target=_runner(concurrent, other), daemon=True, name=f"fuzz-{label}-2")
        u.start()
        u.join(HANG)
    t.join(HANG)
    stuck = [x for x in (t, u) if x is not None and x.is_alive()]
    if stuck:
        socklab_threads = [x for x in threading.enumerate() if x.name.startswith("socklab")]
        raise AssertionError(f"{label}: did not return within {HANG:g} s\n"
                             + _stacks(stuck + socklab_threads))
    _judge(label, out)
    _judge(label + " (second thread)", other)
    return out.get("value")


# ---- the leak snapshot (as tests/conftest.py's leakcheck)

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _snapshot():
    return (_fds(), frozenset(threading.enumerate()), set(kstate.listening()),
            set(os.listdir(runtime.rundir())))


def _leaks(before) -> list:
    fds, threads, listening, files = before
    alive = []
    for t in threading.enumerate():
        if t not in threads and t is not threading.current_thread():
            t.join(JOIN)
            if t.is_alive():
                alive.append(t.name)
    problems = []
    if alive:
        problems.append(f"threads still running: {alive}")
    if _fds() > fds:
        problems.append(f"fd count {fds} -> {_fds()}")
    new = set(kstate.listening()) - listening
    if new:
        problems.append(f"new listening sockets {sorted(new)}")
    files_now = set(os.listdir(runtime.rundir())) - files
    if files_now:
        problems.append(f"new files in rundir {sorted(files_now)}")
    return problems


# ---- the state machine

slots = st.integers(0, SLOTS - 1)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        socklab.stop_all()
        self.before = _snapshot()
        self.servers: dict = {}    # slot -> Server
        self.made: list = []       # every server and style server made, replaced ones too
        # how many more of each to make: the steps go to operations on them, not to making more
        self.budget = {"server": 4, "style": 2, "socket": 2, "bgclient": 2}
        self.clients: dict = {}    # slot -> Client
        self.style = None
        self.bg = None
        self.sock = None
        self.accept = None

    # -- servers
    @precondition(lambda self: self.budget["server"] > 0)
    @rule(slot=slots, family=st.sampled_from(FAMILIES), type_=st.sampled_from(TYPES),
          handler=st.sampled_from(["echo", "slow"]))
    def new_server(self, slot, family, type_, handler):
        """A new server in a slot keeps the slot's name=: started, it is a registry re-run."""
        self.budget["server"] -= 1
        srv = watched("Server()", lambda: socklab.Server(
            family=family, type=type_, handler=HANDLERS[handler, type_ == "SOCK_STREAM"],
            name=f"lf-srv{slot}"))
        if srv is not None:
            self.servers[slot] = srv
            self.made.append(srv)
            self.new_client(slot, slot)  # every server comes with a client (made before it starts)

    @precondition(lambda self: self.servers)
    @rule(slot=slots)
    def start_server(self, slot):
        srv = self._pick(self.servers, slot)
        if srv is not None:
            watched("Server.start", srv.start)
            if srv.running:  # a re-run under the same name stops what ran under it before
                for other in self.made:
                    if other is not srv and getattr(other, "name", None) == srv.name:
                        assert not other.running, f"re-run left {other!r} running"

    @precondition(lambda self: self.servers)
    @rule(slot=slots)
    def stop_server(self, slot):
        srv = self._pick(self.servers, slot)
        if srv is not None:
            watched("Server.stop", srv.stop)
            assert not srv.running

    @precondition(lambda self: self.servers)
    @rule(slot=slots)
    def with_server(self, slot):
        srv = self._pick(self.servers, slot)
        if srv is not None:
            def block():
                with srv as s:
                    return s.running
            watched("with Server", block)

    @precondition(lambda self: self.servers)
    @rule(slot=slots)
    def stop_all_while_starting(self, slot):
        srv = self._pick(self.servers, slot)
        if srv is not None:
            watched("start | stop_all", srv.start, concurrent=socklab.stop_all)

    # -- clients
    @precondition(lambda self: self.servers)
    @rule(slot=slots, server=slots)
    def new_client(self, slot, server):
        srv = self._pick(self.servers, server)
        if srv is None:
            return
        timeout = SHORT if slot == 0 else 1.0  # slot 1 waits longer: stop() must end its recv
        c = watched("Client()", lambda: socklab.Client(srv, name=f"lf-cl{slot}", timeout=timeout))
        if c is not None:
            self.clients[slot] = c

    @precondition(lambda self: self.clients)
    @rule(slot=slots, op=st.sampled_from(["connect", "send", "sendall", "recv", "request",
                                          "shutdown", "close", "open"]))
    def client_op(self, slot, op):
        c = self._pick(self.clients, slot)
        if c is None:
            return
        calls = {"connect": c.connect, "send": lambda: c.send(b"hi"),
                 "sendall": lambda: c.sendall(b"hello"), "recv": lambda: c.recv(16),
                 "request": lambda: c.request(b"ping"), "shutdown": c.shutdown,
                 "close": c.close, "open": c.open}
        watched(f"Client.{op}", calls[op])

    @precondition(lambda self: self.clients and self.servers)
    @rule(slot=slots, server=slots)
    def stop_server_while_client_in_recv(self, slot, server):
        c, srv = self._pick(self.clients, slot), self._pick(self.servers, server)
        if c is not None and srv is not None:
            watched("recv | Server.stop", lambda: c.recv(16), concurrent=srv.stop)

    @precondition(lambda self: self.clients)
    @rule(slot=slots)
    def stop_all_while_client_requests(self, slot):
        c = self._pick(self.clients, slot)
        if c is not None:
            watched("request | stop_all", lambda: c.request(b"x"), concurrent=socklab.stop_all)

    # -- the registry
    @rule()
    def stop_all(self):
        watched("stop_all", socklab.stop_all)
        for obj in self._objects():
            assert not getattr(obj, "running", False), f"{obj!r} runs after stop_all()"

    # -- a concurrency style server
    @precondition(lambda self: self.budget["style"] > 0)
    @rule(style=st.sampled_from(concurrency.STYLES))
    def new_style(self, style):
        self.budget["style"] -= 1
        s = watched("make_server", lambda: concurrency.make_server(style, 0.01, name="lf-style"))
        if s is not None:
            self.style = s
            self.made.append(s)

    @precondition(lambda self: self.style is not None)
    @rule(op=st.sampled_from(["start", "stop", "with", "request", "stop_all_while_starting"]))
    def style_op(self, op):
        s = self.style

        def with_block():
            with s:
                return s.running

        def request():
            if s.address is None:
                return None
            with socklab.Client(s.address, timeout=SHORT, name="lf-style-cl") as c:
                return c.request(b"hi\n")
        if op == "stop_all_while_starting":
            watched("style start | stop_all", s.start, concurrent=socklab.stop_all)
        else:
            watched(f"style {op}", {"start": s.start, "stop": s.stop, "with": with_block,
                                    "request": request}[op])

    # -- a background client
    @precondition(lambda self: self.servers and self.budget["bgclient"] > 0)
    @rule(server=slots, read=st.booleans())
    def new_bgclient(self, server, read):
        self.budget["bgclient"] -= 1
        srv = self._pick(self.servers, server)
        if srv is None or srv.address is None:
            return
        fam, typ = srv.config.family, srv.config.type
        b = watched("BackgroundClient()", lambda: bgclient.BackgroundClient(
            srv.address, [b"a", b"b"], family=fam, type=typ, timeout=SHORT, name="lf-bg",
            read_replies=read))
        if b is not None:
            self.bg = b

    @precondition(lambda self: self.bg is not None)
    @rule(op=st.sampled_from(["wait", "stop"]))
    def bgclient_op(self, op):
        watched(f"BackgroundClient.{op}", (lambda: self.bg.wait(0.1)) if op == "wait" else self.bg.stop)

    # -- socklab.socket() and a Background accept()
    @precondition(lambda self: self.budget["socket"] > 0)
    @rule()
    def new_listener(self):
        def make():
            s = socklab.socket(name="lf-sock")
            s.bind(("127.0.0.1", 0))
            s.listen()
            return s
        self.budget["socket"] -= 1
        s = watched("socklab.socket", make)
        if s is not None:
            self.sock = s

    @precondition(lambda self: self.sock is not None)
    @rule(op=st.sampled_from(["background_accept", "result", "stop", "connect", "close"]))
    def listener_op(self, op):
        s = self.sock
        if op == "background_accept":
            self.accept = watched("Background(accept)",
                                  lambda: socklab.Background(s.accept, name="lf-accept"))
        elif op == "result" and self.accept is not None:
            watched("Background.result", lambda: self.accept.result(0.1))
        elif op == "stop" and self.accept is not None:
            watched("Background.stop", self.accept.stop)
        elif op == "connect":
            def connect():
                address = s.getsockname()  # socklab's: judged
                try:  # a plain socket's own errors are not socklab's to explain
                    socket.create_connection(address, timeout=SHORT).close()
                except OSError:
                    pass
            watched("connect to listener", connect)
        elif op == "close":
            watched("socket.close", s.close)

    @staticmethod
    def _pick(objects: dict, slot: int):
        """The object in ``slot``, else any: a rule never does nothing."""
        return objects.get(slot) or next(iter(objects.values()), None)

    # -- invariants
    def _objects(self):
        yield from self.made

    @invariant()
    def whatever_runs_is_reachable(self):
        registered = {id(o) for o in socklab.running()}
        for obj in self._objects():
            if obj.running:
                assert id(obj) in registered, f"{obj!r} runs, but stop_all() cannot reach it"

    def teardown(self):
        watched("final stop_all", socklab.stop_all)
        for obj in self._objects():
            assert not obj.running, f"{obj!r} runs after stop_all()"
        problems = _leaks(self.before)
        assert not problems, "leak: " + "; ".join(problems)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd") or not kstate.available(),
                    reason="leak checks read /proc (Linux only)")
def test_lifecycle_sequences():
    run = Lifecycle.TestCase
    run.settings = settings(derandomize=True, database=None, max_examples=int(
        os.environ.get("SOCKLAB_LIFECYCLE_EXAMPLES", "120")), stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck), print_blob=False)
    run().runTest()


# ---- regression tests: one per defect found (by the fuzz, or while writing it)

class _StopsOnReplace:
    """Registered under a name, it calls ``fn`` when a new object takes that name: from inside the
    new object's start(), after it registered and before it made its socket. That is where a
    stop_all() from another thread can land; here it lands there every time."""

    def __init__(self, name, fn):
        self.fn = fn
        runtime.register(name, self)

    def stop(self):
        self.fn()


@pytest.mark.parametrize("style", concurrency.STYLES)
def test_style_server_start_after_stop_is_explained(style, leakcheck):
    """make_server(style).start(); stop(); start() raised a bare RuntimeError."""
    s = concurrency.make_server(style, name="lf-restart").start()
    s.stop()
    with pytest.raises(RuntimeError) as info:
        s.start()
    assert info.value.explanation.title == "Already started"


def test_server_stopped_before_start_starts_normally(leakcheck):
    """Server(); stop(); start() returned a server that had stopped at once (stop() of a server
    never started had set its stop flag), so a client's request was reset."""
    srv = socklab.Server(name="lf-early")
    srv.stop()
    srv.start()
    assert srv.running
    with socklab.Client(srv, name="lf-early-cl") as c:
        assert c.request(b"hi") == b"hi"
    srv.stop()


@pytest.mark.parametrize("style", concurrency.STYLES)
def test_style_server_stopped_before_start_starts_normally(style, leakcheck):
    """make_server(style); stop(); start(): the same as for Server."""
    s = concurrency.make_server(style, 0.0, name="lf-early-style")
    s.stop()
    s.start()
    assert s.running
    s.stop()


@pytest.mark.parametrize("style", concurrency.STYLES)
def test_stop_during_style_server_start_leaves_nothing(style, leakcheck):
    """stop() landing inside start(), after it registered and before its socket existed (a
    stop_all() from another thread): start() went on, made its listening socket and thread, and
    nothing closed them (asyncio: the event loop ran on for its whole lifetime)."""
    s = concurrency.make_server(style, 0.0, name="lf-race-style")
    _StopsOnReplace("lf-race-style", s.stop)
    s.start()
    assert not s.running
    assert s not in socklab.running()
    assert s.sock is None or s.sock.fileno() == -1, "start() left its listening socket open"
    assert s._thread is None or not s._thread.is_alive()


def test_stop_during_server_start_leaves_nothing(leakcheck):
    """The same for a Server: start() returns it stopped, with nothing left open."""
    srv = socklab.Server(name="lf-race")
    _StopsOnReplace("lf-race", srv.stop)
    srv.start()
    assert not srv.running
    assert srv not in socklab.running()
    assert srv.sock is None or srv.sock.closed, "start() left its socket open"


def test_getsockname_of_a_closed_socket_is_explained(leakcheck):
    """socklab.socket(); close() (or stop_all()); getsockname() raised a bare EBADF OSError."""
    s = socklab.socket(name="lf-closed")
    s.bind(("127.0.0.1", 0))
    s.close()
    for call in (s.getsockname, s.getpeername, lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.explanation is not None


def test_stop_all_stops_a_connection_accepted_while_it_stops(leakcheck):
    """socklab.socket() listening, a client queued, Background(accept); stop_all(): the accept
    returned while stop_all() was stopping (here: held until the listener's close), and registered
    its connection after stop_all() had listed what to stop, so the connection stayed open."""
    s = socklab.socket(name="lf-acc")
    s.bind(("127.0.0.1", 0))
    s.listen()
    closed, accepting = threading.Event(), threading.Event()

    def hold(ev):
        if ev.side == s.side and ev.call == "close":
            closed.set()
        elif ev.side == s.side and ev.call == "accept" and ev.ok:
            accepting.set()
            closed.wait(JOIN)  # the accept has returned; its connection is not registered yet
    s.trace.subscribe(hold)
    peer = socket.create_connection(s.getsockname(), timeout=JOIN)
    try:
        bg = socklab.Background(s.accept, name="lf-acc-bg")
        assert accepting.wait(JOIN)
        socklab.stop_all()
        assert not socklab.running(), "stop_all() left the accepted connection registered"
        conn, _ = bg.result(0)  # the accept succeeded: closing its listener afterwards does not undo it
        assert conn.closed, "stop_all() left the accepted connection open"
    finally:
        peer.close()


def test_stop_all_while_a_client_opens_leaves_it_reachable(leakcheck):
    """Server started and stopped, Client(srv).request() with a stop_all() landing inside open()
    (here from a trace listener, as from another thread, right as the socket is made): open()
    registered the client before making its socket, stop_all() unregistered it, and the new socket
    stayed open where no later stop_all() could reach it."""
    srv = socklab.Server(name="lf-open").start()
    srv.stop()
    c = socklab.Client(srv, name="lf-open-cl", timeout=SHORT)
    fired = []

    def stop_all_once(ev):
        if ev.side == c.side and ev.call == "socket" and not fired:
            fired.append(socklab.stop_all())
    c.trace.subscribe(stop_all_once)
    with pytest.raises(ConnectionRefusedError):
        c.request(b"x")
    assert fired
    socklab.stop_all()
    assert c.closed, "the client's socket outlived stop_all()"



@pytest.mark.parametrize("style", ["selectors", "asyncio"])  # the others' loops check `stopping`
def test_stop_spanning_style_server_start_leaves_nothing(style, leakcheck):
    """stop() from another thread (stop_all) running alongside start(): its wake-up came before
    start() made the wake-up pair, its close of the sockets after the serving loop watched them.
    The loop (selectors, asyncio) then waited for its whole lifetime: the thread and its sockets
    leaked. The interleaving is forced with trace functions on both threads."""
    s = concurrency.make_server(style, 0.0, name="lf-span")
    at_close = threading.Event()

    def stopper_tracer(frame, event, arg):
        if event == "call" and frame.f_code is concurrency.StyleServer._close_sockets.__code__:
            at_close.set()
            s.ready.wait(JOIN)  # the serving loop watches the sockets now
        return None

    def stop():
        sys.settrace(stopper_tracer)
        s.stop()
    stopper = threading.Thread(target=stop, name="lf-stopper")

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is socket.create_server.__code__ and not stopper.ident:
            stopper.start()
            # Before the fix stop() got to closing the sockets here; fixed, it waits for start().
            at_close.wait(0.5)
        return None
    sys.settrace(tracer)
    try:
        s.start()
    finally:
        sys.settrace(None)
        stopper.join(JOIN)
    assert not stopper.is_alive()
    assert not s.running


def test_stop_spanning_server_start_is_prompt_and_explained(leakcheck):
    """The same for a Server: stop() from another thread closed the sockets start() had just made,
    before its serving thread watched them; the thread died on the closed wake-up socket, start()
    waited its whole timeout and raised a bare TimeoutError. Fixed, stop() waits for start()."""
    srv = socklab.Server(name="lf-span-srv")
    at_close, made = threading.Event(), threading.Event()

    def stopper_tracer(frame, event, arg):
        if event == "call" and frame.f_code is socklab.Server._close_all.__code__:
            at_close.set()
            made.wait(JOIN)  # start() has made its sockets and is about to start its thread
        return None

    def stop():
        sys.settrace(stopper_tracer)
        srv.stop()
    stopper = threading.Thread(target=stop, name="lf-stopper")

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is socklab.TracedSocket.create.__func__.__code__ \
                and not stopper.ident:
            stopper.start()
            at_close.wait(0.5)  # before the fix stop() got to closing the sockets; fixed, it waits
        elif event == "call" and frame.f_code is runtime.Thread.start.__code__ and not made.is_set():
            made.set()
            stopper.join(0.5)   # before the fix the sockets are closed when this returns
        return None
    sys.settrace(tracer)
    try:
        srv.start()
    finally:
        sys.settrace(None)
        made.set()
        stopper.join(JOIN)
    assert not stopper.is_alive()
    assert not srv.running


def test_background_client_wait_on_a_silent_server_is_explained(leakcheck):
    """socklab.socket() listening and never accepting, BackgroundClient to it, wait(): a bare
    TimeoutError, where a learner building that server cell by cell meets it first."""
    s = socklab.socket(name="lf-silent")
    s.bind(("127.0.0.1", 0))
    s.listen()
    b = bgclient.BackgroundClient(s.getsockname(), [b"x"], timeout=JOIN, name="lf-silent-bg")
    with pytest.raises(TimeoutError) as info:
        b.wait(0.05)
    assert info.value.explanation.title == "Still waiting"
    b.stop()
    s.close()
