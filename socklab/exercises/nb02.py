"""Notebook 02 (a server in six steps): make_server()."""
from __future__ import annotations

import errno
import socket

from .core import Case, Exercise, Fail, LearnerRaised, raised_lines
from .peers import read_all


LISTENER = "return just the listening socket; its address is `srv.getsockname()`."


def _returned_socket(ctx, value, what="make_server()", instead=LISTENER):
    """The socket.socket inside what the learner returned, owned by the case; or a Fail.
    ``instead``: what to return, told when the learner returned a tuple."""
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
        raise Fail(f"the socket your {what} returned is already closed: a `with` block closes it at "
                   "its end. Create it without `with` (the caller closes it later).")
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


def _case_listening(ctx, make_server):
    sock = _returned_socket(ctx, ctx.call(make_server, what="your make_server()"))
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
    if host == "0.0.0.0":
        raise Fail("your server listens on all interfaces ('0.0.0.0' or ''): any machine that can "
                   "reach this one can connect. Bind to '127.0.0.1' (loopback): then only programs "
                   "on this machine can connect (on a shared host, that still includes the other "
                   "users).")
    if host != "127.0.0.1":
        raise Fail(f"your server is bound to {host!r}; bind it to the loopback address '127.0.0.1'.")


def _case_port_zero(ctx, make_server):
    first = _returned_socket(ctx, ctx.call(make_server, what="your make_server()"))
    try:
        second = _returned_socket(ctx, ctx.call(make_server, what="your make_server()"),
                                  "second make_server()")
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
    srv = _returned_socket(ctx, ctx.call(make_server, what="your make_server()"))
    if not _listening(srv):
        raise Fail("your socket is not listening: call listen().")
    srv.settimeout(3)
    try:
        client = ctx.own(socket.create_connection(srv.getsockname(), timeout=3))
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
