"""Notebook 02 (a server in six steps): make_server()."""
from __future__ import annotations

import errno
import socket
import sys

from .core import (Case, DidNotReturn, Exercise, Fail, LearnerRaised, _learner_site, is_learner_file,
                   raised_lines, site_text, unclosed_lines)
from .peers import read_all, waiting_in


LISTENER = "return just the listening socket; its address is `srv.getsockname()`."
_CLOSE = socket.socket.close.__code__
_EXIT = socket.socket.__exit__.__code__


class Watch:
    """What the learner's function did to sockets, seen by a profile function set in its own
    thread only, for the time of the call (``sys.setprofile`` is per thread): every bind() called
    on a socket (from the learner's code or from the standard library on its behalf, e.g.
    create_server), and every close(), with who closed it: a ``with`` block's end, or a line of the
    learner's code. The audit events the checking core records have no close, and no bind (yet)."""

    def __init__(self):
        self.bound: list = []    # sockets bind() was called on (whether or not it succeeded)
        self.bind_failed = 0     # how many of those bind() calls raised
        self.closed: list = []   # (socket, 'with' | (file, line, function) of the learner's code)

    def wrap(self, fn):
        def watched(*args):
            old = sys.getprofile()

            def profile(frame, event, arg):
                if event == "c_call" and getattr(arg, "__name__", "") == "bind":
                    sock = getattr(arg, "__self__", None)
                    if isinstance(sock, socket.socket):
                        self.bound.append(sock)
                elif event == "c_exception" and getattr(arg, "__name__", "") == "bind":
                    if isinstance(getattr(arg, "__self__", None), socket.socket):
                        self.bind_failed += 1
                elif event == "call" and frame.f_code is _CLOSE:
                    caller = frame.f_back
                    sock = frame.f_locals.get("self")
                    if caller is not None and caller.f_code is _EXIT:
                        self.closed.append((sock, "with"))
                    elif caller is not None and is_learner_file(caller.f_code.co_filename):
                        self.closed.append((sock, _learner_site(caller)))
                if old is not None:
                    old(frame, event, arg)
            sys.setprofile(profile)
            try:
                return fn(*args)
            finally:
                sys.setprofile(old)
        watched.__name__ = getattr(fn, "__name__", "watched")
        return watched

    def was_bound(self, sock) -> bool:
        return any(s is sock for s in self.bound)

    def how_closed(self, sock):
        """'with', the learner's (file, line, function) that called close(), or None: not seen."""
        for s, how in self.closed:
            if s is sock:
                return how
        return None


def _closed_lines(what: str, how) -> list:
    """Feedback for a returned socket that was closed before it was returned."""
    if how == "with":
        return [f"the socket your {what} returned is already closed: a `with` block closes it at its "
                "end. Create it without `with` (the caller closes it later)."]
    if how:
        return [f"the socket your {what} returned is already closed: your code called close() on it "
                "before returning it. Return it open: the caller uses it, then closes it.",
                f"Closed at {site_text(how)}"]
    return [f"the socket your {what} returned is already closed: something closed it before it was "
            "returned (a close() call, or the end of a `with` block). Return it open: the caller "
            "uses it, then closes it."]


def left_open_after_raise(ctx, what: str, tip: str = "") -> None:
    """Fail if the learner's code raised (as it should) but left a socket it created open. The
    core's end-of-case look (Context.unclosed) reports them too; this says it for a case where
    raising is right."""
    left = ctx.unclosed()  # after a raise nothing was handed over: every socket left open counts
    if left:
        lines = unclosed_lines(left, tip)
        n = len(left)
        lines[0] = (f"{what} raised (right), but left {n} socket{'s' if n > 1 else ''} it created "
                    f"open: close {'them' if n > 1 else 'it'} before the error leaves your "
                    "function (`except OSError: srv.close(); raise`: a `with` block would also "
                    "close the socket you return when all goes well).")
        raise Fail(*lines)


def _returned_socket(ctx, value, what="make_server()", instead=LISTENER, watch=None):
    """The socket.socket inside what the learner returned, owned by the case; or a Fail.
    ``instead``: what to return, told when the learner returned a tuple. ``watch``: the Watch of
    the call, which tells how a closed socket was closed."""
    if value is None:
        raise Fail(f"your {what} returned None: did you forget `return srv` at the end?")
    if isinstance(value, tuple):
        for v in value:
            if hasattr(v, "fileno") and hasattr(v, "getsockname"):
                _own(ctx, v)
        raise Fail(f"your {what} returned a tuple ({type(value).__name__} of {len(value)}"
                   f"{': ' + repr(value) if len(repr(value)) <= 60 else ''}): {instead}")
    if not (hasattr(value, "fileno") and hasattr(value, "getsockname")):
        raise Fail(f"your {what} returned {type(value).__name__} {value!r:.60}: return the socket.")
    sock = _own(ctx, value)
    if sock.fileno() == -1:
        raise Fail(*_closed_lines(what, watch.how_closed(sock) if watch is not None else "with"))
    return sock


def _own(ctx, value) -> socket.socket:
    sock = getattr(value, "sock", value)  # a socklab TracedSocket keeps the real one in .sock
    ctx.own(sock)
    return sock


def _listening(sock) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


ACCEPTS = (("socket.py", "accept"),)


def _make(ctx, make_server, what="make_server()"):
    """Call the learner's make_server (watched): (its value, the Watch). A make_server that waits
    in accept() is told so as soon as it is seen there: nobody connects while it runs."""
    watch = Watch()
    run = ctx.start(watch.wrap(make_server), what=f"your {what}")
    seen_at = []

    def in_accept() -> bool:
        if waiting_in(run.thread, ACCEPTS):
            seen_at.append(_learner_site(sys._current_frames().get(run.thread.ident)))
            return True
        return False
    try:
        value = run.result(ctx.limit, "a make_server only creates, binds and listens: is it waiting "
                           "for something, or looping?", hopeless=in_accept)
    except DidNotReturn as d:
        if not (d.never and seen_at):
            raise
        raise Fail("your make_server called accept(): it waits for a client; the caller accepts — "
                   "return the listening socket.",
                   f"It waits at {site_text(seen_at[0])}" if seen_at[0][1] else "",
                   d.stuck) from None
    return value, watch


def _case_listening(ctx, make_server):
    value, watch = _make(ctx, make_server)
    sock = _returned_socket(ctx, value, watch=watch)
    if sock.type != socket.SOCK_STREAM:
        raise Fail(f"your socket is {sock.type.name}: a TCP server needs SOCK_STREAM "
                   "(SOCK_DGRAM is UDP, which has no listen/accept).")
    if sock.family != socket.AF_INET:
        raise Fail(f"your socket is {sock.family.name}: for 127.0.0.1 use AF_INET.")
    host, port = sock.getsockname()[:2]
    if not _listening(sock):
        if port == 0:
            raise Fail("your socket is neither bound nor listening: call "
                       "srv.bind(('127.0.0.1', 0)) and then srv.listen().")
        raise Fail(f"your socket is bound to {(host, port)!r} but not listening: call srv.listen() "
                   "after bind(), or clients are refused.")
    if host == "0.0.0.0" and not watch.was_bound(sock):
        raise Fail("you never called bind(): listen() bound it to 0.0.0.0 on a random port, so it "
                   "listens on all interfaces. Call srv.bind(('127.0.0.1', 0)) before srv.listen().")
    if host == "0.0.0.0":
        raise Fail("your server listens on all interfaces ('0.0.0.0' or ''): any machine that can "
                   "reach this one can connect. Bind to '127.0.0.1' (loopback): then only programs "
                   "on this machine can connect (on a shared host, that still includes the other "
                   "users).")
    if host != "127.0.0.1":
        raise Fail(f"your server is bound to {host!r}; bind it to the loopback address '127.0.0.1'.")


def _case_port_zero(ctx, make_server):
    value, watch = _make(ctx, make_server)
    first = _returned_socket(ctx, value, watch=watch)
    try:
        value, watch = _make(ctx, make_server)
        second = _returned_socket(ctx, value, "second make_server()", watch=watch)
    except LearnerRaised as e:
        if isinstance(e.error, OSError) and e.error.errno == errno.EADDRINUSE:
            raise Fail(f"the second make_server() failed with 'Address already in use': the first one "
                       f"still holds port {first.getsockname()[1]}, so you bound a fixed port. Use "
                       "port 0: the OS then picks a free port each time.") from None
        raise
    if first.getsockname()[1] == second.getsockname()[1]:
        raise Fail("two calls gave sockets on the same port (SO_REUSEPORT?); use port 0 and no "
                   "SO_REUSEPORT.")


def _case_talks(ctx, make_server):
    value, watch = _make(ctx, make_server)
    srv = _returned_socket(ctx, value, watch=watch)
    if not _listening(srv):
        raise Fail("your socket is not listening: call listen().")
    srv.settimeout(3)
    try:
        # A client of the server's own family, to its address as it is (an AF_INET6 address has 4
        # parts): a wrong family is the first case's to tell, not a reason to fail here too.
        client = ctx.own(socket.socket(srv.family, socket.SOCK_STREAM))
        client.settimeout(3)
        client.connect(srv.getsockname())
        conn, _ = srv.accept()
    except OSError as exc:
        raise Fail(*raised_lines(exc, "connecting to your server")) from None
    ctx.own(conn)
    client.sendall(b"ping")
    conn.settimeout(3)
    got, _ = read_all(conn, 3, expect=4)
    if got != b"ping":
        raise Fail(f"a client connected and sent b'ping'; the accepted socket received {got!r}.")


MAKE_SERVER = Exercise(
    id="02.1",
    title="make_server",
    names=("make_server",),
    limit=3.0,
    task="""**5. Your own six steps** *(exercise 02.1, checked below)*. Write `make_server()`: create a TCP
socket, bind it to port 0 on the loopback address, start listening, and **return** the listening
socket (still open: the caller accepts and closes). The check calls it, looks at what it got, calls it
a second time (two servers at once must not collide), and connects a real client.""",
    hints=[
        "Three calls: `srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)`, `srv.bind(...)`, "
        "`srv.listen()`, then `return srv`.",
        "The address is a tuple `('127.0.0.1', 0)`: loopback, so only this machine can connect, and "
        "port 0, so the OS picks a free port (read it with `srv.getsockname()`).",
        "Do not use `with socket.socket(...) as srv:` here: the `with` block would close the socket "
        "before the caller gets it.",
    ],
    cases=[
        Case("returns a listening TCP socket on 127.0.0.1", _case_listening),
        Case("port 0: a second server gets its own free port", _case_port_zero),
        Case("a client can connect and send to it", _case_talks),
    ],
)

EXERCISES = [MAKE_SERVER]
