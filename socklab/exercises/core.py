"""The checking core: exercises, bounded runs of a learner's code, results with specific feedback.

Plain Python, no Jupyter. A check runs the learner's function in a daemon *worker thread* against
real sockets and real peers, with a hard time limit. When the learner's code does not return in
time, the check says so ("is a recv waiting for data that never comes?") and ends it: it shuts
down every socket the case and the learner's code opened (a blocked ``recv``/``accept`` wakes up),
then raises an exception inside the learner's thread (which ends a loop that never blocks). A
thread that still cannot be ended (e.g. waiting on a lock with no timeout) is recorded in
``stuck_threads()``; it holds no socket any more, and the kernel stays usable.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import random
import socket
import sys
import threading
import time
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock
import traceback
import weakref
import zlib
from dataclasses import dataclass, field

from ..errors import explain
from ..runtime import Thread

DEFAULT_LIMIT = 3.0   # seconds the learner's code may run in one call
_SOCKET = socket.socket  # bound here: learner code may assign socket.socket = None meanwhile
GRACE = 2.0           # seconds to end a learner thread after its time is up
JOIN_TIMEOUT = 5.0    # seconds to join a peer thread of the checker itself
HOPELESS_CHECK = 0.02  # seconds between looks at whether waiting for the learner's code is hopeless
WAKE_GRACE = 0.2      # seconds woken learner threads get to return before an exception is raised in them

_stuck: list = []     # descriptions of learner threads that could not be ended
_stuck_lock = threading.Lock()


def stuck_threads() -> list:
    """Learner threads that ran past their limit and could not be ended (usually empty)."""
    with _stuck_lock:
        return [d for d, t in _stuck if t.is_alive()]


# ---- outcomes of a case

class Fail(Exception):
    """The learner's code did something wrong; ``lines`` is the feedback (first line first)."""

    def __init__(self, *lines: str):
        super().__init__(lines[0] if lines else "")
        self.lines = [ln for ln in lines if ln]


class NotAttempted(Exception):
    """The learner's code is still the stub (it raised NotImplementedError)."""

    def __init__(self, what: str = "your code"):
        super().__init__(what)
        self.what = what


class DidNotReturn(Exception):
    """The learner's code ran past its limit, or (``never``) was seen in a loop it cannot leave."""

    def __init__(self, what: str, limit: float, why: str, stuck: str = "", never: bool = False):
        self.what, self.limit, self.why, self.stuck, self.never = what, limit, why, stuck, never
        super().__init__(self.lines()[0])

    def lines(self) -> list:
        out = [f"{self.what} would never return: {self.why}" if self.never else
               f"{self.what} did not return within {self.limit:g} s: {self.why}"]
        if self.stuck:
            out.append(self.stuck)
        return out


class LearnerRaised(Exception):
    """The learner's code raised ``error`` (kept unchanged for the case to judge)."""

    def __init__(self, error: BaseException, what: str):
        self.error, self.what = error, what
        super().__init__(f"{what} raised {error!r}")

    def lines(self, context: str = "") -> list:
        return raised_lines(self.error, self.what, context)


class CheckAbandoned(BaseException):
    """Raised inside learner code that ran past its time limit, to end it (not an Exception, so a
    learner's ``except Exception:`` does not swallow it)."""


_excepthook = threading.excepthook


def _quiet_when_abandoned(args, then=None) -> None:
    """A thread the learner started, ended by the check with CheckAbandoned: that is our signal,
    not an error, so no traceback of socklab's internals in the learner's cell. An exception of a
    thread the learner's code started during a check goes into the check's feedback instead
    (``Context.thread_errors``). Others go on to ``then`` (the hook in force before)."""
    if args.exc_type is not None and issubclass(args.exc_type, CheckAbandoned):
        return
    ctx = _watched
    if ctx is not None and isinstance(args.exc_value, Exception) and _raised_in_learner_code(args):
        if not ctx._closing:  # while the case closes its sockets, errors are the check's doing
            ctx.thread_errors.append(args.exc_value)
        return
    (then or _excepthook)(args)


def _raised_in_learner_code(args) -> bool:
    """A thread's exception that went through the learner's code: a thread it started (whose
    ``_target`` is gone by now: Thread.run() deletes it before the hook runs)."""
    name = getattr(args.thread, "name", "")
    if name.startswith(("socklab", "exercise-")):
        return False
    tb = args.exc_traceback
    while tb is not None:
        if is_learner_file(tb.tb_frame.f_code.co_filename):
            return True
        tb = tb.tb_next
    return False


threading.excepthook = _quiet_when_abandoned


def _quiet_unraisable(args, then) -> None:
    """CheckAbandoned can land where Python cannot raise it (a weakref callback, a __del__): it is
    then "ignored", and the check raises it again. Our signal, not an error: nothing printed.
    Others go on to ``then`` (the hook in force before the check)."""
    if args.exc_type is not None and issubclass(args.exc_type, CheckAbandoned):
        return
    then(args)


def raised_lines(error: BaseException, what: str, context: str = "") -> list:
    """Feedback for an exception from the learner's code: socket errors explained with
    socklab.explain, anything else as Python says it; plus where in the learner's code it happened."""
    exp = explain(error)
    name = type(error).__name__
    socket_error = exp.why != "This is not a socket error from the OS."
    ctx = f" {context}" if context else ""
    if socket_error:
        lines = [f"{what} raised {name}{ctx}: {exp.title}.", f"What happened: {exp.what}",
                 f"How to fix: {exp.fix}"]
    else:
        lines = [f"{what} raised {name}{ctx}" + (f": {error}" if str(error) else ".")]
    at = where(error)
    if at:
        lines.insert(1, at)
    return lines


_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the socklab package
_STDLIB = os.path.dirname(os.__file__)


def is_learner_file(filename: str) -> bool:
    """Code that is neither socklab's, nor the standard library's, nor an installed package's."""
    return not filename.startswith((_HERE, _STDLIB)) and "site-packages" not in filename


def started_by_learner(t: threading.Thread) -> bool:
    """A thread whose target (or overridden run()) is the learner's own code."""
    fn = getattr(t, "_target", None)
    if fn is None and type(t).run is not threading.Thread.run:
        fn = type(t).run
    code = getattr(fn, "__code__", None)
    return code is not None and is_learner_file(code.co_filename)


def where(error: BaseException) -> str:
    """'At line 3 of your code (in make_server): s = socket.socket()', from the traceback."""
    import linecache
    tb, found = error.__traceback__, None
    while tb is not None:
        if is_learner_file(tb.tb_frame.f_code.co_filename):
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    code = found.tb_frame.f_code
    text = linecache.getline(code.co_filename, found.tb_lineno).strip()
    return f"At line {found.tb_lineno} of your code (in {code.co_name})" + (f": {text}" if text else "")


BUSY_CPU = 0.15  # share of its wall time code that waits may spend on the CPU (right code: ~1-3%)
# Share of its wall time code that never stops to wait spends on the CPU or ready to run but waiting
# for one (~100%: a busy machine gives it a small share of a CPU, the rest it waits); right code
# waits for a CPU only briefly after each wake-up (well under 10% even under load).
RUNNABLE = 0.75


def kept_cpu_busy(cpu: float, queued: float, wall: float) -> str:
    """'' if code that ran ``wall`` s, using ``cpu`` s of CPU time and waiting ``queued`` s for a
    CPU, let the kernel wake it; else how busy it was, for the feedback."""
    if cpu <= max(0.05, BUSY_CPU * wall) and cpu + queued <= RUNNABLE * wall:
        return ""
    more = (f", and waited {queued:.2f} s more for a CPU this busy machine shares (it never "
            "stopped to let the kernel wake it)" if queued >= 0.01 else "")
    return f"{cpu:.2f} s of CPU time in {wall:.2f} s{more}"


def cpu_queued() -> float:
    """Seconds the calling thread has so far spent ready to run but waiting for a CPU (Linux's
    /proc/thread-self/schedstat): a busy machine's doing, not the thread's; 0.0 where not known."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


# ---- a thread-safe view of the process's socket file descriptors (Linux /proc)

def socket_fds() -> set:
    """File descriptors of this process that are sockets (empty where /proc is missing)."""
    out = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                out.add(int(name))
        except OSError:
            continue  # closed meanwhile
    return out


def _fd_and_inode(sock_or_fd) -> tuple:
    """(descriptor, inode) of a socket or descriptor that is open; (-1, None) otherwise."""
    try:
        fd = sock_or_fd if isinstance(sock_or_fd, int) else sock_or_fd.fileno()
        return (fd, os.fstat(fd).st_ino) if fd >= 0 else (-1, None)
    except (OSError, ValueError, AttributeError):
        return -1, None


def shutdown_quietly(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass  # not connected, already closed or not a socket: nothing to wake


def shutdown_fd(fd: int) -> None:
    """shutdown(SHUT_RDWR) on a raw descriptor without taking it over: wakes a call blocked on it.

    For an unconnected UDP socket Linux reports ENOTCONN but still wakes the waiting recvfrom()."""
    try:
        s = _SOCKET(fileno=fd)
    except OSError:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.detach()


def _async_raise(thread: threading.Thread) -> bool:
    """Raise CheckAbandoned inside ``thread`` at its next Python instruction (CPython)."""
    if thread.ident is None or not thread.is_alive():
        return False
    try:
        n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                       ctypes.py_object(CheckAbandoned))
    except AttributeError:  # not CPython
        return False
    if n > 1:  # should never happen: undo
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)
        return False
    return n == 1


# ---- the sockets the learner's code creates and connects (CPython audit events)

MAX_MADE = 256  # sockets of one case held open for judging; more are left to the GC as usual


class _Call:
    """One call into the learner's code (run_learner): ``ended`` once it returned or raised."""

    __slots__ = ("ended",)

    def __init__(self):
        self.ended = False


@dataclass
class Made:
    """A socket the learner's code created (socket(), accept(), create_connection(), ...). The
    check holds it, so a socket the code forgot is still open when the case is judged, instead of
    being closed by the garbage collector whenever the code's last reference goes."""

    sock: object
    site: tuple            # (file, line, function) of the learner's code that created it
    thread: threading.Thread
    call: _Call | None     # the learner call that created it; None: a thread the learner started

    def done(self) -> bool:
        """Whether the code that created it has finished (so it can no longer close it)."""
        return self.call.ended if self.call is not None else not self.thread.is_alive()

    def left_open(self) -> bool:
        """Open and never closed: close() (or a with block) sets _closed; -1 is a socket whose
        creation failed."""
        return not getattr(self.sock, "_closed", True) and self.sock.fileno() != -1


@dataclass
class Connect:
    """A connect() or connect_ex() call of the learner's code, with the socket's timeout then."""

    sock: object
    timeout: float | None
    site: tuple
    address: object = None  # the address it connects to, as given to connect()


def _learner_site(frame) -> tuple:
    """(file, line, function) of the innermost frame of the learner's code from ``frame`` out."""
    while frame is not None:
        code = frame.f_code
        if is_learner_file(code.co_filename):
            return code.co_filename, frame.f_lineno, code.co_name
        frame = frame.f_back
    return "", 0, ""


def site_text(site: tuple) -> str:
    """'line 3 of your code (in make_server): s = socket.socket()'."""
    import linecache
    filename, line, func = site
    if not line:
        return "your code"
    text = linecache.getline(filename, line).strip()
    return f"line {line} of your code (in {func})" + (f": {text}" if text else "")


_watched = None  # the Context of the case being run by run_check, if any


def _audit(event: str, args: tuple) -> None:
    """CPython audit hook: note the sockets the learner's code creates and connects."""
    if event != "socket.__new__" and event != "socket.connect":
        return
    ctx = _watched
    if ctx is not None:
        ctx.observe(event, args[0], sys._getframe(1), args[1] if len(args) > 1 else None)


sys.addaudithook(_audit)  # a hook cannot be removed; while no check runs it returns at once


# ---- one case's world: peers, learner threads, clean-up

class Context:
    """What one case of a check owns: a seeded RNG, peer threads and sockets, learner threads.

    Every socket given to ``own()`` is shut down and closed at the end; every peer thread started
    with ``spawn()`` is joined; learner threads (``call()``, ``start()``, ``adopt()``) are ended.
    ``stop`` is set first, so peers waiting on it (slow peers wait on this Event, never sleep)
    return at once.
    """

    def __init__(self, exercise_id: str, seed: int, limit: float):
        self.exercise_id = exercise_id
        self.rng = random.Random(seed)
        self.limit = limit
        self.stop = threading.Event()
        self.notes: list = []          # extra feedback lines for a passing case (tips)
        self.learner_errors: list = []  # exceptions raised by learner code in adopted threads
        self.thread_errors: list = []   # ... and in threads the learner's code started itself
        self.thread_errors_shown = False  # a case that puts them in its own feedback sets this
        self._sockets: list = []
        self._peers: list = []
        self._learner: list = []
        self._inside: dict = {}           # thread -> its _Call while it runs the learner's code
        self._inside_lock = threading.Lock()
        self._given_up: set = set()       # learner threads that could not be ended
        self._own_lock = threading.Lock()
        self._closing = False
        self._closers: list = []
        self._fds: dict = {}              # id(owned socket) -> (fd, inode) when it was owned
        self._released: set = set()       # id()s of sockets owned only because the code raised
        self._fds_before = socket_fds()
        self._threads_before = set(threading.enumerate())
        self._checker = threading.current_thread()
        self._others: list = []  # weak refs: sockets that code from before the case made during it
        self.peer_errors: list = []    # exceptions of the checker's own peer threads
        self.stuck = ""
        self.made: list = []       # Made: sockets the learner's code created (while watched)
        self.connects: list = []   # Connect: connect() calls of the learner's code (while watched)

    # -- ownership
    def own(self, sock):
        """Close ``sock`` at the end of the case (and shut it down to wake whoever waits on it).
        A peer thread that gets a socket while the case is being closed has it closed at once."""
        with self._own_lock:
            if not self._closing:
                self._sockets.append(sock)
                self._fds[id(sock)] = _fd_and_inode(sock)
                return sock
        shutdown_quietly(sock)
        sock.close()
        return sock

    def later(self, fn) -> None:
        """Call ``fn()`` at the end of the case (before sockets are closed), e.g. ``server.stop``."""
        self._closers.append(fn)

    def spawn(self, fn, *args, name: str = "peer") -> threading.Thread:
        """Run a peer of the checker in a daemon thread; joined at the end of the case."""
        t = Thread(target=self._guard(fn), args=args,
                   name=f"socklab-exercise-{name}")
        t.start()
        self._peers.append(t)  # once started: close() joins it (an unstarted one cannot be joined)
        return t

    def _guard(self, fn):
        def run(*args):
            try:
                fn(*args)
            except Exception as exc:  # a peer failing is an observation, kept for the case
                self.peer_errors.append(exc)
        return run

    # -- what the learner's code does with sockets
    def learner_call(self, t: threading.Thread):
        """(True, call) if ``t`` is running the learner's code right now (call is None for a thread
        the learner's code started), else (False, None)."""
        inside = self._inside.get(t)
        if inside is not None:
            return (True, inside) if inside else (False, None)
        if t in self._threads_before or t.name.startswith("socklab") or t in self._peers:
            return False, None
        return started_by_learner(t), None

    def observe(self, event: str, sock, frame, address=None) -> None:
        """Audit event ``event`` (socket.__new__ or socket.connect to ``address``) for ``sock``:
        note it if it comes from the learner's code. Runs inside the socket call: must not raise."""
        t = threading.current_thread()
        ours, call = self.learner_call(t)
        if not isinstance(sock, _SOCKET):
            return
        if not ours:
            # e.g. a server started in an earlier cell accepting a client meanwhile: not the
            # case's to wake (wake() shuts down the other sockets opened during the case)
            if t in self._threads_before and t is not self._checker:
                self._others.append(weakref.ref(sock))
            return
        site = _learner_site(frame)
        if event == "socket.connect":
            self.connects.append(Connect(sock, sock.gettimeout(), site, address))
        elif len(self.made) < MAX_MADE:
            self.made.append(Made(sock, site, threading.current_thread(), call))

    def unclosed(self) -> list:
        """Sockets the learner's code created, has finished with, never closed, and did not hand
        to the check (a returned socket is owned by the case; one its raising code still held is
        owned too, but was not handed over: it counts)."""
        return [m for m in self.made if m.done() and m.left_open()
                and (id(m.sock) not in self._fds or id(m.sock) in self._released)]

    # -- running learner code
    def start(self, fn, *args, what: str = "your function", on_end=None) -> "Run":
        """Start ``fn(*args)`` in a learner thread; returns a Run to wait for. ``on_end(run)``, if
        given, is called in that thread as soon as ``fn`` has returned or raised (before the Run
        is done)."""
        run = Run(self, fn, args, what, on_end)
        run.thread.start()
        self._learner.append(run.thread)  # once started: an unstarted thread cannot be joined
        return run

    def call(self, fn, *args, limit: float | None = None, what: str = "your function",
             why: str = "is a recv waiting for data that never comes? set a timeout",
             diagnose=None, hopeless=None):
        """``fn(*args)`` in a learner thread, bounded by ``limit`` seconds.

        Returns its value; raises LearnerRaised (its exception), NotAttempted (NotImplementedError)
        or DidNotReturn (after ending the thread). ``diagnose()``, if given, is asked for a better
        ``why`` when the time is up (it can look at what the peers saw). ``hopeless()``, if given,
        is asked every 20 ms: True (e.g. recv() keeps returning b'' and the code keeps calling
        it) ends the wait at once, as if the time were up."""
        return self.start(fn, *args, what=what).result(limit or self.limit, why, diagnose, hopeless)

    def adopt(self, fn, what: str = "your handler"):
        """Wrap a learner callback (e.g. a server handler) so that the thread running it is known
        (and can be ended) and its exceptions are kept in ``learner_errors``."""
        def adopted(*args):
            self._learner.append(threading.current_thread())
            ok, value = self.run_learner(fn, args)
            if not ok and value is not None:
                self.learner_errors.append(value)
            return value if ok else None
        adopted.__name__ = getattr(fn, "__name__", "handler")
        return adopted

    def run_learner(self, fn, args):
        """Call the learner's ``fn(*args)`` in this thread: (True, value), (False, exception), or
        (False, None) when it was ended by the check. CheckAbandoned is raised into a thread only
        while it is inside ``fn`` (see end_learner_threads); one that arrives just after is caught
        here too, so it never reaches socklab's own code."""
        me = threading.current_thread()
        call = _Call()

        def leave():
            with self._inside_lock:
                self._inside[me] = False
            call.ended = True
        try:
            try:
                with self._inside_lock:
                    self._inside[me] = call
                try:
                    value = fn(*args)
                finally:
                    leave()
                return True, value
            except CheckAbandoned as exc:
                leave()
                self.release(exc)
                return False, None
            except BaseException as exc:  # judged by the case (NotImplementedError: not attempted)
                leave()
                self.release(exc)
                return False, exc
        except CheckAbandoned:  # arrived while leaving: nothing left to end
            leave()
            return False, None

    def raise_learner_errors(self, what: str = "your handler", context: str = "") -> None:
        """Turn the first exception of an adopted callback into NotAttempted or a Fail."""
        for exc in self.learner_errors:
            if isinstance(exc, NotImplementedError):
                raise NotAttempted(what)
        if self.learner_errors:
            raise Fail(*raised_lines(self.learner_errors[0], what, context))

    def release(self, exc: BaseException) -> None:
        """The learner's code raised ``exc``: own the sockets its frames still hold (they are closed
        at the end of the case, not whenever the garbage collector gets to them) and let go of the
        frames."""
        tb = exc.__traceback__
        frames = []
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in frames:
            for v in list(frame.f_locals.values()):
                items = list(v.values()) if isinstance(v, dict) else \
                    list(v) if isinstance(v, (list, tuple, set)) else [v]
                for item in items[:1000]:
                    sock = item if isinstance(item, _SOCKET) else getattr(item, "sock", None)
                    if isinstance(sock, _SOCKET) and sock not in self._sockets:
                        self.own(sock)
                        self._released.add(id(sock))
        traceback.clear_frames(exc.__traceback__)  # skips (does not raise for) running frames

    # -- waking and ending
    def learner_threads(self) -> list:
        """Threads running learner code: started by start()/adopt(), or started by the learner's
        own code during this case (anything new that is not a socklab or checker thread)."""
        mine = set(self._peers)
        out = [t for t in self._learner if t.is_alive()]
        for t in threading.enumerate():
            if t in self._threads_before or t in mine or t in out or not t.is_alive():
                continue
            if t.name.startswith("socklab") or t is threading.current_thread():
                continue
            if started_by_learner(t):  # not e.g. an executor thread the kernel started meanwhile
                out.append(t)
        return out

    def wake_own(self) -> None:
        """Shut down the case's own sockets (``own()``): its peers' blocked calls return at once."""
        with self._own_lock:
            socks = list(self._sockets)
        for s in socks:
            shutdown_quietly(s)

    def wake(self) -> None:
        """Shut down every socket of the case and every socket opened since it began, except
        those that threads running before the case (other than the check's) made meanwhile."""
        for s in self._sockets:
            shutdown_quietly(s)
        spare = set()
        for ref in self._others:
            s = ref()
            if s is not None and s.fileno() != -1:
                spare.add(s.fileno())
        for fd in socket_fds() - self._fds_before - spare:
            shutdown_fd(fd)

    def end_learner_threads(self, grace: float = GRACE) -> str:
        """End learner threads still running: wake sockets, then raise inside them. Returns a
        feedback line if some could not be ended (they are recorded in stuck_threads())."""
        alive = [t for t in self.learner_threads() if t not in self._given_up]
        if not alive:
            return ""
        # The case is judged by now: wake blocked calls at once, then give the threads a moment
        # to return on their own (a handler whose recv() now gives b'') before raising in them.
        self.wake()
        until = monotonic() + WAKE_GRACE
        for t in alive:
            t.join(max(0.0, until - monotonic()))
        alive = [t for t in alive if t.is_alive()]
        if not alive:
            return ""
        deadline = monotonic() + grace
        while alive and monotonic() < deadline:
            for t in alive:
                with self._inside_lock:
                    # Only into learner code: a thread of ours that is outside it (e.g. a socklab
                    # server thread between handlers) is ended by waking its sockets instead.
                    if self._inside.get(t, t not in self._learner):
                        _async_raise(t)
            # Give it time to run its own clean-up (finally: blocks) before raising again.
            until = min(deadline, monotonic() + 0.5)
            for t in alive:
                t.join(max(0.0, until - monotonic()))
            alive = [t for t in alive if t.is_alive()]
        if not alive:
            return ""
        self._given_up.update(alive)
        with _stuck_lock:
            _stuck[:] = [e for e in _stuck if e[1].is_alive()]  # ended since: only the live ones matter
            for t in alive:
                _stuck.append((f"{self.exercise_id}: {t.name}", t))
        return ("It could not be stopped and keeps running in the background (it waits on something "
                "that has no timeout); the check shut its sockets down. Restart the kernel if the notebook "
                "gets slow.")

    def close(self) -> str:
        """End everything the case started; returns a 'could not be stopped' line or ''."""
        self.stop.set()
        stuck = self.end_learner_threads()
        failed = []
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as exc:  # go on: the sockets below are shut down all the same
                failed.append(f"{type(exc).__name__}: {exc}")
        with self._own_lock:
            self._closing = True
            socks = list(self._sockets)
        for s in socks:
            shutdown_quietly(s)
            fd, inode = self._fds.get(id(s), (-1, None))
            try:
                _close_now(s)
            except OSError:
                pass  # the learner closed its descriptor with os.close(): nothing left to close
            if fd >= 0 and _fd_and_inode(fd) == (fd, inode):
                os.close(fd)  # still open after close(): the learner's code detach()ed the socket
        for m in self.made:
            if m.left_open():
                _close_now(m.sock)  # forgotten by the learner's code: closed now, not by the GC later
        self.made, self.connects = [], []
        for t in self._peers:
            t.join(JOIN_TIMEOUT)
        if stuck or self.stuck:
            return stuck or self.stuck  # a stuck learner thread is why a peer would not stop
        if failed:
            return (f"The check could not stop what it started ({'; '.join(failed)}). This is a "
                    "bug in socklab's exercise, not necessarily in your code: please report it.")
        return ""


def _close_now(sock) -> None:
    """Close ``sock`` and its descriptor now. socket.close() leaves the descriptor open while a
    makefile() of it is alive, and that file closes it later by number: after we had closed the
    number ourselves it would close whatever socket got that number next (a later check's)."""
    sock.close()
    if getattr(sock, "_io_refs", 0) > 0 and sock.fileno() != -1:
        sock._real_close()  # the file's later close then finds the descriptor closed (-1)


class Run:
    """One learner call in its own daemon thread."""

    def __init__(self, ctx: Context, fn, args, what: str, on_end=None):
        self.ctx, self.fn, self.args, self.what, self.on_end = ctx, fn, args, what, on_end
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.started = monotonic()
        self.elapsed = None
        self.thread = Thread(target=self._run,
                             name=f"exercise-{ctx.exercise_id}-learner")

    def _run(self):
        try:
            ok, value = self.ctx.run_learner(self.fn, self.args)
            if ok:
                self.value = value
            elif value is None:
                self.abandoned = True
            else:
                self.error = value
        finally:
            self.elapsed = monotonic() - self.started
            try:
                if self.on_end is not None:
                    self.on_end(self)  # before done: whoever waits for the Run sees what it noted
            finally:
                self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def result(self, limit: float, why: str = "", diagnose=None, hopeless=None):
        """Wait up to ``limit`` s (less if ``hopeless()`` says so); then the value, or LearnerRaised
        / NotAttempted / DidNotReturn."""
        deadline = self.started + limit
        gave_up = False
        while not self.done.wait(max(0.0, min(deadline - monotonic(),
                                              HOPELESS_CHECK if hopeless else limit))):
            if hopeless is None or monotonic() >= deadline:
                break
            if hopeless():
                gave_up = True
                break
        if not self.done.is_set():
            if diagnose is not None:
                try:
                    why = diagnose() or why
                except Exception as exc:  # the learner still hears that the code did not return
                    why = (f"{why} (the check could not say more: {type(exc).__name__}: {exc}. "
                           "This is a bug in socklab's exercise: please report it.)").strip()
            stuck = self.ctx.end_learner_threads()
            raise DidNotReturn(self.what, limit, why, stuck, never=gave_up)
        self.thread.join(JOIN_TIMEOUT)
        if self.error is not None:
            if isinstance(self.error, NotImplementedError):
                raise NotAttempted(self.what)
            raise LearnerRaised(self.error, self.what)
        return self.value


# ---- exercises and results

@dataclass
class Case:
    """One scenario of a check: ``fn(ctx, *solution)`` raises Fail (or lets LearnerRaised /
    DidNotReturn / NotAttempted through) when the learner's code does not do it right."""

    name: str
    fn: object
    limit: float | None = None


@dataclass
class Exercise:
    """An exercise: id ('05.1'), title, learner-facing task (markdown), hints, names of the
    learner's functions, and the cases its check runs."""

    id: str
    title: str
    task: str
    hints: list
    names: tuple
    cases: list
    limit: float = DEFAULT_LIMIT
    anchor: str = ""   # text of the notebook's existing exercise cell this one replaces, if any
    close_tip: str = ""  # added to the feedback when the code leaves a socket it created open

    @property
    def notebook(self) -> str:
        return self.id.split(".")[0]

    def seed(self, i: int) -> int:
        return zlib.crc32(f"{self.id}/{i}".encode())

    @property
    def bound(self) -> float:
        """An upper bound in seconds for a whole check (every case at its limit, plus clean-up)."""
        return sum((c.limit or self.limit) + GRACE + 1.0 for c in self.cases)


@dataclass
class CaseResult:
    name: str
    status: str          # 'passed', 'failed', 'not run'
    lines: list = field(default_factory=list)


@dataclass
class Result:
    """What a check found: ``passed``, ``status`` ('passed', 'failed', 'not attempted') and the
    feedback, case by case. ``text()`` is the plain form; in Jupyter it also shows as HTML."""

    exercise_id: str
    title: str
    status: str
    cases: list = field(default_factory=list)
    lines: list = field(default_factory=list)   # general feedback (not tied to one case)
    notes: list = field(default_factory=list)   # tips for a solution that passed

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def feedback(self) -> list:
        """Every feedback line, in order (general lines, then each failed case's lines)."""
        out = list(self.lines)
        for c in self.cases:
            if c.status == "failed":
                out += c.lines
        return out + self.notes

    def headline(self) -> str:
        n_ok = sum(c.status == "passed" for c in self.cases)
        if self.status == "passed":
            return f"✅ {self.exercise_id} {self.title}: passed ({n_ok} of {len(self.cases)} checks)"
        if self.status == "not attempted":
            return f"✏️ {self.exercise_id} {self.title}: not attempted yet"
        return f"❌ {self.exercise_id} {self.title}: not yet ({n_ok} of {len(self.cases)} checks passed)"

    def text(self) -> str:
        out = [self.headline()]
        out += [f"  {ln}" for ln in self.lines]
        for c in self.cases:
            mark = {"passed": "✓", "failed": "✗", "not run": "·"}[c.status]
            suffix = " (not run)" if c.status == "not run" else ""
            out.append(f"  {mark} {c.name}{suffix}")
            out += [f"      {ln}" for ln in c.lines]
        out += [f"  Tip: {n}" for n in self.notes]
        return "\n".join(out)

    __str__ = text

    def __repr__(self):
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None):
        from ..render.exercises import result_html
        return {"text/plain": self.text(), "text/html": result_html(self)}


NOT_ATTEMPTED = ("Write your solution in the cell above (replace `raise NotImplementedError()`), "
                 "run that cell, then run this one again. Stuck? Run the hint cell below.")


# Module attributes the checks use, as they were at import: learner code that assigns to one
# (socket.socket = None) is told so, and the attribute is put back after each case.
_SHARED = {(m, a): getattr(m, a) for m, names in (
    (socket, ("socket", "create_connection", "socketpair", "getaddrinfo")),
    (threading, ("Thread", "Event", "Lock")),
    (time, ("monotonic", "perf_counter", "sleep")),
    (os, ("close", "unlink", "fstat"))) for a in names}
_checking = threading.Lock()  # one check at a time: a solution must not run a check itself


def _put_back_shared() -> list:
    """Restore every attribute of _SHARED that was replaced; return their names."""
    replaced = []
    for (mod, attr), value in _SHARED.items():
        if getattr(mod, attr, None) is not value:
            setattr(mod, attr, value)
            replaced.append(f"{mod.__name__}.{attr}")
    return replaced


class CheckInterrupted(KeyboardInterrupt):
    """The check was interrupted (Ctrl-C, the notebook's stop button). Raised once the check has
    ended what it started, so that the cell stops as for any interrupt."""


def unclosed_lines(made: list, tip: str = "") -> list:
    """Feedback for sockets the learner's code created and never closed, by line of code."""
    sites: dict = {}
    for m in made:
        sites[m.site] = sites.get(m.site, 0) + 1
    n = len(made)
    out = [f"your code left {n} socket{'s' if n > 1 else ''} it created open: it never called "
           f"close() on {'them' if n > 1 else 'it'}."]
    for site, k in sites.items():
        out.append(f"Made at {site_text(site)}" + (f" ({k} sockets)" if k > 1 else ""))
    out.append("Python closes a forgotten socket only when the garbage collector gets to it, and a "
               "program cannot count on when that is: until then it holds a file descriptor, and a "
               "peer waits for the end of the connection. Close every socket when you are done "
               "with it: `with socket.socket() as s:` (or `with conn:`), or s.close() in a finally: "
               "block.")
    if tip:
        out.append(tip)
    return out


def _close_case(ctx: Context) -> tuple:
    """``ctx.close()``, finished even when an interrupt arrives meanwhile (it starts again, up to
    3 times): (what close() said, whether an interrupt arrived)."""
    interrupted = False
    for _ in range(3):
        try:
            return ctx.close(), interrupted
        except KeyboardInterrupt:
            interrupted = True
    return ("The check was interrupted again and again while it closed what it started: sockets or "
            "threads of this check may still be open. Restart the kernel to be sure."), True


def run_check(exercise: Exercise, *solution, only=None) -> Result:
    """Run every case of ``exercise`` against the learner's ``solution`` (one object per name in
    ``exercise.names``). Stops after a case whose code did not return. Never raises for anything
    the learner's code does; an interrupt ends the check (everything it started is ended and
    closed first) with CheckInterrupted."""
    if not _checking.acquire(blocking=False):
        return Result(exercise.id, exercise.title, "failed", lines=[
            "A check is already running (did your solution call check() or grade()?). A check runs "
            "your code; your code must not run a check. Remove that call and check again."])
    # Put back in force for the check: a test runner, or the kernel, may have replaced it since.
    before = threading.excepthook
    during = functools.partial(_quiet_when_abandoned, then=before)
    threading.excepthook = during
    unraisable_before = sys.unraisablehook
    unraisable_during = functools.partial(_quiet_unraisable, then=unraisable_before)
    sys.unraisablehook = unraisable_during
    try:
        return _run_check(exercise, solution, only)
    finally:
        if threading.excepthook is during:
            threading.excepthook = before
        if sys.unraisablehook is unraisable_during:
            sys.unraisablehook = unraisable_before
        _checking.release()


def _host_limit(exc: BaseException) -> list:
    """Feedback lines when the check could not run for a limit of the host (out of descriptors,
    threads or memory), not for a bug: the explanation says which limit; [] otherwise."""
    if not (isinstance(exc, MemoryError) or getattr(exc, "errno", None) in (errno.EMFILE, errno.ENFILE)
            or (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc))):
        return []
    e = explain(exc)
    return [f"The check could not go on: {e.title.lower()} ({e.error or type(exc).__name__}). A limit "
            "of this process was reached: not a bug of the exercise, and not necessarily of your "
            "code (unless it opens sockets or starts threads it never closes or joins).",
            f"What happened: {e.what}", f"How to fix: {e.fix} Then run the check again."]


def _run_check(exercise: Exercise, solution, only) -> Result:
    global _watched
    res = Result(exercise.id, exercise.title, "failed")
    problem = _check_solution_shape(exercise, solution)
    if problem is not None:
        res.status, res.lines = problem
        return res
    stop_rest = False
    for i, case in enumerate(exercise.cases):
        if only is not None and i not in only:
            continue
        if stop_rest:
            res.cases.append(CaseResult(case.name, "not run"))
            continue
        ctx = Context(exercise.id, exercise.seed(i), case.limit or exercise.limit)
        outcome = CaseResult(case.name, "passed")
        interrupted = False
        _watched = ctx
        try:
            case.fn(ctx, *solution)
            left = ctx.unclosed()
            if left:
                raise Fail(*unclosed_lines(left, exercise.close_tip))
        except KeyboardInterrupt:
            interrupted = True
        except NotAttempted as n:
            outcome = CaseResult(case.name, "not attempted", [
                f"{n.what} is not written yet (it raises NotImplementedError)."])
        except Fail as f:
            if any(isinstance(e, NotImplementedError) for e in ctx.learner_errors):
                outcome = CaseResult(case.name, "not attempted", [
                    "your handler is not written yet (it raises NotImplementedError)."])
            else:
                outcome = CaseResult(case.name, "failed", f.lines)
        except DidNotReturn as d:
            outcome = CaseResult(case.name, "failed", d.lines())
            stop_rest = True
        except LearnerRaised as e:
            if isinstance(e.error, CheckAbandoned):
                outcome = CaseResult(case.name, "failed", ["your code was stopped"])
            else:
                outcome = CaseResult(case.name, "failed", e.lines())
        except OSError as exc:  # the check's own socket call failed while the learner's code ran
            outcome = CaseResult(case.name, "failed", _host_limit(exc) or [
                f"The check's own connection failed ({type(exc).__name__}: {exc}) while your code "
                "ran. That happens when code closes, stops or replaces something it was not given "
                "(the listening socket, the server, a descriptor by number), or opens so many "
                "sockets that none are left (EMFILE). If your code does none of that, please report "
                "it: it would be a bug in socklab's exercise."])
        except Exception as exc:  # a bug in the check itself: say so, do not blame the learner
            outcome = CaseResult(case.name, "failed", _host_limit(exc) or [
                f"The check itself failed ({type(exc).__name__}: {exc}). This is a bug in socklab's "
                "exercise, not necessarily in your code: please report it."])
        finally:
            replaced = _put_back_shared()
            stuck, again = _close_case(ctx)
            _watched = None
        if interrupted or again:
            raise CheckInterrupted(f"check {exercise.id} stopped by interrupt; nothing left open."
                                   if not stuck else f"check {exercise.id} stopped by interrupt. "
                                   f"Not everything could be ended: {stuck}") from None
        if replaced:  # whatever else happened, this is the cause to fix first
            outcome = CaseResult(case.name, "failed", [
                f"your code replaced {', '.join(replaced)}: module attributes that every piece of "
                "code in this kernel shares, the check included (socklab has put them back). Keep "
                "your own names for your own values instead of assigning to a module."]
                + [ln for ln in outcome.lines if "The check itself failed" not in ln
                   and "The check's own connection failed" not in ln])
        if stuck and stuck not in outcome.lines:
            outcome.lines.append(stuck)
        crashed = [e for e in ctx.thread_errors if not isinstance(e, NotImplementedError)]
        if crashed and not ctx.thread_errors_shown:
            lines = raised_lines(crashed[0], "a thread your code started")
            if outcome.status == "failed":  # most likely the cause: first
                outcome.lines = lines + [ln for ln in outcome.lines if ln not in lines]
            elif outcome.status == "passed":
                ctx.notes.append(" ".join(lines))
        if outcome.status == "passed":
            for n in ctx.notes:
                if n not in res.notes:
                    res.notes.append(n)
        res.cases.append(outcome)
    if res.cases and all(c.status == "not attempted" for c in res.cases):
        return Result(exercise.id, exercise.title, "not attempted", lines=[NOT_ATTEMPTED])
    for c in res.cases:
        if c.status == "not attempted":
            c.status = "failed"
    res.status = "passed" if all(c.status == "passed" for c in res.cases) else "failed"
    if not res.passed:
        res.notes = []  # tips are for a solution that works; failures carry their own advice
    return res


def _check_solution_shape(exercise: Exercise, solution):
    names = exercise.names
    if len(solution) != len(names):
        call = ", ".join(names)
        return "failed", [f"check('{exercise.id}', {call}) takes {len(names)} solution "
                          f"argument{'s' if len(names) > 1 else ''} ({call}); got {len(solution)}."]
    missing = [n for n, s in zip(names, solution) if s is None or s is Ellipsis]
    if len(missing) == len(names):
        return "not attempted", [NOT_ATTEMPTED]
    for n, s in zip(names, solution):
        if not callable(s):
            return "failed", [f"{n} should be a function (def {n}(...): ...); got "
                              f"{type(s).__name__} {s!r:.60}."]
    return None
