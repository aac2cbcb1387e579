"""The ping panel: ICMP echo requests on a raw socket, where this user may open one.

Raw sockets need root or CAP_NET_RAW. Without them the panel does not fail: it shows the explanation
(the same one ``socklab.ping`` raises as a ConfigError). ``transcript()`` is the text form: one line per
ping, without times (they change on every run); ``trace_view()`` shows the raw socket calls.
"""
from __future__ import annotations

import html as _html

import ipywidgets as W

from ..config import can_raw
from ..notebook import Rich, show
from ..servers import ping as _ping
from ..trace import Trace
from .base import Choice, Panel, Timeout, check_choice, check_range, kept, with_dropped

HOSTS = ("127.0.0.1", "::1")
COUNT_RANGE = (1, 10)  # the count box's limits: each ping may wait ``timeout`` seconds


class PingPanel(Panel):
    """Pick a host and a count, press Ping. ``ping(host, count)`` does the same from code and returns
    the round-trip times in seconds (None for a lost reply), or None when not permitted."""

    _side_width = 8
    timeout = Timeout()  # checked when set: each echo reply is waited for at most this long

    def __init__(self, host: str = "127.0.0.1", count: int = 3, timeout: float = 1.0, name: str | None = None):
        self.timeout = timeout
        check_choice("host", host, HOSTS)
        _check_count(count)
        self.trace = Trace()
        self.steps: list = kept()  # one line per ping, the latest KEPT
        self.last = None
        self.host = Choice("host", options=HOSTS, value=host, description="host")
        self.count = W.BoundedIntText(value=count, min=COUNT_RANGE[0], max=COUNT_RANGE[1],
                                      description="count")
        self.ping_button = W.Button(description="Ping", button_style="info")
        self.ping_button.add_class("socklab-ping")
        self.ping_button.on_click(lambda _b: self.ping())
        self.privilege = self._view("socklab-privilege", self._privilege_text())
        self._status_alert_log("")
        super().__init__([self.privilege, W.HBox([self.host, self.count, self.ping_button]), self.status,
                          self.alert, self.events])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    @staticmethod
    def _privilege_text() -> str:
        return ("raw sockets: <b>allowed</b> (this process has CAP_NET_RAW, or is root)" if can_raw() else
                "raw sockets: <b>not allowed</b> for this process (no CAP_NET_RAW): Ping explains why")

    def _plain_text(self) -> str:
        return "socklab ping panel: interactive in JupyterLab; the transcript below shows a run."

    def transcript(self) -> Rich:
        text = "\n".join(with_dropped(self.steps, "lines")) if self.steps else "(no pings yet)"
        return Rich(text, f"<pre>{_html.escape(text)}</pre>")

    def trace_view(self) -> Rich:
        return show(self.trace, order="side")

    def ping(self, host: str | None = None, count: int | None = None):
        """Send ``count`` echo requests to ``host`` and wait for each reply (``timeout`` each).
        An argument left out (None) comes from its control; one the control does not offer (a host
        other than 127.0.0.1 and ::1, a count outside 1..10) raises ConfigError: nothing is sent."""
        host = self.host.value if host is None else check_choice("host", host, HOSTS)
        count = self.count.value if count is None else _check_count(count)
        self.alert.value = ""
        try:
            rtts = _ping(host, count=count, timeout=self.timeout, trace=self.trace)
        except Exception as exc:
            self.last = exc
            exp = self._alert_error(exc)
            self.steps.append(f"ping {host}: not done: {exp.title}")
            self.status.value = ""
            return None
        self.last = rtts
        got = [r for r in rtts if r is not None]
        self.steps.append(f"ping {host} x{count}: {len(got)} of {count} echo replies")
        times = ", ".join("lost" if r is None else f"{r * 1e6:.0f} µs" for r in rtts)
        self.status.value = f"{_html.escape(host)}: {len(got)} of {count} replies ({times})"
        return rtts

    def stop(self):
        """Nothing runs in the background: each ping opens and closes its own socket."""


def _check_count(count):
    return check_range("count", count, *COUNT_RANGE,
                       fix="Pass count as a whole number from 1 to 10, e.g. count=3 "
                           "(each ping may wait for its timeout: many would keep the panel busy).")


PLAIN_PING = '''\
# ping.py: one ICMP echo request on a raw socket (run as root: sudo python3 ping.py)
import os
import socket
import struct
import time

def checksum(data):
    if len(data) % 2:
        data += b"\\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

ident, seq, payload = os.getpid() & 0xFFFF, 1, b"hello"
header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload

with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
    s.settimeout(2)
    start = time.perf_counter()
    s.sendto(packet, ("127.0.0.1", 0))
    while True:                      # the socket sees every ICMP packet: find our reply
        data, addr = s.recvfrom(65536)
        icmp = data[(data[0] & 0x0F) * 4:]          # skip the IPv4 header
        typ, code, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ == 0 and rid == ident and rseq == seq:
            rtt = time.perf_counter() - start
            print(f"reply from {addr[0]}: seq={rseq} ttl={data[8]} time={rtt * 1000:.3f} ms")
            break
'''
