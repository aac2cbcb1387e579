"""Background servers and clients on real sockets, for every family x type the OS supports.

Lifecycle in the style of ``socketserver``: ``start()`` returns once the server is ready
(an Event, never a sleep), ``stop()`` is prompt (a wake-up socketpair for the serving loop,
``shutdown()`` for connections) and complete (threads joined, sockets closed, AF_UNIX file
removed). Both are context managers. Knows nothing of Jupyter.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import selectors
import socket
import ssl
import struct
import threading
import time
import weakref

from . import runtime
from .config import SocketConfig, check_bound
from .errors import (_SEND_CALLS, ConfigError, Explanation, SocklabError, explain, explained,
                     explained_as, no_thread, not_ready, not_stopped)
from .recent import Recent
from .trace import Trace, TracedSocket, as_trace
from .runtime import Thread

DEFAULT_TIMEOUT = 5.0


def echo(conn: TracedSocket, server: "Server") -> None:
    """Stream handler: send back everything received until the peer closes."""
    while True:
        data = conn.recv(server.max_message)
        if not data:
            return
        conn.sendall(data)


def echo_datagram(sock: TracedSocket, data: bytes, addr, server: "Server") -> None:
    """Datagram handler: send each datagram back to where it came from."""
    if addr:  # an unbound AF_UNIX client has no address to answer to
        sock.sendto(data, addr)


def record_only(sock, data, addr, server) -> None:
    """Datagram/raw handler that only records what arrives (the trace already has it)."""


MAX_MESSAGE_LIMIT = 1 << 24  # recv(n) allocates n bytes up front: 16 MiB per call at most
ERRORS_KEPT = 100  # a server's errors keeps the latest only (errors.dropped counts the rest)
ACCEPT_PAUSE = (0.05, 1.0)  # s: AcceptPause's first pause and its longest


class AcceptPause:
    """A serving loop's listener after a failed accept() (out of descriptors: EMFILE). The
    connection is still queued and the listener still readable, so a loop that retried at once
    would fail at once, for ever, at 100% CPU: the listener leaves the selector for a pause that
    doubles from ACCEPT_PAUSE[0] to ACCEPT_PAUSE[1], and comes back once the pause is over."""

    def __init__(self, sel: selectors.BaseSelector, listener, data=None):
        self.sel, self.listener, self.data = sel, listener, data
        self.pause = 0.0                    # the current pause (0: accept() worked last time)
        self.resume: float | None = None    # monotonic() when the listener is watched again

    def failed(self) -> bool:
        """accept() failed: pause. True for the first failure since the last success (the one to
        explain: the retries fail the same way)."""
        first = not self.pause
        self.pause = min(max(2 * self.pause, ACCEPT_PAUSE[0]), ACCEPT_PAUSE[1])
        self.resume = time.monotonic() + self.pause
        self.sel.unregister(self.listener)
        return first

    def succeeded(self) -> None:
        self.pause = 0.0

    def wait(self, left: float) -> float:
        """``left`` (seconds the loop would wait), cut short to the end of the pause."""
        return left if self.resume is None else max(0.0, min(left, self.resume - time.monotonic()))

    def resume_if_due(self) -> None:
        """Watch the listener again once the pause is over (call after each select())."""
        if self.resume is not None and time.monotonic() >= self.resume:
            self.resume = None
            self.sel.register(self.listener, selectors.EVENT_READ, self.data)


_CAPS = ("Servers cap what one peer can take (bytes per recv, connections at once, seconds idle, "
         "seconds alive) so a classroom host stays safe; every blocking call has a finite timeout.")


def _number(name, value, *, integer, low, high, fix, why=_CAPS):
    """``value`` if it is a number (an int when ``integer``) in [low, high]; else a ConfigError."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "a whole number" if integer else "a number of seconds"
        raise ConfigError(Explanation(
            f"Invalid {name}", f"{name}={value!r} is not {what} from {low} to {high}.", why, fix))
    return value


class _CappedSocket(TracedSocket):
    """The server's end of a connection: recv() never returns more than the server's max_message,
    whatever bufsize a handler asks for."""

    cap = 65536

    @classmethod
    def of(cls, conn: TracedSocket, cap: int) -> "_CappedSocket":
        capped = cls(conn.sock, conn.trace, conn.side, conn.owner)
        capped.cap = cap
        return capped

    def _bufsize(self, bufsize):
        if isinstance(bufsize, int) and not isinstance(bufsize, bool) and bufsize > self.cap:
            return self.cap
        return bufsize

    def recv(self, bufsize, flags=0):
        return super().recv(self._bufsize(bufsize), flags)

    def recvfrom(self, bufsize, flags=0):
        return super().recvfrom(self._bufsize(bufsize), flags)


def _config(config, kw) -> SocketConfig:
    if config is not None and not isinstance(config, SocketConfig):
        raise ConfigError(Explanation(
            "config must be a SocketConfig", f"config={config!r} is a {type(config).__name__}.",
            "Server's first positional argument (Client's second, after the target) is an optional "
            "SocketConfig; every other setting goes by name.",
            f"Name the setting, e.g. family={config!r}" if isinstance(config, str) else
            "Pass settings by name: family='AF_INET', host='127.0.0.1', port=0."))
    if config is None:
        config = SocketConfig(**kw)
    elif kw:
        from dataclasses import replace
        config = replace(config, **kw)
    return config.validate()


class _Stoppable:
    """Registry plumbing shared by servers and clients."""

    key: str | None = None  # set when registered; stopping a never-started demo is harmless

    def _register(self, name):
        self.key = name if name is not None else runtime.caller_key(3)
        runtime.register(self.key, self, explicit=name is not None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Server(_Stoppable):
    """A background server on a real socket; echo by default.

    ``handler(conn, server)`` serves one stream connection in its own thread;
    ``handler(sock, data, addr, server)`` handles one datagram. Caps keep a classroom host safe:
    ``max_connections`` at once, ``max_message`` bytes per recv, ``idle_timeout`` per connection,
    and ``lifetime`` seconds before the server stops itself.

    Starting a server under the same ``name`` as a running one (by default: the same line of the
    same cell) stops the old one first. ``reuse_address`` sets SO_REUSEADDR; by default it is set for
    TCP on a fixed port (as ``socket.create_server`` does), so a re-run can bind the port while the
    old server's connections are in TIME_WAIT. Never for UDP: there it would let two sockets share a port.
    """

    def __init__(self, config: SocketConfig | None = None, handler=None, *, trace: Trace | None = None,
                 name: str | None = None, side: str | None = None, max_connections: int = 16,
                 max_message: int = 65536, idle_timeout: float = 900.0, lifetime: float = 3600.0,
                 reuse_address: bool | None = None, **config_kw):
        self.config = _config(config, config_kw)
        if self.config.type == "SOCK_RAW" and self.config.family != "AF_UNIX":
            handler = handler or record_only
        self.handler = handler or (echo if self.config.stream else echo_datagram)
        self.trace = as_trace(trace, "Server(trace=)", optional=True)
        self.side = side            # None: 'server' (or 'server2' ... beside a live one), at start()
        self._claimed_side = side is None
        self.max_connections = _number("max_connections", max_connections, integer=True, low=1,
                                       high=10000, fix="Use a small number such as 16.")
        self.max_message = _number("max_message", max_message, integer=True, low=1,
                                   high=MAX_MESSAGE_LIMIT, fix="Use e.g. 65536 (64 KiB per recv).")
        self.idle_timeout = _number("idle_timeout", idle_timeout, integer=False, low=1e-3, high=86400,
                                    fix="Use a number of seconds such as 900 (15 minutes).")
        self.lifetime = _number("lifetime", lifetime, integer=False, low=1e-3, high=86400,
                                fix="Use a number of seconds such as 3600 (an hour).")
        self.reuse_address = reuse_address
        self.name = name
        self.ready = threading.Event()
        self.stopped = threading.Event()
        # (side, Explanation) for failures inside handler threads: the latest ERRORS_KEPT only
        self.errors: list = Recent(ERRORS_KEPT)
        self.sock: TracedSocket | None = None
        self.address = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = None
        self._stop_flag = False
        # Held by start() until the serving thread exists: a stop() from another thread (stop_all)
        # then waits, and finds a thread to wake and join instead of closing sockets start() is
        # still setting up. Reentrant: a trace listener that stops the server must not deadlock.
        self._start_lock = threading.RLock()
        self._lock = threading.Lock()
        self._conns: dict = {}  # live connections: TracedSocket -> Thread (handler still serving)
        self._threads: list = []  # every handler thread not yet joined
        self._conn_done = threading.Condition(self._lock)
        self._bound_path: str | None = None
        self.connections_served = 0
        # (when, peer address) of connections closed over max_connections, for the clients' side
        self._turned_away: collections.deque = collections.deque(maxlen=64)
        # (when, peer address) of connections closed because no thread could be started for them
        self._unserved: collections.deque = collections.deque(maxlen=64)
        # (when, peer address) of connections closed after idle_timeout with no data
        self._idle_closed: collections.deque = collections.deque(maxlen=64)
        self.ended_by_lifetime = False  # it stopped itself: its lifetime ran out

    @property
    def warnings(self):
        return self.config.warnings

    def __enter__(self):
        """``with Server(...) as srv:`` starts the server (if not started yet) and stops it at the end."""
        if self._thread is None:
            self.start()
        return self

    # ---- lifecycle
    def start(self, timeout: float = DEFAULT_TIMEOUT) -> "Server":
        """Create, bind (and listen) in this thread, then serve in the background.

        Errors from socket/bind/listen are raised here, explained (a ``SocklabError`` that is
        still the original exception type), with nothing left open.
        """
        if self._thread is not None:
            raise explained_as(RuntimeError("this Server was already started"), Explanation(
                "Already started", f"start() was called on {self!r}, which was started before.",
                "A Server object runs once: start() binds its socket and starts its thread, and "
                "after stop() the socket is closed for good.",
                "Use the running server as it is, or create a new Server(...) and start that."))
        with self._start_lock:
            self._stop_flag = False  # a stop() before start() (nothing to stop) must not end this run
            self.stopped.clear()
        self._register(self.name)
        with self._start_lock:
            if self._stop_flag:  # stopped meanwhile (stop_all() in another thread): nothing made yet
                runtime.unregister(self.key, self)
                self.stopped.set()
                return self
            self._start_serving()
        if not self.ready.wait(timeout):
            self.stop()
            raise not_ready(TimeoutError(f"server did not become ready within {timeout} s"),
                            repr(self), timeout)
        return self

    def _start_serving(self) -> None:
        """start()'s work under its lock: the socket, bound (and listening), and the serving thread."""
        if self.side is None:
            self.side = self.trace.claim_side("server")
        c = self.config
        call = "socket"
        try:
            self.sock = TracedSocket.create(c.af, c.kind, c.proto, trace=self.trace, side=self.side,
                                            owner=self)
            reuse = self.reuse_address
            if reuse is None:
                reuse = c.stream and c.family != "AF_UNIX" and bool(c.port)
            if reuse:
                call = "setsockopt"
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            call = "bind"
            if not (c.type == "SOCK_RAW" and c.family != "AF_UNIX"):
                self.sock.bind(c.address)
            else:
                self.sock.bind((c.host, 0))
            if c.family == "AF_UNIX" and not c.path.startswith("\0"):
                self._bound_path = c.path
            if c.stream:
                call = "listen"
                if c.backlog is None:
                    self.sock.listen()
                else:
                    self.sock.listen(c.backlog)
            self.address = self.sock.getsockname()
            runtime.forget_ended(self.address)  # a refusal here now has another cause
            call = "bind"
            check_bound(c, self.address)
            self._wake_r, self._wake_w = socket.socketpair()
        except Exception as exc:
            self._close_all()
            runtime.unregister(self.key, self)
            self._ended()
            raise explained(exc, c.address, call) from None
        self._thread = Thread(target=self._serve, name=f"socklab-{self.side}")
        try:
            self._thread.start()
        except RuntimeError as exc:  # the OS refused a thread (ulimit -u): nothing may stay open
            self._thread = None
            self._close_all()
            runtime.unregister(self.key, self)
            self._ended()
            raise explained(exc, call="start") from None

    def _ended(self) -> None:
        if self._claimed_side and self.side is not None:
            self.trace.release_side(self.side)
        self.stopped.set()

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop serving, wake and join every thread, close every socket, remove the AF_UNIX file.

        Called from one of this server's handlers, it only asks: the server stops once that
        handler returns (waiting there would wait for ourselves)."""
        me = threading.current_thread()
        with self._start_lock, self._lock:
            self._stop_flag = True
            wake = self._wake_w
            inside = me in self._threads
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass  # the serving loop already closed its wake-up pair: it is finishing anyway
        if inside:
            return
        t = self._thread
        if t is not None and t is not me:
            t.join(timeout)
            if t.is_alive():
                raise not_stopped(RuntimeError(f"server thread did not stop within {timeout} s"),
                                  f"The serving thread of {self!r}", timeout,
                                  "the serving thread waits for its handlers to return, and a handler "
                                  "held in code of its own (a loop, a lock, an Event or a sleep) "
                                  "keeps it; or a trace listener holds it.")
            with self._lock:  # the serving thread gives up on a stuck handler after its own wait
                stuck = [h for h in self._threads if h.is_alive()]
            if stuck:
                raise not_stopped(RuntimeError(f"{len(stuck)} handler thread(s) still running after "
                                               f"{timeout} s (their sockets are shut down)"),
                                  f"{len(stuck)} handler thread(s) of {self!r}", timeout,
                                  "a handler is held in code of its own (a loop, a lock, an Event "
                                  "or a sleep), not in a call on its connection.")
        elif t is None:
            self._close_all()
            self._ended()
        runtime.unregister(self.key, self)

    close = stop
    server_close = stop

    @property
    def running(self) -> bool:
        return self.ready.is_set() and not self.stopped.is_set()

    # ---- the serving loop
    def _serve(self):
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._wake_r, selectors.EVENT_READ)
            sel.register(self.sock.sock, selectors.EVENT_READ)
            self.ready.set()
            deadline = time.monotonic() + self.lifetime
            accepting = AcceptPause(sel, self.sock.sock)
            while not self._stop_flag:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.ended_by_lifetime = True
                    runtime.note_ended(self.address, lifetime_ended(self.lifetime))
                    self.trace.note(self.side, f"lifetime={self.lifetime:g} s reached: the server "
                                    "stops itself (a forgotten server must not run for ever)")
                    break
                events = sel.select(accepting.wait(left))
                accepting.resume_if_due()
                for key, _ in events:
                    if key.fileobj is self._wake_r:
                        self._stop_flag = True
                        break
                    if not self.config.stream:
                        self._datagram_one()
                    elif self._accept_one(quiet=accepting.pause > 0):
                        accepting.succeeded()
                    else:
                        accepting.failed()
        except Exception as exc:  # a bug or a shortage (MemoryError) must not end it unexplained
            self.errors.append((self.side, explain(exc)))
            self.trace.note(self.side, f"the server stopped: {type(exc).__name__}: {exc}")
        finally:
            sel.close()
            self._shutdown_connections()
            self._close_all()
            runtime.unregister(self.key, self)  # also when it stopped itself (lifetime): not running
            self._ended()

    def _accept_one(self, quiet: bool = False) -> bool:
        """Accept one connection and start its handler; False when accept() failed (e.g. out of
        descriptors: the caller pauses before trying again). ``quiet``: a retry of an accept()
        that failed already, explained and noted once."""
        try:
            conn, addr = self.sock.accept()
        except OSError as exc:
            if not quiet:
                self.errors.append((self.side, explain(exc, call="accept")))
                self.trace.note(self.side, f"accept() failed ({type(exc).__name__}: {exc.strerror or exc}): "
                                "the connection waits in the queue; the server tries again shortly")
            return False
        conn = _CappedSocket.of(conn, self.max_message)
        with self._lock:
            self._reap()
            if self._stop_flag:
                self.trace.note(conn.side, "the server is stopping: closed")
                conn.close()
                return True
            if len(self._conns) >= self.max_connections:
                self.trace.note(conn.side, f"over max_connections={self.max_connections}: closed")
                self._turned_away.append((time.monotonic(), addr))  # before the close the client sees
                if not self.errors or self.errors[-1][1].title != _OVER_CAP:
                    self.errors.append((conn.side, self._over_cap()))  # once per burst, for the panel
                conn.close()
                return True
            self.connections_served += 1
            t = Thread(target=self._serve_conn, args=(conn, addr),
                       name=f"socklab-{conn.side}")
            self._conns[conn] = t
            self._threads.append(t)
        try:
            t.start()
        except RuntimeError as exc:  # the OS refused a thread (ulimit -u): this client is not served
            with self._lock:
                self._conns.pop(conn, None)
                self._threads.remove(t)
                self.connections_served -= 1
                self.trace.note(conn.side, "no thread could be started for this connection: closed")
                self._unserved.append((time.monotonic(), addr))  # before the close the client sees
                conn.close()
            if not self.errors or self.errors[-1][1].title != no_thread().title:  # once per burst
                self.errors.append((conn.side, explain(exc)))
        return True

    def _over_cap(self) -> Explanation:
        return Explanation(
            _OVER_CAP,
            f"The server already serves max_connections={self.max_connections} clients at once; it "
            "closed each new connection at once (such a client's recv() gets b'', or a reset if it "
            "had sent data).",
            _OVER_CAP_WHY, _OVER_CAP_FIX)

    def closed_idle(self, address, since: float = 0.0) -> int:
        """How many connections from ``address`` (a client's local address) this server closed
        after idle_timeout, after ``since`` (a ``time.monotonic()`` value)."""
        return _count_from(self._idle_closed, address, since)

    def unserved(self, address, since: float = 0.0) -> int:
        """How many connections from ``address`` (a client's local address) this server closed
        after ``since`` because the OS refused a thread to serve them."""
        return _count_from(self._unserved, address, since)

    def turned_away(self, address, since: float = 0.0) -> int:
        """How many connections this server closed over max_connections after ``since`` (a
        ``time.monotonic()`` value) that came from ``address``, a client's local address. An
        unbound AF_UNIX client has no address (''): that counts every such connection from an
        unbound client, which may be others'."""
        return _count_from(self._turned_away, address, since)

    def _serve_conn(self, conn: TracedSocket, peer=None):
        try:
            conn.settimeout(self.idle_timeout)
            self.handler(conn, self)
        except TimeoutError as exc:  # a wait of idle_timeout ran out: a cap, not a failure
            if not self._stop_flag:
                self.errors.append((conn.side, self._timed_out(conn, exc, peer)))
        except Exception as exc:  # recorded in the trace already; keep an explanation for the panel
            if not self._stop_flag:
                self.errors.append((conn.side, explain(exc)))
        finally:
            with self._lock:
                conn.close()
                self._conns.pop(conn, None)
                self._conn_done.notify_all()

    def _timed_out(self, conn: TracedSocket, exc: TimeoutError, peer) -> Explanation:
        """Note in the trace why a handler's wait of idle_timeout ended its connection."""
        if getattr(exc, "socklab_call", None) in _SEND_CALLS:  # the client stopped reading
            self.trace.note(conn.side, f"the client read nothing for idle_timeout={self.idle_timeout:g} "
                            "s: the server's send gave up, and it closes this connection")
            return explain(exc)
        self._idle_closed.append((time.monotonic(), peer))
        self.trace.note(conn.side, f"no data for idle_timeout={self.idle_timeout:g} s: the server "
                        "closes this connection")
        return idle_closed(self.idle_timeout)

    def connections(self) -> list:
        """The live connections, as (TracedSocket, the thread running the handler) pairs."""
        with self._lock:
            return list(self._conns.items())

    def wait_idle(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait until every accepted connection has been served and closed; False on timeout."""
        _number("timeout", timeout, integer=False, low=0, high=86400,
                why="wait_idle() waits for the server's connections to end, and every wait must end.",
                fix="Use a number of seconds such as 5 (the default).")
        with self._lock:
            return self._conn_done.wait_for(lambda: not self._conns, timeout)

    def _datagram_one(self):
        try:
            data, addr = self.sock.recvfrom(self.max_message)
        except OSError as exc:
            self.errors.append((self.side, explain(exc, call="recvfrom")))
            return
        try:
            self.handler(self.sock, data, addr, self)
        except Exception as exc:
            self.errors.append((self.side, explain(exc)))

    def _reap(self):
        self._threads = [t for t in self._threads if t.is_alive()]

    def _shutdown_connections(self):
        with self._lock:  # the handler closes its connection under this lock too: no shutdown after close
            for conn in list(self._conns):
                if not conn.closed:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in the handler
                    except OSError:
                        pass  # already disconnected: the handler is returning anyway
            threads = list(self._threads)
        deadline = time.monotonic() + DEFAULT_TIMEOUT  # for all of them: stuck ones must not add up
        for t in threads:  # including handlers that already left _conns but are still finishing
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._reap()

    def _close_all(self):
        if self.sock is not None:
            self.sock.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._bound_path and os.path.exists(self._bound_path):
            os.unlink(self._bound_path)
            self.trace.note(self.side, f"removed socket file {runtime.display_path(self._bound_path)}")
        self._bound_path = None

    def __repr__(self):
        state = "running" if self.running else ("stopped" if self.stopped.is_set() else "new")
        return f"<socklab.Server {self.config.family} {self.config.type} {self.address!r} {state}>"


class Client(_Stoppable):
    """A client on a real socket, driven one call at a time (from cells, tests or a panel).

    ``Client(server)`` targets a running socklab server and shares its trace; ``Client(address,
    family=..., type=...)`` targets any server. Every call has a timeout (default 5 s).
    Errors are raised explained: still the original exception type, with a teaching message.
    """

    def __init__(self, target=None, config: SocketConfig | None = None, *, trace: Trace | None = None,
                 name: str | None = None, side: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 **config_kw):
        self._server = target if isinstance(target, Server) else None
        self._connect_started = 0.0
        self._said_turned_away = self._said_idle = False
        self._received = False  # any data since connect(): a turned-away connection gets none
        self._peer = None  # what the open socket is connected to, if anything
        if isinstance(target, Server):
            config = config or target.config
            trace = trace if trace is not None else target.trace  # checked below, with the rest
            target = target.address
        self.config = _config(config, config_kw)
        self.target = target if target is not None else self.config.address
        if isinstance(self.target, tuple) and self.target and isinstance(self.target[0], str) \
                and self.config.family != "AF_UNIX":
            _check_target_host(self.target[0])
        self.timeout = _number("timeout", timeout, integer=False, low=1e-3, high=86400,
                               fix="Use a number of seconds such as 5.")
        self.trace = as_trace(trace, "Client(trace=)", optional=True)
        self.side = side or self.trace.new_side("client")
        self.name = name
        self.sock: TracedSocket | None = None
        self._own_path: str | None = None
        self._register(name)

    def _call(self, call, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as exc:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and self._note_turned_away() == "yes":
                own = explain(exc, call=call)
                raise explained_as(exc, dataclasses.replace(self._turned_away_explanation(),
                                                            error=own.error, code=own.code)) from None
            why = self._server_closed() if isinstance(exc, (ConnectionResetError, BrokenPipeError)) else None
            if why is not None:
                own = explain(exc, call=call)
                raise explained_as(exc, dataclasses.replace(why, error=own.error, code=own.code)) from None
            raise explained(exc, self.target if call in ("connect", "sendto") else None, call) from None

    def _turned_away(self) -> str:
        """'yes' when the socklab server this client targets closed this connection over its
        max_connections; 'maybe' for an unbound AF_UNIX client that got no data while the server
        closed connections from unbound clients (it cannot tell which); '' otherwise."""
        if self._server is None or self.sock is None or not self.config.stream or self._received:
            return ""
        try:
            local = self.sock.getsockname()
        except OSError:  # already closed: nothing more to explain
            return ""
        if not self._server.turned_away(local, self._connect_started):
            return ""
        return "yes" if local else "maybe"

    def _server_closed(self) -> Explanation | None:
        """Why the socklab server this client targets closed this connection, when it was for its
        idle_timeout or for want of a thread (said once in the trace); None otherwise. An unbound
        AF_UNIX client cannot be told apart."""
        if self._server is None or self.sock is None or not self.config.stream:
            return None
        try:
            local = self.sock.getsockname()
        except OSError:  # already closed: nothing more to explain
            return None
        if not local:
            return None
        if self._server.closed_idle(local, self._connect_started):
            why = idle_closed(self._server.idle_timeout)
            note = f"no data for its idle_timeout={self._server.idle_timeout:g} s"
        elif self._server.unserved(local, self._connect_started):
            why, note = unserved(), "it could not start a thread to serve it"
        else:
            return None
        if not self._said_idle:
            self._said_idle = True
            self.trace.note(self.side, f"the server had closed this connection: {note}")
        return why

    def _turned_away_explanation(self) -> Explanation:
        n = self._server.max_connections
        return Explanation(
            _OVER_CAP,
            f"The server was already serving max_connections={n} clients, so it closed this "
            "connection as soon as it accepted it: connect() succeeded (the kernel queued the "
            "connection for accept()), then recv() got b'' (or a reset, where data was sent and never "
            "read).",
            _OVER_CAP_WHY + " With plain sockets a client cannot tell this from any other close: "
            "socklab knows only because it runs the server too.",
            _OVER_CAP_FIX)

    def _note_turned_away(self) -> str:
        """On an end of stream: say once, in the trace, why the server closed (if it was the cap)."""
        verdict = self._turned_away()
        if verdict and not self._said_turned_away:
            self._said_turned_away = True
            n = self._server.max_connections
            self.trace.note(self.side, f"the server closed this connection at once: it was already "
                                       f"serving max_connections={n} clients" if verdict == "yes" else
                            f"the server closed connections over max_connections={n} while this one "
                            "waited, and this one ended before any data: most likely it was one of them")
        return verdict

    def open(self) -> "Client":
        """Create the socket and set its timeout (no connect yet)."""
        if self.sock is not None and not self.sock.closed:
            return self
        c = self.config
        self.sock = self._call("socket", TracedSocket.create, c.af, c.kind, c.proto,
                               trace=self.trace, side=self.side, owner=self)
        # Again, if close() unregistered it: stop_all() must reach it. Only now that the socket
        # exists: a stop_all() from another thread in between would unregister it for good.
        runtime.track(self.key, self)
        self._peer = None
        self._call("settimeout", self.sock.settimeout, self.timeout)
        if c.family == "AF_UNIX" and not c.stream:
            # A datagram reply needs an address to come back to.
            self._own_path = runtime.private_path("client")
            self._call("bind", self.sock.bind, self._own_path)
        return self

    def connect(self) -> "Client":
        """socket() + settimeout() + connect(). For datagram sockets connect() only fixes the peer."""
        self.open()
        self._connect_started = time.monotonic()  # the server may turn it away before connect returns
        self._said_turned_away = self._said_idle = self._received = False
        self._call("connect", self.sock.connect, self.target)
        self._peer = self.target
        return self

    def send(self, data) -> int:
        return self._call("send", self._sock().send, data)

    def sendall(self, data) -> None:
        return self._call("sendall", self._sock().sendall, data)

    def sendto(self, data, address=None) -> int:
        return self._call("sendto", self._sock().sendto, data, address or self.target)

    def recv(self, bufsize: int = 65536) -> bytes:
        data = self._call("recv", self._sock().recv, bufsize)
        if data:
            self._received = True
        elif self.config.stream and not self._note_turned_away():
            self._server_closed()
        return data

    def recvfrom(self, bufsize: int = 65536):
        return self._call("recvfrom", self._sock().recvfrom, bufsize)

    def request(self, data: bytes, expect: int | None = None) -> bytes:
        """Send ``data`` and read the reply: for streams, until ``expect`` bytes (default: as many as
        were sent, right for echo) or end of stream; for datagrams, one datagram. A socklab server
        that closed the connection over its max_connections raises ConnectionError, explained (when
        the client has an address to tell its connection apart: not an unbound AF_UNIX client), and
        so does one that closed this connection after its idle_timeout."""
        if isinstance(data, str):
            data = self._call("encode", data.encode, "utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigError(Explanation(
                "request() sends bytes", f"data={data!r} is not bytes but {type(data).__name__}.",
                "Sockets carry bytes. request() also takes a str and encodes it as UTF-8.",
                "Pass bytes (b'hello') or a str; for a number, str(n).encode()."))
        if expect is not None:
            _number("expect", expect, integer=True, low=0, high=2 ** 31 - 1,
                    why="expect is how many bytes of reply to wait for; it is checked before anything "
                        "is sent, so a wrong value cannot leave a reply unread.",
                    fix="Pass the reply's length in bytes (an int), or leave it out for an echo.")
        if not self.config.stream:
            if self.config.family != "AF_UNIX":
                self.sendto(data)
                return self.recvfrom()[0]
            # Connected, a sender waiting for room in a full receiver sleeps; unconnected, Linux's
            # poll() says "writable" and sendto() says EAGAIN, so a timeout spins (notebook 08).
            if self._peer != self.target:
                self.connect()
            self.send(data)
            return self.recv()
        if self.sock is None:
            self.connect()
        if not data:
            self.trace.note(self.side, "empty message: a stream has no empty messages, so nothing is "
                            "sent and no reply comes (recv() returning b'' means the peer closed)")
        sender, failed = None, []
        if len(data) <= 65536:
            self.sendall(data)
        else:
            # Read while sending: an echoed large message would otherwise fill the buffers in
            # both directions and both sides would block.
            def send():
                try:
                    self.sendall(data)
                except Exception as exc:  # re-raised below, in the caller's thread
                    failed.append(exc)
            sender = Thread(target=send, name=f"socklab-{self.side}-send")
            try:
                sender.start()
            except RuntimeError as exc:  # the OS refused a thread (ulimit -u): nothing was sent
                raise explained(exc, call="start") from None
        want = len(data) if expect is None else expect
        parts, got, ended = [], 0, False
        try:
            while got < want:
                chunk = self.recv(65536)
                if not chunk:
                    ended = True
                    break
                parts.append(chunk)
                got += len(chunk)
        except Exception as exc:
            if sender is not None:
                sender.join(self.timeout + 1)
                # the send failed too: that is the cause (e.g. a peer that never reads); unless we
                # ran out of memory reading, and so stopped reading: then the send timed out
                if failed and not isinstance(exc, MemoryError):
                    raise failed[0] from None
            raise
        finally:
            if sender is not None:
                sender.join(self.timeout + 1)
        if failed:
            raise failed[0]
        if ended and got < want and self._turned_away() == "yes":
            raise explained_as(ConnectionError("the server closed the connection without replying"),
                               self._turned_away_explanation())
        why = self._server_closed() if ended and got < want else None
        if why is not None:
            raise explained_as(ConnectionError(f"the server closed the connection: {why.title.lower()}"),
                               why)
        try:
            return b"".join(parts)
        except MemoryError as exc:  # the reply in pieces and joined: twice its size at once
            raise explained(exc, call="request") from None

    def shutdown(self, how=socket.SHUT_WR) -> None:
        """Half-close: by default 'I will send no more' (the peer's recv() returns b'')."""
        return self._call("shutdown", self._sock().shutdown, how)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        if self._own_path and os.path.exists(self._own_path):
            os.unlink(self._own_path)
        self._own_path = None
        runtime.unregister(self.key, self)

    stop = close

    def _sock(self) -> TracedSocket:
        if self.sock is None:
            self.open() if not self.config.stream else self.connect()
        return self.sock

    @property
    def closed(self) -> bool:
        """True when no socket is open (never opened, or closed)."""
        return self.sock is None or self.sock.closed

    def __repr__(self):
        return f"<socklab.Client {self.side} -> {self.target!r} {'closed' if self.closed else 'open'}>"


def _check_target_host(host: str) -> None:
    """Refuse a target host that can never resolve, before any resolver is asked."""
    import ipaddress
    from .config import check_host_name
    h = host.strip()
    h = h[1:-1] if h.startswith("[") and h.endswith("]") else h
    try:
        ipaddress.ip_address(h.split("%")[0])
    except ValueError:
        if h:  # '' means INADDR_ANY: connect() handles it
            check_host_name(h, shown=host)


def ping(host: str = "127.0.0.1", *, count: int = 1, timeout: float = 2.0, trace: Trace | None = None,
         side: str = "pinger") -> list:
    """Send ICMP echo requests on a raw socket (needs root/CAP_NET_RAW); return round-trip times
    in seconds (None for a lost reply). Raises ConfigError with an explanation where not permitted."""
    if not isinstance(host, str):
        raise ConfigError(Explanation(
            "Host must be a string", f"host={host!r} is a {type(host).__name__}.",
            "ping() takes the host to ping as a string.", "Use host='127.0.0.1' or '::1'."))
    _number("count", count, integer=True, low=1, high=1000, why="count is how many echo requests "
            "to send, one after another.", fix="Use a whole number such as 3.")
    _number("timeout", timeout, integer=False, low=1e-3, high=60, why="Each request waits up to "
            "timeout seconds for its reply; a lost reply must not wait forever.",
            fix="Use a number of seconds such as 2.")
    fam = "AF_INET6" if ":" in host else "AF_INET"
    cfg = SocketConfig(family=fam, type="SOCK_RAW", host=host).validate()
    trace = as_trace(trace, "ping(trace=)", optional=True)
    ident = os.getpid() & 0xFFFF
    icmp_type = 8 if fam == "AF_INET" else 128
    results = []
    call = "socket"
    try:
        with TracedSocket.create(cfg.af, cfg.kind, cfg.proto, trace=trace, side=side) as s:
            s.settimeout(timeout)
            for seq in range(1, count + 1):
                payload = b"socklab-ping-%d" % seq
                header = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq)
                csum = _checksum(header + payload) if fam == "AF_INET" else 0  # kernel fills ICMPv6's
                packet = struct.pack("!BBHHH", icmp_type, 0, csum, ident, seq) + payload
                t0 = time.perf_counter()
                call = "sendto"
                s.sendto(packet, (host, 0))
                call = "recvfrom"
                results.append(_await_echo_reply(s, fam, ident, seq, t0, timeout))
    except OSError as exc:  # an unknown host name, no route, ...: explained like a Client's
        raise explained(exc, (host, 0), call) from None
    return results


def _await_echo_reply(s, fam, ident, seq, t0, timeout):
    reply_type = 0 if fam == "AF_INET" else 129
    deadline = t0 + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        s.settimeout(max(0.001, round(left, 3)))  # whole ms: the trace shows it to the learner
        try:
            data, _ = s.recvfrom(65536)
        except TimeoutError:
            return None
        icmp = data[(data[0] & 0x0F) * 4:] if fam == "AF_INET" else data  # IPv4 raw: IP header first
        if len(icmp) >= 8:
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if typ == reply_type and rid == ident and rseq == seq:
                return time.perf_counter() - t0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


# Calls that wait for something to read: Background waits for readability itself, so stopping
# it needs no shutdown() of a socket that another cell made and may go on using.
_READING_CALLS = frozenset({"accept", "recv", "recvfrom", "recv_into", "recvfrom_into", "recvmsg",
                            "recvmsg_into"})


def unserved() -> Explanation:
    """A socklab server closed a connection because the OS refused it a thread to serve it."""
    return Explanation(
        "Not served: no thread",
        "The server accepted this connection, but the operating system refused it a thread to serve "
        "it, so the server closed it: connect() succeeded, then recv() got b'' (or a reset, where "
        "data was sent).",
        no_thread().why + " With plain sockets a client cannot tell this from any other close: "
        "socklab knows only because it runs the server too.",
        "Stop the servers and clients you no longer need (socklab.stop_all()), use fewer clients at "
        "once, then connect again; or restart the kernel.")


def idle_closed(idle_timeout: float) -> Explanation:
    """A socklab server closed a connection that sent nothing for ``idle_timeout`` seconds."""
    return Explanation(
        "Idle connection closed",
        f"The server closed the connection: no data had come on it for idle_timeout={idle_timeout:g} s "
        "(the client's next recv() gets b'', a send may get a reset).",
        "socklab's demo servers give each connection a timeout, so that a forgotten client cannot "
        "hold a server thread for ever; a learner who pauses between two cells longer than that "
        "meets it.",
        "Connect again and go on (re-run the cell that connects), or start the server with a longer "
        "idle_timeout, e.g. socklab.Server(idle_timeout=3600).")


def lifetime_ended(lifetime: float, longer: str = "socklab.Server(lifetime=4 * 3600)") -> Explanation:
    """A socklab server stopped itself: its ``lifetime`` ran out (``longer``: how to start one that
    lives longer)."""
    return Explanation(
        "Server stopped itself",
        f"socklab's server at this address stopped itself when its lifetime of {lifetime:g} s ran "
        "out, so nothing listens there any more.",
        "socklab's demo servers stop by themselves after a while, so that a server forgotten in a "
        "kernel does not run for ever on a shared host.",
        "Start it again (re-run the cell that started it), or start it with a longer lifetime, "
        f"e.g. {longer}.")


_OVER_CAP = "Too many connections at once"
_OVER_CAP_WHY = ("socklab's demo servers cap their connections (one thread each), so that a shared "
                 "classroom host stays usable.")
_OVER_CAP_FIX = ("Close the clients you no longer need (a `with` block does it), or start the server "
                 "with a larger max_connections.")


def _count_from(record, address, since: float) -> int:
    """How many of a server's (when, peer address) records came from ``address`` after ``since``."""
    return sum(1 for when, peer in list(record) if when >= since and _same_address(peer, address))


def _same_address(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return a[:2] == b[:2]  # an IPv6 address adds flow info and scope id
    return a == b

_quick_locks: "weakref.WeakKeyDictionary[socket.socket, threading.Lock]" = weakref.WeakKeyDictionary()
_quick_locks_lock = threading.Lock()


def _quick_call_lock(sock: socket.socket) -> threading.Lock:
    """The lock under which Background makes its no-wait call on ``sock``."""
    with _quick_locks_lock:
        return _quick_locks.setdefault(sock, threading.Lock())


STOPPED = Explanation(
    "Stopped before it returned",
    "This background call was stopped (its cell ran again, or stop() or stop_all() was called) "
    "while it was still waiting.",
    "Stopping a waiting call ends only the wait: the socket it waited on is left as it was.",
    "Start a new one, e.g. run its cell again.")


class Background(_Stoppable):
    """Run one blocking call (e.g. ``sock.accept``) in a thread, so the next cell can act meanwhile.

    ``result(timeout)`` waits for it (an Event, not polling). For a reading call of a socket
    (``accept``, ``recv``, ``recvfrom``, ...), the thread waits until the socket is readable and
    only then calls it, so ``stop()`` (a re-run of the cell) ends the wait through a wake-up socket
    and leaves the socket listening or connected. Another call blocked on a socket (``connect``,
    a TLS socket's ``recv``, or a function given ``wake=sock``) is woken by shutting that socket
    down; ``stop()`` raises RuntimeError if the call still runs after its timeout.
    """

    stop_last = True  # stop_all(): after the sockets and servers its call may be waiting on

    def __init__(self, fn, *args, name: str | None = None, wake: TracedSocket | socket.socket | None = None):
        self.fn, self.args = fn, args
        self.wake = wake if wake is not None else getattr(fn, "__self__", None)
        self._done = threading.Event()
        self._value = self._error = None
        self._lock = threading.Lock()
        self._wake_r = self._wake_w = None
        self._reads = (isinstance(self.wake, (TracedSocket, socket.socket))
                       and not isinstance(self.wake, ssl.SSLSocket)  # readable TCP is not TLS data
                       and getattr(fn, "__self__", None) is self.wake
                       and getattr(fn, "__name__", "") in _READING_CALLS)
        # A call blocked on the socket (connect()) is woken by shutting the socket down, through
        # a descriptor of our own: the cell that made the socket may close its own meanwhile,
        # and a thread blocked on a closed descriptor is never woken.
        self._waker: socket.socket | None = None
        if self._reads:
            self._wake_r, self._wake_w = socket.socketpair()
        elif isinstance(self.wake, (TracedSocket, socket.socket)):
            real = self.wake.sock if isinstance(self.wake, TracedSocket) else self.wake
            if real.fileno() != -1:  # closed already: the call itself raises the socket's error
                self._waker = socket.fromfd(real.fileno(), real.family, real.type)  # (a TLS socket has no dup())
        self._register(name)
        self._thread = Thread(target=self._run, name="socklab-background")
        self._thread.start()

    def _run(self):
        try:
            self._value = self._when_readable() if self._reads else self.fn(*self.args)
        except BaseException as exc:  # handed to whoever calls result()
            self._error = exc
        finally:
            with self._lock:
                for s in (self._wake_r, self._wake_w, self._waker):
                    if s is not None:
                        s.close()
                self._wake_r = self._wake_w = self._waker = None
            self._done.set()

    def _when_readable(self):
        """The call, made only once the socket is readable and then without waiting, so the thread
        never blocks inside it and stop() always ends it. Another waiter on the same socket may take
        the data first: then the call times out at once and the wait goes on. Within the socket's own
        timeout; once that is spent, the call is made with no time left, so it times out as it would
        have, in the trace too."""
        real = self.wake.sock if isinstance(self.wake, TracedSocket) else self.wake
        timeout = real.gettimeout()
        if timeout == 0:  # non-blocking already: the call answers at once
            return self.fn(*self.args)
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(real, selectors.EVENT_READ)
            except ValueError:  # closed already (fd -1): the call itself raises the socket's error
                return self.fn(*self.args)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = {key.fileobj for key, _ in sel.select(left)}
                if self._wake_r in ready:
                    if isinstance(self.wake, TracedSocket):  # the trace says why no call follows
                        self.wake.trace.note(self.wake.side, f"background {self.fn.__name__}() "
                                             "stopped while waiting; the socket is left as it was")
                    raise SocklabError(STOPPED)
                # untraced, like any bookkeeping: a timeout of ~0 makes the call answer at once (a
                # tiny timeout rather than 0 keeps accept()'s new socket blocking, as usual). The
                # timeout is the socket's, shared by every thread: one such call at a time per socket.
                with _quick_call_lock(real):
                    real.settimeout(1e-9)
                    try:
                        return self.fn(*self.args)
                    except TimeoutError:
                        if ready and (deadline is None or time.monotonic() < deadline):
                            continue  # another waiter took it first: wait again
                        raise
                    finally:
                        try:
                            real.settimeout(timeout)
                        except OSError:  # closed meanwhile (stop_all()): the call's own outcome stands
                            pass

    def done(self) -> bool:
        return self._done.is_set()

    def _release(self) -> None:
        """Clear the finished frames of a failed call: they hold its sockets (and, through the
        frame of _run(), this object: a cycle only the garbage collector would break). The error
        keeps its traceback's code and lines, for result() and its explanation."""
        tb = self._error.__traceback__ if self._error is not None else None
        frames = []
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        back = frames[0].f_back if frames else None
        while back is not None:  # the callers, _run()'s frame with self among them
            frames.append(back)
            back = back.f_back
        for f in frames:
            try:
                f.clear()
            except RuntimeError:  # "cannot clear an executing frame": the thread has not ended yet
                return
            # Python 3.11 and 3.12 keep a snapshot dict of the locals on the frame once a traceback
            # display has read them; reading f_locals again syncs it, dropping what clear() cleared.
            f.f_locals  # noqa: B018

    def __repr__(self):
        return (f"<socklab.Background {getattr(self.fn, '__name__', 'call')}() "
                f"{'done' if self._done.is_set() else 'waiting'}>")

    def result(self, timeout: float = DEFAULT_TIMEOUT):
        """The call's return value; its exception (explained) if it failed."""
        if not self._done.wait(timeout):
            raise explained(TimeoutError("timed out"), call=getattr(self.fn, "__name__", None))
        if self._error is not None:
            raise explained(self._error, call=getattr(self.fn, "__name__", None))
        return self._value

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not self._done.is_set():
            if self._reads:
                with self._lock:
                    if self._wake_w is not None:  # None: the call has just returned by itself
                        self._wake_w.send(b"x")  # a fresh socketpair always has room for one byte
            else:
                with self._lock:
                    if self._waker is not None:  # None: the call has just returned by itself
                        if isinstance(self.wake, TracedSocket):  # the trace says why the call fails
                            call = getattr(self.fn, "__name__", "call")
                            self.wake.trace.note(self.wake.side, f"background {call}() stopped: "
                                                 "its socket is shut down to wake it")
                        try:
                            self._waker.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass  # not connected/listening any more: the call returns on its own
        if not self._done.wait(timeout):
            call = getattr(self.fn, '__name__', 'call')
            raise not_stopped(RuntimeError(f"background {call}() still running after {timeout} s (its "
                                           "socket was shut down; it ends when the call returns)"),
                              f"The background {call}()", timeout,
                              "the call does not wait on the socket socklab shut down.")
        self._thread.join(timeout)  # it returns right after setting done: its frames have ended
        self._release()
        # The call's arguments (its socket) are no longer needed, though this object may be: the
        # last traceback IPython keeps can hold it, through a result() that raised.
        self.args, self.wake = (), None
        runtime.unregister(self.key, self)


def socket_(family="AF_INET", type="SOCK_STREAM", proto=0, *, trace: Trace | None = None,
            side: str = "server", name: str | None = None) -> TracedSocket:
    """A traced socket for building a server or client by hand, one cell per call.

    Re-running the cell closes the socket the previous run created. Like ``socket.socket()`` it
    starts blocking, with no timeout (notebook 10 shows exactly that): call ``settimeout()``
    before a call that may wait; Jupyter's interrupt also ends a wait.
    """
    from .config import _name, FAMILIES, TYPES
    af = getattr(socket, _name(family, FAMILIES, "family"))
    kind = getattr(socket, _name(type, TYPES, "type"))
    trace = as_trace(trace, "socklab.socket(trace=)", optional=True)
    runtime.check_name(name)  # before the socket exists: a bad name must not leak it
    try:
        s = TracedSocket.create(af, kind, proto, trace=trace, side=side)
    except Exception as exc:
        raise explained(exc, call="socket") from None
    s.registry_key = name if name is not None else runtime.caller_key(2)
    runtime.register(s.registry_key, s, explicit=name is not None)
    return s
