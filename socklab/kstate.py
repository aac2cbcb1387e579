"""What the kernel says about sockets: state, addresses and queues.

On Linux the rows come from sock_diag (the netlink interface ``ss`` uses; pure Python), which
also gives a listener's backlog in force; if netlink is blocked, from /proc/net (no backlog).
Elsewhere (macOS, Windows) psutil's ``net_connections`` is the fallback, with fewer columns:
no queue lengths, no backlog, maybe only this process's sockets. Without psutil the result is
an empty list whose ``reason`` says why. Knows nothing of Jupyter.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import sys
from dataclasses import dataclass, replace

from .errors import ConfigError, Explanation

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
    6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
    12: "SYN-RECV",  # TCP_NEW_SYN_RECV: a half-open connection as sock_diag reports it
}
UNIX_STATES = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}


@dataclass(frozen=True)
class SockState:
    """One kernel socket: protocol, local and remote address, state, queue lengths, inode.

    For a LISTEN row ``recv_q`` is the accept queue (connections waiting for accept()) and
    ``send_q`` the backlog in force, as in ``ss -ltn``. ``None`` means "not known here".
    ``inode`` 0 means no file descriptor holds the socket (TIME-WAIT, or still in the accept queue).
    """

    proto: str          # tcp, tcp6, udp, udp6, unix/stream, ...
    local: object       # (ip, port), or a path for AF_UNIX
    remote: object
    state: str
    recv_q: int | None  # LISTEN: connections waiting in the accept queue; else unread bytes
    send_q: int | None  # LISTEN (sock_diag): backlog in force; else unsent bytes
    inode: int | None
    backlog: int | None = None  # LISTEN only: the backlog in force (None where unknown)
    side: str = ""      # who holds it in the demo ('server', 'server/conn1', 'client2'), if known

    @property
    def accept_queue(self) -> int | None:
        """Connections completed by the kernel but not yet accept()ed (LISTEN rows only)."""
        return self.recv_q if self.state == "LISTEN" else None

    @property
    def has_fd(self) -> bool | None:
        """Whether some file descriptor holds this socket (None: unknown on this platform)."""
        return None if self.inode is None else self.inode != 0


class Rows(list):
    """A list of SockState plus where it came from (``source``) and what is missing (``reason``)."""

    def __init__(self, rows=(), source: str = "", reason: str = ""):
        super().__init__(rows)
        self.source, self.reason = source, reason


def available() -> bool:
    return os.path.exists("/proc/net/tcp")


# ---- /proc/net (Linux without netlink): no backlog
def _addr(hexaddr: str, v6: bool):
    ip_hex, port_hex = hexaddr.split(":")
    raw = bytes.fromhex(ip_hex)
    if v6:
        # /proc prints the address as four host-order 32-bit words
        raw = b"".join(struct.pack("@I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, 16, 4))
        return (str(ipaddress.IPv6Address(raw)), int(port_hex, 16))
    return (socket.inet_ntoa(struct.pack("@I", struct.unpack(">I", raw)[0])), int(port_hex, 16))


def _read_inet(proto: str) -> list:
    path = f"/proc/net/{proto}"
    rows = []
    try:
        with open(path) as f:
            next(f)
            for line in f:
                p = line.split()
                tx, rx = (int(x, 16) for x in p[4].split(":"))
                st = int(p[3], 16)
                state = TCP_STATES.get(st, str(st)) if proto.startswith("tcp") else \
                    ("UNCONN" if st == 7 else TCP_STATES.get(st, str(st)))
                rows.append(SockState(proto, _addr(p[1], proto.endswith("6")),
                                      _addr(p[2], proto.endswith("6")), state, rx, tx, int(p[9])))
    except FileNotFoundError:
        return []
    return rows


def _read_unix() -> list:
    rows = []
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                p = line.split()
                path = p[7] if len(p) > 7 else ""
                typ = {1: "stream", 2: "dgram", 5: "seqpacket"}.get(int(p[4], 16), p[4])
                flags = int(p[3], 16)
                state = "LISTEN" if flags & 0x10000 else UNIX_STATES.get(int(p[5], 16), p[5])
                rows.append(SockState(f"unix/{typ}", path, "", state, 0, 0, int(p[6])))
    except FileNotFoundError:
        return []
    return rows


def all_sockets() -> list:
    """Every socket in this network namespace that /proc/net shows."""
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        out += _read_inet(proto)
    return out + _read_unix()


_PID_WHY = ("The kernel lists the files a process holds open (its sockets too) under /proc/<pid>/fd, "
            "only while that process runs, and only to its owner (or root).")


def _fd_dir(pid) -> tuple:
    """(/proc/<pid>/fd, its entries) for ``pid`` ('self' or a positive process id); else a ConfigError."""
    ok = pid == "self" or (isinstance(pid, str) and pid.isdigit()) or \
        (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0)
    if not ok:
        raise ConfigError(Explanation("Invalid pid", f"pid={pid!r} is not a process id.", _PID_WHY,
                                      "Use 'self' (this process, the default) or a process id such as "
                                      "os.getpid()."))
    base = f"/proc/{pid}/fd"
    try:
        return base, os.listdir(base)
    except FileNotFoundError:
        raise ConfigError(Explanation("No such process", f"No process with pid {pid} is running "
                                      "(it has exited, or never existed).", _PID_WHY,
                                      "Use the pid of a running process, e.g. proc.pid of a subprocess "
                                      "you started, or leave pid out for this process.")) from None
    except PermissionError:
        raise ConfigError(Explanation("Not allowed to look at that process", f"Process {pid} belongs "
                                      "to another user: its open files are hidden from you.", _PID_WHY,
                                      "Look at your own processes, or leave pid out for this process."
                                      )) from None


def socket_inodes(pid: int | str = "self") -> set:
    """Inodes of the sockets process ``pid`` holds open (a bad or gone pid raises ConfigError)."""
    inodes = set()
    base, fds = _fd_dir(pid)
    for fd in fds:
        try:
            target = os.readlink(os.path.join(base, fd))
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def process_sockets(pid: int | str = "self") -> list:
    """The sockets process ``pid`` holds open, with their kernel state."""
    if not available():
        return []
    mine = socket_inodes(pid)  # checks pid even before the socket tables are read
    return [s for s in all_sockets() if s.inode in mine]


def listening(pid: int | str = "self") -> list:
    """(proto, local address) of each listening socket of ``pid``."""
    return sorted((s.proto, s.local) for s in process_sockets(pid) if s.state == "LISTEN")


# ---- sock_diag over netlink (Linux): what `ss` reads, including the backlog in force
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY = 4, 20
_NLM_F_REQUEST_DUMP = 0x301
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")  # struct nlmsghdr


def _netlink_dump(request: bytes):
    """Send one SOCK_DIAG_BY_FAMILY dump request; yield each reply's payload."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as s:
        s.settimeout(2.0)  # a dump always ends with NLMSG_DONE; if it never comes, fall back to /proc
        s.sendto(_HDR.pack(_HDR.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
                 + request, (0, 0))
        while True:
            buf = s.recv(1 << 17)
            off = 0
            while off + _HDR.size <= len(buf):
                length, kind = _HDR.unpack_from(buf, off)[:2]
                if kind == _NLMSG_DONE or length < _HDR.size:
                    return
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buf, off + _HDR.size)[0]
                    raise OSError(code, os.strerror(code))
                yield buf[off + _HDR.size:off + length]
                off += (length + 3) & ~3


def _diag_inet(family: int, proto: int) -> list:
    """TCP or UDP sockets of one family via inet_diag (struct inet_diag_req_v2 / inet_diag_msg)."""
    name = ("tcp" if proto == socket.IPPROTO_TCP else "udp") + ("6" if family == socket.AF_INET6 else "")
    req = struct.pack("=BBBBI", family, proto, 0, 0, 0xFFFFFFFF) + bytes(48)  # all states, any id
    n = 4 if family == socket.AF_INET else 16
    rows = []
    for msg in _netlink_dump(req):
        st = msg[1]
        sport, dport = struct.unpack_from(">HH", msg, 4)
        rq, wq, _uid, inode = struct.unpack_from("=IIII", msg, 56)
        if proto == socket.IPPROTO_TCP:
            state = TCP_STATES.get(st, str(st))
        else:
            state = "UNCONN" if st == 7 else TCP_STATES.get(st, str(st))
        listen = state == "LISTEN"
        rows.append(SockState(name, (socket.inet_ntop(family, msg[8:8 + n]), sport),
                              (socket.inet_ntop(family, msg[24:24 + n]), dport), state, rq, wq, inode,
                              backlog=wq if listen else None))
    return rows


def _diag_unix() -> list:
    """AF_UNIX sockets via unix_diag, with name, peer inode and queue lengths.

    Returns (SockState, peer inode, inodes of clients waiting in a listener's queue) triples.
    """
    show = 1 | 4 | 8 | 16  # UDIAG_SHOW_NAME | PEER | ICONS | RQLEN
    req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, show, 0xFFFFFFFF, 0xFFFFFFFF)
    out = []
    for msg in _netlink_dump(req):
        typ, st, inode = msg[1], msg[2], struct.unpack_from("=I", msg, 4)[0]  # struct unix_diag_msg
        name, peer, icons, rq, wq = "", 0, (), 0, 0
        off = 16
        while off + 4 <= len(msg):
            alen, atype = struct.unpack_from("=HH", msg, off)
            data = msg[off + 4:off + alen]
            if atype == 0:  # UNIX_DIAG_NAME; abstract names start with NUL
                name = data.decode(errors="replace")
                name = name if name.startswith("\0") else name.rstrip("\0")  # paths end with a NUL
            elif atype == 2:
                peer = struct.unpack_from("=I", data)[0]
            elif atype == 3:
                icons = struct.unpack(f"={len(data) // 4}I", data)
            elif atype == 4:
                rq, wq = struct.unpack_from("=II", data)
            off += (alen + 3) & ~3
        kind = {1: "stream", 2: "dgram", 5: "seqpacket"}.get(typ, str(typ))
        state = "LISTEN" if st == 10 else ("CONNECTED" if st == 1 else "UNCONNECTED")
        out.append((SockState(f"unix/{kind}", name, "", state, rq, wq, inode,
                              backlog=wq if state == "LISTEN" else None), peer, icons))
    return out


# ---- the public queries
_PSUTIL_STATES = {"SYN_SENT": "SYN-SENT", "SYN_RECV": "SYN-RECV", "FIN_WAIT1": "FIN-WAIT-1",
                  "FIN_WAIT2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT", "CLOSE_WAIT": "CLOSE-WAIT",
                  "LAST_ACK": "LAST-ACK", "NONE": "UNCONN"}
_KINDS = {"tcp": (socket.IPPROTO_TCP,), "udp": (socket.IPPROTO_UDP,),
          "inet": (socket.IPPROTO_TCP, socket.IPPROTO_UDP)}
_TARGETS = ("a Server, Client, TracedSocket or socket, a (host, port) pair, a port number, a set of "
            "ports, or an AF_UNIX path")


def _bad_target(title: str, what: str, fix: str) -> ConfigError:
    return ConfigError(Explanation(title, what, f"The kernel's socket table is looked up by port (TCP, "
                                   f"UDP) or path (AF_UNIX); a demo's sockets are found from {_TARGETS}.",
                                   fix))


def _check_kind(kind, allowed) -> None:
    if not isinstance(kind, str) or kind not in allowed:
        raise _bad_target("Unknown kind of socket", f"kind={kind!r} is not one of {', '.join(allowed)}.",
                          f"Use kind='tcp' (the default), or one of {', '.join(allowed)}.")


def _port_set(ports) -> set:
    """``ports`` (one port number or an iterable of them) as a set; else a ConfigError."""
    def bad(what):
        return _bad_target("Ports must be port numbers", what,
                           "Pass a port number such as 5000, or a set of them such as {5000, 5001}.")
    if isinstance(ports, (str, bytes)):
        raise bad(f"ports={ports!r} is a {type(ports).__name__}; it would be read "
                  "character by character.")
    if isinstance(ports, int) and not isinstance(ports, bool):
        items = [ports]
    else:
        try:
            items = list(ports)
        except TypeError:
            raise bad(f"ports={ports!r} is neither a port number nor a collection of them.") from None
    for p in items:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
            raise bad(f"{p!r} is not a port number from 0 to 65535.")
    return set(items)


def inet_sockets(kind: str = "tcp") -> Rows:
    """Every TCP (``kind='tcp'``), UDP ('udp') or both ('inet') socket of this network namespace.

    Includes sockets no process holds any more (TIME-WAIT) and connections not yet accepted.
    """
    _check_kind(kind, tuple(_KINDS))
    if sys.platform.startswith("linux"):
        try:
            rows = []
            for proto in _KINDS[kind]:
                rows += _diag_inet(socket.AF_INET, proto)
                if socket.has_ipv6:
                    try:
                        rows += _diag_inet(socket.AF_INET6, proto)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOENT, errno.EAFNOSUPPORT):
                            raise  # IPv6 compiled out is fine; anything else means no netlink
            return Rows(rows, "sock_diag")
        except OSError as exc:
            why = f"netlink sock_diag is not allowed here ({exc.strerror or exc})"
        if available():
            names = [p + v for p in kind.replace("inet", "tcp udp").split() for v in ("", "6")]
            rows = [replace(r, send_q=None) if r.state == "LISTEN" else r  # /proc shows no backlog
                    for n in names for r in _read_inet(n)]
            return Rows(rows, "/proc/net",
                        why + ": read /proc/net instead, where a listener's backlog is not shown")
    return psutil_sockets(kind)


def psutil_sockets(kind: str = "tcp") -> Rows:
    """The fallback off Linux: psutil.net_connections (no queue lengths, no backlog, no inode)."""
    try:
        import psutil  # only in the test extra: socklab does not depend on it
    except ImportError:
        return Rows([], "none", f"no socket table on {sys.platform} without psutil "
                                "(pip install psutil)")
    why = "psutil shows no queue lengths and no backlog"
    try:
        conns = psutil.net_connections(kind=kind)
    except psutil.AccessDenied:  # macOS: listing every process's sockets needs root
        proc = psutil.Process()
        conns = proc.net_connections(kind) if hasattr(proc, "net_connections") else proc.connections(kind)
        why += "; only this process's sockets (no TIME-WAIT rows): listing all needs admin rights"
    rows = []
    for c in conns:
        v6 = c.family == socket.AF_INET6
        any_ip = "::" if v6 else "0.0.0.0"
        tcp = c.type == socket.SOCK_STREAM
        state = _PSUTIL_STATES.get(c.status, c.status) if tcp else ("ESTABLISHED" if c.raddr else "UNCONN")
        rows.append(SockState(("tcp" if tcp else "udp") + ("6" if v6 else ""),
                              tuple(c.laddr) if c.laddr else (any_ip, 0),
                              tuple(c.raddr) if c.raddr else (any_ip, 0), state, None, None, None))
    return Rows(rows, "psutil", why)


def sockets_on_ports(ports, kind: str = "tcp") -> Rows:
    """Every kernel socket whose local or remote port is in ``ports`` (an int or an iterable).

    This is how a demo finds sockets no fd owns: TIME-WAIT after close, clients stuck in SYN-SENT,
    connections waiting in the accept queue.
    """
    ports = _port_set(ports)
    _check_kind(kind, tuple(_KINDS))
    ports.discard(0)
    rows = inet_sockets(kind)
    return Rows([r for r in rows if r.local[1] in ports or r.remote[1] in ports], rows.source, rows.reason)


def unix_sockets_at(path: str) -> Rows:
    """The AF_UNIX listener bound to ``path``, its connections, and the clients at their other end.

    An empty path (an unnamed socket) names nothing: no rows, and ``reason`` says so."""
    if not path:  # '' would match every unnamed socket of every process in this namespace
        return Rows([], "", "an unnamed AF_UNIX socket has no path to look up")
    try:
        diag = _diag_unix()
    except OSError as exc:
        rows = [r for r in _read_unix() if r.local == path]
        return Rows(rows, "/proc/net", f"netlink sock_diag is not allowed here ({exc.strerror or exc}): "
                                       "no queue lengths, no backlog, no clients")
    ends = [(r, peer, icons) for r, peer, icons in diag if r.local == path]
    queued = {i for r, _, icons in ends if r.state == "LISTEN" for i in icons}
    clients = queued | {peer for r, peer, _ in ends if r.state != "LISTEN"}
    clients.discard(0)
    rows = [r for r, _, _ in ends] + [replace(r, remote=path, side="(in accept queue)" if r.inode in queued
                                              else "") for r, _, _ in diag if r.inode in clients]
    return Rows(rows, "sock_diag")


def _unix_name(name) -> str:
    """An AF_UNIX name as sock_diag shows it (abstract names come from getsockname as bytes)."""
    return name.decode(errors="replace") if isinstance(name, bytes) else (name or "")


def server_end_name(row) -> str:
    """A server-side row with no known owner: queued for accept() (no fd yet: ESTABLISHED, or
    CLOSE-WAIT when its client has closed meanwhile), half-open (SYN-RECV: still in the SYN queue),
    or just a server end."""
    if row.inode == 0 and row.state in ("ESTABLISHED", "CLOSE-WAIT"):
        return "(in accept queue)"
    return "(half-open)" if row.state == "SYN-RECV" else "server end"


def _ports_of(target):
    """(ports or path, kind, trace, listener side) for a Server, Client, socket, port or ports.

    An AF_UNIX socket with no name of its own nor a named peer gives kind 'unix-inode' and its
    inode (None when it is closed): only that socket and its peer are looked up, never every unnamed
    socket of the namespace. Anything else raises ConfigError."""
    if target is None or isinstance(target, (float, bool)):
        raise _bad_target("Nothing to look up", f"{target!r} names no socket.",
                          f"Pass {_TARGETS}.")
    if isinstance(target, int):
        return _port_set(target), "tcp", None, ""
    if isinstance(target, bytes):
        target = _unix_name(target)  # an AF_UNIX name as getsockname() gives it
    if isinstance(target, str):
        if not target:
            raise _bad_target("An empty AF_UNIX path", "The path '' names no socket: unnamed AF_UNIX "
                              "sockets have no path to look up.",
                              "Pass the socket itself (demo_state(sock)) or the path it is bound to.")
        return target, "unix", None, ""
    if isinstance(target, tuple) and target and isinstance(target[0], str):  # ('127.0.0.1', 5000)
        if len(target) < 2:
            raise _bad_target("An address needs a port", f"{target!r} has a host but no port.",
                              "Pass a (host, port) pair such as ('127.0.0.1', 5000).")
        return _port_set(target[1]), "tcp", None, ""
    config = getattr(target, "config", None)
    if config is not None:  # a socklab Server (has .address) or Client (has .target)
        addr = getattr(target, "address", None) if hasattr(target, "address") else target.target
        kind = "unix" if config.family == "AF_UNIX" else ("tcp" if config.stream else "udp")
        side = target.side if hasattr(target, "address") else ""
        if kind == "unix":
            if not addr:  # not bound yet: nothing of it in the kernel's table
                return None, "unix-inode", target.trace, side
            return _unix_name(addr), kind, target.trace, side
        return ({addr[1]} if addr else set()), kind, target.trace, side
    sock = getattr(target, "sock", target)  # TracedSocket -> its socket.socket
    if isinstance(sock, socket.socket):
        kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
        names = []
        for fn in (sock.getsockname, sock.getpeername):
            try:
                names.append(fn())
            except OSError:
                pass  # not connected (or closed): no peer port to add
        side = getattr(target, "side", "")
        if sock.family == socket.AF_UNIX:
            named = [_unix_name(n) for n in names if _unix_name(n)]
            if named:  # its own name, else its peer's (a client of a named server)
                return named[0], "unix", getattr(target, "trace", None), ""
            try:
                inode = os.fstat(sock.fileno()).st_ino  # a socket fd's inode is the kernel's socket id
            except OSError:
                inode = None  # closed: it is gone from the kernel's table
            return inode, "unix-inode", getattr(target, "trace", None), side
        ports = {n[1] for n in names}
        if kind == "tcp" and len(names) == 2:  # connected: seen from the server's port, one end each
            own, peer = names[0][1], names[1][1]
            listening = {r.local[1] for r in sockets_on_ports({own, peer}, "tcp") if r.state == "LISTEN"}
            ports = {own} if own in listening else {peer} if peer in listening else ports
        return ports, kind, getattr(target, "trace", None), side
    return _port_set(target), "tcp", None, ""


def unix_socket_by_inode(inode: int | None) -> Rows:
    """The unnamed AF_UNIX socket with ``inode`` and the socket at its other end (if connected)."""
    if inode is None:
        return Rows([], "", "the socket is closed (or not bound yet): the kernel has no row for it")
    try:
        diag = _diag_unix()
    except OSError as exc:
        return Rows([r for r in _read_unix() if r.inode == inode], "/proc/net",
                    f"netlink sock_diag is not allowed here ({exc.strerror or exc}): its peer is not shown")
    peers = {peer for r, peer, _ in diag if r.inode == inode} - {0}
    rows = [r for r, _, _ in diag if r.inode == inode] + [r for r, _, _ in diag if r.inode in peers]
    return Rows(rows, "sock_diag")


def listener_state(target) -> SockState | None:
    """The LISTEN row (accept queue, backlog in force) for a server, listening socket, port or path."""
    where, kind, _, side = _ports_of(target)
    if kind == "unix-inode":
        rows = unix_socket_by_inode(where)
    else:
        rows = unix_sockets_at(where) if kind == "unix" else sockets_on_ports(where, kind)
    for r in rows:
        if r.state == "LISTEN" and (kind in ("unix", "unix-inode") or r.local[1] in where):
            return replace(r, side=side)
    return None


def _live_sides() -> dict:
    """inode -> side for the sockets of running socklab demos (clients, hand-made sockets)."""
    from . import runtime
    out = {}
    for obj in runtime.running():
        # A Client holds a TracedSocket in .sock; socklab.socket() registers the TracedSocket itself.
        s = obj if getattr(obj, "side", None) and isinstance(getattr(obj, "sock", None), socket.socket) \
            else getattr(obj, "sock", obj)
        side, raw = getattr(s, "side", None), getattr(s, "sock", s)
        if side and isinstance(raw, socket.socket) and raw.fileno() != -1:
            try:
                out[os.fstat(raw.fileno()).st_ino] = side  # a socket's fstat inode is its kernel inode
            except OSError:
                pass  # closed meanwhile
    return out


def _accepted(trace) -> dict:
    """client port -> (accept order, conn side), from the accept events of a trace."""
    out = {}
    for ev in (trace or ()):
        r = ev.result
        if ev.call == "accept" and ev.error is None and isinstance(r, tuple) and len(r) == 2 \
                and isinstance(r[1], tuple) and len(r[1]) >= 2:
            out[r[1][1]] = (len(out), str(r[0]).strip("<>"))
    return out


def demo_state(target, kind: str | None = None) -> Rows:
    """The kernel's view of a demo: every socket on a server's port (or a port, ports, path), labelled.

    ``target`` is a Server, Client, TracedSocket, socket, (host, port), port number, set of ports, or
    AF_UNIX path.
    Rows come listener first, then each connection as (client end, server end), in accept order.
    ``side`` names the owner where the trace or a running demo tells it: 'server', 'server/conn1',
    'client2'; '(in accept queue)' for a connection no accept() has taken yet.
    An unnamed AF_UNIX socket shows only itself and its peer. Bad input raises ConfigError.
    """
    if kind is not None:
        _check_kind(kind, tuple(_KINDS) + ("unix",))
    where, guessed, trace, listener = _ports_of(target)
    live = _live_sides()
    if guessed == "unix-inode":  # no name to look up: this socket (and its peer) only
        rows = unix_socket_by_inode(where)
        out = [replace(r, side=(live.get(r.inode) or listener or "this socket") if r.inode == where
                       else (live.get(r.inode) or "peer")) for r in rows]
        return Rows(out, rows.source, rows.reason)
    kind = kind or guessed
    if kind == "unix":
        rows = unix_sockets_at(where)
        out = []
        for r in rows:
            if r.state == "LISTEN":
                side = listener or "listener"
            elif r.local == where:
                side = live.get(r.inode) or "server end"
            else:  # a client; the queued ones keep their mark
                side = " ".join(filter(None, (live.get(r.inode, "client"), r.side)))
            out.append(replace(r, side=side))
        out.sort(key=lambda r: (r.state != "LISTEN", r.local != where))
        return Rows(out, rows.source, rows.reason)
    rows = sockets_on_ports(where, kind)
    accepted = _accepted(trace)
    labelled = []
    for r in rows:
        server_end = r.local[1] in where
        peer = r.remote[1] if server_end else r.local[1]
        if trace is not None and r.state == "TIME-WAIT" and peer not in accepted:
            continue  # a finished connection no accept() of this demo made: an older use of the port
        if server_end and (r.state in ("LISTEN", "UNCONN") or r.remote[1] == 0):  # the server's own
            side, order = listener or "listener", (-1,)
        elif server_end:
            n, conn = accepted.get(peer, (None, None))
            side = live.get(r.inode) or conn or server_end_name(r)
            order = (n if n is not None else 1 << 20, peer, 1)
        else:
            n = accepted.get(peer, (None,))[0]
            side = live.get(r.inode) or "client"
            order = (n if n is not None else 1 << 20, peer, 0)
        labelled.append((order, replace(r, side=side)))
    labelled.sort(key=lambda x: x[0])
    return Rows([r for _, r in labelled], rows.source, rows.reason)


def ack_now(sock) -> bool:
    """Send a pending delayed ACK now (Linux TCP_QUICKACK); False where not supported.

    Linux acknowledges a FIN with a delayed ACK (up to ~40 ms), so a state view taken right after
    the peer's close() may show FIN-WAIT-1 on the peer. Call this on the side that read b'' to
    make the next view show FIN-WAIT-2, deterministically.
    """
    raw = getattr(sock, "sock", sock)
    if not hasattr(socket, "TCP_QUICKACK"):
        return False
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError:
        return False
    return True
