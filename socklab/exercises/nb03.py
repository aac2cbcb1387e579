"""Notebook 03 (addresses and bind): bind_unix() that removes only stale files, and a
SO_REUSEADDR server for a port in TIME_WAIT."""
from __future__ import annotations

import errno
import os
import socket
import stat

from .. import runtime
from ..servers import Server
from .core import Case, Exercise, Fail, LearnerRaised, raised_lines
from .nb02 import Watch, _listening, _returned_socket, left_open_after_raise
from .peers import read_all


# ---- 03.1 bind_unix

def _path(ctx) -> str:
    path = runtime.private_path("exercise")

    def remove():
        if os.path.lexists(path):
            os.unlink(path)
    ctx.later(remove)
    return path


def _stale(ctx, path) -> None:
    """A socket file nobody listens on: bound, then closed (the file stays)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)


def _check_bound(ctx, value, path, what="bind_unix(path)"):
    sock = _returned_socket(ctx, value, what)
    if sock.family != socket.AF_UNIX:
        raise Fail(f"your socket is {sock.family.name}: use AF_UNIX for a path.")
    if sock.type != socket.SOCK_STREAM:
        raise Fail(f"your socket is {sock.type.name}: use SOCK_STREAM.")
    name = sock.getsockname()
    name = os.fsdecode(name) if isinstance(name, bytes) else name
    if name != path:
        raise Fail(f"your socket is bound to {runtime.display_path(name) or 'nothing'!r}, not to the "
                   "path it was given.")
    if not _listening(sock):
        raise Fail("your socket is bound but not listening: call listen() before returning it.")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(2)
        try:
            c.connect(path)
        except OSError as exc:
            raise Fail(*raised_lines(exc, "a client connecting to your socket")) from None
    return sock


def _case_free(ctx, bind_unix):
    path = _path(ctx)
    _check_bound(ctx, ctx.call(bind_unix, path, what="your bind_unix"), path)


def _case_stale(ctx, bind_unix):
    path = _path(ctx)
    _stale(ctx, path)
    try:
        value = ctx.call(bind_unix, path, what="your bind_unix")
    except LearnerRaised as e:
        if isinstance(e.error, OSError) and e.error.errno == errno.EADDRINUSE:
            raise Fail("bind() failed with 'Address already in use': a closed socket left its file "
                       "behind. Check that the path is a socket file (stat.S_ISSOCK(os.stat(path)."
                       "st_mode)), then connect to it: if that is refused nobody listens, so "
                       "os.unlink(path) and bind again.") from None
        raise Fail(f"nobody listens at the path (connecting there is refused: a stale file), but "
                   f"your bind_unix raised {type(e.error).__name__}. A stale file should be removed "
                   "and the path bound.", *raised_lines(e.error, "it")[1:]) from None
    _check_bound(ctx, value, path)


# Raised by a slip in the code itself, never on purpose to say "this path is not free".
_BUGS = (NameError, AttributeError, TypeError, IndexError, KeyError, ZeroDivisionError, ImportError)


def _must_raise(ctx, bind_unix, path, took_over: str, owner: str) -> None:
    """bind_unix(path) must raise: Fail with ``took_over`` if it returned a socket, and say that
    it must raise if it returned anything else (None: it printed, or gave up quietly). ``owner``:
    whose the path is, for that feedback."""
    try:
        value = ctx.call(bind_unix, path, what="your bind_unix")
    except LearnerRaised as e:
        if isinstance(e.error, _BUGS):  # a mistake in the code, not an error that says why
            raise Fail(*e.lines(), f"{owner}: your bind_unix must raise an error that says so; "
                       f"this {type(e.error).__name__} comes from a mistake in the code on the way.") \
                from None
        if not isinstance(e.error, OSError):
            ctx.notes.append(f"for a path that is not free, your bind_unix raised "
                             f"{type(e.error).__name__}. An OSError (FileExistsError for someone's "
                             "file, OSError(errno.EADDRINUSE, ..., path) for a live server) lets "
                             "callers catch it as they catch bind()'s own 'Address already in use': "
                             "`except OSError`.")
        return  # right; the case looks at what it left behind once it has judged the rest
    if value is None or not (hasattr(value, "fileno") and hasattr(value, "getsockname")):
        if isinstance(value, tuple):
            _returned_socket(ctx, value, "bind_unix(path)")  # owns the sockets in it, and says so
        got = "returning None" if value is None else f"returning {type(value).__name__} {value!r:.40}"
        raise Fail(f"{owner}: raise (e.g. OSError/FileExistsError) instead of {got}. The caller "
                   "must learn that it has no socket; a return value is easy to overlook.")
    _returned_socket(ctx, value)
    raise Fail(took_over)


def _case_live(ctx, bind_unix):
    path = _path(ctx)
    live = Server(family="AF_UNIX", path=path, name=f"exercise-live-{id(ctx)}", lifetime=60)
    live.start()
    ctx.later(live.stop)
    _must_raise(ctx, bind_unix, path,
                "a live server was listening at the path, and your bind_unix took it over: it "
                "removed the server's file and bound its own, so that server's clients can no "
                "longer reach it. When connect() succeeds, raise an error instead.",
                "a live server owns the path")
    if not os.path.exists(path) or not stat.S_ISSOCK(os.stat(path).st_mode):
        raise Fail("your bind_unix raised (right), but the live server's socket file is gone: only "
                   "remove the file when connecting to it was refused.")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(2)
        c.connect(path)
        c.sendall(b"still there?")
        c.shutdown(socket.SHUT_WR)
        got, _ = read_all(c, 2)
    if got != b"still there?":
        raise Fail("after your bind_unix, the live server no longer answers.")
    left_open_after_raise(ctx, "your bind_unix")


def _case_regular(ctx, bind_unix):
    path = _path(ctx)
    data = b"someone's notes\n"
    with open(path, "wb") as f:
        f.write(data)
    _must_raise(ctx, bind_unix, path,
                "the path held a regular file, and your bind_unix deleted it to bind there. On "
                "Linux, connect() to a file that is not a socket is refused too, so 'refused' "
                "does not prove a stale socket: check stat.S_ISSOCK(os.stat(path).st_mode) first, "
                "and raise for anything that is not a socket file.",
                "the path holds a regular file, not a socket file")
    try:
        with open(path, "rb") as f:
            kept = f.read()
    except OSError:
        kept = None
    if kept != data:
        raise Fail("your bind_unix raised (right), but the regular file at the path is gone or "
                   "changed: only remove a socket file that nobody listens on.")
    left_open_after_raise(ctx, "your bind_unix")


BIND_UNIX = Exercise(
    id="03.1",
    title="bind_unix",
    anchor="**4. Remove only stale files.**",
    names=("bind_unix",),
    limit=3.0,
    task="""**4. Remove only stale files** *(exercise 03.1, checked below)*. Write `bind_unix(path)` that
binds an `AF_UNIX` stream socket to `path`, calls `listen()` and returns the socket. If the path
exists, it must be a socket file (`stat.S_ISSOCK(os.stat(path).st_mode)`); anything else, such as
a regular file, is not yours to delete: raise an error. For a socket file, first try to connect to
it (with a timeout): refused means stale, so unlink and bind; connected means a live server owns
it, so raise an error instead (and leave its file alone). The check tries a free path, a stale file,
the path of a live server, and a regular file. (On Linux, `connect()` to a file that is not a socket
is refused too, so "refused" alone does not prove a stale socket.)""",
    hints=[
        "Try the happy path first: `s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)`, "
        "`s.bind(path)`, `s.listen()`, `return s`. Then handle `os.path.exists(path)` before bind().",
        "An existing path that is not a socket file is someone's data: "
        "`if not stat.S_ISSOCK(os.stat(path).st_mode): raise FileExistsError(errno.EEXIST, "
        "'not a socket file', path)`.",
        "To test the file, connect a *second* socket to it: `probe.settimeout(1)`, "
        "`probe.connect(path)`. `ConnectionRefusedError` means nobody listens: `os.unlink(path)`.",
        "If the probe connects, somebody listens there: close the probe and raise, e.g. "
        "`raise OSError(errno.EADDRINUSE, 'a server is listening there', path)`, without unlinking.",
    ],
    cases=[
        Case("a free path: bound and listening", _case_free),
        Case("a stale file from a closed socket: removed, then bound", _case_stale),
        Case("a live server's path: an error, and the server keeps its file", _case_live),
        Case("a regular file at the path: an error, and the file is left as it was", _case_regular),
    ],
)


# ---- 03.2 reusable_server

def _time_wait_port(ctx) -> int:
    """A port whose last connection the *server* closed first: it lingers in TIME_WAIT."""
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.settimeout(3)
    port = lst.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=3) as client:
        conn, _ = lst.accept()
        conn.close()             # the server closes first ...
        client.settimeout(3)
        client.recv(1)           # ... the client sees the end (b'') ...
    lst.close()                  # ... and closes too: the server's end is now in TIME_WAIT
    return port


def _bind_fails_plain(port) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _check_reusable(ctx, value, port):
    sock = _returned_socket(ctx, value, "reusable_server(port)")
    if sock.type != socket.SOCK_STREAM or sock.family != socket.AF_INET:
        raise Fail("return an AF_INET SOCK_STREAM (TCP) socket.")
    host, got = sock.getsockname()[:2]
    if got != port:
        raise Fail(f"your socket is on port {got}, not on the port it was given ({port}): bind "
                   "('127.0.0.1', port). (Port 0 is for when any port will do.)")
    if host != "127.0.0.1":
        raise Fail(f"your socket is bound to {host!r}; bind to '127.0.0.1'.")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR):
        raise Fail("SO_REUSEADDR is not set on the socket you returned: "
                   "srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1), before bind().")
    if not _listening(sock):
        raise Fail("your socket is bound but not listening: call listen().")
    return sock


def _call_reusable(ctx, reusable_server, port):
    """reusable_server(port), watched: (its value, the Watch)."""
    watch = Watch()
    return ctx.call(watch.wrap(reusable_server), port, what="your reusable_server"), watch


def _returned_none_after_failed_bind(value, watch, port) -> None:
    """Fail if reusable_server caught bind()'s error and returned None (after printing it, say)."""
    if value is None and watch.bind_failed:
        raise Fail(f"bind() to port {port} failed in your reusable_server, and it returned None: let "
                   "the OSError through (or raise), don't return None. The caller must learn that "
                   "it has no server.")


def _case_reuse_free(ctx, reusable_server):
    from .peers import free_port
    port = free_port()
    value, watch = _call_reusable(ctx, reusable_server, port)
    _returned_none_after_failed_bind(value, watch, port)
    _check_reusable(ctx, value, port)


def _case_reuse_time_wait(ctx, reusable_server):
    port = _time_wait_port(ctx)
    plain_fails = _bind_fails_plain(port)
    try:
        value, watch = _call_reusable(ctx, reusable_server, port)
    except LearnerRaised as e:
        if isinstance(e.error, OSError) and e.error.errno == errno.EADDRINUSE:
            raise Fail(f"bind() failed with 'Address already in use': port {port} still has a "
                       "connection in TIME_WAIT (its server closed first). Set SO_REUSEADDR with "
                       "setsockopt() *before* bind(); set after bind() it is too late.") from None
        raise
    if value is None and watch.bind_failed:
        raise Fail(f"bind() failed in your reusable_server (port {port} still has a connection in "
                   "TIME_WAIT), and it returned None. Set SO_REUSEADDR with setsockopt() *before* "
                   "bind(); and let an OSError through (or raise), don't return None.")
    _check_reusable(ctx, value, port)
    if not plain_fails:
        ctx.notes.append("on this machine a plain bind() worked too: TIME_WAIT did not block it here.")


def _case_reuse_listening(ctx, reusable_server):
    other = ctx.own(socket.socket())
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    try:
        value = ctx.call(reusable_server, port, what="your reusable_server")
    except LearnerRaised as e:
        if isinstance(e.error, OSError):
            # right: SO_REUSEADDR never lets two sockets listen on one port (Linux, macOS)
            left_open_after_raise(ctx, "your reusable_server")
            return
        raise
    if value is None:
        raise Fail(f"your reusable_server returned None for port {port}, where a server is "
                   "listening. The port is taken: let the OSError through (or raise), don't return "
                   "None; the caller must learn that it has no server.")
    sock = _returned_socket(ctx, value, "reusable_server(port)")
    got = sock.getsockname()[1]
    if got != port:
        raise Fail(f"port {port} is taken by a listening server; your reusable_server returned a "
                   f"socket on port {got} instead of raising. Let the OSError reach the caller: a "
                   "server on another port is not what it asked for.")
    raise Fail(f"your socket shares port {port} with a server that is already listening there "
               "(SO_REUSEPORT?). Use only SO_REUSEADDR, which never allows that on Linux and macOS "
               "(on Windows it does; there SO_EXCLUSIVEADDRUSE prevents it).")


REUSABLE_SERVER = Exercise(
    id="03.2",
    title="reusable_server",
    names=("reusable_server",),
    limit=3.0,
    task="""**6. Restart on the same port** *(exercise 03.2, checked below)*. Write `reusable_server(port)`:
a TCP socket listening on `('127.0.0.1', port)` that can be bound even while the port's last
connection is still in `TIME_WAIT` (section 5). Return the listening socket. The check calls it with
a free port, with a port whose server just closed first, and with a port another server is
listening on (there it must raise `OSError`).""",
    hints=[
        "The option is `socket.SO_REUSEADDR` at level `socket.SOL_SOCKET`, set with "
        "`srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)`.",
        "Order matters: `socket()`, then `setsockopt(...)`, then `bind(('127.0.0.1', port))`, then "
        "`listen()`. An option set after bind() does not change how bind() went.",
        "Let the OSError of bind() reach the caller, but close your socket first: `try: "
        "srv.bind(...) except OSError: srv.close(); raise`. When someone is listening on the port, "
        "the caller must learn it (on Linux and macOS SO_REUSEADDR never lets two sockets listen on one port; on "
        "Windows it does, unless the first set SO_EXCLUSIVEADDRUSE).",
    ],
    cases=[
        Case("a free port: listening, with SO_REUSEADDR", _case_reuse_free),
        Case("a port in TIME_WAIT (its server closed first): bound anyway", _case_reuse_time_wait),
        Case("a port another server listens on: OSError", _case_reuse_listening),
    ],
)

EXERCISES = [BIND_UNIX, REUSABLE_SERVER]
