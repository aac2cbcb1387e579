"""HTTP/1.1 by hand: a small request handler for ``socklab.Server`` and a client on a traced socket.

An HTTP/1.1 message is text lines ending in CRLF: a start line, header lines ``Name: value``, an
empty line, then a body whose length the headers announce (``Content-Length``, or
``Transfer-Encoding: chunked`` in responses). Everything here reads that from a byte stream with
limits (line length, header count, body size), so a misbehaving peer gets a 4xx answer instead of
eating memory. Received data is only ever split and compared, never evaluated.

``Handler`` serves requests on one connection (keep-alive as HTTP/1.1 says); ``request()`` is a
client; ``StdlibServer`` runs Python's own ``http.server`` in a thread for the client to talk to.
Knows nothing of Jupyter.
"""
from __future__ import annotations

import http.server
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qsl, urlsplit

from . import runtime
from .errors import Explanation
from .servers import DEFAULT_TIMEOUT, Server, _number
from .trace import Trace, TracedSocket, as_trace, call_before as _before
from .runtime import Thread

MAX_LINE = 8190           # bytes in the request line or one header line (as many servers allow)
MAX_HEADERS = 100         # header lines per message
MAX_BODY = 1 << 20        # bytes of body accepted or read
LINGER = 2.0              # seconds at most spent reading what a refused client still sends
SERVER_NAME = "socklab-http/0.1"
CRLF = b"\r\n"

REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 505: "HTTP Version Not Supported"}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset(b"0123456789")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


class HTTPError(Exception):
    """A message we refuse, with the status code a server answers it with."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status} {REASONS.get(status, '')}: {message}")
        self.status, self.message = status, message

    def socklab_explanation(self) -> Explanation:
        """What socklab.explain() shows for it (an HTTP error, not a socket error)."""
        return Explanation(
            "Not a valid HTTP message", f"The HTTP message could not be read: {self.message}.",
            "HTTP/1.1 frames each message itself: a head of lines ending in \\r\\n up to an empty "
            "line, then exactly Content-Length bytes of body. A message that breaks off or breaks "
            f"those rules cannot be read; a server answers one with a 4xx status (here {self.status} "
            f"{REASONS.get(self.status, '')}).",
            "Look at the raw bytes (the HTTP panel's wire(), or the trace): every line ends in "
            "\\r\\n, the head in an empty line, and the body has Content-Length bytes. If the peer "
            "closed early, look at its side: it may have refused the message or failed.",
            f"HTTPError: {self}", "http")


# ---- messages

class _Headers:
    """Header lines in the order received; names compare case-insensitively."""

    headers: list

    def header(self, name: str, default=None):
        """The value of the first header called ``name`` (any case), or ``default``."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def header_values(self, name: str) -> list:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]


@dataclass
class Request(_Headers):
    method: str
    target: str
    version: str
    headers: list = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""  # every byte of the request as it arrived

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict:
        return dict(parse_qsl(urlsplit(self.target).query))

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.1":
            return "close" not in conn
        return "keep-alive" in conn


@dataclass
class Response(_Headers):
    version: str
    status: int
    reason: str
    headers: list = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""  # every byte of the response as it arrived

    def head_text(self, mask=("Date",)) -> str:
        """Status line and headers as text, with the values of ``mask`` headers replaced (they
        change on every run, e.g. Date)."""
        low = {m.lower() for m in mask}
        lines = [f"{self.version} {self.status} {self.reason}"]
        lines += [f"{k}: {'<' + k.lower() + '>' if k.lower() in low else v}" for k, v in self.headers]
        return "\n".join(lines)


# ---- reading from a stream

class Reader:
    """Buffered reading over anything with ``recv(n)`` (a socket, a TracedSocket, a TLSStream).

    ``raw`` keeps every byte handed out since the last ``take_raw()``: the message as it arrived.
    Time limits (TimeoutError when passed), besides the socket's own timeout per recv():
    ``message_timeout`` seconds for each message from its first byte (a server's request deadline),
    ``deadline`` a ``time.monotonic()`` value for everything read (a client's overall timeout).
    """

    def __init__(self, sock, bufsize: int = 65536, *, message_timeout: float | None = None,
                 deadline: float | None = None):
        self.sock, self.bufsize = sock, bufsize
        self.buf = bytearray()
        self.raw = bytearray()
        self.eof = False
        self.message_timeout, self.deadline = message_timeout, deadline

    def begin_message(self) -> None:
        """A new message starts: its ``message_timeout`` runs from its first byte (now, if some
        bytes are already buffered, e.g. a pipelined request)."""
        if self.message_timeout is not None:
            self.deadline = time.monotonic() + self.message_timeout if self.buf else None

    @property
    def started(self) -> bool:
        """Whether any byte of the current message has arrived."""
        return bool(self.raw or self.buf)

    def _more(self) -> bool:
        if self.eof:
            return False
        data = _before(self.deadline, self.sock, self.sock.recv, self.bufsize)
        if not data:
            self.eof = True
            return False
        if self.message_timeout is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.message_timeout  # the first byte: the clock starts
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.raw += out
        return out

    def readline(self, limit: int = MAX_LINE, status: int = 431) -> bytes:
        """One line including its CRLF (or LF); b'' at end of stream; HTTPError(status) if longer
        than ``limit``; an incomplete last line at end of stream comes back without CRLF."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                if i + 1 > limit + 2:
                    raise HTTPError(status, f"line longer than {limit} bytes")
                return self._take(i + 1)
            if len(self.buf) > limit + 2:
                raise HTTPError(status, f"line longer than {limit} bytes")
            start = len(self.buf)
            if not self._more():
                return self._take(len(self.buf))

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise HTTPError(400, f"the body ended after {len(self.buf)} of {n} bytes")
        return self._take(n)

    def read_to_eof(self, limit: int = MAX_BODY) -> bytes:
        while self._more():
            if len(self.buf) > limit:
                raise HTTPError(413, f"more than {limit} bytes")
        return self._take(len(self.buf))

    def take_raw(self) -> bytes:
        out = bytes(self.raw)
        self.raw.clear()
        return out


class _BytesSock:
    """recv() over a bytes object, so the parsers also work on bytes you typed."""

    def __init__(self, data: bytes):
        self.data = memoryview(bytes(data))

    def recv(self, n):
        out, self.data = bytes(self.data[:n]), self.data[n:]
        return out


def _reader(source) -> Reader:
    if isinstance(source, Reader):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Reader(_BytesSock(source))
    return Reader(source)


def _strip_eol(line: bytes) -> bytes:
    return line[:-2] if line.endswith(CRLF) else line[:-1] if line.endswith(b"\n") else line


def _read_headers(r: Reader) -> list:
    headers = []
    while True:
        line = r.readline(MAX_LINE, 431)
        if not line:
            raise HTTPError(400, "the connection ended inside the headers")
        if line in (CRLF, b"\n"):
            return headers
        if not line.endswith(b"\n"):
            raise HTTPError(400, "the connection ended inside the headers")
        if len(headers) >= MAX_HEADERS:
            raise HTTPError(431, f"more than {MAX_HEADERS} header lines")
        line = _strip_eol(line)
        if line[:1] in (b" ", b"\t"):
            raise HTTPError(400, "a header line starts with whitespace (obsolete line folding)")
        name, colon, value = line.partition(b":")
        if not colon or not name or any(c not in _TOKEN for c in name):
            raise HTTPError(400, f"not a header line: {bytes(line[:40])!r}")
        try:
            headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        except UnicodeDecodeError:
            raise HTTPError(400, "header name is not ASCII") from None


def _number_in(text: str, digits: frozenset, base: int, limit: int, status: int, what: str) -> int:
    """``text`` as a number if it is only ASCII ``digits`` (str.isdigit() and int() also take '²',
    '٣', '+', '_' or '0x'); HTTPError(400) if not, HTTPError(status) if over ``limit``."""
    if not text or any(c not in digits for c in text.encode("latin-1")):
        allowed = "hex digits 0-9, a-f" if base == 16 else "the ASCII digits 0-9"
        raise HTTPError(400, f"bad {what} {text[:20]!r}: only {allowed} are allowed")
    significant = text.lstrip("0") or "0"
    # Count the digits before int(): int() of thousands of decimal digits is slow (refused past 4300).
    too_many = len(significant) > len(f"{limit:x}" if base == 16 else str(limit))
    if too_many or int(significant, base) > limit:
        raise HTTPError(status, f"{what} {text[:20]} is over the limit of {limit} bytes")
    return int(significant, base)


def _content_length(msg: _Headers):
    values = msg.header_values("Content-Length")
    if not values:
        return None
    if len(set(values)) != 1:
        raise HTTPError(400, f"bad Content-Length {values!r}")
    return _number_in(values[0], _DIGITS, 10, MAX_BODY, 413, "Content-Length")


def read_request(source) -> Request | None:
    """Read one request (request line, headers, blank line, body) from a socket, Reader or bytes.

    Returns None when the stream ends cleanly before a request starts (the client is done);
    raises HTTPError with the status a server should answer for anything malformed, 408 when a
    started request stops arriving in time (the Reader's ``message_timeout``, or the socket's
    timeout). A timeout before the first byte is raised as TimeoutError: an idle client, no request.
    """
    r = _reader(source)
    r.take_raw()
    r.begin_message()
    try:
        return _read_request(r)
    except TimeoutError as exc:
        if not r.started:
            raise
        if r.deadline is not None and time.monotonic() >= r.deadline:
            why = f"the request was not complete within {r.message_timeout:g} s of its first byte"
        else:
            why = "the client stopped sending in the middle of the request"
        raise HTTPError(408, why) from exc


def _read_request(r: Reader) -> Request | None:
    line = r.readline(MAX_LINE, 414)
    for _ in range(8):  # RFC 9112: ignore (a few) empty lines before a request
        if line not in (CRLF, b"\n"):
            break
        line = r.readline(MAX_LINE, 414)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise HTTPError(400, "the connection ended inside the request line")
    parts = _strip_eol(line).split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HTTPError(400, f"a request line is 'METHOD target HTTP/1.1', got {_strip_eol(line)[:60]!r}")
    method, target, version = parts
    if any(c not in _TOKEN for c in method):
        raise HTTPError(400, f"bad method {method[:20]!r}")
    if not version.startswith(b"HTTP/"):
        raise HTTPError(400, f"bad version {version[:20]!r}")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HTTPError(505, f"{version.decode('latin-1')} is not HTTP/1.0 or HTTP/1.1")
    req = Request(method.decode("ascii"), target.decode("latin-1"), version.decode("ascii"),
                  _read_headers(r))
    if req.version == "HTTP/1.1" and req.header("Host") is None:
        raise HTTPError(400, "an HTTP/1.1 request must have a Host header")
    if req.header("Transfer-Encoding") is not None:
        raise HTTPError(501, "request bodies with Transfer-Encoding are not supported here; "
                             "send Content-Length")
    n = _content_length(req)
    req.body = r.read_exact(n) if n else b""
    req.raw = r.take_raw()
    return req


def parse_request(data: bytes) -> Request:
    """A request from bytes (raises HTTPError if malformed or incomplete)."""
    req = read_request(data)
    if req is None:
        raise HTTPError(400, "no request in these bytes")
    return req


def read_response(source, method: str = "GET") -> Response:
    """Read one response from a socket, Reader or bytes: status line, headers, blank line, body.

    The body's end is found as HTTP/1.1 says: none for HEAD, 1xx, 204 and 304; else
    ``Transfer-Encoding: chunked``; else ``Content-Length``; else the end of the connection.
    """
    r = _reader(source)
    r.take_raw()
    line = r.readline(MAX_LINE, 400)
    if not line.endswith(b"\n"):
        raise HTTPError(400, "no status line: the server closed the connection" if not line else
                        f"incomplete status line {line[:60]!r}")
    version, _, rest = _strip_eol(line).partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/") or not (len(code) == 3 and code.isdigit()):
        raise HTTPError(400, f"not an HTTP status line: {_strip_eol(line)[:60]!r}")
    resp = Response(version.decode("ascii"), int(code), reason.decode("latin-1"), _read_headers(r))
    if method.upper() == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
        resp.body = b""
    elif "chunked" in (resp.header("Transfer-Encoding") or "").lower():
        resp.body = _read_chunked(r)
    else:
        n = _content_length(resp)
        resp.body = r.read_exact(n) if n is not None else r.read_to_eof()
    resp.raw = r.take_raw()
    return resp


def _chunk_size(line: bytes) -> int:
    """The size in a chunk-size line: hex digits only, then optionally ``;extensions`` (ignored)."""
    if not line.endswith(b"\n"):
        raise HTTPError(400, "the connection ended inside the chunked body")
    size, semicolon, _ = _strip_eol(line).partition(b";")
    if semicolon:
        size = size.rstrip(b" \t")  # RFC 9112 allows spaces before the ';' of an extension
    return _number_in(size.decode("latin-1"), _HEXDIGITS, 16, MAX_BODY, 413, "chunk size")


def _read_chunked(r: Reader) -> bytes:
    body = bytearray()
    while True:
        size = _chunk_size(r.readline(MAX_LINE, 400))
        if size == 0:
            _read_headers(r)  # trailer fields, then the final empty line
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise HTTPError(413, f"body over {MAX_BODY} bytes")
        body += r.read_exact(size)
        if r.readline(MAX_LINE, 400) not in (CRLF, b"\n"):
            raise HTTPError(400, "chunk not followed by CRLF")


# ---- writing messages

def build_request(method: str = "GET", target: str = "/", host: str = "localhost", headers=(),
                  body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """The bytes of a request: request line, Host, your headers, Content-Length if there is a body,
    the blank line, the body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"{method} {target} {version}", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers.items() if isinstance(headers, dict) else headers)]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def build_response(status: int, body: bytes = b"", headers=(), *, version: str = "HTTP/1.1",
                   head: bool = False) -> bytes:
    """The bytes of a response. Content-Length is always set (also for HEAD, whose body is left out)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs = list(headers.items() if isinstance(headers, dict) else headers)
    if not any(k.lower() == "content-length" for k, _ in hdrs) and status not in (204, 304):
        hdrs.append(("Content-Length", str(len(body))))
    lines = [f"{version} {status} {REASONS.get(status, 'Unknown')}"] + [f"{k}: {v}" for k, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


def show_bytes(data: bytes, limit: int = 4000) -> str:
    """Bytes as readable lines with the line ends made visible: ``GET / HTTP/1.1\\r\\n``.

    Printable ASCII is shown as is, CR and LF as ``\\r`` and ``\\n`` (a line break follows each
    ``\\n``), other bytes as ``\\xNN``. Longer data is cut at ``limit`` bytes with a note.
    """
    data = bytes(data)
    out = []
    for b in data[:limit]:
        if b == 13:
            out.append("\\r")
        elif b == 10:
            out.append("\\n\n")
        elif b == 9:
            out.append("\\t")
        elif 32 <= b < 127 and b != 92:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    text = "".join(out)
    if text.endswith("\n"):
        text = text[:-1]
    if len(data) > limit:
        text += f"\n... ({len(data) - limit} more bytes)"
    return text


# ---- the server side

def _as_sent(text: str) -> str:
    """A request-line string as the client meant it: the parser reads it as Latin-1 (one char per
    byte), so bytes that are UTF-8 (what clients send) would be encoded twice in a UTF-8 body."""
    raw = text.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text  # not UTF-8 (e.g. a Latin-1 client): one char per byte is what it sent


def demo_app(req: Request):
    """The lesson's little web application: returns (status, headers, body).

    GET /            a greeting
    GET /headers     the request's header lines, as the server received them
    POST /echo       the request body back, with its Content-Type
    anything else    404 Not Found, or 405 Method Not Allowed with an Allow header
    """
    text = "text/plain; charset=utf-8"
    routes = {"/": ("GET", "HEAD"), "/headers": ("GET", "HEAD"), "/echo": ("POST",)}
    shown = _as_sent(req.path)
    if req.path not in routes:
        return 404, {"Content-Type": text}, f"no page at {shown}\n"
    if req.method not in routes[req.path]:
        return 405, {"Content-Type": text, "Allow": ", ".join(routes[req.path])}, \
            f"{req.method} is not allowed on {shown}\n"
    if req.path == "/":
        return 200, {"Content-Type": text}, "Hello from socklab's HTTP server!\n"
    if req.path == "/headers":
        return 200, {"Content-Type": text}, "".join(f"{k}: {v}\n" for k, v in req.headers)
    return 200, {"Content-Type": req.header("Content-Type", "application/octet-stream")}, req.body


@dataclass
class Exchange:
    """One request/response pair as it crossed the wire (full bytes, unlike the trace's preview)."""

    side: str
    request: bytes
    response: bytes
    status: int
    method: str = ""
    target: str = ""

    def summary(self) -> str:
        line = f"{self.method} {self.target}" if self.method else "(unreadable request)"
        return f"{self.side}: {line} -> {self.status} {REASONS.get(self.status, '')}"


class Handler:
    """A socklab stream handler that speaks HTTP/1.1 on each connection.

    ``Server(handler=Handler(app))``. ``app(request)`` returns ``(status, headers, body)``; the
    handler adds Content-Length, Server, Date (unless ``date=False``) and Connection. Requests are
    served in a loop while the client keeps the connection alive. A malformed request gets a 4xx/5xx
    answer and the connection is closed. ``exchanges`` keeps every request and response in full.

    ``request_timeout``: each request must be complete within that many seconds of its first byte,
    or the client gets ``408 Request Timeout`` and the connection is closed, so a client that drips
    bytes cannot hold a connection for ever. Default (None): the server's ``idle_timeout``, 900 s
    unless set, which also bounds each wait for data (e.g. for the next request's first byte).
    """

    def __init__(self, app=None, *, date: bool = True, server_name: str = SERVER_NAME,
                 max_requests: int = 100, keep: int = 200, request_timeout: float | None = None):
        self.app = app or demo_app
        self.date, self.server_name = date, server_name
        self.max_requests, self.keep = max_requests, keep
        if request_timeout is not None:
            _number("request_timeout", request_timeout, integer=False, low=1e-3, high=86400,
                    fix="Use a number of seconds such as 30, or None for the server's idle_timeout.")
        self.request_timeout = request_timeout
        self.exchanges: list = []
        self._lock = threading.Lock()

    def _record(self, ex: Exchange):
        with self._lock:
            self.exchanges.append(ex)
            del self.exchanges[:-self.keep]

    def _headers(self, extra, close, body=None):
        hdrs = [("Server", self.server_name)]
        if self.date:
            hdrs.append(("Date", formatdate(usegmt=True)))
        hdrs += list(extra.items() if isinstance(extra, dict) else extra)
        if body is not None and not any(k.lower() == "content-length" for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        if close:
            hdrs.append(("Connection", "close"))
        return hdrs

    def __call__(self, conn: TracedSocket, server: Server) -> None:
        reader = Reader(conn, message_timeout=self.request_timeout or server.idle_timeout)
        for n in range(1, self.max_requests + 1):
            try:
                req = read_request(reader)
            except HTTPError as exc:
                self._refuse(conn, reader, exc)
                return
            if req is None:
                return  # the client closed the connection: we are done
            try:
                status, extra, body = self.app(req)
            except Exception as exc:  # a broken app must not kill the connection silently
                status, extra, body = 500, {"Content-Type": "text/plain"}, f"app error: {exc!r}\n"
            if isinstance(body, str):
                body = body.encode("utf-8")
            close = not req.keep_alive or n == self.max_requests
            version = "HTTP/1.1" if req.version == "HTTP/1.1" else "HTTP/1.0"
            data = build_response(status, body, self._headers(extra, close, body), version=version,
                                  head=req.method == "HEAD")
            conn.sendall(data)
            self._record(Exchange(conn.side, req.raw, data, status, req.method, req.target))
            if close:
                return

    def _refuse(self, conn, reader, exc: HTTPError):
        body = f"{exc.message}\n".encode("utf-8")
        data = build_response(exc.status, body,
                              self._headers({"Content-Type": "text/plain; charset=utf-8"}, True, body))
        try:
            conn.sendall(data)
            # Lingering close: stop sending, then read (and drop) what the client still sends, so
            # closing does not reset the connection before the client has read our answer.
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(1.0)
            drained, deadline = 0, time.monotonic() + LINGER  # a dripping client must not keep us here
            while drained < MAX_BODY:
                chunk = _before(deadline, conn, conn.recv, 65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass  # the client is gone, went quiet or kept sending past LINGER: nothing left to say
        self._record(Exchange(conn.side, reader.take_raw(), data, exc.status))


handler = Handler()  # ready to use: socklab.Server(handler=socklab.http.handler) serves demo_app


def server(app=None, *, date: bool = True, request_timeout: float | None = None,
           trace: Trace | None = None, name: str | None = None, **kw) -> Server:
    """A socklab.Server (not started yet) whose connections speak HTTP/1.1 through ``Handler``.

    ``request_timeout``: a request not complete within that many seconds of its first byte is
    answered ``408 Request Timeout`` and its connection closed. Default (None): the same as
    ``idle_timeout`` (a Server setting, default 900 s, which bounds each wait for data).
    """
    return Server(handler=Handler(app, date=date, request_timeout=request_timeout), trace=trace,
                  name=name, **kw)


# ---- the client side

def request(address, method: str = "GET", target: str = "/", headers=(), body: bytes = b"", *,
            host: str | None = None, trace: Trace | None = None, side: str = "client",
            timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One request on a fresh traced connection: connect, send, read the response, close.

    ``Connection: close`` is sent so the server ends the connection after answering. ``timeout``
    bounds the whole exchange, connect to the last byte of the response (TimeoutError after it).
    """
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    host = host or (f"[{address[0]}]:{address[1]}" if family == socket.AF_INET6 else
                    f"{address[0]}:{address[1]}")
    hdrs = list(headers.items() if isinstance(headers, dict) else headers)
    if not any(k.lower() == "connection" for k, _ in hdrs):
        hdrs.append(("Connection", "close"))
    data = build_request(method, target, host, hdrs, body)
    trace = as_trace(trace, "http.request(trace=)", optional=True)
    deadline = time.monotonic() + timeout
    with TracedSocket.create(family, socket.SOCK_STREAM, trace=trace, side=side) as s:
        s.settimeout(timeout)
        s.connect(address)
        try:
            _before(deadline, s, s.sendall, data)
            return read_response(Reader(s, deadline=deadline), method)
        except TimeoutError as exc:
            raise TimeoutError(f"no complete response from {address} within timeout={timeout:g} s "
                               "(the whole exchange, not each recv)") from exc


# ---- Python's own server, to test the client against

class HelloHandler(http.server.BaseHTTPRequestHandler):
    """A standard-library request handler: GET / answers a greeting with a Content-Length."""

    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, like a modern server

    def do_GET(self):
        body = f"Hello from Python's http.server! You asked for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _NonBlockingAccept(http.server.ThreadingHTTPServer):
    daemon_threads = True
    timeout = 0  # handle_request() never waits in its own select: ours said a client is there

    def server_activate(self):
        super().server_activate()
        # accept() must not block when the client gave up between our select and the accept
        self.socket.setblocking(False)

    def get_request(self):
        conn, addr = self.socket.accept()
        conn.setblocking(True)  # macOS/BSD would hand on the listener's O_NONBLOCK
        return conn, addr


class StdlibServer:
    """``http.server.ThreadingHTTPServer`` on 127.0.0.1, port 0, serving in a background thread.

    Its access log goes to ``log`` (a list) instead of stderr: never print from a server thread in a
    notebook. ``stop()`` wakes the serving thread at once through a wake-up socket (the stdlib's
    ``serve_forever()`` would instead wake every ``poll_interval`` to look for a ``shutdown()``) and
    closes the socket; re-running the cell that started it stops the old one.
    """

    def __init__(self, handler_class=HelloHandler, host: str = "127.0.0.1", *, name: str | None = None):
        self.log: list = []
        log = self.log

        class _Quiet(handler_class):
            def log_message(self, fmt, *args):
                log.append(fmt % args)

        _Quiet.__name__ = handler_class.__name__
        self.key = name if name is not None else runtime.caller_key(2)
        runtime.register(self.key, self, explicit=name is not None)
        self.httpd = _NonBlockingAccept((host, 0), _Quiet)
        self.address = self.httpd.server_address[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = Thread(target=self._serve, name="socklab-stdlib-http")
        self._thread.start()

    def _serve(self):
        """Sleep until a client connects or stop() writes to the wake-up socket."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.httpd.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if self._wake_r in ready:
                    return
                self.httpd.handle_request()  # accept, then a thread serves the connection

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        if self._thread.is_alive():
            self._wake_w.send(b"x")
            self._thread.join(timeout)
        self.httpd.server_close()
        self._wake_r.close()
        self._wake_w.close()
        runtime.unregister(self.key, self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


PLAIN_SERVER = '''\
import socket

def read_request(conn):
    """Read the head (up to the blank line), then Content-Length bytes of body."""
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > 65536:
            return None
        data += chunk
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    request_line, *header_lines = head.decode("latin-1").split("\\r\\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0")
    # ASCII digits only (isdigit() alone also takes '²'), and few enough for int() to be quick
    if not (length.isascii() and length.isdigit()) or len(length) > 7 or int(length) > 1_000_000:
        return None
    length = int(length)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return request_line, headers, body[:length]

def answer(conn, request):
    request_line = request[0]
    body = f"You sent: {request_line}\\n".encode()
    head = (b"HTTP/1.1 200 OK\\r\\n"
            b"Content-Type: text/plain; charset=utf-8\\r\\n"
            + f"Content-Length: {len(body)}\\r\\n".encode()
            + b"Connection: close\\r\\n\\r\\n")
    # HEAD: the same head, no body (Content-Length says what GET would send)
    conn.sendall(head if request_line.startswith("HEAD ") else head + body)

with socket.create_server(("127.0.0.1", 8080)) as server:
    print("serving on http://127.0.0.1:8080/ (Ctrl-C to stop)")
    while True:
        conn, addr = server.accept()
        with conn:
            conn.settimeout(10)
            try:
                request = read_request(conn)
                if request is not None:
                    answer(conn, request)
            except OSError as exc:  # a silent, vanished or resetting client ends its turn only
                print("client", addr, "failed:", exc)
'''

PLAIN_CLIENT = '''\
import socket

request = (b"GET / HTTP/1.1\\r\\n"
           b"Host: 127.0.0.1:8080\\r\\n"
           b"Connection: close\\r\\n"
           b"\\r\\n")
with socket.create_connection(("127.0.0.1", 8080), timeout=5) as s:
    s.sendall(request)
    response = b""
    while chunk := s.recv(65536):   # Connection: close -> the server ends the stream
        response += chunk
head, _, body = response.partition(b"\\r\\n\\r\\n")
print(head.decode("latin-1"))
print(body)
'''
