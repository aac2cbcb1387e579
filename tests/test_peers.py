"""socklab against programs nobody here wrote.

* socklab's echo ``Server`` with real clients: OpenBSD ``nc`` and ``socat`` (Debian packages), over
  TCP, UDP, AF_UNIX stream and AF_UNIX datagram.
* socklab's ``Client`` against Python's own ``socketserver`` (TCP, UDP, AF_UNIX stream and datagram)
  and ``http.server`` (a GET written by hand, status line parsed).
* ``curl`` against a socklab ``Server`` whose handler speaks a little HTTP/1.1, and against the HTTP
  notebook's own handler (``socklab.http.handler``) where that module exists.
* TLS: a socklab ``Server`` whose handler runs TLS (a trustme certificate) over the traced socket,
  and the TLS notebook's server (``socklab.tls.echo_server``) where that module exists, each checked
  by Python's ssl client and by ``openssl s_client``, both verifying against the CA (and refusing
  a CA that did not sign the certificate).

Every external program runs with stdin data, a deadline and a kill in ``finally``; nothing waits by
sleeping: peers that exit on their own are waited for (``communicate``), peers that never exit on their
own (UDP, ``s_client -quiet``) are read until the echo has arrived and then stopped.
A missing tool skips its tests with the reason (``make test`` installs them: tools/system-deps.sh).
"""
from __future__ import annotations

import http.server
import os
import selectors
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

import socklab
from socklab.trace import Data

PEER_TIMEOUT = 10.0
MESSAGE = b"hello from a real peer\n"


# ---------------------------------------------------------------- helpers

def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package: "
                    f"{ {'nc': 'netcat-openbsd'}.get(tool, tool)}; `make test` installs it as root)")
    return path


def openbsd_nc() -> str:
    """nc, if it is the OpenBSD one (its -N, -U, -q flags are what these tests use)."""
    nc = need("nc")
    r = subprocess.run([nc, "-h"], capture_output=True, text=True, timeout=PEER_TIMEOUT)
    if "OpenBSD" not in r.stdout + r.stderr:
        pytest.skip("nc is not OpenBSD netcat (Debian package netcat-openbsd): its flags differ")
    return nc


def run_peer(args, data: bytes, timeout: float = PEER_TIMEOUT):
    """Run a peer that finishes on its own once stdin ends; return (returncode, stdout, stderr)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{args[0]} did not finish within {timeout} s: {args}")
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout)


def converse(args, data: bytes, expect: int, timeout: float = PEER_TIMEOUT):
    """Start a peer that never exits on its own (UDP, ``s_client -quiet``), write ``data`` to its stdin
    (kept open: some peers quit at once on EOF), read its stdout until ``expect`` bytes came back or
    the peer exits or the deadline passes, then stop it. Returns (stdout, stderr, returncode or None
    if it was still running when stopped)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = bytearray(), bytearray()
    exited = None
    sel = selectors.DefaultSelector()
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        deadline = time.monotonic() + timeout
        while len(out) < expect and sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.extend(chunk)
                else:
                    sel.unregister(key.fileobj)
        if not sel.get_map():  # both pipes at EOF: the peer is exiting on its own; reap it
            try:
                exited = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                exited = None
        else:
            exited = proc.poll()
        return bytes(out), bytes(err), exited
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass  # the peer is gone: its pipe may already be broken
        proc.wait(timeout)


def received(server: socklab.Server, call: str = "recv") -> bytes:
    """What the server's sockets read (from its trace; heads of payloads, enough for short messages)."""
    got = b""
    for ev in server.trace:
        if ev.call == call and ev.ok:
            res = ev.result[0] if call == "recvfrom" else ev.result
            if isinstance(res, Data):
                got += res.head
    return got


def assert_served_cleanly(server: socklab.Server):
    assert server.wait_idle(PEER_TIMEOUT), "the server still holds a connection"
    assert not server.errors, [exp.text() for _, exp in server.errors]


@pytest.fixture
def tcp_echo():
    with socklab.Server(family="AF_INET", type="SOCK_STREAM", name="peers/tcp") as srv:
        yield srv


@pytest.fixture
def udp_echo():
    with socklab.Server(family="AF_INET", type="SOCK_DGRAM", name="peers/udp") as srv:
        yield srv


@pytest.fixture
def unix_echo():
    with socklab.Server(family="AF_UNIX", type="SOCK_STREAM", name="peers/unix") as srv:
        yield srv


@pytest.fixture
def unix_dgram_echo():
    with socklab.Server(family="AF_UNIX", type="SOCK_DGRAM", name="peers/unix-dgram") as srv:
        yield srv


# ---------------------------------------------------------------- socklab's server, nc as the client

def test_nc_tcp_echo(tcp_echo):
    nc = openbsd_nc()
    host, port = tcp_echo.address
    # -N: shutdown(SHUT_WR) after stdin ends, so the echo server sees b'' and closes; -w: idle limit
    rc, out, err = run_peer([nc, "-N", "-w", "5", host, str(port)], MESSAGE)
    assert (rc, out) == (0, MESSAGE), err
    assert_served_cleanly(tcp_echo)
    assert received(tcp_echo) == MESSAGE
    assert tcp_echo.trace.calls("server/conn1")[:3] == ["settimeout", "recv", "sendall"]


def test_nc_tcp6_echo():
    nc = openbsd_nc()
    if not socklab.runtime.has_ipv6():
        pytest.skip("IPv6 is not available on this machine")
    with socklab.Server(family="AF_INET6", type="SOCK_STREAM", name="peers/tcp6") as srv:
        rc, out, err = run_peer([nc, "-6", "-N", "-w", "5", "::1", str(srv.address[1])], MESSAGE)
        assert (rc, out) == (0, MESSAGE), err
        assert_served_cleanly(srv)


def test_nc_udp_echo(udp_echo):
    nc = openbsd_nc()
    host, port = udp_echo.address
    out, err, _ = converse([nc, "-u", host, str(port)], MESSAGE, expect=len(MESSAGE))
    assert out == MESSAGE, err
    assert received(udp_echo, "recvfrom") == MESSAGE
    assert "sendto" in udp_echo.trace.calls("server")
    assert not udp_echo.errors


def test_nc_unix_stream_echo(unix_echo):
    nc = openbsd_nc()
    rc, out, err = run_peer([nc, "-U", "-N", "-w", "5", unix_echo.address], MESSAGE)
    assert (rc, out) == (0, MESSAGE), err
    assert_served_cleanly(unix_echo)
    assert received(unix_echo) == MESSAGE


def test_nc_unix_datagram_echo(unix_dgram_echo):
    nc = openbsd_nc()
    # nc -uU binds a temporary path of its own, so the echo has somewhere to go back to
    out, err, _ = converse([nc, "-u", "-U", unix_dgram_echo.address], MESSAGE, expect=len(MESSAGE))
    assert out == MESSAGE, err
    assert not unix_dgram_echo.errors, [e.text() for _, e in unix_dgram_echo.errors]


# ---------------------------------------------------------------- socklab's server, socat as the client

def test_socat_tcp_echo(tcp_echo):
    socat = need("socat")
    host, port = tcp_echo.address
    # on stdin EOF socat half-closes and exits when the server closes too (-t: at most 5 s for that)
    rc, out, err = run_peer([socat, "-t", "5", "-", f"TCP:{host}:{port}"], MESSAGE)
    assert (rc, out) == (0, MESSAGE), err
    assert_served_cleanly(tcp_echo)
    assert received(tcp_echo) == MESSAGE


def test_socat_udp_echo(udp_echo):
    socat = need("socat")
    host, port = udp_echo.address
    out, err, _ = converse([socat, "-", f"UDP:{host}:{port}"], MESSAGE, expect=len(MESSAGE))
    assert out == MESSAGE, err
    assert received(udp_echo, "recvfrom") == MESSAGE
    assert not udp_echo.errors


def test_socat_unix_connect_echo(unix_echo):
    socat = need("socat")
    rc, out, err = run_peer([socat, "-t", "5", "-", f"UNIX-CONNECT:{unix_echo.address}"], MESSAGE)
    assert (rc, out) == (0, MESSAGE), err
    assert_served_cleanly(unix_echo)
    assert received(unix_echo) == MESSAGE


def test_socat_unix_datagram_echo(unix_dgram_echo, tmp_path):
    socat = need("socat")
    own = tmp_path / "socat.sock"
    out, err, _ = converse([socat, "-", f"UNIX-SENDTO:{unix_dgram_echo.address},bind={own}"], MESSAGE,
                           expect=len(MESSAGE))
    assert out == MESSAGE, err
    assert not unix_dgram_echo.errors


# ---------------------------------------------------------------- socklab's client, Python's servers

class _StreamEcho(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class _DatagramEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)


class _ThreadingUnixDatagramServer(socketserver.ThreadingMixIn, socketserver.UnixDatagramServer):
    daemon_threads = True


def _serving(server: socketserver.BaseServer):
    """Serve in a thread; the context manager shuts down, joins and closes."""
    class _Ctx:
        def __enter__(self):
            self.t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      daemon=True, name="peer-socketserver")
            self.t.start()
            return server

        def __exit__(self, *exc):
            server.shutdown()
            self.t.join(PEER_TIMEOUT)
            server.server_close()
            assert not self.t.is_alive()
    return _Ctx()


def test_client_vs_socketserver_tcp():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _StreamEcho)
    srv.daemon_threads = True
    with _serving(srv):
        c = socklab.Client(srv.server_address, family="AF_INET", type="SOCK_STREAM", name="peers/c-tcp")
        try:
            assert c.request(MESSAGE) == MESSAGE
            c.shutdown()  # half-close: Python's handler sees b'' and returns
            assert c.recv() == b""
        finally:
            c.close()
    assert c.trace.calls() == ["socket", "settimeout", "connect", "sendall", "recv", "shutdown", "recv",
                               "close"]


def test_client_vs_socketserver_udp():
    srv = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _DatagramEcho)
    srv.daemon_threads = True
    with _serving(srv):
        c = socklab.Client(srv.server_address, family="AF_INET", type="SOCK_DGRAM", name="peers/c-udp")
        try:
            assert c.request(MESSAGE) == MESSAGE
        finally:
            c.close()
    assert c.trace.calls()[-3:] == ["sendto", "recvfrom", "close"]


def test_client_vs_socketserver_unix_stream(tmp_path):
    path = str(tmp_path / "py.sock")
    srv = socketserver.ThreadingUnixStreamServer(path, _StreamEcho)
    srv.daemon_threads = True
    with _serving(srv):
        c = socklab.Client(path, family="AF_UNIX", type="SOCK_STREAM", name="peers/c-unix")
        try:
            assert c.request(MESSAGE) == MESSAGE
        finally:
            c.close()


def test_client_vs_socketserver_unix_datagram(tmp_path):
    path = str(tmp_path / "pyd.sock")
    srv = _ThreadingUnixDatagramServer(path, _DatagramEcho)
    with _serving(srv):
        c = socklab.Client(path, family="AF_UNIX", type="SOCK_DGRAM", name="peers/c-unix-dgram")
        try:
            assert c.request(MESSAGE) == MESSAGE  # socklab binds the client a reply path
        finally:
            c.close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # keep pytest's output clean


def parse_http(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    version, status, reason = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return version, int(status), reason, headers, body


def test_client_get_from_http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    with _serving(srv):
        c = socklab.Client(srv.server_address[:2], family="AF_INET", type="SOCK_STREAM", name="peers/http")
        try:
            request = b"GET /socklab HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
            raw = c.request(request, expect=1 << 20)  # HTTP/1.0: read until the server closes
        finally:
            c.close()
    version, status, reason, headers, body = parse_http(raw)
    assert (version, status, reason) == ("HTTP/1.0", 200, "OK")
    assert body == b"hello /socklab\n"
    assert int(headers["content-length"]) == len(body)


# ---------------------------------------------------------------- curl against socklab's server

def tiny_http(conn, server):
    """A socklab stream handler that answers one HTTP request with its path, then closes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(server.max_message)
        if not chunk:
            return
        buf += chunk
    method, target, _ = buf.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
    body = f"socklab saw {method} {target}\n".encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_curl_against_socklab_http_server():
    curl = need("curl")
    with socklab.Server(family="AF_INET", type="SOCK_STREAM", handler=tiny_http, name="peers/curl") as srv:
        host, port = srv.address
        rc, out, err = run_peer([curl, "-sS", "-i", "--max-time", "5", f"http://{host}:{port}/lab?x=1"], b"")
        assert rc == 0, err
        version, status, _, headers, body = parse_http(out)
        assert (version, status) == ("HTTP/1.1", 200)
        assert body == b"socklab saw GET /lab?x=1\n"
        assert_served_cleanly(srv)
        assert received(srv).startswith(b"GET /lab?x=1 HTTP/1.1\r\nHost: ")


def test_curl_against_socklab_http_module():
    """The HTTP notebook's own server module, where it exists, against curl."""
    curl = need("curl")
    http_mod = pytest.importorskip("socklab.http", reason="socklab/http.py (the HTTP notebook's module) "
                                                          "is not written yet")
    handler = getattr(http_mod, "handler", None) or getattr(http_mod, "http_handler", None)
    if handler is None:
        pytest.skip("socklab.http has no `handler`/`http_handler` stream handler to serve with")
    with socklab.Server(family="AF_INET", type="SOCK_STREAM", handler=handler, name="peers/curl-mod") as srv:
        host, port = srv.address
        rc, out, err = run_peer([curl, "-sS", "-i", "--max-time", "5", f"http://{host}:{port}/"], b"")
        assert rc == 0, err
        version, status, _, _, _ = parse_http(out)
        assert version.startswith("HTTP/1.") and 100 <= status < 600
        assert_served_cleanly(srv)


# ---------------------------------------------------------------- TLS over socklab's traced sockets

class TLSOverTraced:
    """TLS (ssl.SSLObject on memory BIOs) over a socklab TracedSocket: the trace records the real,
    encrypted bytes on the wire while the handler reads and writes plaintext."""

    def __init__(self, conn, ctx: ssl.SSLContext, server_side: bool):
        self.conn = conn
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_side=server_side)

    def _pump(self, fn, *args):
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.conn.recv(65536)
                if data:
                    self.inc.write(data)
                else:
                    self.inc.write_eof()
                continue
            self._flush()
            return result

    def _flush(self):
        pending = self.out.read()
        if pending:
            self.conn.sendall(pending)

    def handshake(self):
        self._pump(self.tls.do_handshake)

    def recv(self, n: int) -> bytes:
        try:
            return self._pump(self.tls.read, n)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or TCP closed without it
            return b""

    def sendall(self, data: bytes):
        self._pump(self.tls.write, data)


def tls_echo(ctx: ssl.SSLContext):
    def handler(conn, server):
        tls = TLSOverTraced(conn, ctx, server_side=True)
        tls.handshake()
        while True:
            data = tls.recv(server.max_message)
            if not data:
                return
            tls.sendall(data)
    return handler


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    trustme = pytest.importorskip("trustme", reason="trustme is not installed (pip install trustme)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("pki")
    ca_pem = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return {"ca": ca, "ca_pem": str(ca_pem), "server_ctx": server_ctx}


@pytest.fixture
def tls_server(pki):
    with socklab.Server(family="AF_INET", type="SOCK_STREAM", handler=tls_echo(pki["server_ctx"]),
                        name="peers/tls") as srv:
        yield srv


def python_tls_request(address, ctx, hostname="127.0.0.1", data=MESSAGE) -> bytes:
    with socket.create_connection(address, timeout=PEER_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                got += chunk
            return got


def test_tls_echo_with_python_ssl_client_verifying(tls_server, pki):
    ctx = ssl.create_default_context(cafile=pki["ca_pem"])  # CERT_REQUIRED + hostname check
    assert python_tls_request(tls_server.address, ctx) == MESSAGE
    assert_served_cleanly(tls_server)
    wire = received(tls_server)
    assert wire[:1] == b"\x16", "the first bytes on the wire should be a TLS handshake record"
    assert MESSAGE not in wire, "the plaintext travelled unencrypted"


def test_tls_python_client_rejects_unknown_ca(tls_server):
    ctx = ssl.create_default_context()  # the system CAs: the trustme CA is not among them
    with pytest.raises(ssl.SSLCertVerificationError):
        python_tls_request(tls_server.address, ctx)


def test_tls_python_client_rejects_wrong_name(tls_server, pki):
    ctx = ssl.create_default_context(cafile=pki["ca_pem"])
    with pytest.raises(ssl.SSLCertVerificationError):
        python_tls_request(tls_server.address, ctx, hostname="example.org")


def s_client(address, ca_pem):
    openssl = need("openssl")
    host, port = address
    args = [openssl, "s_client", "-connect", f"{host}:{port}", "-verify_return_error", "-verify_ip", host,
            "-quiet"]
    return args + (["-CAfile", ca_pem] if ca_pem else [])


def test_tls_echo_with_openssl_s_client(tls_server, pki):
    out, err, rc = converse(s_client(tls_server.address, pki["ca_pem"]), MESSAGE, expect=len(MESSAGE))
    assert out == MESSAGE, err.decode(errors="replace")
    assert rc is None, "s_client should still have been connected when the echo arrived"
    assert b"verify error" not in err
    assert received(tls_server)[:1] == b"\x16"


def test_tls_openssl_s_client_rejects_unknown_ca(tls_server, tmp_path):
    other = pytest.importorskip("trustme").CA()  # a CA that did not sign the server's certificate
    other_pem = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_pem))
    out, err, rc = converse(s_client(tls_server.address, str(other_pem)), MESSAGE, expect=len(MESSAGE))
    assert out == b""
    assert rc not in (None, 0), "s_client should have given up on an unverifiable certificate"
    assert b"verify error" in err or b"certificate verify failed" in err, err


# ---------------------------------------------------------------- the TLS notebook's module (socklab.tls)

@pytest.fixture
def module_tls():
    tls = pytest.importorskip("socklab.tls", reason="socklab/tls.py (the TLS notebook's module) is not "
                                                    "written yet")
    if not (hasattr(tls, "Certificates") and hasattr(tls, "echo_server")):
        pytest.skip("socklab.tls has no Certificates/echo_server (its API changed): update these tests")
    certs = tls.Certificates()
    with tls.echo_server(certs, name="peers/tls-module") as srv:
        yield tls, certs, srv


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_tls_module_server_with_python_ssl_client(module_tls, hostname):
    tls, certs, srv = module_tls
    ctx = ssl.create_default_context(cafile=certs.ca_file())
    assert python_tls_request(srv.address, ctx, hostname=hostname) == MESSAGE
    assert_served_cleanly(srv)
    assert MESSAGE not in received(srv), "the plaintext travelled unencrypted"


def test_tls_module_server_with_openssl_s_client(module_tls):
    tls, certs, srv = module_tls
    out, err, rc = converse(s_client(srv.address, certs.ca_file()), MESSAGE, expect=len(MESSAGE))
    assert out == MESSAGE, err.decode(errors="replace")
    assert rc is None and b"verify error" not in err


def test_tls_module_server_rejected_by_s_client_without_its_ca(module_tls, tmp_path):
    tls, certs, srv = module_tls
    other = pytest.importorskip("trustme").CA()
    other_pem = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_pem))
    out, err, rc = converse(s_client(srv.address, str(other_pem)), MESSAGE, expect=len(MESSAGE))
    assert out == b"" and rc not in (None, 0), err
    assert srv.wait_idle(PEER_TIMEOUT)
    assert srv.errors, "the server should have recorded the client's alert"
