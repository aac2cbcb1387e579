"""The plain-``socket`` Python code that does what a socklab demo does, as copyable text.

Every program printed here runs as it stands (the tests run them), so a learner can leave
socklab behind.
"""
from __future__ import annotations

from .config import SocketConfig


def _addr_expr(c: SocketConfig) -> str:
    if c.family == "AF_UNIX":
        return "PATH"
    return f"({c.host!r}, {c.port})"


def _prelude(c: SocketConfig, role: str) -> list:
    lines = ["import socket"]
    if c.family == "AF_UNIX":
        lines += ["import os", "import tempfile", ""]
        if role == "server":
            lines += ["PATH = os.path.join(tempfile.mkdtemp(), 'echo.sock')  # a fresh, private path"]
        else:
            lines += ["PATH = input('server path: ')  # the path the server printed"]
    lines.append("")
    return lines


def server_code(config: SocketConfig | None = None) -> str:
    """A complete echo server for ``config`` (stream: one client served, then exit)."""
    c = (config or SocketConfig()).validate()
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
    out.append(f"with socket.socket({fam}, {typ}) as srv:")
    out.append(f"    srv.bind({_addr_expr(c)})")
    if c.stream:
        out.append(f"    srv.listen({'' if c.backlog is None else c.backlog})")
    out.append("    print('server address:', srv.getsockname(), flush=True)")
    if c.stream:
        out += ["    srv.settimeout(60)  # never wait forever",
                "    conn, addr = srv.accept()",
                "    with conn:",
                "        conn.settimeout(30)",
                "        while True:",
                "            data = conn.recv(65536)",
                "            if not data:  # b'' means the client closed",
                "                break",
                "            conn.sendall(data)"]
    else:
        out += ["    srv.settimeout(60)",
                "    data, addr = srv.recvfrom(65536)",
                "    srv.sendto(data, addr)"]
    if c.family == "AF_UNIX":
        out.append("os.unlink(PATH)  # the socket file outlives close()")
    return "\n".join(out) + "\n"


def client_code(config: SocketConfig | None = None, message: bytes = b"hello") -> str:
    """A complete client for ``config`` that sends ``message`` and prints the reply."""
    c = (config or SocketConfig()).validate()
    fam, typ = f"socket.{c.family}", f"socket.{c.type}"
    out = _prelude(c, "client")
    if c.family != "AF_UNIX":
        out.insert(1, "PORT = int(input('server port: '))  # the port the server printed")
        addr = f"({c.host!r}, PORT)"
    else:
        addr = "PATH"
    if c.type == "SOCK_RAW" and c.family != "AF_UNIX":
        out = ["import socklab", "", "# ICMP echo needs a header and checksum: see socklab.servers.ping",
               f"print(socklab.ping({c.host!r}))"]
        return "\n".join(out) + "\n"
    out.append(f"with socket.socket({fam}, {typ}) as s:")
    out.append("    s.settimeout(5)  # every blocking call gets a time limit")
    if c.stream:
        out += [f"    s.connect({addr})",
                f"    s.sendall({message!r})",
                "    s.shutdown(socket.SHUT_WR)  # tell the server we are done sending",
                "    reply = b''",
                "    while chunk := s.recv(65536):  # read until the server closes",
                "        reply += chunk",
                "print('reply:', reply)"]
    else:
        if c.family == "AF_UNIX":
            out += ["    me = PATH + '.client'",
                    "    s.bind(me)  # a datagram reply needs an address to come back to"]
        out += [f"    s.sendto({message!r}, {addr})",
                "    reply, addr = s.recvfrom(65536)"]
        if c.family == "AF_UNIX":
            out.append("    os.unlink(me)")
        out.append("print('reply:', reply)")
    return "\n".join(out) + "\n"
