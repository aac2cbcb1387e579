"""Per-process state: the registry of running demos and the private AF_UNIX directory.

Re-running a notebook cell registers its new demo under the same key, which stops the old
one first: no "Address already in use" from a previous run. Everything still running is
stopped at interpreter exit.
"""
from __future__ import annotations

import atexit
import functools
import itertools
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading

_lock = threading.RLock()
_running: dict = {}  # key -> [(object, generation, cell, order made)]
_made = itertools.count()
_rundir: str | None = None
_counter = itertools.count(1)


class Thread(threading.Thread):
    """A thread for socklab's own work (daemon by default) that never receives SIGINT.

    Jupyter interrupts a kernel by sending SIGINT to the process, and the OS may hand a process's
    signal to any thread that does not block it (Linux prefers the main thread, but not when that
    thread already has a signal pending). Python raises KeyboardInterrupt only in the main thread,
    so a signal taken by another thread leaves the main thread blocked in, say, ``recv()`` until
    its timeout. Our threads block SIGINT, so they are never the taker; ipykernel's own threads
    (IOPub, Heartbeat, Control, Shell channel) do not, and remain a rare one."""

    def __init__(self, *args, daemon: bool = True, **kwargs):
        super().__init__(*args, daemon=daemon, **kwargs)

    def start(self) -> None:
        if not hasattr(signal, "pthread_sigmask"):  # Windows: no per-thread masks
            super().start()
            return
        # A new thread inherits the mask of the thread that starts it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _shell():
    ipython = sys.modules.get("IPython")  # never imported here: socklab works without Jupyter
    return ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None


def _cell_frame(frame):
    """The frame of the notebook cell being run, found outward from ``frame``; None outside one.

    A cell's own code is a ``<module>`` frame whose globals are the kernel's user namespace; a
    function defined in an earlier cell has its own name, so the cell that *calls* it counts."""
    shell = _shell()
    if shell is None:
        return None
    found = None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is shell.user_ns:
            found = frame
        frame = frame.f_back
    return found


def _cell_id(frame) -> str | None:
    """Which cell ``frame`` (a cell frame) belongs to: the front end's cell id, which stays the
    same when the cell is edited (JupyterLab and Notebook send it), else IPython's file name for
    the cell's source."""
    shell = _shell()
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and hasattr(kernel, "get_parent") \
            and threading.current_thread() is threading.main_thread():
        parent = kernel.get_parent() or {}
        cell = (parent.get("metadata") or {}).get("cellId")
        if cell:
            return f"cell {cell}"
    return f"cell {frame.f_code.co_filename}"


def in_cell() -> bool:
    """True when this thread is running a notebook cell (not a thread of its own)."""
    return _cell_frame(sys._getframe(1)) is not None


def caller_key(depth: int = 2) -> str:
    """A key for the code that called us: the cell being run and the line in it, so re-running
    the cell gives the same key (a helper function from another cell does not count); outside a
    cell, the calling file and line."""
    frame = sys._getframe(depth)
    here = os.path.dirname(__file__)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    cell = _cell_frame(frame)
    if cell is not None:
        return f"{_cell_id(cell)}:{cell.f_lineno}"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def generation():
    """Which run of a cell this is: IPython's execution count, or None outside a kernel."""
    return getattr(_shell(), "execution_count", None)


def _current_cell() -> str | None:
    """The id of the cell running in this thread, or None."""
    frame = _cell_frame(sys._getframe(1))
    return None if frame is None else _cell_id(frame)


def _forget(ids: set) -> None:
    """Drop the objects whose id() is in ``ids`` from every key (call with _lock held)."""
    for k in list(_running):
        _running[k][:] = [e for e in _running[k] if id(e[0]) not in ids]
        if not _running[k]:
            del _running[k]


def check_name(name) -> None:
    """Raise ConfigError, explained, unless ``name`` is a str or None (a ``name=`` argument)."""
    if name is None or isinstance(name, str):
        return
    from .errors import ConfigError, Explanation  # errors imports this module
    raise ConfigError(Explanation(
        "Invalid name", f"name={name!r:.60} is a {type(name).__name__}, not a str.",
        "name= is the label socklab keeps a server, client, socket or panel under, so that starting "
        "another one with the same name stops the old one.",
        "Use a short string such as name='echo', or leave it out."))


def register(key: str, obj, explicit: bool = True) -> None:
    """Remember ``obj`` (anything with ``stop()``) under ``key`` and stop what an earlier run left.

    An explicit name replaces whatever ran under it. A key taken from the caller's line replaces
    only what an *earlier* execution of that cell started, so a loop in one cell can start
    several servers; outside a kernel there are no re-runs and nothing is replaced. And whatever
    the key, registering from a cell stops everything an earlier run of that same cell started
    (on any line: the cell may have been edited since).
    """
    check_name(key)
    gen = generation()
    cell = _current_cell()
    with _lock:
        entries = _running.setdefault(key, [])
        if explicit:
            old = [(o, n) for o, _, _, n in entries if o is not obj]
        elif gen is None:
            old = []
        else:
            old = [(o, n) for o, g, _, n in entries if g != gen and o is not obj]
        if cell is not None and gen is not None:
            old += [(o, n) for others in _running.values() for o, g, c, n in others
                    if c == cell and g != gen and o is not obj]
        # Newest first: what was made later may use what was made before it (a Background
        # waiting in connect() of a socket the same cell made is woken through that socket).
        old = [o for o, _ in sorted({id(o): (o, n) for o, n in old}.values(),
                                    key=lambda e: e[1], reverse=True)]
        _forget({id(o) for o in old} | {id(obj)})
        _running.setdefault(key, []).append((obj, gen, cell, next(_made)))
    for o in old:
        o.stop()


def track(key: str, obj) -> None:
    """Register ``obj`` under ``key`` again (e.g. a client reopened after close()), stopping nothing."""
    cell = _current_cell()
    with _lock:
        entries = _running.setdefault(key, [])
        if not any(o is obj for o, *_ in entries):
            entries.append((obj, generation(), cell, next(_made)))


def unregister(key: str, obj) -> None:
    with _lock:
        entries = _running.get(key)
        if entries is None:
            return
        entries[:] = [e for e in entries if e[0] is not obj]
        if not entries:
            del _running[key]


def running() -> list:
    """Demos registered and not yet stopped."""
    with _lock:
        return [o for entries in _running.values() for o, *_ in entries]


def stop_all() -> int:
    """Stop every running demo of this process; returns how many were stopped.

    One that does not stop in time (its handler is stuck) does not keep the others running: a
    SocklabError says which, once everything else has been stopped."""
    stopped, stuck, tried = 0, [], {}  # id -> object: held, so that no new object reuses its id
    # Rounds: what registers while we stop (a Background accept() that returns meanwhile registers
    # the connection it accepted) is stopped too. Bounded: each round stops only what is new.
    for _ in range(8):
        with _lock:  # newest first, as register() stops them
            made = {id(e[0]): e for entries in _running.values() for e in entries
                    if id(e[0]) not in tried}
            objs = [e[0] for e in sorted(made.values(), key=lambda e: e[3], reverse=True)]
        if not objs:
            break
        tried.update((id(o), o) for o in objs)
        # A call waiting in the background (socklab.Background) may wait on sockets other demos own
        # (urllib connected to a listener nobody accepts on): stopped last, it finds them closed.
        objs.sort(key=lambda o: bool(getattr(o, "stop_last", False)))
        for obj in objs:
            try:
                obj.stop()
            except Exception as exc:  # go on: one stuck demo must not keep the others running
                said = getattr(getattr(exc, "explanation", None), "what", "")  # names the object
                stuck.append(said.rstrip(".") if said else f"{obj!r}: {exc}")
                continue
            stopped += 1
            with _lock:  # most demos unregister themselves; this covers the rest
                _forget({id(obj)})
    remove_stale_sockets()
    if stuck:
        from .errors import Explanation, SocklabError
        raise SocklabError(Explanation(
            "Not everything stopped",
            f"{stopped} stopped; still running: {'; '.join(stuck)}.",
            "A server stops once its handlers return. A handler that waits without a timeout, or "
            "computes for a long time, keeps its thread alive, and Python cannot kill a thread.",
            "Give every blocking call in a handler a timeout (conn.settimeout(5)). socklab has shut "
            "the stuck connection down; its thread ends, and its socket closes, when the call it is "
            "in returns."))
    return stopped


def _live_unix_paths() -> set | None:
    """Paths of every AF_UNIX socket the kernel still has (Linux /proc/net/unix); None if unknown."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            # the path is the last column and may contain spaces
            return {p[7] for p in (line.rstrip("\n").split(None, 7) for line in f) if len(p) > 7}
    except (OSError, StopIteration):
        return None


def remove_stale_sockets() -> list:
    """Remove socket files in the private directory whose socket is closed (a socket file outlives
    close()); return their names. Files of sockets still open, and anything that is not a socket,
    stay. Does nothing where the kernel's socket table cannot be read."""
    if not _rundir or not os.path.isdir(_rundir):
        return []
    names = os.listdir(_rundir)  # before reading the table: a socket bound after this is not touched
    live = _live_unix_paths()
    if live is None:
        return []
    removed = []
    for name in names:
        path = os.path.join(_rundir, name)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode) and path not in live:
                os.unlink(path)
                removed.append(name)
        except FileNotFoundError:
            pass  # removed meanwhile (a server stopping, or the learner)
    return removed


def rundir() -> str:
    """This process's private directory (mode 0700) for AF_UNIX socket files."""
    global _rundir
    with _lock:
        if _rundir is None or not os.path.isdir(_rundir):
            # Short base: AF_UNIX paths must fit in 108 bytes.
            base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
            _remove_stale_rundirs(base)
            # The pid in the name lets a later process remove it if this one is killed (no atexit).
            _rundir = tempfile.mkdtemp(prefix=f"socklab-{os.getpid()}-", dir=base)
            os.chmod(_rundir, 0o700)
        return _rundir


def _remove_stale_rundirs(base: str) -> list:
    """Remove the private directories of this user's socklab processes that have ended without
    cleaning up (a kernel killed, not shut down); return their paths. A directory whose process
    still runs, or another user's, is left alone."""
    removed = []
    if os.name != "posix":  # no uid to compare; and os.kill(pid, 0) on Windows is CTRL_C_EVENT
        return removed
    for entry in os.scandir(base):
        m = re.fullmatch(r"socklab-(\d+)-\w+", entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False) or \
                entry.stat(follow_symlinks=False).st_uid != os.getuid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # the process still runs (or a process of that pid does)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # a process of that pid runs, as another user
        try:
            shutil.rmtree(entry.path)
        except FileNotFoundError:  # another socklab process removed it first
            continue
        removed.append(entry.path)
    return removed


def private_path(stem: str = "sock") -> str:
    """A fresh AF_UNIX path in the private directory, e.g. /tmp/socklab-x1y2/sock-3."""
    return os.path.join(rundir(), f"{stem}-{next(_counter)}")


_ended: dict = {}  # address -> why the socklab server there stopped by itself (an Explanation)


def note_ended(address, why) -> None:
    """Remember that the server at ``address`` stopped by itself, for a refused connect() later."""
    if address is not None:
        with _lock:
            if len(_ended) >= 256:  # bounded: a long session starts many servers
                _ended.pop(next(iter(_ended)))
            _ended[_address_key(address)] = why


def ended(address):
    """Why a server that stopped by itself listened at ``address`` last, or None."""
    with _lock:
        return _ended.get(_address_key(address)) if address is not None else None


def forget_ended(address) -> None:
    """Something listens at ``address`` again: a later refusal has another cause."""
    if address is not None:
        with _lock:
            _ended.pop(_address_key(address), None)


def _address_key(address):
    if isinstance(address, tuple):
        return tuple(address[:2])  # an IPv6 address adds flow info and scope id
    return os.fsdecode(address) if isinstance(address, bytes) else address


def display_path(path) -> str:
    """The path as shown to learners: the private directory becomes '<rundir>'."""
    p = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if _rundir and p.startswith(_rundir + os.sep):
        return "<rundir>/" + p[len(_rundir) + 1:]
    return p


@functools.lru_cache(maxsize=1)
def has_ipv6() -> bool:
    """True when an AF_INET6 socket can be created and bound to ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _cleanup() -> None:
    stop_all()
    if _rundir and os.path.isdir(_rundir):
        shutil.rmtree(_rundir, ignore_errors=True)


atexit.register(_cleanup)
