"""See the packets: SYN, SYN-ACK, ACK, data, FIN and RST of one demo's port(s) on loopback.

Linux only, and only as root or with CAP_NET_RAW: an AF_PACKET raw socket on 'lo' reads every
loopback frame; only TCP segments whose source or destination port is the demo's are kept, so
nothing else on the machine is recorded. Elsewhere ``Capture.start()`` raises ConfigError with
the reason (use Wireshark or tcpdump there). Knows nothing of Jupyter.
"""
from __future__ import annotations

import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass

from .config import can_raw
from .errors import ConfigError, Explanation
from . import runtime
from .runtime import Thread
from .servers import _number

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # on 'lo' each frame is seen leaving and arriving: keep the arrival only
FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"))  # SYN-ACK, FIN-ACK


@dataclass(frozen=True)
class Packet:
    """One TCP segment: when, from where to where, flags, sequence numbers, payload length."""

    t: float       # s since the capture started
    src: tuple     # (ip, port)
    dst: tuple
    flags: str     # e.g. 'SYN', 'SYN-ACK', 'PSH-ACK', 'FIN-ACK'
    seq: int       # absolute; text() shows them relative to each side's first SYN
    ack: int
    length: int    # payload bytes


def _flags(bits: int) -> str:
    return "-".join(name for bit, name in FLAG_NAMES if bits & bit) or "none"


def parse_frame(frame: bytes, t: float = 0.0) -> Packet | None:
    """An Ethernet frame (as 'lo' delivers them) -> Packet if it carries TCP over IPv4/IPv6."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == socket.IPPROTO_TCP:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        src_ip, dst_ip = (socket.inet_ntop(socket.AF_INET, ip[a:a + 4]) for a in (12, 16))
        tcp, payload_end = ip[ihl:total], total - ihl
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == socket.IPPROTO_TCP:  # no extension headers
        plen = struct.unpack_from("!H", ip, 4)[0]
        src_ip, dst_ip = (socket.inet_ntop(socket.AF_INET6, ip[a:a + 16]) for a in (8, 24))
        tcp, payload_end = ip[40:40 + plen], plen
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", tcp)
    header = (off_flags >> 12) * 4
    return Packet(t, (src_ip, sport), (dst_ip, dport), _flags(off_flags & 0x3F), seq, ack,
                  max(payload_end - header, 0))


def _refuse(what: str, why: str) -> ConfigError:
    return ConfigError(Explanation(
        "Packet capture is not possible here", what, why,
        "Use the kernel state view (socklab.kstate.demo_state) instead, or capture on your own machine "
        "as root: sudo tcpdump -i lo -n tcp port PORT, or Wireshark on the loopback interface."))


class Capture:
    """Record the TCP segments of ``ports`` on loopback while a demo runs.

    ``with Capture(server.address[1]) as cap: ...`` then ``cap.packets`` / ``cap.text()``.
    At most ``limit`` packets are kept (the count of the rest is in ``missed``). Stop it after the
    last close you want to see (e.g. after ``server.stop()``): a server thread still closing is a race,
    and so is a FIN's ACK, which Linux may delay by up to ~40 ms (see ``kstate.ack_now``).
    """

    def __init__(self, ports, iface: str = "lo", limit: int = 2000, name: str | None = None):
        many = ports if isinstance(ports, (list, tuple, set, frozenset)) else [ports]
        for p in many:
            _number("ports", p, integer=True, low=1, high=65535,
                    why="A capture keeps the TCP segments to or from these ports.",
                    fix="Pass a port number such as server.address[1], or a list of them.")
        _number("limit", limit, integer=True, low=1, high=1_000_000,
                why="At most limit packets are kept, so a long capture cannot fill the memory.",
                fix="Use a whole number such as 2000.")
        self.ports = set(many)
        self.iface, self.limit, self.name = iface, limit, name
        self.key = None
        self.packets: list = []
        self.missed = 0
        self._sock = self._thread = self._wake_r = self._wake_w = None
        self._t0 = 0.0

    def start(self) -> "Capture":
        """Open the raw socket and read in the background; ConfigError explains why it cannot."""
        if not sys.platform.startswith("linux") or not hasattr(socket, "AF_PACKET"):
            raise _refuse(f"This is {sys.platform}: socklab captures with Linux AF_PACKET sockets.",
                          "Other systems capture through BPF (macOS) or Npcap (Windows), which need "
                          "extra software and administrator rights.")
        if not can_raw():
            raise _refuse("Opening a packet socket would fail with PermissionError (EPERM).",
                          "A packet socket sees every packet of the machine, other users' included, so "
                          "Linux allows it only to root or to processes with CAP_NET_RAW. A learner "
                          "account on JupyterHub or Binder has neither.")
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self._sock.bind((self.iface, 0))
        except OSError as exc:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            raise _refuse(f"socket(AF_PACKET)/bind({self.iface!r}) failed: {exc}.",
                          "The container or kernel does not allow packet sockets here.") from None
        self._wake_r, self._wake_w = socket.socketpair()
        self._t0 = time.perf_counter()
        self._thread = Thread(target=self._run, name="socklab-capture")
        self._thread.start()
        # a re-run of the cell, and stop_all(), stop this capture too
        self.key = self.name if self.name is not None else runtime.caller_key(2)
        runtime.register(self.key, self, explicit=self.name is not None)
        return self

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            stopping = False
            while not stopping:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        stopping = True  # but first read what is already queued
                self._drain()
        finally:
            sel.close()

    def _drain(self):
        while True:
            try:
                frame, addr = self._sock.recvfrom(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            p = parse_frame(frame, time.perf_counter() - self._t0)
            if p is None or not (p.src[1] in self.ports or p.dst[1] in self.ports):
                continue
            if len(self.packets) < self.limit:
                self.packets.append(p)
            else:
                self.missed += 1

    def stop(self) -> list:
        """Stop reading (after taking every packet already delivered), close, return the packets."""
        if self._thread is not None:
            self._wake_w.send(b"x")
            self._thread.join(5)
            self._thread = None
        for s in (self._sock, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._sock = self._wake_r = self._wake_w = None
        if self.key is not None:
            runtime.unregister(self.key, self)
        return self.packets

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.stop()

    def text(self) -> str:
        return capture_text(self.packets, self.missed)


def capture_text(packets, missed: int = 0) -> str:
    """One line per segment, tcpdump-style with relative sequence numbers (stable between runs):
    '127.0.0.1:PORT > 127.0.0.1:PORT  SYN  seq 0'."""
    if not packets:
        return "(no packets on this port)"
    isn = {}  # (ip, port) -> first sequence number seen from there
    lines = []
    for p in packets:
        isn.setdefault(p.src, p.seq)
        seq = (p.seq - isn[p.src]) % (1 << 32)
        ack = f"  ack {(p.ack - isn[p.dst]) % (1 << 32)}" if "ACK" in p.flags and p.dst in isn else ""
        data = f"  len {p.length}" if p.length else ""
        lines.append(f"{_addr(p.src)} > {_addr(p.dst)}  {p.flags}  seq {seq}{ack}{data}")
    if missed:
        lines.append(f"({missed} more packets not kept)")
    return "\n".join(lines)


def _addr(a) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
