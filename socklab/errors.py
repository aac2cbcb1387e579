"""Turn socket exceptions into short explanations: what happened, why, how to fix.

Knows nothing of Jupyter. ``explain(exc)`` never raises; ``SocklabError`` carries an
explanation and is what socklab raises for bad input.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import dis
import errno
import inspect
import ipaddress
import linecache
import os
import re
import socket
import ssl
import sys
import threading
import weakref
import dataclasses
from dataclasses import dataclass, field

from .runtime import display_path, ended


@dataclass(frozen=True)
class Explanation:
    """A friendly account of one error. ``text()`` gives the plain-text form."""

    title: str
    what: str
    why: str
    fix: str
    error: str = ""  # the original exception as Python prints it, e.g. "OSError(98, ...)"
    code: str = ""   # symbolic errno name when there is one, e.g. "EADDRINUSE"
    details: tuple = field(default=())

    def text(self) -> str:
        head = self.title if not self.error else f"{self.title}  [{self.error}]"
        lines = [head, f"  What happened: {self.what}", f"  Why: {self.why}", f"  How to fix: {self.fix}"]
        lines += [f"  Note: {d}" for d in self.details]
        return "\n".join(lines)

    __str__ = text


class SocklabError(Exception):
    """An error socklab explains. ``.explanation`` holds the teaching text."""

    explanation: Explanation

    def __init__(self, explanation: Explanation):
        super().__init__(explanation.text())
        self.explanation = explanation

    def __str__(self):
        return self.explanation.text()


_wrapped_classes: dict = {}


def explained(exc: BaseException, address=None, call: str | None = None) -> BaseException:
    """``exc`` as an exception that is still its own type (``except ConnectionRefusedError`` still
    catches it) and also a ``SocklabError`` whose message is the explanation."""
    if isinstance(exc, SocklabError):
        return exc
    base = type(exc)
    cls = _wrapped_classes.get(base)
    if cls is None:
        try:
            cls = type(base.__name__, (base, SocklabError), {"__module__": base.__module__,
                                                             "__str__": SocklabError.__str__})
        except TypeError:  # a base whose layout cannot be mixed in
            cls = None
        _wrapped_classes[base] = cls
    # An exception not raised yet is about to be raised by our caller: if that is a wait such as
    # Background.result(), ``call`` names the call waited for, not the one that gave up.
    waiter = sys._getframe(1).f_code.co_name if exc.__traceback__ is None else None
    exp = _explain(exc, address, call, ("wait", waiter) if waiter in _WAIT_CALLS else None)
    if cls is None:
        new = SocklabError(exp)
    else:
        new = cls.__new__(cls, *exc.args)
        base.__init__(new, *exc.args)
        new.explanation = exp
    new.__cause__ = exc
    new.__suppress_context__ = True
    return new


def explained_as(exc: BaseException, explanation: Explanation) -> BaseException:
    """``exc``, still its own type, carrying ``explanation`` (for misuse socklab itself detects)."""
    new = explained(exc)
    new.explanation = explanation
    return new


class ConfigError(SocklabError, ValueError):
    """A socket configuration that cannot work, found before any socket is created."""


def _errname(exc: BaseException) -> str:
    num = getattr(exc, "errno", None)
    if isinstance(exc, socket.gaierror):
        for name in dir(socket):
            if name.startswith("EAI_") and getattr(socket, name) == num:
                return name
        return ""
    return errno.errorcode.get(num, "") if isinstance(num, int) else ""


def _short(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return f"{type(exc).__name__}({exc.errno}, {exc.strerror!r})"
    return f"{type(exc).__name__}({str(exc)!r})" if str(exc) else type(exc).__name__


_UNIX_REFUSED = (" For AF_UNIX: a file exists at the path, but no socket listens on it (a stale socket "
                 "file, which outlives close(), or a file that is not a socket).")
_TCP_REFUSED = ("No socket is listening on that address and port (the server is not started, was "
                "stopped, or listens on another port or address family). A full accept queue does NOT "
                "cause this on Linux: there the client waits and times out instead.")
_TCP_REFUSED_FIX = ("Start the server first and connect to the address it reports (server.address); "
                    "check the port and that both sides use the same family (IPv4 vs IPv6). A "
                    "server started in a thread may not have called listen() yet: let it set a "
                    "threading.Event after listen(), and wait for that before connecting.")
_UNIX_REFUSED_FIX = (" For AF_UNIX, connect to the path the server bound while it listens; a stale file "
                     "stays refused until a new server removes it and binds again.")

# errno -> (title, what, why, fix).  The {addr} placeholder is filled when known.
_BY_ERRNO = {
    errno.EADDRINUSE: (
        "Address already in use",
        "bind() (or listen()) failed: another socket already holds this address{addr}.",
        "A server from an earlier run (or another program) is still listening there, or the port is in "
        "TIME_WAIT after a close and the sockets do not both set SO_REUSEADDR. For AF_UNIX, a file "
        "already exists at that path: a running server's socket, a stale socket file (it outlives "
        "close()), or an ordinary file or directory.",
        "Use port 0 to let the OS pick a free port; stop the old server (socklab.stop_all()); set "
        "SO_REUSEADDR on both old and new sockets for TIME_WAIT. For AF_UNIX, choose another path, or "
        "remove the file with os.unlink(path) only if it is a socket file (stat.S_ISSOCK) and "
        "connecting to it is refused: any other file is somebody's data, and a socket that accepts "
        "belongs to a running server.",
    ),
    errno.EADDRNOTAVAIL: (
        "Cannot assign requested address",
        "bind() was given an IP address{addr} that no network interface of this machine has.",
        "You can only bind to an address this machine owns: 127.0.0.1 (loopback), ::1, or one of its "
        "interface addresses.",
        "Bind to '127.0.0.1' (or '::1' for IPv6). To connect to a remote host, call connect() instead; "
        "bind() is for your own end.",
    ),
    errno.EACCES: (
        "Permission denied",
        "The operating system refused this process access to the address{addr}.",
        "For a port below the unprivileged limit (usually 1024), bind() needs root or "
        "CAP_NET_BIND_SERVICE; for an AF_UNIX path, connect() needs write permission on the socket "
        "file and bind() on its directory; sending to a broadcast address needs SO_BROADCAST.",
        "Port: use 1024 or above, or port 0 to let the OS choose. AF_UNIX: use a path in a directory "
        "you own (socklab's default private path); another user's socket is not yours to use. "
        "Broadcast: sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1) before sendto().",
    ),
    errno.EPERM: (
        "Operation not permitted",
        "The operating system does not allow this process to do that.",
        "Raw sockets (SOCK_RAW) need root or the CAP_NET_RAW capability; a learner account on a shared "
        "JupyterHub normally has neither.",
        "Use SOCK_STREAM or SOCK_DGRAM, or run where you have the privilege (your own machine, as root).",
    ),
    errno.ETIMEDOUT: (
        "Connection timed out",
        "The kernel gave up: nothing was acknowledged after all its retries.",
        "No answer came back: the peer's accept queue may be full (Linux drops the handshake silently), "
        "the host may be unreachable, or a firewall drops packets.",
        "Check that the server is running and accepting; make its backlog larger or accept faster. A "
        "longer settimeout() does not help: this limit is the kernel's (for connect(), "
        "net.ipv4.tcp_syn_retries, about 2 minutes by default on Linux).",
    ),
    errno.EPIPE: (
        "Broken pipe",
        "send() failed: the connection is closed for sending (the peer closed it, or this side "
        "called shutdown(SHUT_WR)), or it never existed: a TCP socket that was never connected "
        "gets this error too.",
        "After the other side closes, the first send() may still succeed; the next one fails with "
        "BrokenPipeError. recv() on such a socket returns b'' (end of stream).",
        "Treat recv() returning b'' as 'the peer is gone' and stop sending; catch BrokenPipeError "
        "around send in long-lived servers. A socket that never connected: connect() it first; "
        "on a server, send on the socket accept() returned, not on the listening one.",
    ),
    errno.ECONNRESET: (
        "Connection reset by peer",
        "The peer aborted the connection (it sent a TCP RST).",
        "The other side's kernel answered with a reset: its program closed (or died) with data it had "
        "not read yet, closed with SO_LINGER set to 0, or its listening socket closed while this "
        "connection still waited in the accept queue (never accept()ed). (An accepted connection whose "
        "process dies with nothing unread closes normally: recv() gets b''.) On Windows a UDP socket "
        "also raises this on recvfrom() after an earlier sendto() reached a port where nothing listens.",
        "Treat it like an end of the connection: close your socket; reconnect if you need to.",
    ),
    errno.EMSGSIZE: (
        "Message too long",
        "One datagram was larger than the protocol allows.",
        "A UDP datagram carries at most 65507 bytes over IPv4 (65527 over IPv6) on Linux; macOS refuses "
        "more than net.inet.udp.maxdgram (9216 by default). An AF_UNIX datagram is limited by the "
        "socket's send buffer instead (about 200 KB on Linux).",
        "Split the data into smaller datagrams (well under 1500 bytes avoids fragmentation), or use a "
        "stream socket (TCP or AF_UNIX SOCK_STREAM).",
    ),
    errno.EINVAL: (
        "Invalid argument",
        "The socket is not in a state where that call makes sense.",
        "Typical causes: bind() called twice, accept() before listen(), or a call on a socket that "
        "was shut down.",
        "Follow the order socket() -> bind() -> listen() -> accept(); create a new socket to bind again.",
    ),
    errno.EOPNOTSUPP: (
        "Operation not supported",
        "That call is not supported by this socket type.",
        "listen() and accept() exist only for connection-oriented sockets (SOCK_STREAM); UDP "
        "(SOCK_DGRAM) has no connections: it uses sendto()/recvfrom().",
        "Use SOCK_STREAM for listen/accept, or use recvfrom() on a SOCK_DGRAM socket.",
    ),
    errno.EPROTONOSUPPORT: (
        "Protocol not supported",
        "The OS has no protocol for that family/type/protocol combination.",
        "The protocol does not fit the family and type: SOCK_STREAM carries TCP, SOCK_DGRAM UDP, "
        "AF_UNIX takes only 0, and a raw IP socket (SOCK_RAW) has no default, so protocol 0 is "
        "refused there (on Linux).",
        "Leave the protocol out (0) for SOCK_STREAM, SOCK_DGRAM and AF_UNIX; for SOCK_RAW name one, "
        "e.g. socket.socket(AF_INET, SOCK_RAW, socket.IPPROTO_ICMP).",
    ),
    errno.EAFNOSUPPORT: (
        "Address family not supported",
        "This OS or kernel does not support that address family.",
        "IPv6 may be disabled on this machine, or the family does not exist on this OS.",
        "Use AF_INET (IPv4), or enable IPv6.",
    ),
    errno.ENOTCONN: (
        "Socket is not connected",
        "The call needs a connected socket, and this one is not (or no longer) connected.",
        "send()/recv() on a stream socket work only after connect() (client) or on the socket "
        "accept() returned (server), not on the listening socket. A connection the peer has reset is "
        "no longer connected, so shutdown() and getpeername() fail too (on macOS shutdown() also fails "
        "once the peer has closed).",
        "Call connect() first, or use the socket accept() returned; if the peer already reset or "
        "closed the connection, just close() your socket (catch OSError around shutdown()).",
    ),
    errno.ENOPROTOOPT: (
        "Option not available",
        "setsockopt() or getsockopt() named an option this socket does not have.",
        "Each option belongs to a level: SOL_SOCKET options apply to every socket, IPPROTO_TCP "
        "ones (TCP_NODELAY) only to TCP sockets, IPPROTO_IPV6 ones (IPV6_V6ONLY) only to IPv6 "
        "sockets. A UDP socket has no TCP_NODELAY, and an option number the kernel does not know "
        "is refused the same way.",
        "Check the (level, option) pair and that it fits the socket's family and type: e.g. "
        "setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) on a SOCK_STREAM socket. "
        "`man 7 socket`, `man 7 tcp` and `man 7 ipv6` list the options.",
    ),
    errno.EISCONN: (
        "Socket is already connected",
        "connect() was called on a socket that is already connected.",
        "A stream socket connects once.",
        "Create a new socket for a new connection.",
    ),
    errno.ENOENT: (
        "No such file or directory",
        "The AF_UNIX path{addr} does not exist (or its directory does not).",
        "AF_UNIX addresses are file-system paths: the server must bind() first, and the directory "
        "must exist.",
        "Start the server first; use the path it reports (server.address); create the directory.",
    ),
    errno.EHOSTUNREACH: (
        "No route to host",
        "There is no network path to this address{addr}.",
        "The address is on no network this machine can reach.",
        "Use loopback (127.0.0.1 or ::1) for these exercises.",
    ),
    errno.ENETUNREACH: (
        "Network is unreachable",
        "No route exists to the network of this address{addr}.",
        "This machine has no route for that address (often: IPv6 without IPv6 connectivity).",
        "Use loopback (127.0.0.1 or ::1) for these exercises.",
    ),
    errno.EMFILE: (
        "Too many open files",
        "This process has as many file descriptors open as it may (its limit, `ulimit -n`).",
        "Every socket holds a file descriptor until close(). A loop that opens sockets and never "
        "closes them (or keeps them all in a list) reaches the limit, usually 1024; then every "
        "socket() and accept() fails.",
        "Close each socket when you are done with it (a `with` block does it). In a notebook, "
        "socklab.stop_all() stops socklab's demos; restarting the kernel closes everything.",
    ),
    errno.ENFILE: (
        "Too many open files in the system",
        "The whole machine has as many files open as it may.",
        "Every socket of every process holds a file: all users of a shared host count.",
        "Close the sockets you do not need; ask whoever runs the host if it persists.",
    ),
    errno.EBADF: (
        "Bad file descriptor",
        "The socket was already closed, or another object took over its file descriptor.",
        "After close() the file descriptor is released; every further call fails. "
        "ssl.SSLContext.wrap_socket(sock) and sock.detach() also leave sock with fileno() -1 (its "
        "repr says [closed]): the descriptor now belongs to what they returned.",
        "Create a new socket; close each socket exactly once (a `with` block does that). After "
        "wrap_socket(), use the socket it returned.",
    ),
}

_ADDRESS_CALLS = ("bind", "connect", "connect_ex", "sendto")

_GAI = {
    "EAI_NONAME": (
        "Unknown host name",
        "The host name{addr} could not be turned into an IP address.",
        "It is not a valid IP address and name resolution (/etc/hosts, DNS) does not know it.",
        "Use a numeric address such as '127.0.0.1' or '::1', or 'localhost'. Check for typos and "
        "stray spaces; pass the host and port separately, as a tuple.",
    ),
    "EAI_AGAIN": (
        "Name lookup failed for now",
        "The resolver could not answer for the host name{addr}.",
        "No DNS server was reachable (common in sandboxes without network).",
        "Use numeric addresses ('127.0.0.1', '::1') for these exercises.",
    ),
    "EAI_FAMILY": (
        "Address family does not match the address",
        "The address{addr} belongs to another family than the socket.",
        "An AF_INET socket takes IPv4 addresses like '127.0.0.1'; an AF_INET6 socket takes IPv6 "
        "addresses like '::1'.",
        "Use '127.0.0.1' with AF_INET or '::1' with AF_INET6 (or change the family to match).",
    ),
    "EAI_SERVICE": (
        "Unknown port or service name",
        "The port{addr} is neither a number nor a service name this machine knows.",
        "A port given as a string is looked up as a service name (/etc/services: 'http' is 80); a "
        "misspelt name, or a name the socket type does not have, fails.",
        "Give the port as a number, e.g. ('127.0.0.1', 8080), not a string.",
    ),
    "EAI_ADDRFAMILY": (
        "Address family does not match the address",
        "The host{addr} has no address of the socket's family.",
        "An AF_INET socket needs an IPv4 address; AF_INET6 needs IPv6.",
        "Use '127.0.0.1' with AF_INET or '::1' with AF_INET6.",
    ),
}


# Names a hosts file maps to loopback; whether each has an IPv4 and an IPv6 entry varies by machine.
LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def _hosts_file_versions(name: str, path: str = "/etc/hosts") -> set:
    """The IP versions (4, 6) the hosts file lists for ``name``; empty if none or unreadable."""
    found = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.partition("#")[0].split()
                if len(fields) > 1 and name.lower() in (n.lower() for n in fields[1:]):
                    try:
                        found.add(ipaddress.ip_address(fields[0].partition("%")[0]).version)
                    except ValueError:
                        continue  # a malformed line: the resolver skips it too
    except OSError:
        return set()
    return found


def _loopback_name_one_family(address, short: str, name: str) -> Explanation | None:
    """'localhost' failing where the hosts file gives it an address of the other family only."""
    if name not in ("EAI_NONAME", "EAI_ADDRFAMILY", "EAI_NODATA"):
        return None  # e.g. a bad port string: the name itself was fine
    host = address[0] if isinstance(address, tuple) and address else address
    if not (isinstance(host, str) and host.lower() in LOOPBACK_NAMES):
        return None
    versions = _hosts_file_versions(host)
    if len(versions) != 1:
        return None
    has, lacks = (("IPv4", "IPv6"), ("IPv6", "IPv4"))[versions == {6}]
    need_fam, has_fam, numeric = (("AF_INET6", "AF_INET", "'::1'") if lacks == "IPv6"
                                  else ("AF_INET", "AF_INET6", "'127.0.0.1'"))
    return Explanation(
        f"{host!r} has no {lacks} address on this machine",
        f"The host name {host!r} could not be resolved for this socket: the hosts file "
        f"(/etc/hosts) lists only an {has} address for it.",
        f"An {need_fam} socket needs an {lacks} address. Whether {host!r} has both depends on each "
        "machine's hosts file, so code that works on one machine can fail on another.",
        f"Use the numeric loopback address {numeric}, or family {has_fam} with {host!r}.",
        short, name)


def _abstract(address) -> bool:
    """A Linux abstract AF_UNIX name: no file, it starts with a NUL byte."""
    return address[:1] in ("\0", b"\0")


def _link_local(address) -> bool:
    if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
        return False
    try:
        return ipaddress.ip_address(address[0].partition("%")[0]).is_link_local
    except ValueError:
        return False


# ---- which call raised it: from the ``call`` argument or from the traceback

_SEND_CALLS = frozenset({"send", "sendall", "sendto", "sendmsg", "sendfile", "write",
                         "_sendfile_use_send", "_sendfile_use_sendfile"})
_RECV_CALLS = frozenset({"recv", "recvfrom", "recv_into", "recvfrom_into", "recvmsg", "recvmsg_into",
                         "read", "readinto"})
_ACCEPT_CALLS = frozenset({"accept", "_accept"})
_CONNECT_CALLS = frozenset({"connect", "connect_ex", "create_connection"})
# Waits for another thread's work: their timeout ends the wait, not the work. (Not asyncio's
# wait_for(): it cancels the work.)
_WAIT_CALLS = frozenset({"result", "exception", "wait", "as_completed"})
# Any name of a socket call: a traceback that reaches one has found the call that failed.
_SOCKET_CALLS = (frozenset(n for n in dir(socket.socket) + dir(ssl.SSLSocket) if not n.startswith("__"))
                 | _SEND_CALLS | _RECV_CALLS | _ACCEPT_CALLS | _CONNECT_CALLS
                 | {"create_server", "getaddrinfo", "do_handshake", "wrap_socket", "socket",
                    "socketpair", "fromfd"})
LIBRARY_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,  # socklab
                os.path.dirname(os.__file__) + os.sep)                 # the standard library
_LOADS = ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST", "LOAD_DEREF")


def _call_kind(name) -> str | None:
    """'send', 'recv', 'accept', 'connect' or 'wait' for a call's name; None for any other."""
    for kind, names in (("send", _SEND_CALLS), ("recv", _RECV_CALLS), ("accept", _ACCEPT_CALLS),
                        ("connect", _CONNECT_CALLS), ("wait", _WAIT_CALLS)):
        if name in names:
            return kind
    return None


def _instruction(code, lasti: int) -> tuple:
    """(opname, name of the function it calls or None) of the instruction at ``lasti``."""
    instrs = list(dis.get_instructions(code))
    at = None
    for ins in instrs:  # the instruction that holds lasti (an outer frame's lasti is in its caches)
        if ins.offset > lasti:
            break
        at = ins
    if at is not None and at.opname == "PRECALL":
        # Python 3.11 makes a call to a C function (select.select(), sleep()) in PRECALL
        # itself once the call site is specialised: CALL, which follows, is then skipped.
        at = at._replace(opname="CALL")
    if at is None or not at.opname.startswith("CALL") or at.positions is None \
            or at.positions.col_offset is None:
        return (at.opname if at else "", None)
    p, best = at.positions, None
    start, end = (p.lineno, p.col_offset), (p.end_lineno, p.end_col_offset)
    for ins in instrs:  # the callee is the longest load that starts where the call does: `a.b.sendall`
        if ins.offset >= at.offset:
            break
        q = ins.positions
        if ins.opname in _LOADS and q is not None and q.col_offset is not None \
                and (q.lineno, q.col_offset) == start and (q.end_lineno, q.end_col_offset) <= end:
            if best is None or (q.end_lineno, q.end_col_offset) >= best[0]:
                best = ((q.end_lineno, q.end_col_offset), ins.argval)
    return at.opname, (best[1] if best else None)


def _origin(exc: BaseException) -> tuple | None:
    """Where ``exc`` came from, read from its traceback, innermost frame first:
    ('call', name) for a socket call (or a wait) it was raised in, ('wait', name) for a wait such as
    Future.result() that raised it, ('raise', function) for a `raise` statement elsewhere; None if
    not known. Frames of socklab and the standard library (e.g. socket.py's accept(), which calls
    _accept()) are looked through to the call that wraps them."""
    entries = []
    tb = exc.__traceback__
    while tb is not None and len(entries) < 200:
        entries.append(tb)
        tb = tb.tb_next
    found = None  # ('call', name): the outermost name so far of the call that failed
    for tb in reversed(entries):
        code = tb.tb_frame.f_code
        try:
            op, callee = _instruction(code, tb.tb_lasti)
        except Exception:  # bytecode this Python's dis cannot read: no (further) guess
            return found
        library = code.co_filename.startswith(LIBRARY_DIRS)
        if op.startswith("RAISE") or op == "RERAISE":
            if found is not None:  # a re-raise of the call's own error
                return found
            if code.co_name in _WAIT_CALLS:
                return ("wait", code.co_name)
            if library and code.co_name in _SOCKET_CALLS:  # e.g. socket.py's sendfile timeout
                return ("call", code.co_name)
            return ("raise", code.co_name)
        name = None
        if op.startswith("CALL"):
            # A library wrapper is named after the call it makes: socket.py's accept() calls
            # _accept(), create_connection() calls connect(), TracedSocket.connect() calls _do().
            if library and (code.co_name in _SOCKET_CALLS or code.co_name in _WAIT_CALLS):
                name = code.co_name
            elif callee in _SOCKET_CALLS or callee in _WAIT_CALLS:
                name = callee
        # Outward, the same kind of call keeps its caller's name: ssl's sendall() loops over its
        # send() (a sendall may have sent part of the data, a send nothing), its recv() calls read().
        if name is not None and (found is None or _call_kind(name) == _call_kind(found[1])):
            found = ("call", name)
        if not library:
            return found  # the learner's own frame: no guess beyond it
    return found


# ---- timeouts: each kind of call waits for something else

# Python 3.10's Future.result() and asyncio raise their own TimeoutError (the builtin from 3.11 on).
_TIMEOUTS = tuple({TimeoutError, concurrent.futures.TimeoutError, asyncio.TimeoutError})

_PARTIAL_SENDS = ("sendall", "sendfile")   # may have sent part of the data when they time out
_WHOLE_SENDS = ("send", "sendto", "sendmsg")  # one that times out has sent nothing
_SHOWN_AS = {"_accept": "accept", "_sendfile_use_send": "sendfile", "_sendfile_use_sendfile": "sendfile"}


def _timeout(exc: BaseException, call: str | None, origin, short: str) -> Explanation:
    """A TimeoutError without an errno: a socket call's timeout (settimeout), a wait for another
    thread that gave up, or one that code raised itself, told apart by the traceback and ``call``."""
    msg = str(exc)
    how, name = origin or (None, None)
    if how == "call" and _call_kind(name) == "wait":
        how = "wait"
    if how is None and _call_kind(call) == "wait":
        how, name = "wait", call
    if how == "wait":
        return _timeout_wait(name, call if _call_kind(call) not in (None, "wait") else None, msg, short)
    if how == "call" and name in ("wrap_socket", "do_handshake") and _tls_server_side(exc):
        return Explanation(
            "Timed out", f"{name}(): this server's TLS handshake waited for its whole timeout for "
            "the client's ClientHello.",
            "A TLS server waits for the client to start the handshake. This client connected over "
            "TCP and sent nothing TLS: it did not wrap its socket (it may be waiting for the "
            "server to speak first, as in a plain protocol), or it is slow.",
            "Make the client wrap its socket before it sends: "
            "ctx.wrap_socket(sock, server_hostname='localhost') with a client context; give a "
            "slow client a longer timeout.", short, "timeout")
    if how == "call" and _call_kind(name) == "recv" and getattr(exc, "socklab_type", None) == \
            socket.SOCK_DGRAM and getattr(exc, "socklab_bound", None) is False \
            and getattr(exc, "socklab_family", None) == getattr(socket, "AF_UNIX", None):
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout on an AF_UNIX datagram socket that "
            "never bound.",
            "Without bind() an AF_UNIX datagram socket has no address (getsockname() gives ''), so "
            "nobody can send to it: a server that receives from it sees None as the sender's "
            "address and has nowhere to send a reply.",
            "Bind the socket to a path of its own before it sends (in a directory only you can "
            "enter), or on Linux bind('') for an automatic abstract name; remove the file when "
            "done.", short, "timeout")
    if how == "call" and _call_kind(name) == "recv" and getattr(exc, "socklab_type", None) == \
            socket.SOCK_DGRAM and getattr(exc, "socklab_bound", None) is False:
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout on a UDP socket that was never "
            "bound.",
            "A socket that never bound (and never sent) has no port, so nobody can send to it: "
            "getsockname() shows port 0.",
            "A UDP server binds first: sock.bind(('127.0.0.1', 0)) (or a fixed port), then tells "
            "clients its port (sock.getsockname()[1]) and calls recvfrom().", short, "timeout")
    if how == "call":
        return _timeout_of(_call_kind(name), _SHOWN_AS.get(name, name), short,
                           getattr(exc, "socklab_type", None), getattr(exc, "socklab_family", None))
    if how != "raise" and call is not None and _call_kind(call) is not None:
        return _timeout_of(_call_kind(call), call, short)
    # A socket call's own timeout says 'timed out' ('The read operation timed out' for TLS).
    if how == "raise" or (msg and not (msg == "timed out" or msg.endswith("operation timed out"))):
        where = f" in {name}()" if name and not name.startswith("<") else ""
        said = f" ({msg!r})" if msg else ""
        return Explanation(
            "TimeoutError raised by code",
            f"This TimeoutError{said} was raised by code{where}, not by a socket call's own timeout.",
            "Code raises TimeoutError itself when something it waited for did not happen in time; its "
            "message and the code before the raise say what that was.",
            "Follow the traceback to that raise and see what it waited for; make that happen in time, "
            "or catch TimeoutError where giving up is the right outcome.", short)
    return _timeout_of(None, call, short)


def _tls_server_side(exc: BaseException) -> bool:
    """Whether the TLS handshake that raised ``exc`` was a server's: ssl.py's SSLSocket in the
    traceback knows (read without running code)."""
    tb = exc.__traceback__
    while tb is not None:
        me = tb.tb_frame.f_locals.get("self")
        if isinstance(me, ssl.SSLSocket):
            return bool(inspect.getattr_static(me, "server_side", False))
        tb = tb.tb_next
    return False


def send_before_connected(exc: BaseException, call: str) -> Explanation:
    """A send call that timed out on a TCP socket whose connect() never finished (SYN-SENT)."""
    return Explanation(
        "Timed out", f"{call}() waited for its whole timeout, but not for the peer: this socket "
        "was never connected. Its connect() did not finish (it timed out, or is still going on).",
        "A TCP socket that is still connecting makes a send wait until the connection is set up. "
        "A connect() that timed out leaves the socket as it was, and Linux goes on sending SYNs "
        "for it (state SYN-SENT): for example when the server's accept queue is full.",
        "Send only on a socket whose connect() returned. After a connect() timeout, close that "
        "socket and connect a new one once the server has room (it accept()s, or its queue is "
        "not full).", _short(exc), "timeout")


def on_listener(exc: BaseException, call: str) -> Explanation:
    """A send or receive on a listening socket: it has no connection and never will."""
    sends = call in _SEND_CALLS
    return Explanation(
        "Not a connection", f"{call}() was called on the listening socket, which has no connection "
        "to " + ("send on" if sends else "receive from") + ".",
        "A listening socket only hands out connections: accept() returns a new socket for each "
        "client, and data goes over that one. The listening socket never becomes "
        + ("writable, so a send with a timeout waits for it all, and one without fails at once "
           "(BrokenPipeError)." if sends else "readable for data, so the call waits for its whole "
           "timeout (or fails with ENOTCONN)."),
        f"Call {call}() on the socket accept() returned: `conn, addr = "
        f"{getattr(exc, 'socklab_receiver', None) or 'srv'}.accept()`, then conn.{call}(...).",
        _short(exc), _errname(exc))


def send_unconnected(exc: BaseException, call: str) -> Explanation:
    """A send call on a TCP socket that was never connected (Linux answers EPIPE)."""
    return Explanation(
        "Not connected", f"{call}() was called on a TCP socket that was never connected: no peer "
        "closed anything.",
        "A TCP socket sends only over a connection: connect() it first (a client), or send on the "
        "socket accept() returned (a server), not on the listening one. Linux reports this as "
        "BrokenPipeError, the same error as a send after the peer has gone.",
        "Call connect((host, port)) before sending, and check that it succeeded; on a server, use "
        "conn from `conn, addr = srv.accept()`.", _short(exc), "EPIPE")


def _timeout_of(kind: str | None, name: str | None, short: str, type_=None,
                family=None) -> Explanation:
    """A socket call's own timeout (settimeout(t) or a timeout= argument), by the kind of call."""
    if kind == "send" and type_ == socket.SOCK_DGRAM and family == getattr(socket, "AF_UNIX", None):
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout for room in the receiver's queue: "
            "the AF_UNIX datagram socket it sends to is not reading.",
            "An AF_UNIX datagram goes straight into the receiving socket's queue, which holds only "
            "so many datagrams (on Linux one more than /proc/sys/net/unix/max_dgram_qlen) and "
            "bytes. When it is full the sender waits, where UDP would drop the datagram, and with "
            "settimeout(t) it gives up after t seconds. This datagram was not sent.",
            "Make the receiver read (a recvfrom() loop in its own thread), or send only as fast as "
            "it reads. Connect the sender to its one receiver (connect(path), then send()): on "
            "Linux an unconnected sendto() with a timeout waits in a busy loop, a connected send() "
            "sleeps.", short, "timeout")
    if kind == "send":
        what = (f"{name}() waited for its whole timeout for room in the send buffer: the peer is "
                "not reading (or this is a listening socket, which can never send).")
        fix = ("Make the peer read what you send while you send it (e.g. a recv() loop in its own "
               "thread), or take turns: send a part, read the reply, send the next. On a server, "
               "send on the connection's socket (conn), not on the listening one.")
        if name in _PARTIAL_SENDS:
            what += f" Part of the data may have been sent already; {name}() does not say how much."
            fix += (f" After a {name}() timeout the receiver cannot tell where the data stops: close "
                    "the connection rather than send the rest.")
        elif name in _WHOLE_SENDS:
            fix += (f" A {name}() that times out has sent nothing; one that returns may have taken "
                    "only part of the data (it returns how much).")
        return Explanation(
            "Timed out", what,
            "Sending only copies data into this socket's send buffer; the kernel moves it on into the "
            "peer's receive buffer, and only the peer's recv() empties that. When the peer does not "
            "read, both buffers fill up, the send waits for room, and with settimeout(t) it gives up "
            "after t seconds.", fix, short, "timeout")
    if name in ("wrap_socket", "do_handshake"):
        return Explanation(
            "Timed out", f"{name}(): the TLS handshake waited for its whole timeout for the other "
            "side's handshake message.",
            "A TLS handshake is a few messages over the TCP connection: the client sends its "
            "ClientHello and waits for the server's answer, a server waits for the ClientHello. A "
            "peer that accepted the TCP connection but does not speak TLS on it (a plain server "
            "waiting for a request, or one that never wraps its side) answers nothing.",
            "Make sure both sides run the handshake: the server wraps the accepted connection "
            "(context.wrap_socket(conn, server_side=True)) and the client connects to that TLS "
            "port. Allow a slow server a longer timeout.", short, "timeout")
    if kind == "recv" and name == "readinto":  # SocketIO.readinto: a makefile() file's read
        return Explanation(
            "Timed out", "A read from the socket's file (makefile()'s readline() or read(), which "
            "call recv_into() underneath) waited for its whole timeout, and what it reads up to (the "
            "end of a line, or the bytes asked for) did not arrive.",
            "The file reads through the socket, so the socket's timeout applies: the peer sent no "
            "(complete) line in that time. It may be waiting to receive first as well, or be slow, "
            "or have sent a line without its ending b'\\n'.",
            "Check who sends first in your protocol and that the peer ends its lines with b'\\n'; "
            "give a slow peer a longer timeout. After a timeout this file cannot be read again "
            "(Python refuses with 'cannot read from timed out object'): make a new one with "
            "makefile(), or close the connection.", short, "timeout")
    if kind == "recv" and type_ == socket.SOCK_DGRAM and family == getattr(socket, "AF_UNIX", None):
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout and no datagram arrived.",
            "AF_UNIX datagrams are not lost on the way (a sender waits while the queue is full): "
            "none was sent to this socket. A peer can reply only to a socket with an address: to "
            "a client that never bound, a server's recvfrom() gives None as the address.",
            "Bind the client to a path of its own before it sends (on Linux bind('') picks an "
            "abstract name), and check that the peer sends to this socket's address "
            "(getsockname()).", short, "timeout")
    if kind == "recv" and type_ == socket.SOCK_DGRAM:
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout and no datagram arrived.",
            "UDP gives no sign of loss: a datagram (or its reply) that was dropped, or sent to "
            "another address or port, looks the same as one that was never sent.",
            "Check that the peer sends to this socket's address (getsockname()), and send the "
            "request again after a timeout, a few times, waiting longer each time.", short, "timeout")
    if kind == "recv" and type_ == socket.SOCK_STREAM:
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout and no data arrived.",
            "recv() returns as soon as any data is there; with settimeout(t) it gives up after t "
            "seconds of silence. The peer sent nothing on this connection in that time: it may be "
            "waiting to receive first as well (both sides in recv()), it may be slow, or it may "
            "have written to a makefile() file without flush() (the data waits in that file's "
            "buffer).",
            "Check who sends first in your protocol, and give a slow peer a longer timeout. A "
            "listening socket never has data: receive on the socket accept() returned.",
            short, "timeout")
    if kind == "recv":
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout and no data arrived.",
            "recv() returns as soon as any data is there; with settimeout(t) it gives up after t "
            "seconds of silence. The peer sent nothing to this socket in that time: it may be waiting "
            "to receive first as well (both sides in recv()), it may be slow, it may have written to "
            "a makefile() file without flush() (the data waits in that file's buffer), or (UDP) the "
            "datagram or its reply was lost or went to another address.",
            "Check who sends first in your protocol, and that the peer really sends on this "
            "connection (for UDP: to this socket's address); give a slow peer a longer timeout; for "
            "UDP, send the request again after a timeout. A listening socket never has data: "
            "receive on the socket accept() returned.", short, "timeout")
    if kind == "accept":
        return Explanation(
            "Timed out", "accept() waited for its whole timeout and no client connected.",
            "accept() returns as soon as a connection waits in the listening socket's accept queue; "
            "with settimeout(t) it gives up after t seconds. No client connected to this socket's "
            "address in that time (or it connected to another port or address).",
            "Connect a client to the listener's address (listener.getsockname()) while accept() "
            "waits: from another thread or program, or run accept() in the background with "
            "socklab.Background(listener.accept) and connect from the next cell. With a timeout, "
            "Python waits for a client before it calls accept(), so a SOCK_DGRAM socket, which can "
            "never accept, ends here too: accept() is for a SOCK_STREAM socket that listens.",
            short, "timeout")
    if kind == "connect":
        again = (" Try again with a new socket: this one's connect() is still in progress in the "
                 "kernel (connecting it again fails with EALREADY)." if name in ("connect", "connect_ex")
                 else "")
        return Explanation(
            "Timed out", f"{name}() waited for its whole timeout and the connection was not set up.",
            "The server's side did not complete the handshake in time. To a server on this machine "
            "that usually means its accept queue is full: Linux drops the extra handshakes silently "
            "rather than refusing them (ConnectionRefusedError would mean that nothing listens "
            "there). To another host, a firewall that drops packets or an unreachable host looks "
            "the same.",
            "Make the server accept() its waiting connections sooner, or give listen() a larger "
            "backlog." + again, short, "timeout")
    what = (f"The call in {name}() waited for its whole timeout, and what it waited for did not happen."
            if name else "A call waited for its whole timeout and gave up; which one is not known here.")
    return Explanation(
        "Timed out", what,
        "With settimeout(t), a blocking call gives up after t seconds. Each waits for the other side: "
        "accept() for a client to connect, connect() for the server to take the connection, recv() "
        "for data, send()/sendall() for the peer to read, so that the send buffer has room.",
        "Find the call in the traceback (its last line), and make sure the other side does its part "
        "at that moment; for UDP, retry after a timeout.", short, "timeout")


def _timeout_wait(waiter: str, awaited: str | None, msg: str, short: str) -> Explanation:
    """A wait for another thread (Future.result(timeout), Background.result(), wait()) gave up."""
    kind = _call_kind(awaited)
    shown = _SHOWN_AS.get(awaited, awaited)
    what = (f"{waiter}() waited for its whole timeout, but the work it waits for"
            + (f" (the background {shown}())" if shown else "")
            + " had not finished. That work goes on: only the wait ended.")
    if msg and msg != "timed out":
        what += f" Its message: {msg!r}."
    hint = {"accept": " accept() returns only once a client connects: none has connected yet.",
            "recv": f" {shown}() returns only once data arrives: none has arrived yet.",
            "connect": f" {shown}() returns once the server's side takes the connection.",
            "send": f" {shown}() returns once the peer has read enough for the rest to fit."}.get(kind, "")
    fix = {"accept": f"Connect a client to the listener's address, then call {waiter}() again.",
           "recv": f"Make the peer send, then call {waiter}() again."}.get(
        kind, f"Make what it waits for happen, then call {waiter}() again, or give {waiter}() a "
              "longer timeout.")
    return Explanation(
        "Gave up waiting for another thread", what,
        f"A timeout given to {waiter}() limits how long this code waits for another thread; it does "
        "not stop that thread's call." + hint,
        fix + " If the background work is no longer needed, stop it (socklab's Background and "
        "BackgroundClient have stop()).", short)


# ---- what exactly is wrong with an address (TypeError messages as CPython 3.11 words them)

_ADDRESS_RULE = ("AF_INET takes a tuple (host: str, port: int), AF_INET6 (host, port) or "
                 "(host, port, flowinfo, scope_id), AF_UNIX a path (str or bytes).")
_ADDRESS_FIX = ("Write ('127.0.0.1', 8080): a tuple with the port as an int; for AF_UNIX, a path "
                "such as '/tmp/demo.sock'.")


_DATAGRAM_IO = _SEND_CALLS | _RECV_CALLS


_UDP_REFUSED = (
    "UDP has no connections, so nothing refuses a connect(). But a datagram to a port where no "
    "socket is bound comes back as an ICMP 'port unreachable' message, and a connected UDP socket "
    "(one that called connect()) reports it on its next call, often the recv() that waits for the "
    "reply. An unconnected socket is not told, so its recvfrom() just times out. (On Windows even "
    "an unconnected socket hears of it, as ConnectionResetError.)")
_UNIX_DGRAM_REFUSED = (
    "An AF_UNIX datagram socket is refused at once when no socket is bound at the path any more "
    "(a stale file, or the receiver closed): send() or sendto() fails, while recv() would just "
    "wait. A connected one is disconnected by this error (its next send() fails with ENOTCONN).")
_UNIX_DGRAM_REFUSED_FIX = ("Start the receiver first; once it is back, connect() an AF_UNIX "
                           "datagram socket again (or use sendto() with the path).")
_STREAM_REFUSED_LATE = (
    "On a TCP socket, it is the refusal of an earlier non-blocking connect() (or connect_ex()) "
    "that had not finished: the kernel keeps the error for the next call.")
_STREAM_REFUSED_LATE_FIX = ("For a non-blocking connect(), wait until the socket is writable and "
                            "read sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) (0: "
                            "connected) before sending; check connect_ex()'s result.")


def _refused(address, addr: str, call: str | None, short: str, name: str,
             family=None, type_=None) -> Explanation:
    """ECONNREFUSED, for an IP address or an unknown one (AF_UNIX paths are explained before): a
    refused connect() is TCP's (or AF_UNIX's), one on a send or receive a datagram socket's, or a
    non-blocking TCP connect()'s that had not finished. ``family`` and ``type_``: if known."""
    unknown = address is None and family is None  # plain socket code: the family is not known
    if family == socket.AF_UNIX and type_ == socket.SOCK_DGRAM:
        return Explanation(
            "Connection refused", f"{call or 'The call'}() on an AF_UNIX datagram socket was "
            "refused: no socket receives at the path it sends to.", _UNIX_DGRAM_REFUSED,
            _UNIX_DGRAM_REFUSED_FIX, short, name)
    if call in _DATAGRAM_IO and type_ == socket.SOCK_STREAM:
        return Explanation(
            "Connection refused", f"{call}() failed: this TCP socket's connect() was refused.",
            _STREAM_REFUSED_LATE + " " + _TCP_REFUSED, _STREAM_REFUSED_LATE_FIX + " " + _TCP_REFUSED_FIX,
            short, name)
    if call in _DATAGRAM_IO:
        to = f" (to{addr})" if addr else ""
        sends = call in _SEND_CALLS
        if type_ == socket.SOCK_DGRAM:  # UDP: the family is AF_INET or AF_INET6
            return Explanation(
                "Connection refused",
                f"{call}() failed: an earlier datagram from this socket{to} was answered with 'port "
                "unreachable': nothing was bound to the port it went to.", _UDP_REFUSED,
                "Start the receiving side first (it binds its port) and send to the address it "
                "reports. A UDP socket is still usable: send again once something listens.",
                short, name)
        return Explanation(
            "Connection refused",
            f"{call}() was refused: nothing receives at the address this socket sends to{addr}.",
            _UDP_REFUSED + (" " + _UNIX_DGRAM_REFUSED if sends else "") + " " + _STREAM_REFUSED_LATE,
            "Start the receiving side first and send to the address it reports. A UDP socket is "
            "still usable afterwards; " + _UNIX_DGRAM_REFUSED_FIX[0].lower() + _UNIX_DGRAM_REFUSED_FIX[1:]
            + " " + _STREAM_REFUSED_LATE_FIX, short, name)
    if call in _CONNECT_CALLS and isinstance(address, tuple) and len(address) > 1 and address[1] == 0:
        return Explanation(
            "Connection refused", f"connect() to port 0{addr} was refused: no socket ever listens "
            "on port 0.",
            "Port 0 means 'any free port' only to bind(): the OS then gives the socket a real "
            "port, which getsockname() reports. A client that connects to port 0 was not told that "
            "port: the server is not started yet, or its port was not passed on.",
            "Start the server first, then connect to the port it reports: srv.getsockname()[1] "
            "(server.address for socklab's servers).", short, name)
    if call in _CONNECT_CALLS:
        return Explanation(
            "Connection refused",
            f"The other side answered at once that nothing accepts connections at this address{addr}.",
            _TCP_REFUSED + (_UNIX_REFUSED if unknown else ""),
            _TCP_REFUSED_FIX + (_UNIX_REFUSED_FIX if unknown else ""), short, name)
    return Explanation(  # which call, and so which kind of socket, is not known: every case
        "Connection refused",
        f"The other side answered at once that nothing accepts connections at this address{addr}.",
        _TCP_REFUSED + " On a connected UDP socket it means an earlier datagram came back as ICMP "
        "'port unreachable': nothing is bound to that port." + (_UNIX_REFUSED if unknown else ""),
        _TCP_REFUSED_FIX + (_UNIX_REFUSED_FIX if unknown else ""), short, name)


# (errno, the calls it is for (None: any), the family (None: any)) -> (title, what, why, fix): errors
# whose meaning depends on the call. {call} is the call's name.
_BY_CALL = {
    (errno.EOPNOTSUPP, ("setsockopt", "getsockopt"), None): (
        "Option not supported", "{call}() named an option this socket's family does not have.",
        "An AF_UNIX socket has only SOL_SOCKET options: TCP_NODELAY, TCP_MAXSEG and the other "
        "IPPROTO_TCP options belong to TCP sockets (Linux answers EOPNOTSUPP here, where a UDP "
        "socket answers ENOPROTOOPT).",
        "Leave the option out for AF_UNIX sockets (there is no Nagle delay to turn off), or check "
        "the (level, option) pair."),
    (errno.EOPNOTSUPP, ("socketpair",), None): (
        "Operation not supported", "socketpair() refused this family.",
        "On Linux socketpair() makes only AF_UNIX pairs: two connected sockets inside one machine, "
        "with no address. (Windows makes AF_INET pairs over loopback instead.)",
        "Leave the family out: socket.socketpair() gives an AF_UNIX pair where there is one."),
    (errno.EINVAL, ("setsockopt",), None): (
        "Invalid argument", "setsockopt() refused this option or its value.",
        "Some options can only be set before bind() (IPV6_V6ONLY, for one); others take only some "
        "values, or a struct of a given size (SO_LINGER takes struct.pack('ii', on, seconds)).",
        "Set such options right after socket(), before bind(); check the value the option takes "
        "in `man 7 socket` (or tcp, ip, ipv6)."),
    (errno.EINVAL, ("listen",), None): (
        "Invalid argument", "listen() refused: this socket cannot become a listening socket.",
        "Only a SOCK_STREAM socket that is not connected can listen: a socket that connect()ed (a "
        "client) or that accept() returned is one end of a connection already.",
        "Use a separate socket for the server: socket(), bind(), listen(), then accept()."),
    (errno.EACCES, ("setsockopt",), None): (
        "Permission denied", "setsockopt() refused: this option needs a privilege.",
        "A few options need CAP_NET_ADMIN (root), e.g. SO_DEBUG, and also the option number a wrong "
        "level picks: at SOL_SOCKET, TCP_NODELAY's number (1) is SO_DEBUG.",
        "Check the level: TCP_NODELAY goes with socket.IPPROTO_TCP, not SOL_SOCKET."),
    (errno.EMSGSIZE, None, socket.AF_UNIX): (
        "Message too long", "One datagram was larger than this AF_UNIX socket can send.",
        "An AF_UNIX datagram is limited by the socket's send buffer (SO_SNDBUF, about 200 KB by "
        "default on Linux), not by a network protocol.",
        "Send smaller datagrams, raise the send buffer "
        "(setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, n)), or use SOCK_STREAM."),
    (errno.EINPROGRESS, None, None): (
        "Connection in progress", "connect() on a non-blocking socket started the handshake and "
        "returned at once: this is not a failure.",
        "A non-blocking connect() cannot wait for the server's answer, so it raises "
        "BlockingIOError (EINPROGRESS) and the kernel goes on with the handshake. Calling connect() "
        "again gives EALREADY (still going on) or EISCONN (done).",
        "Wait until the socket is writable (select/selectors), then read "
        "sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR): 0 means connected, anything else is "
        "the errno of the failure. connect_ex() returns the code instead of raising."),
    (errno.EDESTADDRREQ, None, None): (
        "Destination address required", "{call}() has no address to send to: this datagram socket "
        "is not connected.",
        "A datagram socket has no connection to say where data goes: each sendto() names the "
        "address, or connect() fixes one for send().",
        "Use sendto(data, (host, port)), or connect((host, port)) first and then send()."),
    (errno.EAGAIN, ("sendall",), None): (
        "Would block", "sendall() on a non-blocking socket stopped when the send buffer was full.",
        "sendall() may have sent part of the data before it raised, and does not say how much: "
        "sending it again would send that part twice.",
        "On a non-blocking socket, use send() in a loop: keep the count it returns, and wait for "
        "the socket to be writable (select/selectors) before the next send(). Or give the socket a "
        "timeout (settimeout(5)) and let sendall() wait."),
}


def _by_call(exc, call, family, type_, address, addr: str, short: str,
             name: str) -> Explanation | None:
    """Errnos whose meaning depends on the call (or the socket's type): None where the errno's
    general text fits."""
    if not isinstance(exc, OSError):
        return None
    e = exc.errno
    if e == errno.ENOENT and isinstance(address, str) and address.startswith("@") \
            and call in ("connect", "connect_ex", "sendto"):
        return Explanation(
            "No such file or directory", f"There is no file at the AF_UNIX path{addr}.",
            "A leading '@' is how ss and netstat show an abstract name, whose first byte is really "
            "a NUL; to Python, '@name' is an ordinary (relative) file path.",
            f"Write the abstract name with its NUL byte: '\\0{address[1:]}'. For a file path, "
            "start the server first and use the path it bound.", short, name)
    if e == errno.EADDRINUSE and type_ == socket.SOCK_DGRAM and family in (socket.AF_INET, socket.AF_INET6):
        return Explanation(
            "Address already in use", f"bind() failed: another UDP socket is bound to this "
            f"address{addr}.",
            "A UDP socket from an earlier run (or another program) still holds the port. UDP has "
            "no listening and no TIME_WAIT: the port is free as soon as that socket closes.",
            "Close the other socket (socklab.stop_all() for socklab's demos), or bind to port 0 "
            "and let the OS pick a free one. Do not set SO_REUSEADDR to get around it: on Linux "
            "both sockets would then be bound, and each datagram goes to only one of them.",
            short, name)
    if e == errno.EADDRINUSE and family == socket.AF_UNIX:
        return Explanation(
            "Address already in use", f"bind() failed: a file already exists at the AF_UNIX "
            f"path{addr}.",
            "bind() creates the socket file, so the path must be free: a running server's socket, "
            "a stale socket file (it outlives close()), or an ordinary file or directory is there. "
            "(The same socket bound a second time fails this way too.)",
            "Choose another path, or remove the file with os.unlink(path) only if it is a socket "
            "file (stat.S_ISSOCK) and connecting to it is refused: any other file is somebody's "
            "data, and a socket that accepts belongs to a running server.", short, name)
    if e == errno.EADDRINUSE and type_ is None and family in (socket.AF_INET, socket.AF_INET6):
        t = _BY_ERRNO[e]
        return Explanation(
            t[0], t[1].format(addr=addr),
            "A socket from an earlier run (or another program) still holds the port: a server "
            "still listening there, a UDP socket still bound, or (TCP) connections in TIME_WAIT "
            "after a close, where the sockets do not both set SO_REUSEADDR.",
            "Use port 0 to let the OS pick a free port; close the old socket (socklab.stop_all() "
            "for socklab's demos). For TCP's TIME_WAIT only: set SO_REUSEADDR on both old and new "
            "sockets (never for UDP: both would then be bound).", short, name)
    if e == errno.EADDRINUSE and type_ == socket.SOCK_STREAM and family in (socket.AF_INET, socket.AF_INET6):
        t = _BY_ERRNO[e]
        return Explanation(
            t[0], t[1].format(addr=addr),
            "A server from an earlier run (or another program) is still listening there, or the "
            "port is in TIME_WAIT after a close and the sockets do not both set SO_REUSEADDR.",
            "Use port 0 to let the OS pick a free port; close the old server socket "
            "(socklab.stop_all() for socklab's demos); set SO_REUSEADDR on both old and new "
            "sockets for TIME_WAIT.", short, name)
    if e == errno.EACCES and call in ("bind", "connect", "connect_ex", "sendto") and family is not None:
        t = _BY_ERRNO[e]
        if family == socket.AF_UNIX:
            why = ("For an AF_UNIX path, bind() needs write permission on the directory it creates "
                   "the socket file in, and connect() (or sendto()) needs write permission on the "
                   "socket file itself.")
            fix = ("Use a path in a directory you own (socklab's private directory); another user's "
                   "socket is not yours to use.")
        elif call == "bind":
            why = ("A port below the unprivileged limit (usually 1024) needs root or "
                   "CAP_NET_BIND_SERVICE to bind().")
            fix = "Use a port of 1024 or above, or port 0 to let the OS choose one."
        elif call == "sendto":
            why = "Sending to a broadcast address needs the socket option SO_BROADCAST."
            fix = ("sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1) before sendto(), or "
                   "send to one host's address.")
        else:
            return None
        return Explanation(t[0], t[1].format(addr=addr), why, fix, short, name)
    for (number, calls, only_family), t in _BY_CALL.items():
        if e == number and (calls is None or call in calls) and only_family in (None, family):
            return Explanation(t[0], t[1].format(call=call or "send"), t[2], t[3], short, name)
    return None


def _argument_count(call: str | None, msg: str, short: str) -> Explanation:
    """A socket call given too many or too few arguments: what the call takes."""
    what = f"{call or 'The call'}() was given the wrong number of arguments: {msg}."
    if call in ("connect", "connect_ex", "bind"):
        return Explanation(
            "Wrong number of arguments", what,
            f"{call}() takes ONE argument, the address: for AF_INET a tuple (host, port). "
            f"{call}('127.0.0.1', 8080) passes two.",
            f"Put the address in its own parentheses: {call}(('127.0.0.1', 8080)).", short)
    if call == "sendto":
        return Explanation(
            "Wrong number of arguments", what,
            "sendto(data, address) needs both: the data, and where it goes. A UDP socket has no "
            "connection that would say where.",
            "A server replies to the address recvfrom() returned: data, addr = sock.recvfrom(1024), "
            "then sock.sendto(reply, addr). (After connect(address), send(data) needs no address.)",
            short)
    if call in ("recv", "recvfrom", "recv_into", "recvfrom_into"):
        return Explanation(
            "Wrong number of arguments", what,
            f"{call}() needs the most bytes it may return at once (bufsize): there is no 'read "
            "everything', because a stream has no end until the peer closes.",
            f"Write e.g. {call}(1024); to read a whole message, loop until you have it.", short)
    return Explanation(
        "Wrong number of arguments", what, "Each socket call takes a fixed list of arguments.",
        f"Check the call's signature: help(socket.socket.{call})" if call else
        "Check the call's signature with help().", short)


def _not_bytes(given: str, twhere: str, short: str) -> Explanation:
    """Data that is not bytes, by what it is."""
    why, fix = {
        "str": ("Sockets carry raw bytes; text must be encoded first.",
                "Send b'hello' or 'hello'.encode('utf-8'); decode what you receive with "
                ".decode('utf-8')."),
        "int": ("Sockets carry raw bytes: a number has to be turned into bytes first, as text or "
                "in binary.", "As text: str(n).encode(); in binary, a fixed size: "
                "n.to_bytes(4, 'big') or struct.pack('!I', n)."),
        "NoneType": ("The value sent is None: often a function that was meant to return the data "
                     "returned nothing (no return statement).",
                     "Check where the value comes from; send bytes such as b'hello'."),
        "dict": ("Sockets carry raw bytes: a dict or list has to be serialised first.",
                 "json.dumps(obj).encode() on one side, json.loads(data) on the other."),
    }.get(given, ("Sockets carry raw bytes only.", "Turn the value into bytes before sending it."))
    if given == "list":
        why, fix = ("Sockets carry raw bytes: a dict or list has to be serialised first.",
                    "json.dumps(obj).encode() on one side, json.loads(data) on the other.")
    return Explanation("Sockets send bytes, not str" if given == "str" else "Sockets send bytes",
                       f"The call{twhere} was given {_a(given)}"
                       + ("." if given == "str" else ", not bytes."), why, fix, short)


def _a(type_name: str) -> str:
    return ("an " if type_name[:1].lower() in "aeiou" else "a ") + type_name


def _host_port(text: str):
    """('127.0.0.1', 8080) from '127.0.0.1:8080' or '[::1]:8080'; None if it is not that shape."""
    m = re.fullmatch(r"\s*\[([^\]]+)\]:(\d+)\s*|\s*([^:\s]+):(\d+)\s*", text)
    if not m:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return host, int(port)


def _address_problem(msg: str, address) -> tuple:
    """(what is wrong, how to write it instead) for a TypeError about an address: the address
    itself when known, else CPython's message. Empty strings where neither says more."""
    m = re.search(r"address must be tuple, not (\w+)", msg)
    if m:  # connect('127.0.0.1:8080'), bind(8080), connect(['127.0.0.1', 80]), connect(None)
        family = "AF_INET6" if "AF_INET6" in msg else "AF_INET"
        kind = m.group(1)
        if isinstance(address, str):
            hp = _host_port(address)
            if hp:
                return (f"{address!r} is one str: host and port in one string are not split for you",
                        f"Write {hp!r}: the host and the port as two items of a tuple, the port an int.")
            if "/" in address:
                return (f"{address!r} is a path, an AF_UNIX address; this {family} socket needs a "
                        "tuple (host, port)", "Make the socket AF_UNIX to use a path, or give a "
                        "tuple such as ('127.0.0.1', 8080).")
            if address.count(":") > 1:  # IPv6: its own colons hide whether a port follows
                return (f"{address!r} is one str with an IPv6 address in it: the port is missing, "
                        "or it follows another colon, which nothing can tell apart from the "
                        "address's own", "Write a tuple: the IPv6 host and the port as two items, "
                        "the port an int, e.g. ('::1', 8080).")
            return (f"{address!r} is a host alone, one str; the port is missing",
                    f"Write ({address!r}, 8080), with your port number as an int.")
        if kind == "str":
            return ("the address is one str, not a tuple: a str such as '127.0.0.1:8080' or "
                    "'localhost' is not split into host and port", "")
        if kind == "list" and isinstance(address, list):
            return ("the address is a list; it must be a tuple", f"Write {tuple(address)!r}.")
        if kind == "list":
            return ("the address is a list; it must be a tuple", "Use round brackets: "
                    "('127.0.0.1', 8080), not ['127.0.0.1', 8080].")
        if kind == "int":
            port = address if isinstance(address, int) else 8080
            return (f"the address is an int{f' ({address})' if isinstance(address, int) else ''}: "
                    "a port alone is not an address", f"Write ('127.0.0.1', {port}).")
        if kind == "NoneType":
            return ("the address is None: a variable that was never given an address, or a "
                    "function that returned nothing", "")
        return (f"the address is {_a(kind)}, not a tuple (host, port)", "")
    if "address must be a pair" in msg or "AF_INET6 address must be a tuple" in msg:
        six = "AF_INET6" in msg
        if isinstance(address, tuple):
            n = len(address)
            if n == 0:
                return ("the tuple is empty", "")
            if n == 1:
                return (f"the tuple {address!r} has no port, only the host",
                        f"Write ({address[0]!r}, 8080), with your port number as an int.")
            if six:
                return (f"the tuple has {n} items; AF_INET6 takes 2 to 4: (host, port, flowinfo, "
                        "scope_id)", f"Write {address[:2]!r}.")
            return (f"the tuple has {n} items; AF_INET takes exactly two, (host, port)"
                    + (" (four items is AF_INET6's form)" if n == 4 else ""), f"Write {address[:2]!r}.")
        if six:
            return ("the tuple has too few or too many items: AF_INET6 takes (host, port), up to "
                    "(host, port, flowinfo, scope_id)", "")
        return ("the tuple does not have exactly two items (host, port): the port is missing, or "
                "there are extra items", "")
    m = re.search(r"'(\w+)' object cannot be interpreted as an integer", msg)
    if m:  # a port (or flowinfo, scope_id) that is not an int
        if isinstance(address, tuple):
            for i, v in enumerate(address[1:4], start=1):
                if isinstance(v, int):
                    continue
                part = ("port", "flowinfo", "scope_id")[i - 1]
                if part == "port" and isinstance(v, str) and v.strip().isdigit():
                    fixed = (address[0], int(v)) + tuple(address[2:])
                    return (f"the port is the str {v!r}, not an int",
                            f"Write {fixed!r}: the port without quotes (int({v!r}) converts one).")
                if part == "port" and isinstance(v, str):
                    return (f"the port is the str {v!r}, not a number",
                            "Give the port number as an int, e.g. 80 (socket.getservbyname("
                            f"{v.strip()!r}) looks a service name up).")
                if part == "port" and isinstance(v, float) and v.is_integer():
                    fixed = (address[0], int(v)) + tuple(address[2:])
                    return (f"the port is the float {v!r}, not an int", f"Write {fixed!r}.")
                return (f"the {part} is {_a(type(v).__name__)} ({v!r}), not an int", "")
        return (f"a number in the address is {_a(m.group(1))}, not an int (e.g. the port '8080' "
                "in quotes)", "")
    m = re.search(r"str, bytes or bytearray expected, not (\w+)", msg)
    if m:  # the host is not a str
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = address[0], address[1]
            if isinstance(port, str) and isinstance(host, int):
                return ("host and port are swapped: the host comes first",
                        f"Write {(port, host) + tuple(address[2:])!r}.")
            return (f"the host is {_a(type(host).__name__)} ({host!r}), not a str",
                    "Write the host as a str in quotes, e.g. ('127.0.0.1', 8080).")
        return (f"the host is {_a(m.group(1))}, not a str", "")
    m = re.search(r"bytes-like object is required, not '(\w+)'", msg)
    if m:  # only an AF_UNIX address asks for bytes-like (a path)
        kind = "a (host, port) tuple" if m.group(1) == "tuple" else _a(m.group(1))
        return (f"an AF_UNIX socket takes a path (str or bytes), not {kind}",
                "Give this AF_UNIX socket a path such as '/tmp/demo.sock', or make it an AF_INET "
                "socket for ('127.0.0.1', 8080).")
    return ("", "")


# Names that other objects' calls have too (files, os): not enough to call an error a socket's.
_GENERIC_CALLS = frozenset({"close", "read", "write", "readinto", "readline", "fileno", "detach",
                            "dup", "makefile", "__enter__", "__exit__"})


def _library_call_raising(exc: BaseException) -> tuple | None:
    """('call', name) of the socket call a library raised ``exc`` for, with its errno, in a `raise`
    of its own (asyncio's loop.sock_connect() raises OSError(err, 'Connect call failed ...')):
    the innermost library frame, outward from the raise, named after a socket call. None if the
    raise is not in a library, or no such frame comes before the learner's code."""
    entries = []
    tb = exc.__traceback__
    while tb is not None and len(entries) < 200:
        entries.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    for code in reversed(entries):
        if not code.co_filename.startswith(LIBRARY_DIRS):
            return None
        name = code.co_name[len("sock_"):] if code.co_name.startswith("sock_") else code.co_name
        if name in _SOCKET_CALLS and name not in _GENERIC_CALLS:
            return ("call", name)
    return None


# ---- what a plain socket call was given: read from CPython's audit events, per thread

_AUDITED = {"socket.bind": "bind", "socket.connect": "connect", "socket.sendto": "sendto"}
# The calls that make those events: create_connection() connects, create_server() binds.
_EVENT_OF = {"bind": "bind", "create_server": "bind", "connect": "connect", "connect_ex": "connect",
             "create_connection": "connect", "sendto": "sendto"}
_recent = threading.local()
_watching = False
# socket -> how many bind/connect/sendto calls it has made: after close() (a `with` block ends
# before a cell's error is shown), whether it ever had an address.
_addressed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _audit(event: str, args: tuple) -> None:
    call = _AUDITED.get(event)
    if call is not None:
        sock, address = args[0], args[-1]
        _recent.last = (call, sock.family, sock.type, address)
        _addressed[sock] = _addressed.get(sock, 0) + 1


def watch_socket_calls() -> None:
    """Note, per thread, the family, type and address of the latest bind(), connect() and sendto()
    (CPython's audit events 'socket.bind' ...), so that ``note_call`` can tell explain() what a
    plain socket call that failed was given. Installed once per process; an audit hook cannot be
    removed, and this one only keeps a tuple per thread."""
    global _watching
    if not _watching:
        sys.addaudithook(_audit)
        _watching = True


def note_call(exc: BaseException, call: str | None) -> None:
    """Note on ``exc`` (which ``call`` just raised in this thread) what explain() can use: the
    family and type of the socket the learner's code called it on (``u.recv(...)``), and the
    address a bind(), connect() or sendto() was given, if ``watch_socket_calls`` saw it. A traced
    socket's own note (trace.record) is kept."""
    if not isinstance(exc, (OSError, TypeError, ValueError, OverflowError)):
        return
    if call is not None and getattr(exc, "socklab_call", None) is None:
        exc.socklab_call = call
    last = getattr(_recent, "last", None)
    # The audit event comes after the arguments are parsed: an argument error has none of its own.
    own_event = isinstance(exc, OSError) and last is not None and _EVENT_OF.get(call) == last[0]
    if own_event:
        _recent.last = None  # one error per call: a later error of another socket must not use it
        _, family, type_, address = last
        if getattr(exc, "socklab_address", None) is None:
            exc.socklab_address = address
        exc.socklab_family, exc.socklab_type = family, type_
    try:
        sock, written = _receiver_named(exc)
    except Exception:  # bytecode this Python's dis cannot read: nothing noted, explain() guesses less
        sock = written = None
    if sock is not None:
        exc.socklab_receiver = written  # as the code names it: fixes can use the learner's name
        exc.socklab_family, exc.socklab_type = sock.family, sock.type
        exc.socklab_timeout = sock.gettimeout()  # 0.0: a non-blocking socket
        if sock.fileno() != -1:
            if sock.type == socket.SOCK_STREAM and hasattr(socket, "SO_ACCEPTCONN"):
                exc.socklab_listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            here = sock.getsockname()
            # bound already: a port, or an AF_UNIX path or abstract name
            exc.socklab_bound = bool(here[1]) if isinstance(here, tuple) else bool(here)
        elif _watching:  # closed since: had it an address before this call?
            exc.socklab_bound = _addressed.get(sock, 0) - own_event > 0


_NAME_LOADS = ("LOAD_NAME", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_FAST", "LOAD_FAST_CHECK")


def _receiver(exc: BaseException) -> socket.socket | None:
    """The socket a call such as ``u.recv(...)`` or ``self.sock.send(...)`` in the learner's
    innermost frame was made on: the names before the method, looked up in the frame without
    running any code (no properties). None for anything else, e.g. ``make().recv(...)``."""
    return _receiver_named(exc)[0]


def _receiver_named(exc: BaseException) -> tuple:
    """(the socket, as ``_receiver`` finds it, and the expression the code wrote for it, e.g.
    'srv' or 'self.sock'); (None, None) if not found."""
    tb, entries = exc.__traceback__, []
    while tb is not None and len(entries) < 200:
        entries.append(tb)
        tb = tb.tb_next
    learner = next((e for e in reversed(entries)
                    if not e.tb_frame.f_code.co_filename.startswith(LIBRARY_DIRS)), None)
    if learner is None:
        return None, None
    frame, code = learner.tb_frame, learner.tb_frame.f_code
    instrs = list(dis.get_instructions(code))
    at = max((i for i, ins in enumerate(instrs) if ins.offset <= learner.tb_lasti), default=None)
    if at is None or instrs[at].positions is None:
        return None, None
    start = (instrs[at].positions.lineno, instrs[at].positions.col_offset)
    chain = []  # the loads of this call's own expression, in order: u, .sock, .send
    for ins in instrs[:at]:
        q = ins.positions
        if q is not None and (q.lineno, q.col_offset) == start:
            chain.append(ins)
    while chain and not chain[-1].opname.startswith(("LOAD_METHOD", "LOAD_ATTR")):
        chain.pop()  # PRECALL and the like, between the method and the call
    if len(chain) < 2 or not chain[0].opname.startswith(_NAME_LOADS) \
            or any(not ins.opname.startswith("LOAD_ATTR") for ins in chain[1:-1]):
        return None, None
    name = chain[0].argval
    scopes = (frame.f_locals, frame.f_globals, frame.f_builtins)
    obj = next((scope[name] for scope in scopes if name in scope), None)
    for ins in chain[1:-1]:
        obj = inspect.getattr_static(obj, ins.argval, None)
    if not isinstance(obj, socket.socket):  # a TracedSocket keeps its socket in .sock
        obj = inspect.getattr_static(obj, "sock", None)
    if not isinstance(obj, socket.socket):
        return None, None
    return obj, ".".join([name] + [ins.argval for ins in chain[1:-1]])


def socket_call_of(exc: BaseException) -> str | None:
    """The socket call (or name lookup, or wait for one) that raised ``exc``, an OSError: what
    ``explain`` is written for. None for others: open()'s FileNotFoundError, whose errno means
    something else there; os.close(); a file's read(); one the code raised itself. Never raises."""
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, (socket.gaierror, socket.herror)):
        return "getaddrinfo"
    try:
        origin = _origin(exc)
    except Exception:  # a traceback this Python's dis cannot read: do not claim it
        return None
    if origin is not None and origin[0] == "raise" and getattr(exc, "errno", None):
        origin = _library_call_raising(exc)  # e.g. asyncio's connect: raise OSError(err, ...)
    if origin is None or origin[0] not in ("call", "wait"):
        return None
    if origin[1] == "readinto" and str(exc) == "cannot read from timed out object":
        return "readinto"  # socket.py's SocketIO raises it: a makefile() file after a timeout
    # A timeout is a socket's (or a wait's) whatever the name: files and os calls have none.
    if origin[1] in _GENERIC_CALLS and not isinstance(exc, _TIMEOUTS):
        return None
    return origin[1]


# What select.select() and a selector say about a closed socket (its fileno() is -1).
_CLOSED_IN_SELECT = ("file descriptor cannot be a negative integer (-1)", "Invalid file descriptor: -1")
# ValueErrors that the standard library raises itself, by the call they come from.
_RAISED_BY = {**dict.fromkeys(_CLOSED_IN_SELECT, "select"),
              "check_hostname requires server_hostname": "wrap_socket",
              "only SOCK_STREAM type sockets are supported": "sendfile"}
# Socket functions called without a socket object before them (socket.create_connection(...)).
_FUNCTIONS = frozenset({"create_connection", "create_server", "getaddrinfo", "socketpair", "socket",
                        "fromfd", "inet_aton", "inet_pton", "inet_ntop", "wrap_socket"})


def _near_name(name) -> str | None:
    """A built-in or socket-module name that ``name`` is a likely typo of ('OSEror', 'AF_INTE')."""
    if not isinstance(name, str) or not name:
        return None
    import builtins
    known = [n for n in (*dir(builtins), *dir(socket)) if not n.startswith("_")]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
    # 'sock' is more likely a variable of the learner's not assigned yet than 'socket' misspelt
    return close[0] if close and not close[0].startswith(name) else None


def argument_error_call(exc: BaseException) -> str | None:
    """The socket call that refused its arguments with ``exc`` (a TypeError, ValueError,
    OverflowError, or MemoryError for recv(2**40)): ``c.sendall('hi')``, ``s.bind('127.0.0.1:80')``.
    None if the call is not a socket's (``int('x')``, a generator's send()): that error is not
    explain()'s. Never raises."""
    if not isinstance(exc, (TypeError, ValueError, OverflowError, MemoryError)):
        return None
    if isinstance(exc, ValueError) and str(exc) in _RAISED_BY:
        return _RAISED_BY[str(exc)]  # raised by the library's own code, which names no call
    try:
        origin = _origin(exc)
        if origin is None or origin[0] != "call" or origin[1] not in _SOCKET_CALLS \
                or origin[1] in _GENERIC_CALLS or origin[1] in _WAIT_CALLS:
            return None
        if origin[1] in _FUNCTIONS or _receiver(exc) is not None:
            return origin[1]
    except Exception:  # a traceback this Python's dis cannot read: do not claim it
        return None
    return None


def explain(exc: BaseException, address=None, call: str | None = None) -> Explanation:
    """Explain ``exc`` (raised by ``call`` on ``address`` if known, or as a traced socket noted
    them on it) for a learner. Never raises.

    For timeouts and wrong types, the traceback's innermost frames name the socket call (or the
    wait, or the `raise` statement) that raised ``exc``; where they name one, it counts over
    ``call``, which may be a step or button name (a panel's 'send' is connect, sendall and recv)."""
    try:
        if address is None:  # what a traced socket noted when the call failed (trace.record)
            address = getattr(exc, "socklab_address", None)
        if call is None:
            call = getattr(exc, "socklab_call", None)
        return _explain(exc, address, call)
    except Exception as broken:  # e.g. an exception whose __str__ raises: say what is known
        name = type(exc).__name__
        return Explanation(
            f"{name} (not explained)", f"The code raised {name}, which could not be shown: "
            f"turning it into text raised {type(broken).__name__}.",
            "The exception's own __str__ (or its arguments) is broken.",
            "Run the code without explain_errors() to see the traceback, or print repr(exc.args).",
            name)


def _explain(exc: BaseException, address=None, call: str | None = None, origin=None) -> Explanation:
    if isinstance(exc, SocklabError):
        return exc.explanation
    own = getattr(exc, "socklab_explanation", None)
    if callable(own):  # an error of a layer above sockets that explains itself (http.HTTPError)
        return own()
    if origin is None and isinstance(exc, (*_TIMEOUTS, TypeError)):
        try:
            origin = _origin(exc)
        except Exception:  # explain() never raises: without a traceback reading, no guess
            origin = None
    if isinstance(exc, ssl.SSLError):  # errno 1 here is OpenSSL's, not EPERM
        from .tls import explain as explain_tls
        return explain_tls(exc)
    if getattr(exc, "socklab_listening", False) and (call in _SEND_CALLS or call in _RECV_CALLS):
        return on_listener(exc, call)
    if isinstance(exc, PermissionError) and exc.errno == errno.EACCES and call == "socket":
        return Explanation(
            "Permission denied", "The operating system refused to create this socket.",
            "Unprivileged ICMP 'ping' sockets (SOCK_DGRAM + IPPROTO_ICMP) are allowed only to the groups "
            "in net.ipv4.ping_group_range ('1 0' means nobody); raw sockets need root or CAP_NET_RAW.",
            "Run where you have the privilege, or ask the administrator to widen ping_group_range.",
            _short(exc), "EACCES")
    # Templates read well with or without it; a path in socklab's private directory shows as
    # '<rundir>/...', so no absolute path ends up in a notebook.
    if isinstance(address, (str, bytes)) and not _abstract(address):
        addr = f" {display_path(address)!r}"
    else:
        addr = f" {address!r}" if address is not None else ""
    short = _short(exc)
    name = _errname(exc)
    where = f" in {call}()" if call else ""
    # What note_call() or a traced socket noted: the socket's family and type, if known.
    family, type_ = getattr(exc, "socklab_family", None), getattr(exc, "socklab_type", None)
    if family is None and isinstance(address, tuple):
        family = socket.AF_INET6 if len(address) == 4 or ":" in str(address[0]) else socket.AF_INET
    elif family is None and isinstance(address, (str, bytes)):
        family = socket.AF_UNIX

    if isinstance(exc, socket.herror):  # its number is the resolver's h_errno, not an errno
        return Explanation(
            "Host lookup failed", f"The name lookup{where}{' for' + addr if addr else ''} found no "
            f"answer ({exc.args[-1] if exc.args else exc}).",
            "The resolver (/etc/hosts, then DNS) had no answer. Most addresses have no name "
            "(gethostbyaddr() fails for them), and a lookup can fail where the host is reachable "
            "all the same.",
            "Use the address itself; a missing name is not an error of the connection. (Its number, "
            f"{exc.errno}, is the resolver's code, not an errno.)", short, "")
    if isinstance(exc, socket.gaierror):
        one = _loopback_name_one_family(address, short, name)
        if one is not None:
            return one
        t = _GAI.get(name)
        if t:
            return Explanation(t[0], t[1].format(addr=addr), t[2], t[3], short, name)
        return Explanation("Address lookup failed", f"getaddrinfo could not use the address{addr}.",
                           str(exc), "Use a numeric address like '127.0.0.1' or '::1'.", short, name)
    if isinstance(exc, _TIMEOUTS) and getattr(exc, "errno", None) in (None, 0):
        # socket.timeout is TimeoutError (Python 3.10+); it has no errno when raised by settimeout().
        return _timeout(exc, call, origin, short)
    if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)) and call in _CONNECT_CALLS:
        stopped = ended(address)  # a socklab server that listened there stopped by itself
        if stopped is not None:
            return dataclasses.replace(stopped, error=short, code=name)
    specific = _by_call(exc, call, family, type_, address, addr, short, name)
    if specific is not None:
        return specific
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EALREADY \
            and getattr(exc, "socklab_timeout", None) == 0.0:
        return Explanation(
            "Connection attempt already in progress", "connect() was called again on this "
            "non-blocking socket while its first connect() is still going on.",
            "A non-blocking connect() starts the handshake and returns at once (EINPROGRESS); the "
            "kernel goes on with it, and connect() again only says so (EALREADY).",
            "Do not call connect() again: wait until the socket is writable (select/selectors), "
            "then read sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR): 0 means connected.",
            short, name)
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EALREADY:
        return Explanation(
            "Connection attempt already in progress",
            f"connect() was called again on a socket whose earlier connect() has not finished{addr}.",
            "A connect() that timed out is not cancelled: the kernel keeps retrying the handshake on "
            "that socket, so another connect() on it fails at once (EALREADY).",
            "Close that socket and create a new one for every try (socket.create_connection(address, "
            "timeout=t) does both).", short, name)
    if isinstance(exc, BlockingIOError) and call == "connect" and isinstance(address, (str, bytes)):
        return Explanation(
            "Accept queue full (AF_UNIX)",
            f"connect() to the AF_UNIX address{addr} failed at once: the listener's accept queue is full.",
            "The server has not accept()ed the connections already waiting (Linux lets backlog + 1 "
            "wait). A socket with a timeout is non-blocking underneath, and a non-blocking AF_UNIX "
            "connect() to a full queue fails at once with EAGAIN instead of waiting for its timeout. "
            "(Only a socket without any timeout would wait, for as long as it takes.)",
            "Make the server accept() sooner (or give it a larger backlog), or try to connect again "
            "a little later.", short, name)
    if isinstance(exc, BlockingIOError) and family is not None and family != socket.AF_UNIX:
        return Explanation(
            "Would block", f"The call{where} could not complete immediately, and this socket does not wait.",
            "A non-blocking socket (setblocking(False) or settimeout(0)) raises BlockingIOError where "
            "a call would have to wait: recv() for data, accept() for a client, send() for room in "
            "the send buffer.",
            "Wait for readiness with selectors (or select), then call again; or give the socket a "
            "timeout (settimeout(5)) and let the call wait.", short, name)
    if isinstance(exc, BlockingIOError):
        return Explanation(
            "Would block", f"The call{where} could not complete immediately, and this socket does not wait.",
            "A non-blocking socket (setblocking(False) or settimeout(0)) raises BlockingIOError where "
            "a call would have to wait. A socket with a timeout is non-blocking underneath too: an "
            "AF_UNIX connect() to a full accept queue fails this way at once, however long its "
            "timeout (one with no timeout at all waits until the server accept()s).",
            "For a non-blocking socket, wait for readiness with selectors/select and try again. For "
            "a connect() to a full AF_UNIX queue, let the server accept() sooner, or retry later.",
            short, name)
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED and isinstance(address, (str, bytes)):
        if _abstract(address):
            return Explanation(
                "Connection refused", "Nothing listens on this abstract AF_UNIX name.",
                "An abstract name (it starts with a NUL byte) has no file: it exists only while a socket "
                "is bound to it, and is released when that socket closes. No socket bound to it listens now.",
                "Start the server first, and connect to the name it bound.", short, name)
        if call == "sendto" or type_ == socket.SOCK_DGRAM:
            return Explanation(
                "Connection refused", f"A file exists at the AF_UNIX path{addr}, but no socket is "
                "bound to it any more.", _UNIX_DGRAM_REFUSED + " The file outlives close().",
                _UNIX_DGRAM_REFUSED_FIX, short, name)
        return Explanation(
            "Connection refused", f"A file exists at the AF_UNIX path{addr}, but no socket listens on it.",
            "This is a stale socket file (a server bound it and closed: close() does not remove the "
            "file), a socket that is bound but not listening, or a file that is not a socket at all. "
            "(A path with no file at all gives FileNotFoundError instead.)",
            "Start the server first, and connect to the path it bound. To reuse the path for a new "
            "server, remove the file before bind(), but only if it is a socket file (stat.S_ISSOCK) "
            "that refuses connections.", short, name)
    if isinstance(exc, FileNotFoundError) and call == "bind":
        return Explanation(
            "No such directory", f"bind() could not create the AF_UNIX socket file{addr}: a "
            "directory on its path does not exist.",
            "bind() creates the socket file itself, but not the directories above it.",
            "Create the directory first (os.makedirs(directory, exist_ok=True)), or bind in one "
            "that exists, such as a tempfile.mkdtemp() directory of your own.", short, name)
    if isinstance(exc, OSError) and exc.errno is None and str(exc) == "cannot read from timed out object":
        return Explanation(
            "File unusable after a timeout", "A read from a socket's file (made by makefile()) "
            "failed at once: an earlier read from this file timed out.",
            "The file keeps its own buffer, and a read that timed out may have left part of a line "
            "in it or lost it, so Python refuses every further read from that file.",
            "After a timeout, make a new file with sock.makefile() (or give up on the connection); "
            "better, choose a timeout long enough for the peer to finish its line.", short)
    if isinstance(exc, OSError) and "AF_UNIX path too long" in str(exc):
        return Explanation(
            "AF_UNIX path too long", "The socket file path is longer than the OS allows.",
            "An AF_UNIX address is stored in a fixed 108-byte field on Linux (104 on macOS), counted "
            "in UTF-8 bytes.", "Use a shorter path, e.g. in a short temporary directory.", short)
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL and call == "socket":
        return Explanation(
            "Invalid argument", "socket() refused the combination of family, type and protocol.",
            "The protocol number must be one the family and type can carry: 0 picks the default "
            "(TCP for SOCK_STREAM, UDP for SOCK_DGRAM); raw sockets name one, e.g. IPPROTO_ICMP.",
            "Leave proto out (0), or pass a socket.IPPROTO_* constant that fits the type.",
            short, name)
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL and call in ("bind", "connect") \
            and _link_local(address):
        return Explanation(
            "Invalid argument", f"{call}() refused the link-local address{addr}.",
            "A link-local IPv6 address (fe80::/10) is valid only on its own interface: the part "
            "after '%' must name an interface that exists and, for bind(), has that address.",
            "Look up the interface's fe80:: address with `ip -6 addr` and use it with its zone "
            "(e.g. 'fe80::1%eth0'), or use '::1' for this machine.", short, name)
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return _refused(address, addr, call, short, name, family, type_)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno < 0:
        # create_server() re-raises a getaddrinfo error as OSError(-9, '... (while attempting
        # to bind on address ...)')
        gai = {getattr(socket, n): n for n in _GAI if hasattr(socket, n)}.get(exc.errno)
        if gai is not None:
            t = _GAI[gai]
            return Explanation(t[0], t[1].format(addr=addr), t[2], t[3], short, gai)
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
        return _too_many_files(short, name)
    if isinstance(exc, OSError) and exc.errno in _BY_ERRNO:
        t = _BY_ERRNO[exc.errno]
        return Explanation(t[0], t[1].format(addr=addr), t[2], t[3], short, name)
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return no_thread(short)
    if isinstance(exc, OverflowError) and ("port" in str(exc) or call in _ADDRESS_CALLS):
        return Explanation(
            "Port out of range", f"The port in the address{addr} is not between 0 and 65535.",
            "TCP and UDP ports are 16-bit numbers. Port 0 is special: it asks the OS for any free port.",
            "Use a port from 1024 to 65535, or 0 to let the OS choose.", short)
    if isinstance(exc, OverflowError):
        return Explanation(
            "Number out of range", f"A number given{where} is too large or too small: {exc}.",
            "Socket calls pass numbers to the OS as fixed-size C integers (listen's backlog and "
            "recv's bufsize are C ints, ports 16-bit numbers).",
            "Use a small, sensible value: e.g. listen(5), recv(65536).", short)
    if isinstance(exc, TypeError):
        msg = str(exc)
        # The socket call the traceback names is more precise than a step name such as 'exchange'.
        tcall = origin[1] if origin and origin[0] == "call" else call
        twhere = f" in {tcall}()" if tcall else ""
        maybe_address = tcall is None or tcall in _ADDRESS_CALLS
        if tcall == "socket" and "cannot be interpreted as an integer" in msg:
            return Explanation(
                "Constants, not names", f"socket() was given a name where it takes a constant: {msg}.",
                "socket(family, type, proto) takes the socket module's numbers: socket.AF_INET, "
                "socket.SOCK_STREAM, socket.IPPROTO_TCP; the text 'AF_INET' or 'tcp' is not one.",
                "Write socket.socket(socket.AF_INET, socket.SOCK_STREAM) (socklab.socket() also "
                "takes the names as text).", short)
        if tcall == "setsockopt":
            return Explanation(
                "Wrong option value", f"setsockopt() was given a value of the wrong type: {msg}.",
                "An option's value is an int for most options (a size, a flag 1/0), or bytes for "
                "the few that take a C struct (SO_LINGER: struct.pack('ii', on, seconds)); a str "
                "is neither.", "Pass a number without quotes, e.g. setsockopt(socket.SOL_SOCKET, "
                "socket.SO_RCVBUF, 65536).", short)
        counted = re.search(r"takes (?:exactly |at least |at most )?\w+(?: or \w+)? arguments? "
                            r"\(\d+ given\)", msg)
        if counted:
            return _argument_count(tcall, msg, short)
        if tcall == "sendto" and "not 'tuple'" in msg and family in (socket.AF_INET, socket.AF_INET6):
            return Explanation(
                "Arguments swapped", "sendto() was given the address where the data goes.",
                "sendto(data, address) takes the data first, then the address it goes to.",
                "Write sock.sendto(data, addr), e.g. sock.sendto(b'pong', addr) with the addr that "
                "recvfrom() returned.", short)
        if tcall == "sendto" and "not 'NoneType'" in msg:
            return Explanation(
                "No address to send to", "sendto() was given None as its address.",
                "recvfrom() returns None as the sender's address when the sender is an AF_UNIX "
                "datagram socket that never bound a path of its own: it has no address, so no reply "
                "can reach it.",
                "Make the client bind() a path of its own before it sends (socklab's Client does); "
                "the server then replies with sendto(data, addr) to that path.", short)
        if "concatenate str (not \"bytes\")" in msg or "can't concat str to bytes" in msg:
            return Explanation(
                "str and bytes mixed", f"Code joined a str and bytes with + ({msg}).",
                "Sockets carry bytes: recv() returns bytes, and what you send must be bytes. A "
                "str literal ('done: ') and received data (b'...') cannot be added together.",
                "Write bytes literals for what you send (b'done: ' + data), or decode what you "
                "received first and encode the result: ('done: ' + data.decode()).encode().", short)
        if "address must be" in msg:
            about_address = True
        elif "bytes-like" in msg:  # the data, or an AF_UNIX address of the wrong type
            about_address = ("not 'tuple'" in msg and maybe_address) or tcall in ("bind", "connect",
                                                                                  "connect_ex")
            if not about_address:
                given = re.search(r"not '(\w+)'", msg)
                return _not_bytes(given.group(1) if given else "str", twhere, short)
        elif "str, bytes or bytearray expected" in msg:  # the host of an address tuple
            about_address = maybe_address
        elif "cannot be interpreted as an integer" in msg:  # a port, or recv's bufsize, listen's ...
            about_address = tcall in _ADDRESS_CALLS or (tcall is None and isinstance(address, tuple))
        else:
            about_address = maybe_address and "address" in msg
        if about_address:
            problem, fix = _address_problem(msg, address)
            return Explanation(
                "Wrong address format", f"The address{addr} has the wrong shape or types.",
                (problem[:1].upper() + problem[1:] + ". " if problem else "") + _ADDRESS_RULE,
                fix or _ADDRESS_FIX, short)
        return Explanation(
            "Wrong argument type", f"The call{twhere} was given a value of the wrong type: {msg}.",
            "Socket calls take fixed types: recv(bufsize) an int, settimeout(seconds) a number or "
            "None, send(data) bytes, addresses a tuple with the port an int (or a path for AF_UNIX).",
            "Check the types of the arguments, e.g. recv(1024) rather than recv('1024').", short)
    if isinstance(exc, UnicodeEncodeError):
        return Explanation(
            "Text cannot be encoded", f"The text could not be turned into bytes{where}: {exc.reason} "
            f"at position {exc.start}.",
            "Sockets carry bytes, so text is encoded first (socklab uses UTF-8). A str holding a lone "
            "surrogate such as '\\udcff' (left over from decoding invalid bytes) has no UTF-8 form.",
            "Send bytes directly (b'\\xff\\xfe' is fine on a socket), or fix the text; "
            "errors='surrogateescape' turns such text back into its original bytes.", short)
    if isinstance(exc, UnicodeDecodeError):
        return Explanation(
            "Bytes are not valid UTF-8", f"Received bytes could not be decoded as text{where}: "
            f"{exc.reason} at position {exc.start}.",
            "A socket delivers raw bytes, and the peer may send anything: binary data, another "
            "encoding, or a UTF-8 character split across two recv() calls.",
            "Keep data as bytes until a whole message has arrived; decode with "
            "errors='replace' (or 'backslashreplace') when showing untrusted data.", short)
    if isinstance(exc, ValueError) and str(exc) in _CLOSED_IN_SELECT:
        return Explanation(
            "Closed socket in a select", "select() (or a selector) was given a socket that is "
            "already closed: its fileno() is -1.",
            "select() and selectors watch file descriptors; a closed socket has none any more.",
            "Take a socket out of the lists (or sel.unregister(sock)) before you close it.", short)
    if isinstance(exc, ValueError) and str(exc) == "check_hostname requires server_hostname":
        return Explanation(
            "Server name missing", "wrap_socket() on a client needs the name of the server it "
            "connects to.",
            "A verifying client checks that the server's certificate was issued for that name, so "
            "it must know the name (it also sends it in the handshake, SNI).",
            "Pass it: ctx.wrap_socket(sock, server_hostname='localhost'). A server wraps with "
            "server_side=True instead.", short)
    if isinstance(exc, ValueError) and str(exc) == "only SOCK_STREAM type sockets are supported":
        return Explanation(
            "Not a stream socket", "sendfile() works only on SOCK_STREAM sockets.",
            "sendfile() copies a file into a connection's byte stream; a datagram socket has no "
            "stream, only separate datagrams.",
            "For UDP, read the file and send it in datagrams with sendto(), each well under 65507 "
            "bytes (and expect loss).", short)
    if isinstance(exc, ValueError) and "values to unpack" in str(exc) and \
            (origin and origin[1] in ("create_connection", "create_server") or call in
             ("create_connection", "create_server")):
        return Explanation(
            "Wrong address format", f"The address{addr} has the wrong shape: {exc}.",
            "create_connection() and create_server() take the address as one tuple (host, port), "
            "and unpack it into those two.", _ADDRESS_FIX, short)
    if isinstance(exc, ValueError) and "timeout" in str(exc).lower():
        return Explanation("Invalid timeout", f"The timeout given{where} is not allowed: {exc}.",
                           "settimeout(t) takes None (wait forever), 0 (non-blocking) or a positive "
                           "number of seconds.", "Use a positive number of seconds such as 5.", short)
    if isinstance(exc, ValueError) and "negative buffersize" in str(exc):
        return Explanation(
            "Negative size", f"A negative buffer size was passed{where}.",
            "The number is the most bytes the call may return, so it cannot be below 0. Unlike a "
            "file's read(-1), -1 does not mean 'everything': a stream has no end until the peer "
            "closes, and recv() returns whatever has arrived.",
            "Ask for the most you handle at once, e.g. recv(65536), and call it again in a loop "
            "until you have all you need (or it returns b'').", short)
    if isinstance(exc, ValueError) and "negative" in str(exc):
        return Explanation("Negative value", f"A negative number was passed{where}: {exc}.",
                           "This argument is a size, a count or a time, none of which can be "
                           "below 0.", "Pass 0 or a positive number.", short)
    if isinstance(exc, MemoryError) and call in ("recv", "recvfrom", "recvmsg"):
        return Explanation(
            "Buffer too large", f"{call}() could not allocate the buffer it was asked for.",
            f"{call}(n) sets aside a buffer of n bytes before it waits for data, however little "
            "then arrives; this n is more memory than the process can get (a classroom host "
            "limits each kernel's memory, and what the process already holds counts too).",
            f"Ask for at most what you handle at once, e.g. {call}(65536), and loop: {call}() "
            "returns at most what has arrived anyway. Handle big data piece by piece instead of "
            "keeping it all.", short)
    if isinstance(exc, MemoryError):
        return Explanation(
            "Out of memory", f"Python could not get the memory it needed{where}.",
            "The process may use only so much memory (a classroom host such as JupyterHub limits "
            "each kernel; `ulimit -v`). A big message held whole counts once as sent, again as "
            "the pieces received and again when they are joined.",
            "Send and receive big data in pieces (e.g. 64 KiB at a time) and handle each piece as "
            "it comes instead of keeping it all; `del` big objects you no longer need, or restart "
            "the kernel.", short)
    if isinstance(exc, OSError):
        return Explanation(f"Socket error{(' ' + name) if name else ''}", f"The call{where} failed: "
                           f"{exc.strerror or exc}.", "The operating system reported this error.",
                           "Look up the error name in `man 7 socket` / `man 2 " + (call or "socket") + "`.",
                           short, name)
    if isinstance(exc, NameError):
        missing = f"'{exc.name}'" if getattr(exc, "name", None) else "A name"
        near = _near_name(getattr(exc, "name", None))
        if near:
            return Explanation(
                "Name not defined", f"{missing} is not defined: a typo of '{near}'?",
                f"Python knows '{near}' (a built-in name or one of the socket module's), but not "
                f"{missing}: names must be spelled exactly, capitals included.",
                f"Write {near}.", short)
        return Explanation(
            "Name not defined yet", f"{missing} is used here but was never assigned in this kernel.",
            "In a notebook, a name exists only once the cell that assigns it has run in this kernel: "
            "that cell has not run yet, or the kernel was restarted since.",
            "Run the cells above this one first (in JupyterLab: Run > Run All Above Selected Cell), "
            "or run the cell that makes it.", short)
    if isinstance(exc, AttributeError):
        return _no_such_attribute(exc, short)
    return Explanation(type(exc).__name__, f"The call{where} raised {short}.",
                       "This is not a socket error from the OS.", "Check the arguments of the call.", short)


def _fd_limit() -> str:
    """'is N here' for this process's descriptor limit, or '' where it cannot be read."""
    try:
        import resource
    except ImportError:  # not Unix: the text without a number
        return ""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return f"is {soft} here" if soft != resource.RLIM_INFINITY else ""


def _too_many_files(short: str, name: str) -> Explanation:
    """EMFILE, with this process's actual limit: a classroom host may set it far below 1024."""
    t = _BY_ERRNO[errno.EMFILE]
    limit = _fd_limit()
    what = (f"This process has as many file descriptors open as it may: its limit (`ulimit -n`) "
            f"{limit}." if limit else t[1])
    why = t[2] + (" A classroom host (JupyterHub, Binder) may set a much lower limit; socklab's "
                  "servers and clients count too, one descriptor per socket and per connection.")
    return Explanation(t[0], what, why, t[3], short, name)


def not_stopped(exc: RuntimeError, what: str, timeout: float, waits: str) -> BaseException:
    """``exc`` explained: ``what`` was still running ``timeout`` s after stop(); ``waits``: where
    its thread is held (a handler's code, a connect or send)."""
    return explained_as(exc, Explanation(
        "Still running after stop()",
        f"{what} did not stop within {timeout:g} s.",
        f"stop() wakes every socket call it can (it shuts the sockets down and writes to a wake-up "
        f"socket), but it cannot end Python code that does not return to a socket call, and "
        f"Python cannot kill a thread: {waits}",
        "Make that code return: give every wait a timeout (conn.settimeout(5), event.wait(5)) and "
        "end loops that never call recv(). Then call stop() again. socklab.stop_all() stops "
        "everything else meanwhile; restarting the kernel ends every thread."))


def not_ready(exc: BaseException, what: str, timeout: float) -> BaseException:
    """``exc`` explained: ``what``'s thread did not say "ready" within ``timeout`` s of start()."""
    return explained_as(exc, Explanation(
        "Not ready in time",
        f"{what} did not become ready within {timeout:g} s of start(), so it was stopped.",
        "start() binds and listens at once, then waits for the serving thread to begin its loop. "
        "That takes milliseconds, unless the machine is very busy (a shared classroom host "
        "running many kernels) and the new thread waits for a CPU.",
        "Try again, with more time if the machine is busy: start(timeout=30)."))


def no_thread(short: str = "RuntimeError(\"can't start new thread\")") -> Explanation:
    """The OS refused a new thread (a limit of processes/threads, or memory for its stack)."""
    return Explanation(
        "Cannot start a thread",
        "The operating system refused to start another thread in this process.",
        "Every thread counts towards the limit of processes and threads of the user (`ulimit -u`; "
        "a classroom host such as JupyterHub may set a low one), and each needs memory for its "
        "stack. socklab's servers use one thread per connection, its experiments one per client.",
        "Close the clients and stop the servers you no longer need (socklab.stop_all() stops "
        "socklab's demos), use fewer clients, or restart the kernel.", short, "")


def _no_such_attribute(exc: AttributeError, short: str) -> Explanation:
    """A misspelt method (s.sned()) or the wrong object: say where, and what was probably meant."""
    name, obj = getattr(exc, "name", None), getattr(exc, "obj", None)
    close = []
    if name and obj is not None:
        close = difflib.get_close_matches(name, [a for a in dir(obj) if not a.startswith("_")], 1)
    tb, at = exc.__traceback__, ""
    while tb is not None:  # the innermost line of the learner's code (not socklab, not the library)
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(LIBRARY_DIRS):
            text = linecache.getline(filename, tb.tb_lineno).strip()
            at = f" At line {tb.tb_lineno}" + (f": {text}" if text else "") + "."
        tb = tb.tb_next
    return Explanation(
        "No such attribute", f"{exc}.{at}",
        "This is a Python error in the code (a misspelt name, or another object than meant), not "
        "a socket error from the OS.",
        (f"Did you mean {close[0]!r}? " if close else "")
        + "dir(x) lists what an object has; print(type(x)) shows what it is.", short)
