"""What this machine allows: the facts notebook 00 checks before the lessons start."""
from __future__ import annotations

import os
import platform
import socket
import sys
from dataclasses import dataclass

from . import runtime
from .config import SOMAXCONN_SYSCTL, can_bind_low_ports, can_raw, somaxconn, unprivileged_port_start


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _ping_group_range() -> str | None:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            return " ".join(f.read().split())
    except OSError:
        return None


def checks() -> list:
    """Each capability socklab's lessons use, measured here and now."""
    out = [Check("platform", True, f"{platform.system()} {platform.release()}, Python "
                 f"{platform.python_version()}")]
    out.append(Check("IPv6 loopback (::1)", runtime.has_ipv6(),
                     "AF_INET6 sockets can bind ::1" if runtime.has_ipv6() else
                     "IPv6 is disabled here: the IPv6 demos are skipped"))
    unix = hasattr(socket, "AF_UNIX")
    out.append(Check("AF_UNIX sockets", unix, "available" if unix else
                     f"not exposed by Python on {sys.platform}: the AF_UNIX lesson needs Linux or macOS"))
    raw = can_raw()
    out.append(Check("raw sockets (SOCK_RAW)", raw, "allowed: this process has CAP_NET_RAW (or is root)"
                     if raw else "not allowed: this process lacks CAP_NET_RAW (normal for learners on "
                     "JupyterHub/Binder, and for root in containers that drop it): lesson 13 explains "
                     "instead of running"))
    start = unprivileged_port_start()
    low = can_bind_low_ports()
    detail = f"unprivileged ports start at {start}"
    if start and low:
        detail += "; this process has CAP_NET_BIND_SERVICE (or is root), so all are allowed"
    elif start and hasattr(os, "geteuid") and os.geteuid() == 0:
        detail += ("; you are root, but without CAP_NET_BIND_SERVICE (dropped by the container), "
                   "so not below that")
    out.append(Check("ports below 1024", low or start == 0, detail))
    cap = somaxconn()
    from_proc = os.path.exists(SOMAXCONN_SYSCTL)
    out.append(Check("listen() backlog cap", True, "unknown" if not cap else
                     f"net.core.somaxconn = {cap}" if from_proc else
                     f"socket.SOMAXCONN = {cap} (a constant, not this system's limit; macOS: sysctl "
                     "kern.ipc.somaxconn)"))
    pg = _ping_group_range()
    if pg is not None:
        lo, hi = (int(x) for x in pg.split())
        allowed = any(lo <= g <= hi for g in {os.getegid(), *os.getgroups()})  # any group counts
        out.append(Check("unprivileged ping sockets", allowed,
                         f"net.ipv4.ping_group_range = {pg}" + ("" if allowed else
                                                               " (none of your groups is inside it)")))
    return out


def report() -> str:
    """The checks as aligned text lines."""
    rows = checks()
    w = max(len(c.name) for c in rows)
    return "\n".join(f"{'ok ' if c.ok else 'no '} {c.name:<{w}}  {c.detail}" for c in rows)
