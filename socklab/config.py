"""A validated socket configuration: family, type, address and backlog.

``SocketConfig(...).validate()`` explains combinations the OS will refuse before any socket
exists. Knows nothing of Jupyter.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import sys
from dataclasses import dataclass, field, replace

from .errors import LOOPBACK_NAMES, ConfigError, Explanation
from . import runtime

FAMILIES = ("AF_INET", "AF_INET6", "AF_UNIX")
TYPES = ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW")
LOOPBACK = {"AF_INET": "127.0.0.1", "AF_INET6": "::1"}
ALL_INTERFACES = {"", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"}


def _bad(title, what, why, fix, *details) -> ConfigError:
    return ConfigError(Explanation(title, what, why, fix, details=tuple(details)))


INT_MAX = 2 ** 31 - 1  # listen() takes a C int
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` (not an IP address) can never be a host name, or None if it could be one.

    Purely syntactic: nothing is resolved, so a name that cannot exist fails at once instead of
    waiting for DNS (which, without a reachable resolver, can take many seconds).
    """
    if not name:
        return "it is empty"
    if any(ch.isspace() for ch in name):
        return "it contains spaces"
    try:
        ascii_name = name.encode("idna").decode("ascii")  # internationalised names are allowed
    except UnicodeError:
        return "it has an empty label (two dots in a row, or a leading dot) or a label over 63 characters"
    ascii_name = ascii_name[:-1] if ascii_name.endswith(".") else ascii_name
    if len(ascii_name) > 253:
        return f"it is {len(ascii_name)} characters long; at most 253 are allowed"
    for label in ascii_name.split("."):
        if not _LABEL.match(label):
            return (f"the part {label!r} is not a valid label (letters, digits and hyphens only, "
                    "not starting or ending with a hyphen, 1 to 63 characters)")
    return None


def check_host_name(name: str, shown=None) -> None:
    """Raise ConfigError if ``name`` (not an IP address) can never be resolved."""
    why = host_name_problem(name)
    if why is not None:
        raise _bad("Invalid host name",
                   f"{name if shown is None else shown!r} is not an IP address, and it cannot be a host "
                   f"name: {why}.",
                   "A host is an IP address ('127.0.0.1', '::1') or a name made of dot-separated labels "
                   "of letters, digits and hyphens. A name like this can never be resolved, so socklab "
                   "refuses it at once instead of asking the resolver (which may wait for DNS).",
                   "Use '127.0.0.1', '::1' or 'localhost'; check for typos and stray spaces, and pass "
                   "the port separately as an int.")


def _name(value, table, kind) -> str:
    """Accept 'AF_INET', 'inet', socket.AF_INET or 2 and return the canonical name."""
    if isinstance(value, bool):
        raise _bad(f"Unknown socket {kind}", f"{value!r} is not a socket {kind}.",
                   f"A socket {kind} is one of {', '.join(table)}.", f"Pick one of {', '.join(table)}.")
    if isinstance(value, int):
        for n in table:
            if getattr(socket, n, None) == value:
                return n
    if isinstance(value, str):
        v = value.strip().upper()
        prefix = "AF_" if kind == "family" else "SOCK_"
        v = v if v.startswith(prefix) else prefix + v
        if v in table:
            return v
    raise _bad(f"Unknown socket {kind}", f"{value!r} is not a socket {kind} socklab knows.",
               f"A socket {kind} is one of {', '.join(table)}.", f"Pick one of {', '.join(table)}.")


def _has_capability(bit: int) -> bool:
    """Whether this process holds Linux capability ``bit`` (root in a container that drops it has
    not); where there are no capabilities (no /proc: macOS), whether it is root."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << bit))
    except OSError:
        pass  # no /proc (macOS): root is what counts there
    return hasattr(os, "geteuid") and os.geteuid() == 0


def can_raw() -> bool:
    """True when this process may open raw IP sockets: on Linux, when it has CAP_NET_RAW."""
    return _has_capability(13)  # CAP_NET_RAW


def can_bind_low_ports() -> bool:
    """True when this process may bind any port below ip_unprivileged_port_start: on Linux, when it
    has CAP_NET_BIND_SERVICE (root has it, unless a container dropped it)."""
    return _has_capability(10)  # CAP_NET_BIND_SERVICE


def sysctl_int(path: str) -> int | None:
    """The Linux sysctl at ``path`` (e.g. '/proc/sys/net/core/somaxconn') as an int; None where it
    cannot be read."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def unprivileged_port_start(host: str | None = None) -> int:
    """Lowest port a normal user may bind on ``host`` (Linux: the sysctl; Windows: 0, it has no
    privileged ports; macOS 10.14+: 0 on all interfaces, else 1024; the last two reported, not
    measured here)."""
    start = sysctl_int("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if start is not None:
        return start
    if sys.platform == "win32" or (sys.platform == "darwin" and host in ("0.0.0.0", "::")):
        return 0
    return 1024


SOMAXCONN_SYSCTL = "/proc/sys/net/core/somaxconn"  # Linux; elsewhere only socket.SOMAXCONN


def somaxconn() -> int | None:
    """The kernel's cap on listen() backlogs, where it can be read."""
    cap = sysctl_int(SOMAXCONN_SYSCTL)
    return cap if cap is not None else getattr(socket, "SOMAXCONN", None)


def _numeric(h: str):
    """(address, zone, short) when ``h`` is a numeric IP address, else (None, None, False).

    IPv4's old short forms ('0', '127.1', '0x7f.0.0.1', '0127.0.0.1' in octal) count as numbers,
    as getaddrinfo() reads them: '0' binds every interface just as '0.0.0.0' does."""
    base, sep, zone = h.partition("%")
    try:
        return ipaddress.ip_address(base), (zone if sep else None), False
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9A-Fa-fxX.]+", h):
        return None, None, False
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h)), None, True
    except OSError:
        return None, None, False


def _interfaces() -> set:
    """Names of this machine's network interfaces (empty where Python cannot list them)."""
    try:
        return {name for _, name in socket.if_nameindex()}
    except (OSError, AttributeError):
        return set()


def _unspecified(ip) -> bool:
    """0.0.0.0, :: and ::ffff:0.0.0.0 (every IPv4 interface, through an IPv6 socket)."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_unspecified or (mapped is not None and mapped.is_unspecified)


def _refuse_host_with_port(h: str, shown) -> None:
    """Refuse 'http://host:80', 'host:80' and '[::1]:80' with the right fix: the port goes apart."""
    url = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://(\[[^]]*\]|[^/:?#]*)(?::(\d+))?", h)
    if url:
        host = url.group(2).strip("[]") or "localhost"
        port = url.group(3) or {"http": "80", "https": "443"}.get(url.group(1).lower())
        raise _bad("A URL is not a host", f"host={shown!r} is a URL, not a host.",
                   "A socket address is a (host, port) tuple: no scheme such as http://, no path.",
                   f"Use host={host!r} and " + (f"port={port}." if port else "the port as an int."))
    m = re.fullmatch(r"\[([^]]*)\]:(.*)", h) or re.fullmatch(r"([^:\[\]]*):([^:]*)", h)
    if m:
        host, port = m.groups()
        fix = f"port={int(port)}" if port.isdigit() else "the port apart, as an int (e.g. port=8080)"
        raise _bad("Host and port in one string", f"host={shown!r} looks like 'host:port'.",
                   "Python socket addresses are tuples: (host, port); the port is an int.",
                   f"Use host={host!r} and {fix}.")


def check_bound(config: "SocketConfig", address) -> None:
    """Refuse a socket the OS bound to every interface when ``config`` did not allow that: a host
    name can resolve to 0.0.0.0 or ::, which validate() cannot know in advance."""
    # getsockname() gives the canonical form: three strings cover every spelling of "everywhere"
    if config.allow_all_interfaces or not isinstance(address, tuple) \
            or address[0] not in ("0.0.0.0", "::", "::ffff:0.0.0.0"):
        return
    raise _bad("Binding to all interfaces needs an explicit choice",
               f"host={config.host!r} resolved to {address[0]}, which means every network "
               "interface of this machine; the socket was closed again.",
               "A server on all interfaces is reachable from other machines on the network. "
               "Loopback keeps it on this machine (other users of a shared host can still connect: "
               "only an AF_UNIX socket's file permissions keep them out). Lab demos only need loopback.",
               "Use the default (loopback), or pass allow_all_interfaces=True if you really "
               "want to be reachable from elsewhere.")


@dataclass(frozen=True)
class SocketConfig:
    """What a learner picks: family, type, address (host/port or path) and backlog.

    Defaults are safe: loopback, port 0 (the OS picks a free port), and for AF_UNIX a path in
    this process's private directory.
    """

    family: object = "AF_INET"
    type: object = "SOCK_STREAM"
    host: str | None = None
    port: object = 0
    path: str | None = None
    backlog: object = 5
    allow_all_interfaces: bool = False
    warnings: tuple = field(default=(), compare=False)

    # ---- derived
    @property
    def af(self) -> int:
        return getattr(socket, _name(self.family, FAMILIES, "family"))

    @property
    def kind(self) -> int:
        return getattr(socket, _name(self.type, TYPES, "type"))

    @property
    def proto(self) -> int:
        """IPPROTO_ICMP(V6) for raw IP sockets, else 0 (the default protocol)."""
        if self.type == "SOCK_RAW" and self.family == "AF_INET":
            return socket.IPPROTO_ICMP
        if self.type == "SOCK_RAW" and self.family == "AF_INET6":
            return socket.IPPROTO_ICMPV6
        return 0

    @property
    def address(self):
        """The address to bind or connect, in the form socket calls take."""
        if self.family == "AF_UNIX":
            return self.path
        if self.family == "AF_INET6" and isinstance(self.host, str) and "%" in self.host:
            # bind()/connect() with a (host, port) pair drop the zone: give the scope id itself
            base, _, zone = self.host.partition("%")
            try:
                return (base, self.port, 0, int(zone) if zone.isdigit() else socket.if_nametoindex(zone))
            except OSError:
                return (self.host, self.port)  # no such interface (any more): the call explains
        return (self.host, self.port)

    @property
    def stream(self) -> bool:
        return self.type == "SOCK_STREAM"

    def validate(self) -> "SocketConfig":
        """Return a normalised copy, or raise ConfigError explaining what the OS would refuse."""
        fam = _name(self.family, FAMILIES, "family")
        typ = _name(self.type, TYPES, "type")
        warnings = []
        if not hasattr(socket, fam):
            raise _bad(f"{fam} is not available here", f"This Python on {sys.platform} has no {fam}.",
                       "AF_UNIX sockets exist on Linux and macOS, and on Windows only in recent builds "
                       "that Python does not expose.", "Use AF_INET on this machine.")
        if fam == "AF_INET6" and not runtime.has_ipv6():
            raise _bad("IPv6 is not available", "This machine cannot create an AF_INET6 socket.",
                       "IPv6 is disabled in the kernel or the container.", "Use AF_INET (IPv4).")
        if typ == "SOCK_RAW" and fam != "AF_UNIX" and not can_raw():
            raise _bad("Raw sockets need privileges",
                       f"socket({fam}, SOCK_RAW) would fail with PermissionError (EPERM).",
                       "Raw sockets can read and forge any packet, so the OS allows them only to root "
                       "or processes with CAP_NET_RAW. A learner account on JupyterHub or Binder has "
                       "neither; on Windows they need an administrator.",
                       "Use SOCK_STREAM or SOCK_DGRAM, or try raw sockets on your own machine as root.")
        backlog = self._backlog(warnings)
        if fam == "AF_UNIX":
            if self.host is not None or (self.port not in (0, None)):
                raise _bad("AF_UNIX takes a path, not a host and port",
                           f"family AF_UNIX was given host={self.host!r}, port={self.port!r}.",
                           "An AF_UNIX socket is named by a file-system path and never leaves this "
                           "machine; IP hosts and ports belong to AF_INET and AF_INET6.",
                           "Pass path='/tmp/demo.sock' (or nothing: socklab picks a private path), "
                           "or use family AF_INET for a host and port.")
            path = self._path(typ)
            return replace(self, family=fam, type=typ, host=None, port=0, path=path, backlog=backlog,
                           warnings=tuple(warnings))
        if self.path is not None:
            raise _bad(f"{fam} takes a host and port, not a path",
                       f"family {fam} was given path={self.path!r}.",
                       "Paths name AF_UNIX sockets; AF_INET and AF_INET6 sockets are named by an IP "
                       "address and a port.",
                       "Pass host and port, or use family AF_UNIX for a path.")
        host = self._host(fam, warnings)
        port = self._port(warnings, host) if typ != "SOCK_RAW" else 0
        return replace(self, family=fam, type=typ, host=host, port=port, path=None, backlog=backlog,
                       warnings=tuple(warnings))

    # ---- the pieces of validate()
    def _backlog(self, warnings):
        b = self.backlog
        if b is None:
            return None
        if isinstance(b, bool) or not isinstance(b, int):
            raise _bad("Backlog must be a whole number", f"backlog={b!r} is not an int.",
                       "listen(backlog) takes an int: how many connections may wait to be accepted.",
                       "Use a small whole number such as 5, or leave it out.")
        if not -INT_MAX - 1 <= b <= INT_MAX:
            raise _bad("Backlog out of range", f"backlog={b} does not fit in a C int; listen() would "
                       "raise OverflowError.",
                       "listen(backlog) takes a C int, and the kernel caps it anyway at "
                       f"net.core.somaxconn ({somaxconn()} here).",
                       "Use a small whole number such as 5, or leave it out (then Python picks one).")
        cap = somaxconn()
        if b < 0:
            warnings.append(f"backlog {b} is negative: Python and the OS treat it as 0 "
                            "(Linux then still queues one connection).")
        elif cap and b > cap:
            warnings.append(f"backlog {b} is above the kernel cap net.core.somaxconn={cap}: "
                            f"the OS silently uses {cap}.")
        return b

    def _path(self, typ):
        p = self.path
        if p is None:
            return runtime.private_path("sock")
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if not isinstance(p, str):
            raise _bad("AF_UNIX address must be a path", f"{p!r} is not a path.",
                       "An AF_UNIX socket is named by a file-system path (a str).",
                       "Pass path='/tmp/demo.sock', or leave it out to get a private one.")
        if p.startswith("\0"):
            return p  # Linux abstract namespace: no file at all
        if "\0" in p:
            cut = p[:p.index("\0")]
            raise _bad("A NUL byte in an AF_UNIX path", f"path={p!r} contains a NUL byte ('\\0').",
                       f"The OS reads the path only up to its first NUL byte: it would bind {cut!r}, "
                       "a file that nothing would then remove.",
                       "Remove the NUL byte. (A Linux abstract name starts with one: path='\\0name'.)")
        try:
            ipaddress.ip_address(p.strip("[]").split("%")[0])
        except ValueError:
            pass
        else:
            raise _bad("An IP address is not an AF_UNIX path",
                       f"path={p!r} looks like an IP address; as a path it would create a socket file "
                       f"named {p!r} in the current directory.",
                       "AF_UNIX sockets are named by file-system paths; IP addresses belong to AF_INET "
                       "and AF_INET6.",
                       "Leave the path empty for a private one, give a real path such as "
                       "'/tmp/demo.sock', or choose family AF_INET / AF_INET6 for an IP address.")
        if len(os.fsencode(p)) >= 108:
            raise _bad("AF_UNIX path too long",
                       f"The path is {len(os.fsencode(p))} bytes; bind() would fail with "
                       "OSError('AF_UNIX path too long').",
                       "An AF_UNIX address lives in a fixed field of 108 bytes on Linux (104 on macOS), "
                       "counted in UTF-8 bytes.", "Use a shorter path, or leave path out.")
        if os.path.lexists(p) and not stat.S_ISSOCK(os.lstat(p).st_mode):
            kind = "a directory" if os.path.isdir(p) else "a file that is not a socket"
            raise _bad("The path is taken by another file", f"{p!r} already exists and is {kind}.",
                       "bind() creates a new socket file and never replaces an existing file: it "
                       "would fail with 'Address already in use' (EADDRINUSE). Only a stale socket "
                       "file may be removed before binding.",
                       "Choose another path, or leave path out to get a private one. Do not delete a "
                       "file that is not a socket: it is somebody's data.")
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise _bad("Directory does not exist", f"The directory of {p!r} does not exist; bind() "
                       "would raise FileNotFoundError.", "bind() creates the socket file but not "
                       "its directory.", "Create the directory first, or leave path out.")
        return p

    def _host(self, fam, warnings):
        h = self.host
        if h is None:
            return LOOPBACK[fam]
        if not isinstance(h, str):
            raise _bad("Host must be a string", f"host={h!r} is a {type(h).__name__}.",
                       "Hosts are written as strings: '127.0.0.1', '::1' or 'localhost'.",
                       "Put the host in quotes, and the port separately as an int.")
        h = h.strip()
        _refuse_host_with_port(h, self.host)
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]  # URL-style [::1]
        ip, zone, short = _numeric(h)
        if ip is None and h:
            check_host_name(h, shown=self.host)
            if h.lower() not in LOOPBACK_NAMES:
                warnings.append(f"{h!r} is a name: it must be resolved (hosts file or DNS) first.")
            return h
        if ip is not None and fam == "AF_INET" and ip.version == 6:
            raise _bad("IPv6 address on an IPv4 socket", f"{h!r} is an IPv6 address but the family "
                       "is AF_INET; bind/connect would raise socket.gaierror (EAI_ADDRFAMILY on Linux; the "
                       "code differs between systems).",
                       "AF_INET sockets speak IPv4 only.", "Use '127.0.0.1', or family AF_INET6.")
        if ip is not None and fam == "AF_INET6" and ip.version == 4:
            raise _bad("IPv4 address on an IPv6 socket", f"{h!r} is an IPv4 address but the family "
                       "is AF_INET6; bind/connect would raise socket.gaierror (EAI_ADDRFAMILY on Linux; the "
                       "code differs between systems).",
                       "AF_INET6 takes IPv6 addresses; IPv4 ones appear there only as mapped "
                       "addresses such as '::ffff:127.0.0.1'.", "Use '::1', or family AF_INET.")
        if ip is None or _unspecified(ip):
            everywhere = ("::" if fam == "AF_INET6" else "0.0.0.0") if ip is None else str(ip)
            if not self.allow_all_interfaces:
                reads = "" if h in ALL_INTERFACES else f" (the OS reads it as {everywhere})"
                raise _bad("Binding to all interfaces needs an explicit choice",
                           f"host={self.host!r} means every network interface of this machine{reads}.",
                           "A server on all interfaces is reachable from other machines on the network. "
                           "Loopback keeps it on this machine (other users of a shared host can still "
                           "connect: only an AF_UNIX socket's file permissions keep them out). Lab demos "
                           "only need loopback.",
                           "Use the default (loopback), or pass allow_all_interfaces=True if you really "
                           "want to be reachable from elsewhere.")
            warnings.append(f"listening on all interfaces ({everywhere}): reachable from other "
                            "machines, not just this one.")
            return everywhere
        if zone is not None and not ip.is_link_local:
            raise _bad("A zone goes only with a link-local address",
                       f"host={self.host!r} adds %{zone} to {ip}, which is not link-local; the "
                       "resolver rejects a named zone there (socket.gaierror) and ignores a numeric one.",
                       "The %zone part of an IPv6 address names an interface. Only link-local "
                       "addresses (fe80::/10) need one, because each interface has its own.",
                       f"Drop the zone: host={str(ip)!r}.")
        if zone is not None and not zone.isdigit() and zone not in _interfaces():
            raise _bad("No such interface", f"host={self.host!r} names the interface {zone!r}, "
                       "which this machine does not have.",
                       "The part after '%' of a link-local address names the interface it belongs to.",
                       f"Use one of: {', '.join(sorted(_interfaces())) or '(none found)'}; `ip -6 addr` "
                       "shows each one's fe80:: address.")
        if zone is None and ip.version == 6 and ip.is_link_local:
            raise _bad("A link-local address needs its interface",
                       f"{ip} is link-local (fe80::/10); without an interface bind() and connect() "
                       "fail with EINVAL.",
                       "Every interface has its own link-local addresses, so the same fe80:: "
                       "address can exist on several: the %zone says which one is meant.",
                       f"Add the interface, e.g. host='{ip}%eth0' (`ip -6 addr` lists them), or use "
                       "'::1' for this machine.")
        if short:
            octal = " (a leading 0 means octal)" if re.search(r"(^|\.)0\d", h) else ""
            warnings.append(f"{h!r} is an old short form of an IPv4 address: the OS reads it as "
                            f"{ip}{octal}. Write {str(ip)!r}.")
            h = str(ip)
        if not ip.is_loopback:
            warnings.append(f"{h} is not a loopback address: bind() works only if this machine "
                            "has that address, and then others can reach it.")
        return h

    def _port(self, warnings, host):
        p = self.port
        if isinstance(p, str) and p.strip().isdigit():
            raise _bad("Port must be an int", f"port={p!r} is a str.",
                       "bind()/connect() raise TypeError for a str port: ports are 16-bit integers.",
                       f"Use port={int(p)} (no quotes).")
        if isinstance(p, bool) or not isinstance(p, int):
            raise _bad("Port must be an int", f"port={p!r} is not a whole number.",
                       "Ports are integers from 0 to 65535.", "Use 0 to let the OS choose a free port.")
        if not 0 <= p <= 65535:
            raise _bad("Port out of range", f"port={p} is outside 0-65535; bind() would raise "
                       "OverflowError.", "Ports are 16-bit numbers.",
                       "Use 0 (the OS picks a free port) or a port from 1024 to 65535.")
        start = unprivileged_port_start(host) if p else 0  # port 0 (the default) never needs it
        if 0 < p < start and not can_bind_low_ports():
            raise _bad("Privileged port", f"Port {p} is below {start}; bind() would raise "
                       "PermissionError (EACCES) for this process.",
                       f"On Linux a port below {start} (net.ipv4.ip_unprivileged_port_start) needs the "
                       "CAP_NET_BIND_SERVICE capability: root has it, unless a container dropped it. "
                       "macOS since 10.14 allows low ports to normal users only on all interfaces "
                       "(0.0.0.0 or ::), not on 127.0.0.1.",
                       "Use port 0 or a port of 1024 and above.")
        if p:
            warnings.append(f"fixed port {p}: two servers (or two students on one host) cannot both "
                            "use it; port 0 lets the OS pick a free one.")
        return p
