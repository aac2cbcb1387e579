"""What the kernel says about sockets: state, addresses and queues, read from /proc/net on Linux.

``process_sockets()`` lists the sockets a process holds open. Elsewhere (macOS, Windows) it
returns an empty list and ``available()`` is False; psutil's ``net_connections`` is the
documented fallback there, with fewer columns. Knows nothing of Jupyter.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
    6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
}
UNIX_STATES = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}


@dataclass(frozen=True)
class SockState:
    """One kernel socket: protocol, local and remote address, state, queue lengths, inode."""

    proto: str          # tcp, tcp6, udp, udp6, unix
    local: object
    remote: object
    state: str
    recv_q: int         # LISTEN: connections waiting in the accept queue; else unread bytes
    send_q: int
    inode: int


def available() -> bool:
    return os.path.exists("/proc/net/tcp")


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


def socket_inodes(pid: int | str = "self") -> set:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
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
    mine = socket_inodes(pid)
    return [s for s in all_sockets() if s.inode in mine]


def listening(pid: int | str = "self") -> list:
    """(proto, local address) of each listening socket of ``pid``."""
    return sorted((s.proto, s.local) for s in process_sockets(pid) if s.state == "LISTEN")
