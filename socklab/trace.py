"""Recording socket calls: ``Trace`` holds events, ``TracedSocket`` records every call it makes.

One event per call (never per byte), and repeated data calls on the same side coalesce into one
event, so bulk transfers stay cheap. Knows nothing of Jupyter.
"""
from __future__ import annotations

import collections
import errno
import functools
import itertools
import reprlib
import socket
import threading
import time
import warnings

from .recent import Recent

PREVIEW = 32  # bytes of payload kept per event for display
DATA_CALLS = frozenset({"send", "sendall", "sendto", "recv", "recvfrom", "recv_into", "recvmsg"})
RECEIVE_CALLS = frozenset({"recv", "recvfrom", "recv_into", "recvmsg", "accept"})

_OPTNAMES = {}
for _n in ("SOL_SOCKET", "IPPROTO_TCP", "IPPROTO_IPV6", "IPPROTO_IP"):
    if hasattr(socket, _n):
        _OPTNAMES[("level", getattr(socket, _n))] = _n
for _n in ("SO_REUSEADDR", "SO_REUSEPORT", "SO_KEEPALIVE", "SO_LINGER", "SO_RCVBUF", "SO_SNDBUF",
           "SO_BROADCAST", "TCP_NODELAY", "IPV6_V6ONLY"):
    if hasattr(socket, _n):
        _OPTNAMES.setdefault(("opt", getattr(socket, _n)), _n)


class Data:
    """A payload as the trace keeps it: the first PREVIEW bytes and the full length."""

    __slots__ = ("head", "size")

    def __init__(self, data):
        mv = memoryview(data)
        self.size = mv.nbytes
        self.head = bytes(mv[:PREVIEW]) if self.size > PREVIEW else bytes(mv)

    def __repr__(self):
        if self.size <= PREVIEW:
            return repr(self.head)
        return f"{self.head!r}...({self.size} bytes)"

    def __eq__(self, other):
        return isinstance(other, Data) and (self.head, self.size) == (other.head, other.size)


class Sym:
    """A symbolic constant shown by name, e.g. AF_INET or SHUT_RDWR."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name

    def __eq__(self, other):
        return isinstance(other, Sym) and other.name == self.name


class Event:
    """One socket call: who made it, what it was, what came back, when, and how long it took."""

    __slots__ = ("seq", "t", "dt", "side", "call", "args", "result", "error", "nbytes", "count")

    def __init__(self, seq, t, dt, side, call, args, result, error, nbytes):
        self.seq, self.t, self.dt, self.side, self.call = seq, t, dt, side, call
        self.args, self.result, self.error, self.nbytes, self.count = args, result, error, nbytes, 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def at(self) -> float:
        """When the call took effect: a receiving call (recv, accept) when it returned with what
        arrived; every other call (send, connect, close, ...) when it started acting."""
        return self.t + self.dt if self.call in RECEIVE_CALLS else self.t

    def __repr__(self):
        outcome = self.error if self.error is not None else self.result
        return f"<Event {self.seq} {self.side} {self.call}{self.args!r} -> {outcome!r}>"


def as_trace(obj, where: str, optional: bool = False) -> "Trace":
    """``obj`` if it is a Trace, else the ``.trace`` of a socklab Server, Client, socket or panel;
    with ``optional``, None gives a new Trace. Anything else raises ConfigError, explained."""
    if isinstance(obj, Trace):
        return obj
    if obj is None and optional:
        return Trace()
    own = getattr(obj, "trace", None)
    if isinstance(own, Trace):
        return own
    from .errors import ConfigError, Explanation
    raise ConfigError(Explanation(
        "Not a trace", f"{where} takes a socklab.Trace; it got {obj!r:.60} (a {type(obj).__name__}).",
        "A trace is the record of socket calls that socklab keeps: every Server, Client, "
        "socklab.socket() and panel has one, as its .trace.",
        "Pass a trace (srv.trace, or t = socklab.Trace()), or the Server, Client, socket or panel "
        "itself" + (", or leave it out for a new one." if optional else ".")))


class Trace:
    """A thread-safe, ordered record of socket calls from any number of sides.

    ``subscribe(fn)`` calls ``fn(event)`` after each new or coalesced event, from the thread that
    made the call (widgets use this for live views).
    """

    def __init__(self, coalesce: bool = True, max_events: int = 20000, detail: int = 8):
        if type(max_events) is not int or not 1 <= max_events <= 10 ** 7:
            from .errors import ConfigError, Explanation
            raise ConfigError(Explanation(
                "Invalid max_events", f"max_events={max_events!r:.40} is not a whole number from 1 "
                "to 10 000 000.", "A trace keeps its newest max_events calls and drops older ones, "
                "so that a long-running demo does not fill the kernel's memory.",
                "Use e.g. max_events=20000 (the default), or leave it out."))
        self.t0 = time.perf_counter()
        self.coalesce = coalesce
        self.detail = detail
        self.events: collections.deque = collections.deque(maxlen=max_events)
        self.dropped = 0
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._sides: dict = {}
        self._claimed: set = set()  # side names held by live servers (claim_side)
        self._runs: dict = {}  # side -> {"": calls so far, call: folding Event} for its current run
        self._listeners: list = []
        self.listener_errors: list = Recent(100)  # a broken view fails on every event: the latest only
        self._warned: set = set()  # (listener id, error type) already warned about

    def __len__(self):
        return len(self.events)

    def __iter__(self):
        with self._lock:
            return iter(list(self.events))

    def new_side(self, prefix: str, numbered: bool = False) -> str:
        """A fresh side name: 'client', then 'client2', 'client3', ...; with ``numbered``
        'client1' first (for a series that is meant to be counted)."""
        with self._lock:
            n = self._sides.get(prefix, 0) + 1
            self._sides[prefix] = n
        return prefix if n == 1 and not numbered else f"{prefix}{n}"

    def claim_side(self, prefix: str) -> str:
        """A side name no live owner holds: ``prefix``, else prefix2, prefix3, ... So two servers
        running on one trace are told apart, and a server started again after a stop (a panel's
        Start) is 'server' again. ``release_side`` frees the name."""
        with self._lock:
            n = 1
            while (name := prefix if n == 1 else f"{prefix}{n}") in self._claimed:
                n += 1
            self._claimed.add(name)
            return name

    def release_side(self, name: str) -> None:
        with self._lock:
            self._claimed.discard(name)

    def subscribe(self, fn) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)
        self._warned = {key for key in self._warned if key[0] != id(fn)}

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.dropped = 0
            self._sides.clear()
            self._runs.clear()

    def record(self, side, call, args=(), result=None, error=None, nbytes=None, start=None,
               payload: bool = False) -> Event:
        """Append one event, or fold a data call into the same call earlier in this side's run.

        A run is a side's uninterrupted sequence of successful data calls (other sides may interleave).
        Its first ``detail`` calls are kept one by one, so small demos show every send and recv;
        after that each call folds into one event per call name with a count, so a bulk transfer
        costs a handful of events. Any other call, an error, or end of stream (recv returning b'')
        ends the run. ``payload=True`` says ``result`` is received bytes: kept as a ``Data`` preview,
        made only when a new event needs it (a folded call costs no copy).
        """
        if isinstance(error, OSError) and getattr(error, "socklab_call", None) is None:
            # For explain(): a traceback names the call, but not the address it was given.
            error.socklab_call = call
            error.socklab_address = (args[0] if call in ("bind", "connect", "connect_ex") and args
                                     else args[-1] if call == "sendto" and len(args) == 2 else None)
        data = call in DATA_CALLS and error is None and not (call.startswith("recv") and nbytes == 0)
        if data:
            last = self.fold(side, call, nbytes or 0)
            if last is not None:
                return last
        # a huge argument (a path or host of a megabyte) is kept short, as payloads are
        args = tuple(Shown(a) if isinstance(a, (str, bytes, bytearray)) and len(a) > 200 else a
                     for a in args)
        return self._append(side, call, args, result, error, nbytes, start, data, payload)

    def _append(self, side, call, args, result, error, nbytes, start, data: bool,
                payload: bool = False) -> Event:
        """``record`` once ``fold`` has said no: a new event. ``data``: a successful data call,
        which starts or continues the side's run; anything else ends it."""
        now = time.perf_counter()
        start = now if start is None else start
        if payload and error is None:
            result = Data(result)
        with self._lock:
            if len(self.events) == self.events.maxlen:
                self.dropped += 1
            ev = Event(next(self._seq), start - self.t0, now - start, side, call, args, result,
                       error, nbytes)
            self._insert(ev)
            if self.coalesce and data:
                run = self._runs.setdefault(side, {"": 0})
                run[""] += 1
                if run[""] > self.detail:
                    run[call] = ev
            else:
                self._runs.pop(side, None)
        self._notify(ev)
        return ev

    def fold(self, side, call, nbytes: int) -> Event | None:
        """Fold one more successful data call into ``side``'s run, if the run has passed ``detail``
        calls: returns the event it went into, or None (a new event is due). The hot path of bulk
        transfers: no arguments or results are built for a folded call."""
        if not self.coalesce:
            return None
        with self._lock:
            run = self._runs.get(side)
            last = run.get(call) if run is not None else None
            if last is None:
                return None
            last.count += 1
            last.nbytes = (last.nbytes or 0) + nbytes
            last.dt = time.perf_counter() - self.t0 - last.t
            result = last.result
            if result.__class__ is Data:  # a received payload: a merged preview would mislead
                if last.count == 2:
                    last.result = result = Data(b"")
                result.size = last.nbytes
        self._notify(last)
        return last

    def _notify(self, ev: Event) -> None:
        if not self._listeners:
            return
        for fn in list(self._listeners):
            try:
                fn(ev)
            except Exception as exc:  # a broken view must not kill a server thread
                self.listener_errors.append(exc)
                # Said once per listener and kind of error: a broken view fails on every event,
                # each message may differ, and every distinct warning is printed and remembered.
                if (id(fn), type(exc)) not in self._warned:
                    self._warned.add((id(fn), type(exc)))
                    warnings.warn(f"socklab trace listener {fn!r} failed: {exc!r} (its later "
                                  f"{type(exc).__name__}s are kept in trace.listener_errors only)",
                                  RuntimeWarning)

    def _insert(self, ev: Event) -> None:
        """Append in causal order (see ``Event.at``): a send, connect or close comes before the recv
        or accept that saw its effect, even though the receiver's thread may record first."""
        events = self.events
        i = len(events)
        at = ev.at
        while i and events[i - 1].at > at:
            i -= 1
        if i == len(events):
            events.append(ev)
            return
        if events.maxlen is not None and len(events) == events.maxlen:
            if i == 0:
                return  # older than everything kept: it is the one event dropped (and counted)
            events.popleft()  # full: drop the oldest, as append() does (insert() would raise)
            i -= 1
        events.insert(i, ev)

    def note(self, side, text) -> Event:
        """Record something that is not a socket call (e.g. 'ready', 'stopped')."""
        return self.record(side, "note", (text,))

    def by_side(self) -> dict:
        """Events grouped by side, each group in order."""
        out: dict = {}
        for ev in self:
            out.setdefault(ev.side, []).append(ev)
        return out

    def calls(self, side=None) -> list:
        """The call names in order, optionally for one side only (handy in tests and exercises)."""
        return [e.call for e in self if side is None or e.side == side]


# ---- a call bounded by a deadline (HTTP requests, TLS handshakes)

def _real_socket(sock):
    """The ``socket.socket`` under ``sock`` (a TracedSocket's ``.sock``, a TLSStream's TracedSocket's
    ``.sock``), or None (bytes, which never block)."""
    for _ in range(4):
        if isinstance(sock, socket.socket):
            return sock
        sock = getattr(sock, "sock", None)
    return None


def call_before(deadline, sock, call, *args):
    """``call(*args)``, where ``call`` waits on ``sock``, given at most until ``deadline``
    (a ``time.monotonic()`` value; None: only the socket's own timeout).

    The timeout is set on the real socket, untraced, and put back afterwards: it is bookkeeping,
    not a call the lesson's trace should show once per recv(). TimeoutError once the deadline passed.
    """
    if deadline is None:
        return call(*args)
    own = getattr(sock, "call_before", None)  # a TLS stream: one read may take several recv() calls
    if own is not None:
        return own(deadline, call, *args)
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the time limit passed")
    real = _real_socket(sock)
    if real is None:
        return call(*args)
    old = real.gettimeout()
    real.settimeout(left if old is None else min(old, left))
    try:
        return call(*args)
    finally:
        real.settimeout(old)



class Shown:
    """A wrong-typed argument as the trace keeps it: a short repr (a 5 MB str must not be kept and
    rendered whole just to show that a str was passed)."""

    __slots__ = ("text",)
    _repr = reprlib.Repr()
    _repr.maxstring = _repr.maxother = 60

    def __init__(self, value):
        self.text = self._repr.repr(value)

    def __repr__(self):
        return self.text


def _payload(data):
    """What the trace keeps of an argument to send: a Data preview, or a short repr of a
    wrong-typed value (the socket raises its own TypeError; the trace shows what was passed)."""
    try:
        return Data(data)
    except TypeError:
        return Shown(data)


def _sym(kind, value):
    name = _OPTNAMES.get((kind, value))
    return Sym(name) if name else value


def _family_name(af) -> str:
    for n in ("AF_INET", "AF_INET6", "AF_UNIX"):
        if getattr(socket, n, None) == af:
            return n
    return str(af)


def _type_name(kind) -> str:
    for n in ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_SEQPACKET"):
        if getattr(socket, n, None) == kind:
            return n
    return str(kind)


class TracedSocket:
    """A real ``socket.socket`` whose calls are recorded in a ``Trace``.

    Same method names and arguments as ``socket.socket``; the real socket is ``.sock``.
    """

    def __init__(self, sock: socket.socket, trace: Trace, side: str, owner=None):
        self.sock = sock
        self.trace = trace
        self.side = side
        self.owner = owner  # the Server/Client that will close this socket, if any
        self.registry_key = None  # set by socklab.socket(), which registers the socket for re-runs
        self._closed = False
        self._io_refs = 0  # counted by makefile() objects, as socket.socket counts them

    @classmethod
    def create(cls, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0, *, trace=None,
               side="socket", owner=None) -> "TracedSocket":
        """Create and record ``socket(family, type[, proto])``."""
        trace = as_trace(trace, "trace=", optional=True)
        if not isinstance(side, str):
            from .errors import ConfigError, Explanation
            raise ConfigError(Explanation(
                "Invalid side", f"side={side!r:.40} is a {side.__class__.__name__}, not a str.",
                "side names who makes the calls (e.g. 'client', 'server') in the trace and its views.",
                "Use a short string such as side='client', or leave it out."))
        args = (Sym(_family_name(family)), Sym(_type_name(type))) + ((proto,) if proto else ())
        start = time.perf_counter()
        try:
            s = socket.socket(family, type, proto)
        except BaseException as exc:
            trace.record(side, "socket", args, error=exc, start=start)
            raise
        trace.record(side, "socket", args, result=Sym(f"<{side} socket>"), start=start)
        return cls(s, trace, side, owner)

    def _if_never_connected(self, exc: OSError, call: str) -> None:
        """A send on a TCP socket that is not connected: one that timed out while still connecting
        waited for the connection, not for the peer to read; a broken pipe on one never connected
        (no local port yet) is not a peer that closed. ``exc`` then explains itself so."""
        if self.sock.type != socket.SOCK_STREAM or self.sock.fileno() == -1:
            return
        from .errors import on_listener, send_before_connected, send_unconnected
        if hasattr(socket, "SO_ACCEPTCONN") and self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            exc.socklab_explanation = functools.partial(on_listener, exc, call)
            return
        if isinstance(exc, BrokenPipeError):
            address = self.sock.getsockname()
            if isinstance(address, tuple) and address[1] == 0:
                exc.socklab_explanation = functools.partial(send_unconnected, exc, call)
            return
        try:
            self.sock.getpeername()
        except OSError as e:
            if e.errno == errno.ENOTCONN:
                exc.socklab_explanation = functools.partial(send_before_connected, exc, call)

    # ---- recording helper
    def _note_socket(self, exc: BaseException) -> None:
        """For explain(): the family and type of the socket an error came from (a send timeout
        means another thing on an AF_UNIX datagram socket than on a TCP one)."""
        if isinstance(exc, OSError) and getattr(exc, "socklab_type", None) is None:
            exc.socklab_family, exc.socklab_type = self.sock.family, self.sock.type

    def _do(self, call, fn, args, shown_args=None, nbytes_of=None, show_result=None):
        start = time.perf_counter()
        try:
            r = fn(*args)
        except BaseException as exc:
            self._note_socket(exc)
            self.trace.record(self.side, call, shown_args if shown_args is not None else args,
                              error=exc, start=start)
            raise
        n = nbytes_of(r) if nbytes_of else None
        self.trace.record(self.side, call, shown_args if shown_args is not None else args,
                          result=show_result(r) if show_result else r, nbytes=n, start=start)
        return r

    # ---- traced calls
    def setsockopt(self, level, opt, value):
        return self._do("setsockopt", self.sock.setsockopt, (level, opt, value),
                        (_sym("level", level), _sym("opt", opt), value))

    def settimeout(self, t):
        return self._do("settimeout", self.sock.settimeout, (t,))

    def setblocking(self, flag):
        return self._do("setblocking", self.sock.setblocking, (flag,))

    def bind(self, address):
        return self._do("bind", self.sock.bind, (address,))

    def listen(self, *backlog):
        return self._do("listen", self.sock.listen, backlog)

    def accept(self, conn_side: str | None = None):
        """Accept a connection; the new socket is traced as its own side (e.g. 'server/conn1')."""
        start = time.perf_counter()
        try:
            conn, addr = self.sock.accept()
        except BaseException as exc:
            self._note_socket(exc)
            self.trace.record(self.side, "accept", (), error=exc, start=start)
            raise
        side = conn_side or self.trace.new_side(f"{self.side}/conn")
        if side.endswith("/conn"):
            side += "1"
        self.trace.record(self.side, "accept", (), result=(Sym(f"<{side}>"), addr), start=start)
        new = TracedSocket(conn, self.trace, side, self.owner)
        if self.registry_key is not None:  # a listener of socklab.socket(): its connections too
            from . import runtime
            # Called from a cell, a re-run of that cell closes the connection its last run
            # accepted; called in a thread (a Background accept), only stop_all() does.
            new.registry_key = (runtime.caller_key(2) if runtime.in_cell()
                                else f"{self.registry_key}/{side}/{id(new)}")
            runtime.register(new.registry_key, new, explicit=False)
        return new, addr

    def connect(self, address):
        return self._do("connect", self.sock.connect, (address,))

    def connect_ex(self, address):
        return self._do("connect_ex", self.sock.connect_ex, (address,))

    def send(self, data, flags=0):
        try:
            return self._do("send", self.sock.send, (data, flags), (_payload(data),), nbytes_of=int)
        except (TimeoutError, BrokenPipeError) as exc:
            self._if_never_connected(exc, "send")
            raise

    def sendall(self, data, flags=0):
        # Written out like recv(): a folded call of a long run builds no preview of its data.
        start = time.perf_counter()
        try:
            r = self.sock.sendall(data, flags)
        except BaseException as exc:
            self._note_socket(exc)
            self.trace.record(self.side, "sendall", (_payload(data),), error=exc, start=start)
            if isinstance(exc, (TimeoutError, BrokenPipeError)):
                self._if_never_connected(exc, "sendall")
            raise
        n = len(data) if data.__class__ is bytes else memoryview(data).nbytes
        if self.trace.fold(self.side, "sendall", n) is None:
            self.trace._append(self.side, "sendall", (Data(data),), None, None, n, start, True)
        return r

    def sendto(self, data, address):
        return self._do("sendto", self.sock.sendto, (data, address), (_payload(data), address),
                        nbytes_of=int)

    def recv(self, bufsize, flags=0):
        # Written out rather than through _do: this is the hot path of bulk transfers.
        start = time.perf_counter()
        args = (bufsize, flags) if flags else (bufsize,)
        try:
            r = self.sock.recv(bufsize, flags)
        except BaseException as exc:
            self._note_socket(exc)
            self.trace.record(self.side, "recv", args, error=exc, start=start)
            raise
        if not r:  # end of stream: its own event, and the end of the run
            self.trace._append(self.side, "recv", args, r, None, 0, start, False, payload=True)
        elif self.trace.fold(self.side, "recv", len(r)) is None:
            self.trace._append(self.side, "recv", args, r, None, len(r), start, True, payload=True)
        return r

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Like socket.recv_into(); traced as the recv() it does, so the trace shows the data."""
        view = memoryview(buffer).cast("B")
        if not 0 <= nbytes <= len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    # socket.socket's own: a file object over this socket that reads with recv_into() and writes
    # with send(), so a handler may use conn.makefile("rb").readline(); its reads are traced.
    makefile = socket.socket.makefile

    def _decref_socketios(self):  # a makefile() object was closed
        self._io_refs = max(0, self._io_refs - 1)

    def recvfrom(self, bufsize, flags=0):
        return self._do("recvfrom", self.sock.recvfrom, (bufsize, flags) if flags else (bufsize,),
                        nbytes_of=lambda r: len(r[0]), show_result=lambda r: (Data(r[0]), r[1]))

    def recvmsg(self, bufsize, ancbufsize=0, flags=0):
        """recvmsg(): data, ancillary data, flags (MSG_TRUNC shows a truncated datagram), address."""
        return self._do("recvmsg", self.sock.recvmsg, (bufsize, ancbufsize, flags),
                        (bufsize,) + ((ancbufsize, flags) if ancbufsize or flags else ()),
                        nbytes_of=lambda r: len(r[0]),
                        show_result=lambda r: (Data(r[0]), r[1], r[2], r[3]))

    def shutdown(self, how=socket.SHUT_RDWR):
        name = {socket.SHUT_RD: "SHUT_RD", socket.SHUT_WR: "SHUT_WR",
                socket.SHUT_RDWR: "SHUT_RDWR"}.get(how, how)
        return self._do("shutdown", self.sock.shutdown, (how,), (Sym(name),))

    def close(self):
        """Close once; later calls do nothing (like socket.close)."""
        if self._closed:
            return
        self._closed = True
        self._do("close", self.sock.close, ())
        if self.registry_key is not None:  # made by socklab.socket(): no longer running
            from . import runtime
            runtime.unregister(self.registry_key, self)

    stop = close

    # ---- untraced helpers
    @property
    def closed(self) -> bool:
        return self._closed or self.sock.fileno() == -1

    def fileno(self):
        return self.sock.fileno()

    def _untraced(self, call, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:  # closed, or not connected: explained like a traced call's error
            from .errors import explained
            raise explained(exc, call=call) from None

    def getsockname(self):
        return self._untraced("getsockname", self.sock.getsockname)

    def getpeername(self):
        return self._untraced("getpeername", self.sock.getpeername)

    def gettimeout(self):
        return self.sock.gettimeout()

    def getsockopt(self, *args):
        """Untraced: reading an option changes nothing."""
        return self._untraced("getsockopt", self.sock.getsockopt, *args)

    @property
    def family(self):
        return self.sock.family

    @property
    def type(self):
        return self.sock.type

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<TracedSocket {self.side} {_family_name(self.sock.family)} " \
               f"{_type_name(self.sock.type)} {state}>"
