"""The plain-``socket`` Python code that does what a socklab demo does, as copyable text.

Every program printed here runs as it stands (the tests run them), so a learner can leave
socklab behind.
"""
from __future__ import annotations

import socket

from . import runtime
from .config import SocketConfig
from .errors import LOOPBACK_NAMES, ConfigError, Explanation, explain

# The largest datagram each generated program can carry: UDP's payload limits (IPv4, IPv6), and
# for AF_UNIX the generated server's recvfrom(65536), which would cut a longer one short.
_DATAGRAM_MAX = {"AF_INET": 65507, "AF_INET6": 65527, "AF_UNIX": 65536}


def _addr_expr(c: SocketConfig, port: str | None = None) -> str:
    """The address as Python source; a zoned IPv6 host ('fe80::1%eth0') becomes the 4-tuple with
    the interface's index, because a (host, port) pair drops the zone."""
    if c.family == "AF_UNIX":
        return "PATH"
    port = str(c.port) if port is None else port
    host, _, zone = c.host.partition("%")
    if c.family == "AF_INET6" and zone:
        index = zone if zone.isdigit() else f"socket.if_nametoindex({zone!r})"
        return f"({host!r}, {port}, 0, {index})"
    return f"({c.host!r}, {port})"


def _check_resolves(c: SocketConfig) -> None:
    """Refuse a loopback name that has no address of the family here, as the program's bind()
    would fail (for example 'localhost' with AF_INET6 where /etc/hosts lists only 127.0.0.1)."""
    if c.family == "AF_UNIX" or c.host.lower() not in LOOPBACK_NAMES:
        return
    try:  # a hosts-file name: answered locally, as the generated program's own lookup would be
        socket.getaddrinfo(c.host, None, getattr(socket, c.family))
    except socket.gaierror as exc:
        raise ConfigError(explain(exc, (c.host, c.port), "bind")) from None


def _unix_kind(c: SocketConfig) -> str:
    """'private' (socklab picked the path: the program makes its own temporary directory),
    'abstract' (a Linux abstract name: no file) or 'file' (a path the learner configured)."""
    if runtime.display_path(c.path).startswith("<rundir>/"):
        return "private"  # socklab's private directory is gone once the notebook's kernel exits
    return "abstract" if c.path.startswith("\0") else "file"


def _prelude(c: SocketConfig, role: str) -> list:
    lines = ["import socket"]
    if c.family == "AF_UNIX":
        kind = _unix_kind(c)
        if role == "client" or kind == "private":
            lines += ["import os", "import tempfile"]
        elif kind == "file":
            lines += ["import os"]  # to remove the socket file at the end
        lines.append("")
        if role == "server" and kind == "private":
            lines += ["tmp = tempfile.TemporaryDirectory()  # a fresh, private directory",
                      "PATH = os.path.join(tmp.name, 'echo.sock')"]
        elif kind == "private":
            lines += ["PATH = input('server path: ')  # the path the server printed"]
        else:  # repr(): quotes, spaces, non-ASCII and a leading NUL all make a correct literal
            lines += [f"PATH = {c.path!r}  # " + ("a Linux abstract name: no file is created"
                                                 if kind == "abstract" else "the configured path")]
    lines.append("")
    return lines


def _message_bytes(message) -> bytes:
    """``message`` as bytes (a str is sent as UTF-8, as the panels do)."""
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise ConfigError(Explanation(
        "A message must be bytes or str", f"message={message!r} is of type {type(message).__name__}.",
        "Sockets send bytes; the generated client writes the message as a bytes literal (a str is "
        "encoded as UTF-8).", "Pass bytes such as b\"hello\", or a str."))


def _check_datagram(c: SocketConfig, data: bytes) -> None:
    limit = _DATAGRAM_MAX[c.family]
    if c.stream or c.type == "SOCK_RAW" or len(data) <= limit:
        return
    why = ("The generated server reads one datagram with recvfrom(65536); a longer one would be cut "
           "short." if c.family == "AF_UNIX" else
           f"A UDP datagram carries at most {limit} bytes over "
           f"{'IPv4' if c.family == 'AF_INET' else 'IPv6'}: sendto() would fail with EMSGSIZE "
           "(Message too long).")
    raise ConfigError(Explanation(
        "Message too long for one datagram",
        f"The message is {len(data)} bytes; one {c.family} datagram in this program holds at most "
        f"{limit}.", why,
        "Send a shorter message, split it into several datagrams, or use SOCK_STREAM."))


def _config_of(config) -> SocketConfig:
    """``config``, a new default SocketConfig for None, or a Server's or Client's ``.config``."""
    if config is None:
        return SocketConfig()
    if isinstance(config, SocketConfig):
        return config
    own = getattr(config, "config", None)
    if isinstance(own, SocketConfig):
        return own
    raise ConfigError(Explanation(
        "Not a socket configuration", f"config={config!r:.60} is a {type(config).__name__}, not a "
        "socklab.SocketConfig.", "The code is written for one family, type, address and backlog: "
        "a SocketConfig holds them, and so does every Server and Client (as .config).",
        "Pass socklab.SocketConfig(family='AF_INET', type='SOCK_STREAM'), or the Server or Client "
        "itself, or leave it out for the defaults."))


def server_code(config: SocketConfig | None = None) -> str:
    """A complete echo server for ``config`` (stream: one client served, then exit). ConfigError,
    explained, for a loopback name without an address of the family here."""
    c = _config_of(config).validate()
    _check_resolves(c)
    fam, typ = f"socket.{c.family}", f"socket.{c.type}"
    out = _prelude(c, "server")
    if c.type == "SOCK_RAW" and c.family != "AF_UNIX":
        proto = "socket.IPPROTO_ICMP" if c.family == "AF_INET" else "socket.IPPROTO_ICMPV6"
        out += ["# Raw sockets need root or CAP_NET_RAW. The kernel answers pings itself;",
                "# a raw ICMP socket receives a copy of each ICMP packet.",
                f"with socket.socket({fam}, {typ}, {proto}) as s:",
                "    s.settimeout(10)",
                "    packet, addr = s.recvfrom(65536)",
                "    print('ICMP packet from', addr, packet[:28])"]
        return "\n".join(out) + "\n"
    unix = _unix_kind(c) if c.family == "AF_UNIX" else ""
    if unix == "private":  # leaving `with tmp` removes the directory and the socket file in it
        out.append(f"with tmp, socket.socket({fam}, {typ}) as srv:")
    else:
        out.append(f"with socket.socket({fam}, {typ}) as srv:")
    out.append(f"    srv.bind({_addr_expr(c)})")
    body = []
    if c.stream:
        body.append(f"srv.listen({'' if c.backlog is None else c.backlog})")
    body.append("print('server address:', srv.getsockname(), flush=True)")
    if c.stream:
        body += ["srv.settimeout(60)  # never wait forever",
                 "conn, addr = srv.accept()",
                 "with conn:",
                 "    conn.settimeout(30)",
                 "    while True:",
                 "        data = conn.recv(65536)",
                 "        if not data:  # b'' means the client closed",
                 "            break",
                 "        conn.sendall(data)"]
    else:
        body += ["srv.settimeout(60)",
                 "data, addr = srv.recvfrom(65536)",
                 "srv.sendto(data, addr)"]
    if unix in ("file", "private"):  # the socket file outlives close(): remove it, even on failure
        out += ["    try:"] + [f"        {line}" for line in body] + \
               ["    finally:", "        os.unlink(PATH)  # the socket file outlives close()"]
    else:
        out += [f"    {line}" for line in body]
    return "\n".join(out) + "\n"


def client_code(config: SocketConfig | None = None, message: bytes = b"hello") -> str:
    """A complete client for ``config`` that sends ``message`` (bytes, or str sent as UTF-8) and
    prints the reply. ConfigError, explained, for code that could not run: another message type, a
    datagram longer than one can carry, or a loopback name without an address of the family here."""
    data = _message_bytes(message)
    c = _config_of(config).validate()
    _check_resolves(c)
    _check_datagram(c, data)
    msg = repr(data)
    fam, typ = f"socket.{c.family}", f"socket.{c.type}"
    out = _prelude(c, "client")
    if c.family != "AF_UNIX":
        out.insert(1, "PORT = int(input('server port: '))  # the port the server printed")
        addr = _addr_expr(c, "PORT")
    else:
        addr = "PATH"
    if c.type == "SOCK_RAW" and c.family != "AF_UNIX":
        out = ["import socklab", "", "# ICMP echo needs a header and checksum: see socklab.servers.ping",
               f"print(socklab.ping({c.host!r}))"]
        return "\n".join(out) + "\n"
    if c.family == "AF_UNIX" and not c.stream:  # its own directory: removed even if a call fails
        out.append(f"with tempfile.TemporaryDirectory() as home, socket.socket({fam}, {typ}) as s:")
    else:
        out.append(f"with socket.socket({fam}, {typ}) as s:")
    out.append("    s.settimeout(5)  # every blocking call gets a time limit")
    if c.stream:
        out += [f"    s.connect({addr})",
                f"    s.sendall({msg})",
                "    s.shutdown(socket.SHUT_WR)  # tell the server we are done sending",
                "    reply = b''",
                "    while chunk := s.recv(65536):  # read until the server closes",
                "        reply += chunk",
                "print('reply:', reply)"]
    else:
        if c.family == "AF_UNIX":
            out += ["    s.bind(os.path.join(home, 'client.sock'))  # a datagram reply needs an "
                    "address to come back to",
                    f"    s.connect({addr})  # connected, a wait for room in a full receiver sleeps",
                    f"    s.send({msg})",
                    "    reply = s.recv(65536)"]
        else:
            out += [f"    s.sendto({msg}, {addr})",
                    "    reply, addr = s.recvfrom(65536)"]
        out.append("print('reply:', reply)")
    return "\n".join(out) + "\n"
