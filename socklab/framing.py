"""Message framing on a byte stream: where does one message end and the next begin?

A stream socket (TCP, AF_UNIX SOCK_STREAM) delivers bytes, not messages: two ``send()`` calls can
arrive in one ``recv()``, one ``sendall()`` in many. The two classic fixes, each as a *decoder* that
works on bytes alone (no socket: easy to test and to show) and as socket helpers built on it:

* delimiter framing: every message ends with a delimiter (``b"\\n"``): ``encode_line``,
  ``LineDecoder``, ``send_line``, ``LineReader``;
* length-prefix framing: a 4-byte big-endian length (``struct`` format ``'!I'``) before each
  message: ``encode_message``, ``PrefixDecoder``, ``send_message``, ``recv_message``, ``recv_exactly``.

``round_trips()`` measures the write-write-read (Nagle + delayed ACK) trap on real loopback sockets.
Plain Python: the socket helpers use only ``.recv()`` and ``.sendall()``, so they work with
``socket.socket``, ``socklab.TracedSocket`` and ``socklab.Client`` alike. Knows nothing of Jupyter.
"""
from __future__ import annotations

import socket
import statistics
import struct

from .runtime import Thread
import time

HEADER = struct.Struct("!I")  # network byte order, unsigned 32-bit: the length of the message
MAX_LINE = 64 * 1024          # a line longer than this without a delimiter is refused
MAX_MESSAGE = 16 * 1024 * 1024  # a length prefix larger than this is refused (never trust a header)


class FramingError(ValueError):
    """Data that breaks the framing rules: a delimiter inside a message, a message too long."""


class IncompleteMessage(EOFError):
    """The peer closed the stream in the middle of a message.

    ``partial`` holds the bytes received of that message; ``expected`` its full length when a
    length prefix announced it (``None`` for delimiter framing).
    """

    def __init__(self, partial: bytes, expected: int | None = None):
        self.partial, self.expected = partial, expected
        want = f" of {expected}" if expected is not None else ""
        super().__init__(f"the peer closed the stream after {len(partial)}{want} bytes of a message")


# ---- delimiter framing
def encode_line(message: bytes, delimiter: bytes = b"\n") -> bytes:
    """``message`` followed by the delimiter; refuses a message that contains the delimiter."""
    message = bytes(message)
    if delimiter in message:
        raise FramingError(f"the message contains the delimiter {delimiter!r}: the receiver would "
                           "see two messages; escape it or use length-prefix framing")
    return message + delimiter


class LineDecoder:
    """Feed it bytes as they arrive; get back the complete messages (without the delimiter).

    What follows the last delimiter waits in ``pending`` for the next ``feed()``. A message longer
    than ``max_size`` bytes raises FramingError, whether it is still pending or arrived whole; the
    buffer is dropped then (the stream's framing is lost: close the connection).
    """

    def __init__(self, delimiter: bytes = b"\n", max_size: int = MAX_LINE):
        if not delimiter:
            raise ValueError("the delimiter must be at least one byte")
        self.delimiter, self.max_size = bytes(delimiter), max_size
        self._buf = bytearray()

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = []
        while True:
            i = self._buf.find(self.delimiter)
            if i < 0:
                break
            if i > self.max_size:  # a whole line in one feed must meet the same cap as a pending one
                self._too_long(i)
            out.append(bytes(self._buf[:i]))
            del self._buf[:i + len(self.delimiter)]
        if len(self._buf) > self.max_size:
            self._too_long(len(self._buf))
        return out

    def _too_long(self, size: int):
        self._buf.clear()
        raise FramingError(f"{size} bytes without a delimiter: more than max_size={self.max_size}")

    def eof(self) -> None:
        """Call at end of stream: raises IncompleteMessage if part of a message is still pending."""
        if self._buf:
            raise IncompleteMessage(self.pending)


def send_line(sock, message: bytes, delimiter: bytes = b"\n") -> None:
    """Send one delimited message (one ``sendall``)."""
    sock.sendall(encode_line(message, delimiter))


class LineReader:
    """``readline()`` for a socket: ``read()`` returns the next message, ``None`` at end of stream.

    Keeps its own buffer: bytes after a delimiter are kept for the next ``read()``, never lost.
    A line longer than ``max_size`` raises FramingError, however large ``bufsize`` is.
    ``recv_calls`` counts the ``recv()`` calls made so far. Iterating yields messages until the end.
    """

    def __init__(self, sock, delimiter: bytes = b"\n", bufsize: int = 4096, max_size: int = MAX_LINE):
        self.sock, self.bufsize = sock, bufsize
        self.decoder = LineDecoder(delimiter, max_size)
        self._ready: list = []
        self.recv_calls = 0

    def read(self) -> bytes | None:
        while not self._ready:
            data = self.sock.recv(self.bufsize)
            self.recv_calls += 1
            if not data:
                self.decoder.eof()  # raises if the stream ended inside a message
                return None
            self._ready.extend(self.decoder.feed(data))
        return self._ready.pop(0)

    def __iter__(self):
        while (msg := self.read()) is not None:
            yield msg


# ---- length-prefix framing
def encode_message(payload: bytes) -> bytes:
    """A 4-byte big-endian length, then the payload: any bytes at all, delimiters included."""
    payload = bytes(payload)
    if len(payload) > 0xFFFFFFFF:
        raise FramingError("a '!I' length prefix holds at most 4 GiB - 1")
    return HEADER.pack(len(payload)) + payload


class PrefixDecoder:
    """Feed it bytes as they arrive; get back the complete length-prefixed messages."""

    def __init__(self, max_size: int = MAX_MESSAGE):
        self.max_size = max_size
        self._buf = bytearray()

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_size:
                self._buf.clear()
                raise FramingError(f"length prefix {size} is more than max_size={self.max_size}")
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            out.append(bytes(self._buf[HEADER.size:end]))
            del self._buf[:end]
        return out

    def eof(self) -> None:
        """Call at end of stream: raises IncompleteMessage if part of a message is still pending."""
        if self._buf:
            expected = HEADER.unpack_from(self._buf)[0] if len(self._buf) >= HEADER.size else None
            raise IncompleteMessage(self.pending, expected)


def _recv_exactly(sock, n: int, eof_ok: bool) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 65536))
        if not chunk:
            if eof_ok and got == 0:
                return None
            raise IncompleteMessage(b"".join(parts), n)
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def recv_exactly(sock, n: int) -> bytes:
    """Exactly ``n`` bytes: calls ``recv()`` as often as needed; IncompleteMessage if the stream ends."""
    return _recv_exactly(sock, n, eof_ok=False)


def send_message(sock, payload: bytes) -> None:
    """Send header and payload in ONE ``sendall`` (two small writes would meet Nagle's algorithm)."""
    sock.sendall(encode_message(payload))


def recv_message(sock, max_size: int = MAX_MESSAGE) -> bytes | None:
    """The next length-prefixed message; ``None`` if the stream ended cleanly before it began."""
    header = _recv_exactly(sock, HEADER.size, eof_ok=True)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > max_size:
        raise FramingError(f"length prefix {size} is more than max_size={max_size}")
    return recv_exactly(sock, size)


# ---- the write-write-read trap
def _echo_messages(conn) -> None:
    with conn:
        while (msg := recv_message(conn)) is not None:
            send_message(conn, msg)


def round_trips(address=None, rounds: int = 20, *, nodelay: bool = False, split: bool = True,
                size: int = 100, timeout: float = 5.0, progress=None) -> list:
    """Time ``rounds`` request/reply round trips over TCP; return the times in seconds.

    Each request is one length-prefixed message of ``size`` bytes, sent as two writes (header,
    then body) when ``split``, else as one. ``nodelay`` sets TCP_NODELAY on the client. The
    server at ``address`` must echo length-prefixed messages; without an address a private one
    runs in a thread for the duration of the call. Every blocking call has ``timeout``.
    ``progress(i, seconds)`` is called after round ``i`` (1-based), e.g. to move a progress bar.
    """
    listener = thread = None
    if address is None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(timeout)
        address = listener.getsockname()

        def serve():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the client never came (its connect failed): nothing to serve
            conn.settimeout(timeout)
            try:
                _echo_messages(conn)
            except OSError:
                pass  # the client went away mid-message: the measurement reports its own error

        thread = Thread(target=serve, name="socklab-round-trips")
        thread.start()
    body = b"x" * size
    header = HEADER.pack(size)
    times = []
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(rounds):
                t0 = time.perf_counter()
                if split:
                    sock.sendall(header)
                    sock.sendall(body)
                else:
                    sock.sendall(header + body)
                reply = recv_message(sock)
                times.append(time.perf_counter() - t0)
                if progress is not None:
                    progress(len(times), times[-1])
                if reply != body:
                    raise FramingError("the server's reply is not the message sent")
    finally:
        if listener is not None:
            listener.close()
            thread.join(timeout)
    return times


def median(times) -> float:
    """The median of a list of times (seconds); robust to the one slow first round."""
    return statistics.median(times)


def fmt_time(seconds: float) -> str:
    """A duration for people: '44.1 ms' or '27 µs'."""
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
