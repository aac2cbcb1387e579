"""Notebook 11 (HTTP by hand): a GET client that frames the response with Content-Length."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from time import monotonic

from .core import Case, Exercise, Fail, LearnerRaised
from .peers import chunk_sizes, plural, shorten

PAUSE = 0.5  # s the server stops in the middle of a body: a pause is not the end of a message


@dataclass
class Seen:
    """What the test server saw and did, for the feedback."""

    connected: int = 0
    request: bytes = b""
    problem: str = ""           # why the request was refused (400), if it was
    status: int = 0
    response_sent: bool = False
    response_head_sent: bool = False  # the whole head of the response, up to b'\r\n\r\n'
    head_complete: bool = False
    asked_close: bool = False   # the request said Connection: close (the server then closes)
    paused_after: int = -1      # body bytes sent before the pause, if the server paused
    sent_at: float = 0.0        # monotonic() when the last byte of the response was sent
    lock: threading.Lock = field(default_factory=threading.Lock)


def _parse(head: bytes, path: str):
    """'' if the request head is acceptable, else why not."""
    if b"\r\n\r\n" not in head:
        return ("its lines end in a bare \\n: HTTP lines end in \\r\\n, and an empty line "
                "(\\r\\n\\r\\n) ends the head")
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return f"its request line {lines[0]!r} is not METHOD TARGET VERSION (three parts, one space each)"
    method, target, version = parts
    if method != b"GET":
        return f"the method is {method!r}: this is a GET request"
    if target.decode("latin-1") != path:
        return f"it asked for {target.decode('latin-1')!r} instead of {path!r}"
    if version != b"HTTP/1.1":
        return f"the version is {version!r}; write b'HTTP/1.1'"
    names = [ln.split(b":", 1)[0].strip().lower() for ln in lines[1:] if b":" in ln]
    if b"host" not in names:
        return "it has no Host header, which HTTP/1.1 requires (Host: 127.0.0.1:PORT)"
    return ""


def _asks_close(head: bytes) -> bool:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection" and b"close" in value.lower():
            return True
    return False


def _serve(ctx, routes: dict, keep_open: bool = True, header_case: str = "Content-Length",
           pause: bool = False, cut: int | None = None):
    """A tiny HTTP server in a peer thread; ``routes`` maps a path to (status, body). Like an
    HTTP/1.1 server it keeps the connection open after a response, unless the request asked it to
    close or was refused (400). ``pause``: stop for PAUSE s in the middle of the body. ``cut``:
    send only that many body bytes (Content-Length still announces them all), then close."""
    lst = ctx.own(socket.socket())
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(0.2)
    seen = Seen()
    wanted = {"path": None}

    def handle(conn):
        conn.settimeout(0.2)
        head = b""
        waited = 0.0
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                waited += 0.2
                if ctx.stop.is_set() or waited > 30:
                    return
                continue
            except OSError:
                return
            if not chunk:
                break
            head += chunk
            with seen.lock:
                seen.request = head
        seen.head_complete = True
        problem = _parse(head, wanted["path"])
        if problem:
            status, body, reason = 400, f"bad request: {problem}\n".encode(), "Bad Request"
            seen.problem = problem
        else:
            status, body = routes.get(wanted["path"], (404, b"not found\n"))
            reason = {200: "OK", 404: "Not Found"}.get(status, "OK")
        seen.status = status
        seen.asked_close = _asks_close(head)
        close = status == 400 or seen.asked_close
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                f"{header_case}: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
                + "\r\n").encode()
        if cut is not None and not problem:
            body, close = body[:cut], True
        try:
            # The head in small pieces, a pause, then the body in chunks of 1..4096 bytes: a
            # client must not take whatever arrived with the head for the whole body.
            for part, sizes in ((head, [1, 5, 7] + chunk_sizes(ctx.rng, len(head) - 13)),
                                (body, chunk_sizes(ctx.rng, len(body)))):
                i = 0
                for n in sizes:
                    if part is head and i + n >= len(head):  # noted before: the client may read it at once
                        seen.response_head_sent = True
                    conn.sendall(part[i:i + n])
                    i += n
                    if ctx.stop.wait(0.002):
                        return
                    if pause and part is body and seen.paused_after < 0 and i >= len(body) // 2:
                        seen.paused_after = i
                        if ctx.stop.wait(PAUSE):
                            return
                if ctx.stop.wait(0.05):
                    return
        except OSError:
            return
        seen.sent_at = monotonic()
        seen.response_sent = True
        if close:
            conn.shutdown(socket.SHUT_WR)  # the client reads b'' at the end of the response
            return
        while keep_open and not ctx.stop.is_set():  # like an HTTP/1.1 server: wait for more
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def accept_loop():
        while not ctx.stop.is_set():
            try:
                conn, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            ctx.own(conn)
            seen.connected += 1
            ctx.spawn(handle, conn, name="http-conn")
    ctx.spawn(accept_loop, name="http-server")
    return lst.getsockname(), seen, wanted


def _get(ctx, http_get, address, path, seen, wanted):
    wanted["path"] = path

    def diagnose():
        if not seen.connected:
            return "the server saw no connection yet: is your client connecting to `address`?"
        if not seen.head_complete:
            return (f"the server received {shorten(seen.request, 60)} and is still waiting for the end "
                    "of your request: an empty line, b'\\r\\n\\r\\n' after the last header.")
        if seen.response_sent:
            return ("the server sent the whole response and keeps the connection open (HTTP/1.1 "
                    "keep-alive); your client is still waiting for more. Read the head up to "
                    "b'\\r\\n\\r\\n', then exactly Content-Length bytes of body: do not wait for "
                    "the connection to close, and stop at n bytes (len(body) < n, not <=).")
        return "is a recv waiting for data that never comes? set a timeout"
    try:
        got = ctx.call(http_get, address, path, what=f"your http_get(address, {path!r})",
                       diagnose=diagnose)
    except LearnerRaised as e:
        parsing = isinstance(e.error, (ValueError, IndexError)) and seen.status and not seen.problem
        if parsing and not seen.response_head_sent:  # it gave up on a head that was still coming
            raise Fail(*e.lines(), "The server sends the head in small pieces on purpose (1 byte, "
                       "then 5, then 7, ...): one recv() returns only what has arrived so far. Read "
                       "into a buffer until b'\\r\\n\\r\\n' is in it, then split.") from None
        if parsing and "invalid literal for int()" in str(e.error):
            raise Fail(*e.lines(), f"The status line is b'HTTP/1.1 {seen.status} ...': the code is "
                       "its second field (line.split(b' ')[1]); Content-Length is the header whose "
                       "name, in any case, is exactly content-length.") from None
        raise
    if seen.response_sent and not seen.asked_close:
        late = monotonic() - seen.sent_at
        if late >= PAUSE:
            ctx.notes.append(f"Your http_get returned {late:.1f} s after the last byte of the response "
                             "was sent: does it wait for the server to go quiet? Return as soon as "
                             "the body has Content-Length bytes.")
    elif seen.asked_close:
        note = ("You asked for `Connection: close`, so the server closed after its answer: reading "
                "to the end works. Without it (HTTP/1.1 keeps the connection open for more "
                "requests) only Content-Length tells where the body ends.")
        if note not in ctx.notes:
            ctx.notes.append(note)
    return got


def _judge(ctx, got, seen, want_status, want_body):
    if seen.problem:
        raise Fail(f"the server answered 400 Bad Request: {seen.problem}. Your request was "
                   f"{shorten(seen.request, 80)}.")
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Fail(f"return a tuple (status, body); got {got!r:.60}.")
    status, body = got
    if isinstance(status, (str, bytes)):
        raise Fail(f"the status is {status!r}: return it as an int (int(parts[1])).")
    if type(status) is not int:  # exactly int: an object that equals everything proves nothing
        raise Fail(f"the status is a {type(status).__name__} ({status!r:.40}): return it as an int "
                   "(int(parts[1])).")
    if status != want_status:
        raise Fail(f"the server sent status {want_status}; your http_get returned {status!r}.")
    if isinstance(body, str):
        raise Fail("return the body as bytes (not decoded).")
    body = bytes(body)
    if body == want_body:
        return
    if len(body) < len(want_body) and want_body.startswith(body):
        if len(body) == seen.paused_after:
            raise Fail(f"your http_get returned the {plural(len(body), 'body byte')} sent before the "
                       f"server paused for {PAUSE:g} s, of {len(want_body)}: a pause is not the end "
                       "of a message. Keep reading until the body has Content-Length bytes (the "
                       "head says how many).")
        raise Fail(f"your http_get returned {len(body)} of the {plural(len(want_body), 'body byte')}: "
                   "the response arrived in pieces (1, 5, 7, then up to 4096 bytes). Keep reading "
                   "until the body has Content-Length bytes.")
    if body.startswith(b"HTTP/") or b"\r\n\r\n" in body:
        raise Fail("the body you returned still contains the head: the body starts after the "
                   "first b'\\r\\n\\r\\n'.")
    raise Fail(f"the body is {shorten(want_body)}; your http_get returned {shorten(body)}.")


def _case_hello(ctx, http_get):
    address, seen, wanted = _serve(ctx, {"/hello": (200, b"hello, world\n")})
    got = _get(ctx, http_get, address, "/hello", seen, wanted)
    _judge(ctx, got, seen, 200, b"hello, world\n")


def _case_big(ctx, http_get):
    body = bytes(ctx.rng.choice(b"abcdefghijklmnopqrstuvwxyz\n") for _ in range(30_000))
    address, seen, wanted = _serve(ctx, {"/big": (200, body)}, pause=True)
    got = _get(ctx, http_get, address, "/big", seen, wanted)
    _judge(ctx, got, seen, 200, body)


CUT, WHOLE = 300, 1000  # body bytes sent, and announced, by the server that closes early


def _case_cut(ctx, http_get):
    address, seen, wanted = _serve(ctx, {"/cut": (200, b"0123456789" * (WHOLE // 10))}, cut=CUT)
    wanted["path"] = "/cut"
    said = (f"the server announced Content-Length: {WHOLE}, sent {CUT} body bytes and closed the "
            "connection")

    def diagnose():
        return (f"{said}; your http_get is still running. After the server closes, recv() returns "
                "b'' at once, every time: when it does before the body is complete, raise an "
                "exception (e.g. EOFError).")
    try:
        got = ctx.call(http_get, address, "/cut", what="your http_get(address, '/cut')",
                       diagnose=diagnose)
    except LearnerRaised as e:
        if seen.problem:
            raise Fail(f"the server answered 400 Bad Request: {seen.problem}.") from None
        if isinstance(e.error, TimeoutError):
            raise Fail(f"{said}; your http_get raised TimeoutError, after waiting for its timeout. "
                       "The close was there at once: recv() returned b''. Raise when it does, "
                       "before the body is complete.") from None
        return  # right: a cut body is an error
    if seen.problem:
        raise Fail(f"the server answered 400 Bad Request: {seen.problem}.")
    shown = (f"({got[0]!r}, {shorten(bytes(got[1]))})" if isinstance(got, tuple) and len(got) == 2
             and isinstance(got[1], (bytes, bytearray)) else f"{got!r:.50}")
    raise Fail(f"{said}; your http_get returned {shown} instead of raising. A cut body must "
               "raise (e.g. EOFError), or the caller takes part of a page for the whole of it.")


def _case_missing(ctx, http_get):
    address, seen, wanted = _serve(ctx, {}, header_case="content-length")
    got = _get(ctx, http_get, address, "/missing", seen, wanted)
    try:
        _judge(ctx, got, seen, 404, b"not found\n")
    except Fail as f:
        if isinstance(got, tuple) and len(got) == 2 and got[0] == 404 and not got[1]:
            raise Fail("this server writes the header as 'content-length' (names are "
                       "case-insensitive) and your http_get returned an empty body: compare header "
                       "names with .lower().") from None
        raise f


HTTP_GET = Exercise(
    id="11.1",
    title="http_get",
    names=("http_get",),
    limit=3.0,
    task="""5. **A GET client by hand** *(exercise 11.1, checked below)*. Write `http_get(address, path)`:
connect to `address`, send `GET path HTTP/1.1` with a `Host` header (lines end in `\\r\\n`, an empty
line ends the request), then read the response: the head up to `b"\\r\\n\\r\\n"`, the status code
from the status line, and exactly `Content-Length` bytes of body (header names are
case-insensitive). Return `(status, body)` with `status` an `int` and `body` bytes; if the
connection closes before the body is complete, raise an exception (e.g. `EOFError`). The test server
sends its response in small pieces, pauses now and then, and, like an HTTP/1.1 server, keeps the
connection open afterwards: do not wait for it to close, or for it to go quiet.""",
    hints=[
        "The request is bytes: `f'GET {path} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n'.encode()`, "
        "sent with `sendall()`.",
        "Read into a buffer until `b'\\r\\n\\r\\n' in buf`; split there: `head, body = "
        "buf.split(b'\\r\\n\\r\\n', 1)`. The status is `int(head.split(b' ')[1])`.",
        "Find the header line whose name `.lower()` is `b'content-length'`, take `n = int(value)`, "
        "and keep reading while `len(body) < n`. Then return, without waiting for b''.",
    ],
    cases=[
        Case("GET /hello: status 200 and the body, sent in small pieces", _case_hello),
        Case("GET /big: 30 000 bytes of body in chunks of 1..4096 bytes, with a 0.5 s pause in the "
             "middle; the connection stays open", _case_big),
        Case("GET /missing: status 404 (this server writes 'content-length' in lower case)",
             _case_missing),
        Case(f"GET /cut: the server closes after {CUT} of {WHOLE} body bytes: an exception",
             _case_cut),
    ],
)

EXERCISES = [HTTP_GET]
