"""Notebook 08 (AF_UNIX): a server that starts safely over a stale file, and cleans up after itself."""
from __future__ import annotations

import os
import socket
import stat
import threading
from time import monotonic

from .. import runtime
from ..servers import Server
from .core import Case, Exercise, Fail, NotAttempted, raised_lines
from .nb03 import _path, _stale
from .peers import read_all, wait_for, waiting_in


def _connectable(path) -> bool:
    """Whether a server listens at ``path``: a connect() that works, or finds its queue full."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(0.5)
        try:
            c.connect(path)
            return True
        except BlockingIOError:  # EAGAIN: listening, its accept queue full for the moment
            return True
        except OSError:
            return False


def _connect(path, timeout: float, stop: threading.Event) -> socket.socket:
    """A client connected to ``path``. A connect() with a timeout to a full AF_UNIX accept queue
    fails at once with EAGAIN (section 8): a server with a small backlog that has not accepted
    the clients before yet. Tried again until ``timeout``."""
    deadline = monotonic() + timeout
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(timeout)
        try:
            c.connect(path)
            return c
        except BlockingIOError:
            c.close()
            if stop.wait(0.005) or monotonic() >= deadline:
                raise
        except BaseException:
            c.close()
            raise


def _echo_once(ctx, path, message: bytes) -> tuple:
    with _connect(path, 2, ctx.stop) as c:
        c.sendall(message)
        c.shutdown(socket.SHUT_WR)
        return read_all(c, 2)


def _start(ctx, serve, path):
    stop = threading.Event()
    run = ctx.start(serve, path, stop, what="your serve")
    ctx.later(stop.set)
    return run, stop


def _running_or_fail(ctx, run, path, why_stale=""):
    """Wait until the learner's server accepts connections at ``path`` (or has ended)."""
    wait_for(lambda: run.done.is_set() or _connectable(path), 2.0, ctx.stop)
    if run.done.is_set():
        err = run.error
        if err is None:
            raise Fail("your serve() returned at once, before `stop` was set: loop until "
                       "stop.is_set().")
        if isinstance(err, NotImplementedError):
            raise NotAttempted("your serve")
        raise Fail(*raised_lines(err, "your serve()", why_stale))
    if not _connectable(path):
        raise Fail("after 2 s nothing accepts connections at the path: did you bind(path) and "
                   "listen()?")


def _case_stale_and_cleanup(ctx, serve):
    path = _path(ctx)
    _stale(ctx, path)
    run, stop = _start(ctx, serve, path)
    _running_or_fail(ctx, run, path, "over a stale file (a socket file nobody listens on)")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != 0o600:
        raise Fail(f"the socket file has mode {mode:#o}: call os.chmod(path, 0o600) right after bind(), "
                   "so only your user can connect.")
    for msg in (b"first client", b"second client"):
        got, how = _echo_once(ctx, path, msg)
        if got != msg:
            raise Fail(f"a client sent {msg!r} and shut down its sending side; it got {got!r} back"
                       f"{' and the connection stayed open' if how == 'timeout' else ''}. Echo until "
                       "recv() returns b'', then close the connection and accept the next one.")
    # Set stop only once the server waits for the next client (else a server whose accept() has no
    # timeout could see stop just in time, by luck).
    wait_for(lambda: run.done.is_set() or waiting_in(run.thread), 2.0, ctx.stop)
    stop.set()
    if not run.wait(2.0):
        raise Fail("stop was set, but serve() did not return within 2 s: accept() is waiting for a "
                   "client that never comes. Give the listening socket a timeout (e.g. "
                   "srv.settimeout(0.2)), catch TimeoutError, and check stop.is_set() each time round.")
    if run.error is not None:
        raise Fail(*raised_lines(run.error, "your serve()", "after stop was set"))
    if os.path.exists(path):
        raise Fail(f"serve() returned but left its socket file {runtime.display_path(path)!r} "
                   "behind: remove it (os.unlink(path)) in a finally: block.")


def _case_live(ctx, serve):
    path = _path(ctx)
    live = Server(family="AF_UNIX", path=path, name=f"exercise-live8-{id(ctx)}", lifetime=60)
    live.start()
    ctx.later(live.stop)
    live_file = os.stat(path).st_ino
    run, stop = _start(ctx, serve, path)

    def replaced() -> bool:
        try:
            return os.stat(path).st_ino != live_file
        except FileNotFoundError:
            return True
    # Judged as soon as serve() ends, or its unlink() has taken the live server's file.
    wait_for(lambda: run.done.is_set() or replaced(), 2.0, ctx.stop)
    if replaced():
        # The file may be gone because serve() is raising and its finally: block unlinked it:
        # give a serve() that is on its way out the moment to finish, so it is judged as such.
        run.wait(0.5)
    if not run.done.is_set():
        stop.set()
        if replaced():
            raise Fail("a live server was already listening at the path, and your serve() removed its "
                       "socket file (the live server is now unreachable there). It should raise "
                       "instead: remove_stale() raises when a server is listening.")
        raise Fail("a live server was already listening at the path, and your serve() did not stop "
                   "(it should raise: remove_stale() raises when a server is listening).")
    if isinstance(run.error, NotImplementedError):
        raise NotAttempted("your serve")
    if run.error is None:
        raise Fail("a live server was already listening at the path; your serve() returned without "
                   "an error. Let the OSError of remove_stale() (or bind()) reach the caller.")
    if not os.path.exists(path):
        raise Fail("your serve() raised (right), but its clean-up removed the live server's socket "
                   "file: only remove the file after your own bind() succeeded (start the "
                   "try: ... finally: os.unlink(path) after bind()).")
    got, _ = _echo_once(ctx, path, b"still there?")
    if got != b"still there?":
        raise Fail("after your serve() gave up, the live server no longer answers at its path.")


SERVE_UNIX = Exercise(
    id="08.1",
    title="serve (AF_UNIX, safe start-up)",
    anchor="2. **A safe start-up.**",
    names=("serve",),
    limit=6.0,
    task="""2. **A safe start-up** *(exercise 08.1, checked below)*. Write `serve(path, stop)`: call
`remove_stale(path)`, bind an `AF_UNIX` stream socket to `path`, set the file's mode to `0o600`,
listen, then until the `threading.Event` `stop` is set: accept a client (give the listening socket a
timeout, so you notice `stop`), echo what it sends until it shuts down, close it. Once bound, close
the socket and remove the file in a `finally:` block. The check starts it over a stale file, talks to
it, stops it, and also starts it while a live server owns the path: what should happen there, and
why is that what you want?""",
    hints=[
        "The order: `remove_stale(path)`, `srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)`, "
        "`srv.bind(path)`, `os.chmod(path, 0o600)`, `srv.listen()`, `srv.settimeout(0.2)`.",
        "The loop: `while not stop.is_set():` then `try: conn, _ = srv.accept()` / "
        "`except TimeoutError: continue`; serve `conn` inside `with conn:` (give it a timeout too).",
        "Put `try:` right after `bind()`, and `finally: srv.close(); os.unlink(path)`. If the "
        "`try:` started before `remove_stale()`, the clean-up would delete a live server's file.",
    ],
    cases=[
        Case("over a stale file: starts, mode 0600, echoes two clients, stops, removes its file",
             _case_stale_and_cleanup),
        Case("a live server owns the path: serve() raises and leaves its file alone", _case_live),
    ],
)

EXERCISES = [SERVE_UNIX]
