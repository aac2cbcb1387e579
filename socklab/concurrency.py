"""Four ways to serve many clients on real sockets, and a load generator that times them.

Styles: ``iterative`` (one client at a time), ``threads`` (a thread per connection), ``selectors``
(one thread, non-blocking sockets, readiness from select/epoll) and ``asyncio``
(``asyncio.start_server``, one coroutine per client).

The protocol is the same for all: a client sends one line (``b"request 3\\n"``), the server does
``service_time`` seconds of simulated work and answers one line (``b"done: request 3\\n"``), then
closes the connection. The simulated work is a *timeout wait* on the server's stop signal
(``threading.Event.wait``, a ``select()`` timeout, a timer in the asyncio loop), never a plain
sleep: ``stop()`` ends it at once.

Every server binds and listens in ``start()`` (errors are raised there, explained), serves in a
background thread, closes a connection that stays silent for ``idle_timeout`` and stops itself after
``lifetime``, like every socklab server; ``stop()`` is prompt (a wake-up socketpair, ``shutdown()`` of blocked
connections, ``loop.call_soon_threadsafe``) and complete (threads joined, sockets closed).
Knows nothing of Jupyter.
"""
from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from . import runtime
from .errors import ConfigError, Explanation, explain, explained, explained_as, not_ready, not_stopped
from .recent import Recent
from .runtime import Thread
from .servers import ERRORS_KEPT, AcceptPause, _number, lifetime_ended

STYLES = ("iterative", "threads", "selectors", "asyncio")
MAX_REQUEST = 1024          # bytes: a longer request line is refused
DEFAULT_TIMEOUT = 5.0
MAX_CLIENTS = 64            # one thread each: keep a shared classroom host safe (as backlog.py does)
MAX_SERVICE_TIME = 60.0     # seconds of simulated work per request
MAX_TIMEOUT = 3600.0        # seconds a client may wait: every wait ends
INT_MAX = 2 ** 31 - 1       # listen() takes a C int

_WHY = ("The experiment runs real sockets and one thread per client on this machine; every setting "
        "is checked and capped before anything starts, so a shared classroom host stays safe and "
        "every wait ends.")
_SETTINGS = ("host", "port", "backlog", "idle_timeout", "max_connections", "lifetime", "name")


def _bad(title: str, what: str, fix: str) -> ConfigError:
    return ConfigError(Explanation(title, what, _WHY, fix))


def check_style(style) -> str:
    """``style`` if it is one of STYLES; else a ConfigError naming them."""
    if not isinstance(style, str) or style not in STYLES:
        raise _bad("Unknown server style", f"style={style!r} is not a server style.",
                   f"Use a style name: pick one of {', '.join(STYLES)}.")
    return style


def _service_time(value) -> float:
    return _number("service_time", value, integer=False, low=0, high=MAX_SERVICE_TIME,
                   fix="Use a few milliseconds of work, e.g. 0.02 (20 ms).", why=_WHY)


def _check_run(clients, timeout, on_done) -> None:
    """Explain a bad client count, timeout or progress callback before any thread starts."""
    _number("clients", clients, integer=True, low=1, high=MAX_CLIENTS,
            fix=f"Use a few clients, e.g. 10 (at most {MAX_CLIENTS}: one thread each).", why=_WHY)
    if timeout is not None:
        _number("timeout", timeout, integer=False, low=1e-3, high=MAX_TIMEOUT,
                fix="Use a number of seconds such as 5, or leave it out (None: long enough for "
                    "the last client of an iterative server).", why=_WHY)
    if on_done is not None and not callable(on_done):
        raise _bad("on_done must be a function", f"on_done={on_done!r} cannot be called.",
                   "Pass a function that takes one ClientResult, or leave it out.")


def reply_to(request: bytes) -> bytes:
    """The answer to one request line (which ends in b'\\n')."""
    return b"done: " + request


def read_line(sock: socket.socket, limit: int = MAX_REQUEST) -> bytes:
    """recv() until a b'\\n' arrives; returns what came (without a newline if the peer closed first)."""
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(limit)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"request longer than {limit} bytes")
    return buf


class StyleServer:
    """What the four styles share: bind/listen in ``start()``, counters, a prompt ``stop()``.

    ``served``: requests answered; ``peak``: most requests in their simulated work at the same
    time (1 for a server that serves one client at a time); ``errors``: explanations of
    unexpected failures while serving; ``idle_closed``: connections closed after ``idle_timeout``
    with nothing received (or sent); ``ended_by_lifetime``: it stopped itself after ``lifetime`` s.
    """

    style = "?"

    def __init__(self, service_time: float = 0.02, *, host: str = "127.0.0.1", port: int = 0,
                 backlog: int = 128, idle_timeout: float = 900.0, max_connections: int = 256,
                 lifetime: float = 3600.0, name: str | None = None):
        self.service_time = _service_time(service_time)
        if not isinstance(host, str):
            raise _bad("Invalid host", f"host={host!r} is not a str.",
                       "Use an IP address such as '127.0.0.1' (the default, loopback).")
        _number("port", port, integer=True, low=0, high=65535, why=_WHY,
                fix="Use 0 (the default: the OS picks a free port) or a port from 1024 to 65535.")
        _number("backlog", backlog, integer=True, low=0, high=INT_MAX, why=_WHY,
                fix="Use e.g. 128 (the default), or 2 to watch the accept queue fill up.")
        _number("idle_timeout", idle_timeout, integer=False, low=1e-3, high=86400, why=_WHY,
                fix="Use a number of seconds such as 900 (the default: a learner may pause between cells).")
        _number("max_connections", max_connections, integer=True, low=1, high=10000, why=_WHY,
                fix="Use a small number such as 256 (the default).")
        _number("lifetime", lifetime, integer=False, low=1e-3, high=86400, why=_WHY,
                fix="Use a number of seconds such as 3600 (the default: a forgotten server stops "
                    "by itself after an hour).")
        self.host, self.port, self.backlog = host, port, backlog
        self.idle_timeout, self.max_connections, self.name = idle_timeout, max_connections, name
        self.lifetime = lifetime
        self.ended_by_lifetime = False
        self.idle_closed = 0
        self._deadline = math.inf           # monotonic() when the lifetime runs out (set by start())
        self.ready = threading.Event()
        self.stopping = threading.Event()   # set by stop(): ends every simulated work at once
        self.sock: socket.socket | None = None
        self.address = None
        self.served = self.peak = self.rejected = 0
        self.errors: list = Recent(ERRORS_KEPT)  # the latest only: a server may run all day
        self.key: str | None = None
        self._inflight = 0
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()  # held by start() until its thread exists (see stop())
        self._work_changed = threading.Condition(self._lock)
        self._conns: dict = {}              # connection socket -> its thread (or None)
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = None
        self._crash: BaseException | None = None
        self._accepting: AcceptPause | None = None  # the serving loop's, while it runs

    # ---- lifecycle
    def start(self, timeout: float = DEFAULT_TIMEOUT) -> "StyleServer":
        """Bind and listen here (errors are raised here), then serve in a background thread."""
        if self._thread is not None:
            raise explained_as(RuntimeError("this server was already started; create a new one"),
                               Explanation(
                "Already started", f"start() was called on {self!r}, which was started before.",
                "A server object runs once: start() binds its socket and starts its thread, and "
                "after stop() the socket is closed for good.",
                f"Use the running server as it is, or create a new one (make_server({self.style!r})) "
                "and start that."))
        self.stopping.clear()  # a stop() before start(), with nothing to stop, must not end this run
        self.key = self.name if self.name is not None else runtime.caller_key(2)
        runtime.register(self.key, self, explicit=self.name is not None)
        with self._start_lock:
            if self.stopping.is_set():  # stopped meanwhile (stop_all() in another thread)
                runtime.unregister(self.key, self)
                return self
            self._start_serving()
        ready = self.ready.wait(timeout)
        if self.stopping.is_set():  # stopped while it started (stop_all from another thread): return
            self.stop(timeout)      # once it has stopped completely (that stop() may still be joining)
            return self
        if not ready or self._crash is not None:
            crash = self._crash
            self.stop()
            if crash is not None:
                raise explained(crash, self.address) from None
            raise not_ready(RuntimeError(f"{self.style} server did not become ready within {timeout} s"),
                            repr(self), timeout)
        return self

    def _start_serving(self) -> None:
        """start()'s work under its lock: the listening socket, the wake-up pair, the thread."""
        try:
            self.sock = socket.create_server((self.host, self.port), backlog=self.backlog)
            self.address = self.sock.getsockname()
            self._wake_r, self._wake_w = socket.socketpair()
        except Exception as exc:
            self._close_sockets()
            runtime.unregister(self.key, self)
            raise explained(exc, (self.host, self.port), "bind") from None
        runtime.forget_ended(self.address)  # a refusal here now has another cause
        self._deadline = time.monotonic() + self.lifetime
        thread = Thread(target=self._run, name=f"socklab-{self.style}")
        try:
            thread.start()
        except RuntimeError as exc:  # the OS refused a thread (ulimit -u): nothing may stay open
            self._close_sockets()
            runtime.unregister(self.key, self)
            raise explained(exc, call="start") from None
        self._thread = thread

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop now: wake the serving thread, end blocked calls, join threads, close sockets.

        Safe to call twice, and from any thread."""
        with self._start_lock:              # a start() in progress first makes its thread: else
            self.stopping.set()             # this would close sockets its loop then waits on for ever
        self._wake()                        # wakes the loop waiting in select() / the event loop
        self._shutdown_connections()        # wakes a recv() blocked on a client that sends nothing
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                raise not_stopped(RuntimeError(f"{self.style} server thread did not stop within {timeout} s"),
                                  f"The serving thread of {self!r}", timeout,
                                  "it is held in the server's own code.")
        self._join_connections(timeout)
        self._close_sockets()
        if self.key is not None:
            runtime.unregister(self.key, self)

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self) -> bool:
        return self.ready.is_set() and not self.stopping.is_set() and \
            self._thread is not None and self._thread.is_alive()

    def _run(self):
        try:
            self._serve()
            if not self.stopping.is_set():  # the loop returned by itself: the lifetime ran out
                self.ended_by_lifetime = True
                runtime.note_ended(self.address, lifetime_ended(
                    self.lifetime, f"concurrency.make_server({self.style!r}, lifetime=4 * 3600)"))
                self.stop()
        except Exception as exc:
            self._crash = exc
            if not self.stopping.is_set():
                self.errors.append(explain(exc))
                if self.sock is not None:
                    self.sock.close()   # waiting clients are refused now instead of timing out
        finally:
            self.ready.set()  # start() must not wait for a loop that died before it was ready

    def _serve(self):
        raise NotImplementedError

    def _wake(self):
        """Wake the serving loop: one byte on the wake-up socketpair it watches."""
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"x")
            except OSError:
                pass  # already closed: the server has stopped

    # ---- bookkeeping
    @contextlib.contextmanager
    def working(self):
        """Count a request as 'in its simulated work' (for ``peak``)."""
        self._begin_work()
        try:
            yield
        finally:
            self._end_work()

    def _begin_work(self):
        with self._lock:
            self._inflight += 1
            self.peak = max(self.peak, self._inflight)
            self._work_changed.notify_all()

    def wait_working(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``n`` requests are in their simulated work at once; False after ``timeout`` s."""
        _number("n", n, integer=True, low=0, high=10000, why=_WHY,
                fix="Use the number of requests to wait for, e.g. 1.")
        _number("timeout", timeout, integer=False, low=0, high=MAX_TIMEOUT, why=_WHY,
                fix="Use a number of seconds such as 5 (the default).")
        with self._lock:
            return self._work_changed.wait_for(lambda: self._inflight >= n, timeout)

    def _end_work(self):
        with self._lock:
            self._inflight -= 1

    def _answered(self):
        with self._lock:
            self.served += 1

    def _closed_idle(self):
        with self._lock:
            self.idle_closed += 1

    def _time_left(self) -> float:
        """Seconds until the lifetime runs out (0 once it has)."""
        return max(0.0, self._deadline - time.monotonic())

    def _track(self, conn, thread=None) -> bool:
        """Remember a connection (so stop() can end it); False when over max_connections."""
        with self._lock:
            if self.stopping.is_set():
                return False
            if len(self._conns) >= self.max_connections:
                self.rejected += 1
                return False
            self._conns[conn] = thread
            return True

    def _untrack_and_close(self, conn):
        with self._lock:  # under the lock: stop() never shuts down a socket that is being closed
            self._conns.pop(conn, None)
            conn.close()

    def _shutdown_connections(self):
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked on it
                except OSError:
                    pass  # already disconnected: its handler is returning anyway

    def _join_connections(self, timeout):
        with self._lock:
            threads = [t for t in self._conns.values() if t is not None]
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _close_sockets(self):
        for s in (self.sock, self._wake_r, self._wake_w):
            if s is not None:
                s.close()

    def _record(self, exc):
        if not self.stopping.is_set():
            self.errors.append(explain(exc))

    def _accept_failed(self, exc) -> None:
        """accept() failed (e.g. EMFILE): pause accepting (AcceptPause), explain the first only."""
        if self._accepting.failed():
            self._record(exc)

    def __repr__(self):
        state = "running" if self.running else ("stopped" if self.stopping.is_set() else "new")
        return f"<socklab.concurrency.{type(self).__name__} {self.address!r} {state}>"


class _AcceptLoop(StyleServer):
    """Blocking connections; a selector only to watch the listener and the wake-up socket."""

    def _serve(self):
        with selectors.DefaultSelector() as sel:
            self.sock.setblocking(False)  # select() said 'ready', but never risk blocking in accept
            sel.register(self.sock, selectors.EVENT_READ)
            self._accepting = AcceptPause(sel, self.sock)
            sel.register(self._wake_r, selectors.EVENT_READ)
            self.ready.set()
            while not self.stopping.is_set():
                left = self._time_left()
                if not left:
                    return                          # lifetime over: _run() stops the server
                events = sel.select(self._accepting.wait(left))
                self._accepting.resume_if_due()
                for key, _ in events:
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _ = self.sock.accept()
                    except (BlockingIOError, ConnectionAbortedError):
                        continue  # the client gave up before we got to it
                    except OSError as exc:  # out of descriptors: the connection stays queued
                        self._accept_failed(exc)
                        continue
                    self._accepting.succeeded()
                    try:
                        self.on_connection(conn)
                    except BaseException:
                        self._untrack_and_close(conn)  # the loop dies (_run reports it): no fd leaks
                        raise

    def handle(self, conn: socket.socket) -> None:
        """Serve one client: read its request, work, reply."""
        conn.settimeout(self.idle_timeout)
        request = read_line(conn)
        if not request.endswith(b"\n"):
            return                                  # the client closed without a request
        with self.working():
            self.stopping.wait(self.service_time)   # the simulated work; stop() ends it at once
        if not self.stopping.is_set():
            conn.sendall(reply_to(request))
            self._answered()

    def _serve_conn(self, conn):
        try:
            self.handle(conn)
        except TimeoutError:
            self._closed_idle()                     # silent for idle_timeout: a cap, not a failure
        except (OSError, ValueError) as exc:
            self._record(exc)
        finally:
            self._untrack_and_close(conn)


class IterativeServer(_AcceptLoop):
    """One client at a time: the others wait in the kernel's accept queue."""

    style = "iterative"

    def on_connection(self, conn):
        if self._track(conn):
            self._serve_conn(conn)   # serve this client completely, then go back to accept()
        else:
            conn.close()


class ThreadedServer(_AcceptLoop):
    """A new thread for every connection: the accept loop goes straight back to accept()."""

    style = "threads"

    def on_connection(self, conn):
        t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True,
                             name="socklab-threads-conn")
        if self._track(conn, t):
            t.start()                # serve this client in its own thread
        else:
            conn.close()             # over max_connections: a classroom host stays safe


class _Client:
    """The selectors server's notes on one client."""

    __slots__ = ("sock", "inbox", "outbox", "since")

    def __init__(self, sock):
        self.sock, self.inbox, self.outbox = sock, b"", b""
        self.since = time.monotonic()   # its last activity: idle_timeout counts from here


class SelectorServer(StyleServer):
    """One thread, non-blocking sockets: select() says which socket is ready; a timer heap says
    whose simulated work is done. No call ever blocks, so one slow client delays nobody."""

    style = "selectors"

    def _serve(self):
        sel = selectors.DefaultSelector()
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ, "accept")
        self._accepting = AcceptPause(sel, self.sock, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "stop")
        timers: list = []          # heap of (when the work is done, n, client): work in progress
        n = itertools.count()
        self.ready.set()
        try:
            while True:
                wait = max(0.0, self._next_deadline(sel, timers) - time.monotonic())
                events = sel.select(wait)                  # sleeps until a socket is ready or a deadline
                self._accepting.resume_if_due()
                for key, mask in events:
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        self._accept(sel)
                    elif mask & selectors.EVENT_READ:
                        self._read(sel, key.data, timers, n)
                    else:
                        self._write(sel, key.data)
                now = time.monotonic()
                if now >= self._deadline:
                    return                                # lifetime over: _run() stops the server
                while timers and timers[0][0] <= now:     # work done: answer when writable
                    client = heapq.heappop(timers)[2]
                    self._end_work()
                    client.outbox = reply_to(client.inbox)
                    client.since = now
                    sel.register(client.sock, selectors.EVENT_WRITE, client)
                for client in self._waiting(sel):         # silent for idle_timeout: close it
                    if now - client.since >= self.idle_timeout:
                        self._closed_idle()
                        self._drop(sel, client)
        finally:
            for _, _, client in timers:
                self._end_work()
            sel.close()
            with self._lock:
                for conn in self._conns:
                    conn.close()
                self._conns.clear()

    @staticmethod
    def _waiting(sel) -> list:
        """The clients the selector watches (not those in their work)."""
        return [key.data for key in sel.get_map().values() if isinstance(key.data, _Client)]

    def _next_deadline(self, sel, timers) -> float:
        """A non-blocking socket has no timeout of its own, so the loop keeps every clock: the
        earliest of the next work done, the next idle client's end and the server's lifetime."""
        ends = [self._deadline] + [c.since + self.idle_timeout for c in self._waiting(sel)]
        if timers:
            ends.append(timers[0][0])
        if self._accepting.resume is not None:             # accept() paused after a failure
            ends.append(self._accepting.resume)
        return min(ends)

    def _accept(self, sel):
        while True:                                   # take every connection that is waiting
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as exc:                    # out of descriptors: the connection stays queued
                return self._accept_failed(exc)
            self._accepting.succeeded()
            if not self._track(conn):
                conn.close()
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, _Client(conn))

    def _read(self, sel, client, timers, n):
        try:
            data = client.sock.recv(MAX_REQUEST)      # ready: returns at once
        except OSError as exc:
            data = b""
            self._record(exc)
        client.inbox += data
        client.since = time.monotonic()
        if not data or len(client.inbox) > MAX_REQUEST:
            return self._drop(sel, client)
        if b"\n" in client.inbox:
            sel.unregister(client.sock)               # nothing to do for it until its work is done
            self._begin_work()
            heapq.heappush(timers, (time.monotonic() + self.service_time, next(n), client))

    def _write(self, sel, client):
        try:
            sent = client.sock.send(client.outbox)    # writable: sends at least part, at once
        except OSError as exc:
            self._record(exc)
            return self._drop(sel, client)
        client.outbox = client.outbox[sent:]
        client.since = time.monotonic()
        if not client.outbox:
            self._answered()
            self._drop(sel, client)

    def _drop(self, sel, client):
        sel.unregister(client.sock)
        self._untrack_and_close(client.sock)


class AsyncioServer(StyleServer):
    """asyncio.start_server in its own event loop thread: one coroutine per client; every
    ``await`` lets the loop serve the other clients meanwhile."""

    style = "asyncio"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._loop = None
        self._quit = None
        self._tasks: set = set()

    def _serve(self):
        asyncio.run(self._main())

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        # asyncio reports a failed accept() (out of descriptors: it retries after a second) on
        # stderr, as a log record: keep it with the server's other errors instead.
        self._loop.set_exception_handler(self._loop_error)
        self._quit = asyncio.Event()
        # backlog= too: with sock=, asyncio calls listen() again, with its own default (100)
        server = await asyncio.start_server(self._connected, sock=self.sock, limit=MAX_REQUEST,
                                            backlog=self.backlog)
        self.ready.set()
        try:                                 # stop() sets it from another thread: call_soon_threadsafe
            await asyncio.wait_for(self._quit.wait(), self._time_left())
        except asyncio.TimeoutError:
            pass                             # lifetime over: close as for stop(); _run() stops the rest
        # Accept no more, and let connections accepted this very moment get their transports first:
        # server.close() alone races with them (asyncio asserts, and the socket leaks).
        self._loop.remove_reader(self.sock)
        await asyncio.sleep(0)
        server.close()
        await asyncio.sleep(0)               # their handlers start now, and are tracked
        for task in list(self._tasks):
            task.cancel()                    # ends a handler waiting in readline() or in its work
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _ in range(3):
            await asyncio.sleep(0)           # closing transports close their sockets
        await server.wait_closed()

    def _connected(self, reader, writer):
        """asyncio calls this for each new connection: start handle() as a task and track it."""
        if len(self._tasks) >= self.max_connections:  # over max_connections: a classroom host stays safe
            with self._lock:
                self.rejected += 1
            writer.close()
            return
        task = self._loop.create_task(self.handle(reader, writer))
        self._tasks.add(task)

        def done(t):  # also when the task was cancelled before it ever ran
            self._tasks.discard(t)
            writer.close()
        task.add_done_callback(done)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        """Serve one client: read its request, work, reply. Runs as one task per connection."""
        try:
            request = await asyncio.wait_for(reader.readline(), self.idle_timeout)
            if request.endswith(b"\n"):
                with self.working():
                    await asyncio.sleep(self.service_time)   # the simulated work: a timer, not a block
                writer.write(reply_to(request))
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
                self._answered()
        except asyncio.TimeoutError:         # silent for idle_timeout: a cap, not a failure
            self._closed_idle()
        except (OSError, ValueError) as exc:
            self._record(exc)
        finally:
            writer.close()

    def _loop_error(self, loop, context):
        exc = context.get("exception")
        if exc is None:
            exc = RuntimeError(context.get("message", "asyncio error"))
        if not self.errors or self.errors[-1].error != explain(exc).error:  # once per burst
            self._record(exc)

    def _wake(self):
        loop, quit_ = self._loop, self._quit
        if loop is not None and quit_ is not None:
            try:
                loop.call_soon_threadsafe(quit_.set)
            except RuntimeError:
                pass  # the loop is already closed: the server has stopped


SERVERS = {"iterative": IterativeServer, "threads": ThreadedServer, "selectors": SelectorServer,
           "asyncio": AsyncioServer}


def make_server(style: str, service_time: float = 0.02, **kw) -> StyleServer:
    """A (not yet started) server of ``style``: one of STYLES. Bad settings raise ConfigError."""
    cls = SERVERS[check_style(style)]
    unknown = sorted(set(kw) - set(_SETTINGS))
    if unknown:
        raise _bad("Unknown server setting", f"{', '.join(unknown)} is not a setting of the "
                   f"{style} server.", f"Use only {', '.join(_SETTINGS)} (or leave them out).")
    return cls(service_time, **kw)


_measure_ids = itertools.count(1)


# ---- the load generator
@dataclass
class ClientResult:
    index: int
    latency: float | None    # seconds from the common start to the reply; None if it failed
    error: str = ""          # e.g. 'ConnectionRefusedError' when it failed
    explanation: Explanation | None = field(default=None, compare=False)  # why it failed

    @property
    def ok(self) -> bool:
        return self.latency is not None


@dataclass
class Measurement:
    """N clients against one server style: total time, each client's latency, peak overlap."""

    style: str
    clients: int
    service_time: float
    total: float
    results: list = field(default_factory=list)
    peak: int = 0
    stopped: bool = False    # the run was cut short (its server stopped before every client was served)
    turned_away: int = 0     # connections the server closed at once, over its max_connections
    max_connections: int = 0
    errors: list = field(default_factory=list, compare=False)  # the server's, explained

    @property
    def problem(self) -> Explanation | None:
        """Why some clients were not answered (the server's first error, else the first failed
        client's); None when every client was answered."""
        if self.answered == len(self.results):
            return None
        return next((e for e in self.errors), None) or \
            next((r.explanation for r in self.results if r.explanation is not None), None)

    @property
    def answered(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def latencies(self) -> list:
        return sorted(r.latency for r in self.results if r.ok)

    @property
    def mean(self) -> float:
        lat = self.latencies
        return sum(lat) / len(lat) if lat else float("nan")

    @property
    def max(self) -> float:
        return max(self.latencies, default=float("nan"))

    @property
    def min(self) -> float:
        return min(self.latencies, default=float("nan"))

    @property
    def overlapped(self) -> bool:
        """True when the server worked on more than one request at a time."""
        return self.peak > 1

    def row(self) -> str:
        """One line; times in ms (unpadded, so nbval's duration mask keeps the line stable)."""
        return (f"{self.style:<9}  clients={self.clients}  answered={self.answered}/{self.clients}  "
                f"total {self.total * 1000:.1f} ms  mean latency {ms(self.mean)}  "
                f"max latency {ms(self.max)}  "
                f"{'overlapped requests' if self.overlapped else 'one request at a time'}"
                + ("  (stopped early)" if self.stopped else "")
                + (f"  ({self.turned_away} closed at once by the server: over its "
                   f"max_connections={self.max_connections})" if self.turned_away else ""))


def ms(seconds: float) -> str:
    """'12.3 ms'; '-' for no value (a latency of a run in which no client was answered)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def client_timeout(clients: int, service_time: float) -> float:
    """Long enough for the last client of an iterative server, plus a margin."""
    return DEFAULT_TIMEOUT + 2 * clients * service_time


def run_clients(address, clients: int, *, timeout: float | None = None, on_done=None,
                service_time: float = 0.02):
    """Start ``clients`` client threads together; each connects, sends one request line and reads
    the reply. Returns (total seconds until the last one finished, [ClientResult, ...]).

    ``on_done(result)`` is called from each client's thread as it finishes (for live progress);
    if it raises, the first such error is raised here once every client has finished.
    """
    _check_run(clients, timeout, on_done)
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)
            and type(address[1]) is int and 0 < address[1] <= 65535):
        raise _bad("Invalid address", f"address={address!r:.60} is not a (host, port) pair.",
                   "Pass the address of a running server, e.g. srv.address, or ('127.0.0.1', port).")
    service_time = _service_time(service_time)
    timeout = client_timeout(clients, service_time) if timeout is None else timeout
    go = threading.Event()
    t0 = [0.0]
    results: list = [None] * clients
    failures: list = []   # errors of on_done (or bugs): raised in the caller, not lost in a thread

    def client(i):
        go.wait(timeout)   # start together
        try:
            with socket.create_connection(address, timeout=timeout) as s:
                s.sendall(b"request %d\n" % i)
                reply = read_line(s)
            if reply != reply_to(b"request %d\n" % i):
                raise ConnectionError("no reply: the server closed the connection")
            res = ClientResult(i, time.perf_counter() - t0[0])
        except (OSError, ValueError) as exc:
            res = ClientResult(i, None, type(exc).__name__, explain(exc))
        results[i] = res
        if on_done is not None:  # after results[i] is set: a broken progress view loses nothing
            try:
                on_done(res)
            except Exception as exc:
                failures.append(exc)

    threads = [Thread(target=client, args=(i,), name="socklab-load")
               for i in range(clients)]
    started, refused = [], None
    try:
        for t in threads:
            t.start()
            started.append(t)
    except RuntimeError as exc:  # the OS refused a thread (ulimit -u): end the run, explained
        refused = exc
    finally:
        t0[0] = time.perf_counter()
        go.set()
    for t in started:
        t.join(timeout + DEFAULT_TIMEOUT)
    total = time.perf_counter() - t0[0]
    if refused is not None:
        raise explained(refused, call="start") from None
    if failures:
        raise failures[0]
    return total, [r if r is not None else ClientResult(i, None, "still running")
                   for i, r in enumerate(results)]


def measure(style: str, clients: int, service_time: float = 0.02, *, timeout: float | None = None,
            on_done=None, on_server=None, **server_kw) -> Measurement:
    """Start a ``style`` server, run ``clients`` concurrent clients against it, stop it.

    ``on_server(server)`` is called once the server runs (a panel keeps it to stop it early).
    Bad settings raise ConfigError before anything starts; a server that fails while serving
    raises its explained error.
    """
    check_style(style)
    _check_run(clients, timeout, on_done)
    if on_server is not None and not callable(on_server):
        raise _bad("on_server must be a function", f"on_server={on_server!r} cannot be called.",
                   "Pass a function that takes the server, or leave it out.")
    name = f"socklab.concurrency/{style}/{next(_measure_ids)}"  # unique: never stops another run
    srv = make_server(style, service_time, name=name, **server_kw)
    with srv.start():
        if on_server is not None:
            on_server(srv)
        total, results = run_clients(srv.address, clients, timeout=timeout, on_done=on_done,
                                     service_time=service_time)
        crash = None if srv.stopping.is_set() else srv._crash  # stopped on purpose: not a failure
    if crash is not None:
        raise explained(crash, srv.address) from None
    return Measurement(style, clients, service_time, total, results, srv.peak,
                       turned_away=srv.rejected, max_connections=srv.max_connections,
                       errors=list(srv.errors))


def compare(clients: int = 20, styles=STYLES, service_time: float = 0.02, **kw) -> list:
    """measure() every style in turn with the same number of clients.

    ``styles`` is a list of style names; every one is checked before the first run starts."""
    if isinstance(styles, (str, bytes)):
        raise _bad("styles must be a list of style names",
                   f"styles={styles!r} is a single {type(styles).__name__}; it would be read letter "
                   "by letter.", f"Use styles=[{styles!r}] (a list), or measure({styles!r}, ...).")
    try:
        styles = list(styles)
    except TypeError:
        raise _bad("styles must be a list of style names", f"styles={styles!r} is not a list.",
                   f"Use e.g. styles={list(STYLES[:2])!r}, or leave it out for all four.") from None
    for s in styles:
        check_style(s)
    _check_run(clients, kw.get("timeout"), kw.get("on_done"))
    _service_time(service_time)
    return [measure(s, clients, service_time, **kw) for s in styles]


def _measurements(value, where: str) -> list:
    """A list of Measurements from one Measurement or any iterable of them; else ConfigError."""
    if isinstance(value, Measurement):
        return [value]
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or not all(isinstance(m, Measurement) for m in items):
        raise _bad("Not measurements", f"{where} takes what measure() or compare() returned; it got "
                   f"{value!r:.60} (a {type(value).__name__}).",
                   "Pass a Measurement (m = concurrency.measure('threads', 10)) or the list "
                   "compare() returns.")
    return items


def table(measurements) -> str:
    """The measurements (a list, or one Measurement) as a text table (times in ms)."""
    measurements = _measurements(measurements, "table()")
    head = f"{'style':<10} {'clients':>7} {'answered':>8} {'total ms':>9} {'mean ms':>8} " \
           f"{'max ms':>8} {'peak':>4}"
    lines = [head, "-" * len(head)]
    for m in measurements:
        lines.append(f"{m.style:<10} {m.clients:>7} {m.answered:>8} {m.total * 1000:>9.1f} "
                     f"{m.mean * 1000:>8.1f} {m.max * 1000:>8.1f} {m.peak:>4}")
    return "\n".join(lines)


def latency_chart(measurement: Measurement, width: int = 40, scale: float | None = None) -> str:
    """The latencies as bars, sorted (fastest first): row k is the k-th answer, not client number k,
    so every chart rises. Steps of one work time between rows mean one request at a time."""
    measurements = _measurements(measurement, "latency_chart()")
    if len(measurements) != 1:
        raise _bad("One measurement per chart", f"latency_chart() draws one measurement; it got "
                   f"{len(measurements)}.", "Draw each in turn: for m in results: "
                   "print(concurrency.latency_chart(m)).")
    measurement = measurements[0]
    _number("width", width, integer=True, low=5, high=500, why=_WHY,
            fix="Use e.g. width=40 (the default): the number of characters of the longest bar.")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not 0 < scale < math.inf):
        raise _bad("Invalid scale", f"scale={scale!r:.40} is not a positive number of seconds.",
                   "Use the latency (in s) that fills the width, e.g. the slowest of several charts "
                   "(so they compare), or leave it out.")
    lat = measurement.latencies
    if not lat:
        return f"{measurement.style}: no client got an answer"
    scale = scale or max(lat)
    lines = [f"{measurement.style} ({measurement.clients} clients, sorted: fastest answer first, "
             f"bar = latency, full width = {scale * 1000:.0f} ms)"]
    for i, x in enumerate(lat, 1):
        bar = "#" * max(1, round(width * x / scale))
        lines.append(f"  answer {i:>2} {bar:<{width}} {x * 1000:6.1f} ms")
    return "\n".join(lines)
