"""socklab.http on real loopback sockets: parser limits, the handler against real HTTP clients
(urllib, http.client, curl), and the by-hand client against Python's own http.server."""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import socklab
from socklab import http as H


def raw_exchange(srv, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a plain socket and read until the server closes."""
    with socket.create_connection(srv.address, timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.fixture
def srv():
    with H.server(date=False) as s:
        yield s


# ---- parsing without sockets

def test_parse_request_line_headers_body():
    req = H.parse_request(b"POST /echo?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n"
                          b"X-Two:  spaced  \r\n\r\nabcEXTRA")
    assert (req.method, req.target, req.version, req.path, req.query) == \
        ("POST", "/echo?x=1", "HTTP/1.1", "/echo", {"x": "1"})
    assert req.header("Content-Length") == "3" and req.header("x-two") == "spaced"
    assert req.body == b"abc"
    assert req.raw.endswith(b"\r\n\r\nabc")


@pytest.mark.parametrize("data,status", [
    (b"HELLO\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                              # no Host
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),        # obs-fold
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),                  # space before colon
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 101 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n", 400),                       # ends inside the headers
])
def test_parse_rejects_with_status(data, status):
    with pytest.raises(H.HTTPError) as info:
        H.parse_request(data)
    assert info.value.status == status


def test_received_data_is_never_evaluated():
    req = H.parse_request(b"GET /__import__('os').system('false') HTTP/1.1\r\nHost: a\r\n"
                          b"X: __import__('sys').exit(1)\r\n\r\n")
    assert req.header("X") == "__import__('sys').exit(1)"


def test_read_response_content_length_chunked_eof_and_head():
    r = H.read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiNEXT")
    assert (r.status, r.reason, r.body) == (200, "OK", b"hi")
    r = H.read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
    assert r.body == b"abcde"
    r = H.read_response(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    assert r.body == b"until the end"
    r = H.read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", method="HEAD")
    assert r.body == b""
    with pytest.raises(H.HTTPError):
        H.read_response(b"")


def test_build_request_and_response():
    assert H.build_request("GET", "/", "h") == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert H.build_request("POST", "/e", "h", {"Content-Type": "text/plain"}, "hé") == \
        b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nh\xc3\xa9"
    assert H.build_response(404, b"no") == b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
    assert H.build_response(200, b"abc", head=True).endswith(b"Content-Length: 3\r\n\r\n")


# ---- the handler on real sockets

def test_by_hand_client_and_trace(leakcheck, srv):
    r = H.request(srv.address, trace=srv.trace)
    assert (r.status, r.body) == (200, b"Hello from socklab's HTTP server!\n")
    assert r.header("content-length") == "34" and r.header("Connection") == "close"
    assert r.raw.startswith(b"HTTP/1.1 200 OK\r\n") and r.raw.endswith(r.body)
    assert srv.wait_idle()
    calls = srv.trace.calls("client")
    assert calls[:4] == ["socket", "settimeout", "connect", "sendall"] and calls[-1] == "close"
    ex = srv.handler.exchanges[-1]
    assert ex.request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:") and ex.response == r.raw
    srv.stop()


def test_post_echo_and_errors(srv):
    r = H.request(srv.address, "POST", "/echo", {"Content-Type": "application/json"}, b'{"a": 1}')
    assert (r.status, r.body, r.header("Content-Type")) == (200, b'{"a": 1}', "application/json")
    assert H.request(srv.address, target="/nope").status == 404
    r = H.request(srv.address, "DELETE", "/")
    assert (r.status, r.header("Allow")) == (405, "GET, HEAD")
    r = H.request(srv.address, "HEAD", "/")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "34"


def test_body_arriving_in_pieces(srv):
    """TCP is a stream: the handler waits for Content-Length bytes however they are split."""
    with socket.create_connection(srv.address, timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        s.sendall(b"01234")
        s.sendall(b"56789")
        resp = H.read_response(s)
    assert resp.body == b"0123456789"


def test_malformed_requests_get_an_answer_not_a_reset(srv):
    out = raw_exchange(srv, b"HELLO\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in out
    out = raw_exchange(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert srv.wait_idle()
    assert [e.status for e in srv.handler.exchanges] == [400, 431]
    assert not srv.errors


def test_keep_alive_several_requests_on_one_connection(srv):
    data = (H.build_request("GET", "/", "x") + H.build_request("GET", "/headers", "x") +
            H.build_request("GET", "/", "x", {"Connection": "close"}))
    with socket.create_connection(srv.address, timeout=5) as s:
        s.sendall(data)  # pipelined: three requests in one write
        r = H.Reader(s)
        statuses = [H.read_response(r).status for _ in range(3)]
        assert s.recv(10) == b""  # the server closed after the third ("Connection: close")
    assert statuses == [200, 200, 200]
    assert srv.wait_idle()
    assert len({e.side for e in srv.handler.exchanges}) == 1


def test_date_header_by_default():
    with H.server() as s:
        assert H.request(s.address).header("Date", "").endswith(" GMT")


def test_urllib_against_handler(srv):
    url = f"http://127.0.0.1:{srv.address[1]}"
    with urllib.request.urlopen(url + "/headers", timeout=5) as resp:
        assert resp.status == 200
        body = resp.read().decode()
    assert "User-Agent: Python-urllib/" in body and "Connection: close" in body
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/missing", timeout=5)
    assert info.value.code == 404
    info.value.close()


def test_http_client_keep_alive_against_handler(srv):
    c = http.client.HTTPConnection("127.0.0.1", srv.address[1], timeout=5)
    try:
        for body in (b"one", b"two"):
            c.request("POST", "/echo", body=body, headers={"Content-Type": "text/plain"})
            resp = c.getresponse()
            assert (resp.status, resp.read()) == (200, body)
    finally:
        c.close()
    assert srv.wait_idle()
    assert len({e.side for e in srv.handler.exchanges}) == 1  # both on one connection


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_against_handler(srv):
    url = f"http://127.0.0.1:{srv.address[1]}"
    r = subprocess.run([shutil.which("curl"), "-sS", "-i", "--max-time", "5", "-d", "hi curl", url + "/echo"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and r.stdout.endswith(b"\r\n\r\nhi curl")


def test_client_against_python_http_server(leakcheck):
    py = H.StdlibServer()
    try:
        r = H.request(py.address, target="/abc")
        assert r.status == 200 and r.body == b"Hello from Python's http.server! You asked for /abc\n"
        assert r.header("Server").startswith("BaseHTTP/") and "<date>" in r.head_text()
        assert py.log == ['"GET /abc HTTP/1.1" 200 -']
        r = H.request(py.address, "POST", "/abc", body=b"x")
        assert r.status == 501
    finally:
        py.stop()


def test_stdlib_server_rerun_stops_the_old_one():
    a = H.StdlibServer(name="t-stdlib")
    b = H.StdlibServer(name="t-stdlib")
    with pytest.raises(OSError):
        socket.create_connection(a.address, timeout=2).close()
    b.stop()


def test_ipv6_request():
    if not socklab.runtime.has_ipv6():
        pytest.skip("no IPv6 here")
    with H.server(family="AF_INET6") as s:
        r = H.request(s.address, target="/headers")
    assert r.status == 200 and f"Host: [::1]:{s.address[1]}".encode() in r.body


@pytest.mark.parametrize("code", ["PLAIN_SERVER", "PLAIN_CLIENT"])
def test_plain_code_compiles(code):
    compile(getattr(H, code), code, "exec")


def test_plain_code_runs_end_to_end(tmp_path):
    """The printed plain server and client work together (on a free port instead of 8080)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_src = H.PLAIN_SERVER.replace("8080", str(port)).replace("while True:", "for _ in range(1):")
    client_src = H.PLAIN_CLIENT.replace("8080", str(port))
    (tmp_path / "s.py").write_text(server_src)
    (tmp_path / "c.py").write_text(client_src)
    srv = subprocess.Popen([sys.executable, "-u", str(tmp_path / "s.py")], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        assert srv.stdout.readline().startswith("serving on")  # ready: it has bound and listens
        c = subprocess.run([sys.executable, str(tmp_path / "c.py")], capture_output=True, text=True,
                           timeout=20)
        assert c.returncode == 0, c.stderr
        assert "HTTP/1.1 200 OK" in c.stdout and "You sent: GET / HTTP/1.1" in c.stdout
        assert srv.wait(20) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait(5)
        srv.stdout.close()


def test_plain_server_survives_silent_and_resetting_clients_and_answers_head(tmp_path):
    """The printed plain server keeps serving after a client that never speaks (its timeout) and
    one that resets mid-request, and answers HEAD without a body (RFC 9110 9.3.2)."""
    from test_engine import read_line, reap
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = (H.PLAIN_SERVER.replace("8080", str(port)).replace("while True:", "for _ in range(4):")
           .replace("conn.settimeout(10)", "conn.settimeout(0.5)"))
    (tmp_path / "s.py").write_text(src)
    srv = subprocess.Popen([sys.executable, "-u", str(tmp_path / "s.py")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        assert read_line(srv).startswith("serving on")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            assert silent.recv(100) == b""  # the server gave up on us after its timeout
        assert read_line(srv).endswith("failed: timed out")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as rude:
            rude.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert "Connection reset by peer" in read_line(srv)
        head = raw_request(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 26\r\n" in head
        assert head.endswith(b"\r\n\r\n")  # no body after the blank line
        get = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert get.endswith(b"\r\n\r\nYou sent: GET / HTTP/1.1\n")
        assert srv.wait(20) == 0
    finally:
        reap(srv)


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _wakeups(thread) -> int:
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        return int(next(line for line in f if line.startswith("voluntary_ctxt_switches:")).split()[1])


def _until_asleep_in_select(thread, limit: float = 5.0) -> None:
    """Return once ``thread`` sleeps in epoll_wait (its wchan). The kernel offers no event for
    another thread falling asleep, so this looks every millisecond, for at most ``limit`` s."""
    path = f"/proc/self/task/{thread.native_id}/wchan"
    deadline = time.monotonic() + limit
    while True:
        with open(path) as f:
            if f.read().strip() == "do_epoll_wait":
                return
        assert time.monotonic() < deadline, f"the thread never went back to select(): {path}"
        threading.Event().wait(0.001)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_stdlib_server_sleeps_while_idle_and_stops_at_once(leakcheck):
    """No polling: an idle StdlibServer's thread never wakes (serve_forever() would, every
    poll_interval), a request still gets served, and stop() wakes it through its wake-up socket."""
    py = H.StdlibServer()
    try:
        assert H.request(py.address, target="/").status == 200
        # The reply can reach us before the serving thread is back in select() (it may still be
        # returning from starting the handler's thread), and going to sleep counts as a switch.
        _until_asleep_in_select(py._thread)
        before = _wakeups(py._thread)
        # Watch an idle stretch: 0.3 s is 6 rounds of the 0.05 s poll this replaced.
        threading.Event().wait(0.3)
        assert _wakeups(py._thread) == before
        assert H.request(py.address, target="/again").status == 200
    finally:
        py.stop()
    assert not py._thread.is_alive() and py.httpd.socket.fileno() == -1


# ---- hostile peers: numbers, chunk sizes, time limits, non-ASCII targets

def one_shot_server(response: bytes, drip: float | None = None):
    """A hand-written server on a plain socket: accepts one client, reads its request, sends
    ``response`` (one byte per ``drip`` seconds if set) and closes. Returns (address, thread,
    stop event, sent counter)."""
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(5)
    stop, sent = threading.Event(), [0]

    def run():
        with lst:
            conn, _ = lst.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(65536)
            try:
                if drip is None:
                    conn.sendall(response)
                    sent[0] = len(response)
                    return
                for i in range(len(response)):
                    conn.sendall(response[i:i + 1])
                    sent[0] += 1
                    if stop.wait(drip):  # a slow peer on purpose: a bounded wait between bytes
                        return
            except OSError:
                return  # the client gave up and closed: what the timeout tests expect

    t = threading.Thread(target=run)
    t.start()
    return lst.getsockname(), t, stop, sent


@pytest.mark.parametrize("value", ["\xb2", "\xb3", "\u0663", "\xa05", "+5", "5_0", " 0x5"])
def test_content_length_takes_ascii_digits_only(value):
    data = f"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\nabcdefghijklmnopqrstuvwxyz"
    with pytest.raises(H.HTTPError) as info:
        H.parse_request(data.encode("utf-8" if value == "\u0663" else "latin-1"))
    assert info.value.status == 400 and "Content-Length" in info.value.message
    with pytest.raises(H.HTTPError) as info:
        H.read_response(f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nab".encode("utf-8"))
    assert info.value.status == 400


def test_content_length_with_thousands_of_digits_is_413_not_a_crash():
    with pytest.raises(H.HTTPError) as info:
        H.parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert info.value.status == 413
    assert H.parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0003\r\n\r\nabc").body == b"abc"


def test_non_ascii_content_length_on_real_sockets(srv):
    out = raw_exchange(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Content-Length" in out.split(b"\r\n\r\n")[1]
    assert srv.wait_idle()
    assert not srv.errors  # answered, not crashed with a ValueError
    address, t, _, _ = one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab")
    with pytest.raises(H.HTTPError) as info:
        H.request(address)
    t.join(5)
    assert info.value.status == 400 and "Content-Length" in info.value.message


@pytest.mark.parametrize("size", [b"-7", b"+8", b"0x8", b"1_0", b" 8", b"8 ", b"\xb2", b""])
def test_chunk_sizes_take_plain_hex_digits_only(size):
    with pytest.raises(H.HTTPError) as info:
        H.read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size +
                        b"\r\nINJECTED\r\n0\r\n\r\n")
    assert info.value.status == 400 and "chunk" in info.value.message


def test_chunk_sizes_with_extensions_and_capitals_still_work():
    r = H.read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"A ;name=value\r\n0123456789\r\n1;x\r\n!\r\n0\r\n\r\n")
    assert r.body == b"0123456789!"


def test_negative_chunk_size_from_a_real_server_is_refused():
    address, t, _, _ = one_shot_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"-7\r\nINJECTED\r\n0\r\n\r\n")
    with pytest.raises(H.HTTPError) as info:
        H.request(address)
    t.join(5)
    assert info.value.status == 400 and "-7" in info.value.message


def drip_request(address, data: bytes, gap: float = 0.05, max_bytes: int = 80) -> tuple:
    """Send ``data`` one byte at a time (``gap`` seconds apart, at most ``max_bytes``), stopping as
    soon as the server answers; return (bytes sent, everything the server sent until it closed)."""
    with socket.create_connection(address, timeout=5) as s:
        sent = 0
        s.settimeout(gap)  # the wait between bytes doubles as the wait for the server's answer
        got = b""
        for i in range(min(len(data), max_bytes)):
            s.sendall(data[i:i + 1])
            sent += 1
            try:
                got = s.recv(65536)
            except TimeoutError:
                continue  # no answer yet: send the next byte
            break
        s.settimeout(5)
        while chunk := s.recv(65536):
            got += chunk
    return sent, got


@pytest.mark.parametrize("kw", [{"idle_timeout": 0.5}, {"idle_timeout": 5, "request_timeout": 0.5}])
def test_dripping_client_gets_408_within_the_request_timeout(kw):
    """One byte every 0.05 s never trips a per-recv timeout; the deadline per request does."""
    with H.server(date=False, **kw) as srv:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        sent, got = drip_request(srv.address, request)
        assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in got
        assert sent < len(request)
        assert srv.wait_idle()
        assert srv.handler.exchanges[-1].status == 408 and not srv.errors


def test_dripping_clients_release_max_connections():
    with H.server(date=False, max_connections=2, idle_timeout=0.5) as srv:  # request_timeout follows
        results = []
        slow = [threading.Thread(target=lambda: results.append(drip_request(srv.address, b"GET / HT" * 40)))
                for _ in range(2)]
        for t in slow:
            t.start()
        for t in slow:
            t.join(10)
        assert [got[:12] for _, got in results] == [b"HTTP/1.1 408"] * 2
        assert srv.wait_idle()
        assert H.request(srv.address).status == 200  # the slots are free again


def test_client_timeout_bounds_the_whole_exchange(leakcheck):
    """A server that drips its answer (one byte per 0.05 s) is given timeout=0.5 in all, not per recv."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"z" * 200
    address, t, stop, sent = one_shot_server(response, drip=0.05)
    try:
        with pytest.raises(TimeoutError, match="within timeout=0.5 s"):
            H.request(address, timeout=0.5)
    finally:
        stop.set()
        t.join(5)
    assert sent[0] < len(response)


def test_404_shows_a_utf8_path_as_sent(srv):
    out = raw_exchange(srv, "GET /é HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("utf-8"))
    assert out.startswith(b"HTTP/1.1 404 ")
    assert out.endswith("no page at /é\n".encode("utf-8"))
    assert H.request(srv.address, target="/é").body == "no page at /é\n".encode()  # Latin-1 on the wire


def test_an_http_error_is_explained_as_http_not_as_a_socket_error():
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")  # the peer breaks off inside the head
        b.close()
        with pytest.raises(socklab.http.HTTPError) as err:
            socklab.http.read_response(a)
    exp = socklab.explain(err.value)
    assert exp.title == "Not a valid HTTP message"
    assert "the connection ended inside the headers" in exp.what and "Content-Length" in exp.why
