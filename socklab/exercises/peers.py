"""Adversarial but fair peers for the checks, on real loopback sockets.

* ``send_chunks``: sends a message cut into chunks of random sizes (seeded, 1..4096 bytes),
  optionally pausing between chunks (a *slow* peer: it waits on the case's stop Event with a
  timeout, so that stopping the case ends a pause at once), then keeps the connection open,
  half-closes or closes early.
* ``read_all``: reads what the learner's code sends until the peer closes or a deadline passes.
* ``Observed``: the learner's end of a connection, a real socket whose calls are counted (so the
  feedback can say "you called recv() once").

Every blocking call has a timeout. Knows nothing of Jupyter.
"""
from __future__ import annotations

import collections
import inspect
import socket
import sys
import threading
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock
from dataclasses import dataclass, field

from ..trace import TracedSocket
from .core import Context

MAX_CHUNK = 4096
COUNTED = ("recv", "recv_into", "recvfrom", "recvfrom_into", "send", "sendall", "sendto", "sendmsg",
           "settimeout", "setblocking", "close", "shutdown", "connect", "accept", "makefile")


class Observed:
    """A real socket, handed to the learner's function, whose calls are counted.

    Anything not counted is passed straight to the socket (``fileno``, ``getsockname``, ...),
    so it works with selectors, ``sendall`` with memoryviews, ``with`` blocks and so on.
    ``calls['recv']`` is how many times recv was called; ``returned['recv']`` the sizes it returned
    (``returned['makefile']``: the buffering each makefile() asked for).
    """

    def __init__(self, sock: socket.socket):
        object.__setattr__(self, "_sock", sock)
        object.__setattr__(self, "calls", collections.Counter())
        object.__setattr__(self, "returned", collections.defaultdict(list))
        object.__setattr__(self, "asked", collections.defaultdict(list))  # recv()'s bufsize
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_ended", 0)  # counted calls that returned or raised

    @property
    def sock(self) -> socket.socket:
        return self._sock

    def __getattr__(self, name):
        attr = getattr(self._sock, name)
        if name not in COUNTED or not callable(attr):
            return attr

        def counted(*args, **kw):
            with self._lock:
                self.calls[name] += 1
                if name == "recv" and args and isinstance(args[0], int):
                    self.asked[name].append(args[0])
            try:
                r = attr(*args, **kw)
            finally:
                with self._lock:
                    object.__setattr__(self, "_ended", self._ended + 1)
            if name in ("recv", "recvfrom"):
                data = r[0] if name == "recvfrom" else r
                with self._lock:
                    self.returned[name].append(len(data))
            elif name in ("send", "recv_into") and isinstance(r, int):
                with self._lock:
                    self.returned[name].append(r)
            elif name == "makefile":  # its buffering: a buffered file reads ahead
                with self._lock:
                    self.returned[name].append(kw.get("buffering", args[1] if len(args) > 1 else None))
            return r
        counted.__name__ = name
        return counted

    def in_call(self) -> bool:
        """Whether one of the counted calls (recv, send, ...) is running right now."""
        with self._lock:
            return sum(self.calls.values()) > self._ended

    def eofs(self) -> int:
        """How many recv()/recv_into() calls returned no bytes (b'' once the peer has closed)."""
        with self._lock:
            return self.returned["recv"].count(0) + self.returned["recv_into"].count(0)

    def __setattr__(self, name, value):
        setattr(self._sock, name, value)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._sock.close()

    def __repr__(self):
        return f"<socket {self._sock.family.name} {self._sock.type.name} given by the check>"


class HandlerConn:
    """The ``conn`` a learner's handler gets from the check's socklab Server: the server's traced
    connection, plus the rest of ``socket.socket``'s API, so that a right handler is not refused
    for the calls it chose.

    ``recv_into`` and ``makefile`` read through the traced ``recv()`` (so the check sees those
    reads, and the server's cap on one read still holds); anything else the traced connection
    lacks (``sendfile``, ``getsockopt`` ...) is the real socket's."""

    def __init__(self, conn):
        self._conn = conn
        self._io_refs = 0  # what socket.socket.makefile() counts

    @property
    def sock(self) -> socket.socket:
        return self._conn.sock

    def __getattr__(self, name):
        if name.startswith("__") or name == "_conn":
            raise AttributeError(name)
        try:
            return getattr(self._conn, name)
        except AttributeError:
            return getattr(self._conn.sock, name)

    def recv_into(self, buffer, nbytes=0, flags=0):
        view = memoryview(buffer).cast("B")
        if nbytes < 0 or nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self._conn.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self.recv_into(buffer, nbytes, flags), self._conn.getpeername()

    makefile = socket.socket.makefile  # reads with self.recv_into, writes with self.send

    def _decref_socketios(self):  # a makefile() object was closed
        self._io_refs = max(0, self._io_refs - 1)

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return repr(self._conn)


@dataclass
class PeerLog:
    """What a peer did and saw (read by the case when it judges the learner's code)."""

    sent: int = 0
    planned: list = field(default_factory=list)   # the chunk sizes it was going to send
    chunks: list = field(default_factory=list)    # the chunks sent so far
    received: bytearray = field(default_factory=bytearray)
    closed_by_learner: bool = False
    sent_when_done: int | None = None  # what it had sent when the learner's side returned or closed
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def chunk_sizes(rng, total: int, low: int = 1, high: int = MAX_CHUNK) -> list:
    """Random sizes in [low, high] adding up to ``total``."""
    sizes = []
    while total > 0:
        n = min(total, rng.randint(low, high))
        sizes.append(n)
        total -= n
    return sizes


def tcp_pair(ctx: Context, nodelay: bool = True, learner_timeout: float | None = None,
             peer_timeout: float = 5.0):
    """A connected TCP pair on loopback: (the learner's end as Observed, the peer's end).

    The learner's end blocks like a fresh socket (no timeout) unless ``learner_timeout`` is given:
    the check's time limit is what ends a wait that never ends."""
    with socket.create_server(("127.0.0.1", 0)) as lst:
        lst.settimeout(5)
        a = ctx.own(socket.create_connection(lst.getsockname(), timeout=5))
        b, _ = lst.accept()
        ctx.own(b)
    for s in (a, b):
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a.settimeout(learner_timeout)
    b.settimeout(peer_timeout)
    return Observed(a), b


def send_chunks(ctx: Context, sock: socket.socket, data: bytes, sizes=None, *, pause: float = 0.0,
                then: str = "keep", log: PeerLog | None = None, gate=None) -> PeerLog:
    """In a peer thread: send ``data`` cut at ``sizes`` (default: random 1..4096), waiting
    ``pause`` s after each chunk (or ``pause[k]`` after chunk k, for a list); then 'keep' the
    connection open, 'shutdown' (SHUT_WR) or 'close'.

    ``gate(k)``, if given, is waited for (up to 0.5 s) before chunk k (k >= 1) is sent: e.g. "the
    learner's recv() has returned k times", so that chunks stay apart however slow the learner's
    thread is (no timing luck)."""
    log = log or PeerLog()
    sizes = list(sizes) if sizes is not None else chunk_sizes(ctx.rng, len(data))
    log.planned = sizes

    def run():
        try:
            i = 0
            for k, n in enumerate(sizes):
                if ctx.stop.is_set():
                    return
                if gate is not None and k and not wait_for(lambda: gate(k), 0.5, ctx.stop, 0.002):
                    if ctx.stop.is_set():
                        return
                sock.sendall(data[i:i + n])
                i += n
                log.sent += n
                log.chunks.append(n)
                wait = pause[k] if isinstance(pause, (list, tuple)) else pause
                if wait and ctx.stop.wait(wait):
                    return
            if then == "shutdown":
                sock.shutdown(socket.SHUT_WR)
            elif then == "close":
                sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.error = exc
        finally:
            log.finished.set()

    ctx.spawn(run, name="sender")
    return log


STALL_CHECK = 0.02  # s between looks at whether a peer can still send (read_all's stalled)


def read_all(sock: socket.socket, timeout: float, limit: int = 1 << 24, until: bytes | None = None,
             expect: int | None = None, stalled=None):
    """Read until the peer closes (b''), ``until`` has arrived, ``expect`` bytes arrived, or
    ``timeout`` s have passed. Returns (data, how) with how 'closed', 'complete', 'timeout' or
    'reset'; or 'stalled' when ``stalled()`` (checked each time 20 ms pass without data) says
    that nothing more can come, so a wrong reply is judged at once instead of after ``timeout``."""
    deadline = monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - monotonic()
        if left <= 0:
            return bytes(buf), "timeout"
        sock.settimeout(left if stalled is None else min(left, STALL_CHECK))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if stalled is None or monotonic() >= deadline:
                return bytes(buf), "timeout"
            if not stalled():
                continue
            # stalled() holds only once what the peer sent is in this socket: take all of it.
            sock.setblocking(False)
            try:
                while chunk := sock.recv(65536):
                    buf += chunk
            except BlockingIOError:
                return bytes(buf), "stalled"
            except OSError:
                return bytes(buf), "reset"
            return bytes(buf), "closed"
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        except OSError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "closed"
        buf += chunk
        if until is not None and until in buf:
            return bytes(buf), "complete"
        if expect is not None and len(buf) >= expect:
            return bytes(buf), "complete"
        if len(buf) > limit:
            return bytes(buf), "complete"


def waiting_in(thread, calls=(("socket.py", "accept"), ("selectors.py", "select"))) -> bool:
    """Whether ``thread`` is inside one of ``calls`` (file name ending, function name) right now:
    e.g. blocked in accept(). Read from its current Python stack."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if any(code.co_filename.endswith(f) and code.co_name == n for f, n in calls):
            return True
        frame = frame.f_back
    return False


def _recv_call_line() -> int:
    """The line of TracedSocket.recv that calls the OS's recv()."""
    lines, first = inspect.getsourcelines(TracedSocket.recv)
    return first + next(i for i, ln in enumerate(lines) if "self.sock.recv(" in ln)


_RECV_LINE = _recv_call_line()


def blocked_in_recv(thread) -> bool:
    """Whether ``thread`` is inside the OS's recv() of a traced socket right now: not just before
    or after it, where the trace may not have counted the bytes yet. Read from its Python stack."""
    frame = sys._current_frames().get(thread.ident)
    return (frame is not None and frame.f_code is TracedSocket.recv.__code__
            and frame.f_lineno == _RECV_LINE)


def unacked(sock) -> int | None:
    """Bytes ``sock`` has sent that its peer has not acknowledged yet (Linux's SIOCOUTQ); None
    where that cannot be read. 0 means everything sent is in the peer's receive queue."""
    try:
        import fcntl
        import termios
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except (ImportError, AttributeError, OSError, ValueError):
        return None  # no such ioctl here (macOS, Windows), or the socket was closed meanwhile
    return int.from_bytes(out, sys.byteorder, signed=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for exercises about fixed ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_returns(observed: "Observed"):
    """A gate for send_chunks: chunk k waits until the learner's recv()/recv_into() returned k times."""
    return lambda k: len(observed.returned["recv"]) + len(observed.returned["recv_into"]) >= k


def wait_for(pred, timeout: float, stop: threading.Event, step: float = 0.01) -> bool:
    """Wait until ``pred()`` is true, checking every ``step`` s on an Event (not sleeping)."""
    deadline = monotonic() + timeout
    while True:
        if pred():
            return True
        left = deadline - monotonic()
        if left <= 0 or stop.wait(min(step, left)):
            return bool(pred())


def plural(n: int, word: str) -> str:
    """'1 chunk', '4 chunks'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def shorten(data: bytes, n: int = 40) -> str:
    """A short repr of bytes for feedback: b'hello'... (123 bytes). Anything else (what a learner's
    function returned instead of bytes) is shown as what it is: str 'hello'."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return f"{type(data).__name__} {data!r:.{n}}"
    data = bytes(data)
    if len(data) <= n:
        return repr(data)
    return f"{data[:n]!r}... ({len(data)} bytes)"
