"""Notebook 06 (message framing): length-prefix send_msg/recv_msg, and a line server with a limit."""
from __future__ import annotations

import contextlib
import socket
import struct
import threading

from .core import Case, DidNotReturn, Exercise, Fail, LearnerRaised
from .nb05 import _echo_server as _server, _handler_calls, _handler_recvs
from .peers import (blocked_in_recv, chunk_sizes, plural, read_all, recv_returns, send_chunks,
                    shorten, tcp_pair, unacked)


# ---- 06.1 send_msg / recv_msg

def _frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


def _sent_by(ctx, send_msg, message):
    """Call send_msg(sock, message); return (bytes the peer received, Observed socket)."""
    mine, peer = tcp_pair(ctx)
    ctx.call(send_msg, mine, message, what="your send_msg")
    mine.sock.shutdown(socket.SHUT_WR)
    got, _ = read_all(peer, 3)
    return got, mine


def _judge_framed(got: bytes, message: bytes):
    want = _frame(message)
    if got == want:
        return
    if got == message:
        raise Fail(f"the peer received only the message ({shorten(message, 20)}), no header: "
                   "put struct.pack('!I', len(data)) in front of it.")
    if got == struct.pack("<I", len(message)) + message or got == struct.pack("=I", len(message)) + message:
        raise Fail(f"your header for {plural(len(message), 'byte')} is {got[:4]!r}: little-endian (the "
                   f"CPU's order). The protocol says big-endian (network byte order): "
                   f"struct.pack('!I', n) gives {want[:4]!r}.")
    if len(got) >= 4 and got[4:] == message and len(got) != len(want):
        raise Fail(f"your header is {len(got) - len(message)} bytes long ({got[:len(got) - len(message)]!r}); "
                   "it must be exactly 4 bytes: struct.pack('!I', len(data)).")
    if got[:len(want)] == want and len(got) > len(want):
        raise Fail(f"after the framed message the peer got {len(got) - len(want)} more bytes.")
    if len(got) < len(want) and want.startswith(got):
        raise Fail(f"the peer received {len(got)} of the {len(want)} bytes: did you use send() "
                   "instead of sendall()? send() may send only part of the data (it returns how "
                   "much); sendall() sends it all.")
    raise Fail(f"for {shorten(message, 20)} the peer received {shorten(got)}, expected {shorten(want)}.")


def _case_send_hello(ctx, send_msg, recv_msg):
    got, mine = _sent_by(ctx, send_msg, b"hello")
    _judge_framed(got, b"hello")
    writes = mine.calls["sendall"] + mine.calls["send"] + mine.calls["sendmsg"]
    if writes > 1:
        ctx.notes.append(f"send_msg made {writes} write calls for one message (header, then body): "
                         "correct, but write-write-read is the Nagle trap of section 6. One "
                         "sendall(header + body) is faster.")


def _case_send_binary(ctx, send_msg, recv_msg):
    for message in (b"", b"line one\nline two\n\x00\xff" + bytes(range(256)) * 390):
        got, _ = _sent_by(ctx, send_msg, message)
        _judge_framed(got, message)


BIG = 4 << 20  # many times the learner's send buffer (SNDBUF): one send() sends part of it
SNDBUF = 65536  # fixed: autotuned, Linux let one send() take all of BIG in about half the runs


def _case_send_big(ctx, send_msg, recv_msg):
    # A socket with a timeout (as servers give their connections) is non-blocking inside: each
    # send() takes what fits in the send buffer and returns. On a socket with no timeout, Linux
    # makes one send() wait until all is taken, so this is where a bare send() shows.
    mine, peer = tcp_pair(ctx, learner_timeout=5)
    mine.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    message = ctx.rng.randbytes(BIG)
    box: dict = {}
    read = threading.Event()

    def reader():  # reads as the data comes, like any peer
        try:
            box["got"] = read_all(peer, 10, limit=BIG + 4, expect=BIG + 4)[0]
        finally:
            read.set()
    ctx.spawn(reader, name="reader")
    ctx.call(send_msg, mine, message, what="your send_msg")
    mine.sock.shutdown(socket.SHUT_WR)
    read.wait(15)
    got = box.get("got", b"")
    if got == _frame(message):
        return
    if len(got) < BIG + 4 and _frame(message).startswith(got) and mine.calls["sendmsg"]:
        raise Fail(f"the peer received {len(got)} of the {BIG + 4} bytes: sendmsg(), like send(), "
                   "may send only part of the data (it returns how much); sendall() sends it all. "
                   "Use sock.sendall(header + data).")
    _judge_framed(got, message)


def _recv_one(ctx, recv_msg, mine, log, what="your recv_msg"):
    def diagnose():
        recvs = mine.calls["recv"] + mine.calls["recv_into"]
        if log.finished.is_set() and recvs > 50:
            return (f"your code called recv() {recvs} times and the peer is closed: recv() returns "
                    "b'' at once, forever. Check for b'' in your loops.")
        if log.finished.is_set():
            return ("the peer has sent everything and is waiting; your code waits in recv() for more. "
                    "Read exactly 4 bytes of header, then exactly the length it gives.")
        return "is a recv waiting for data that never comes? set a timeout"
    return ctx.call(recv_msg, mine, what=what, diagnose=diagnose)


# Said of a recv_msg that made a file per call, when it failed (its subject comes first).
MAKEFILE = ("makes a new file with sock.makefile() each time it is called. A file reads ahead: it "
            "takes up to 8 KiB from the socket at once, and whatever it read beyond this message is "
            "lost when the file is dropped, so a later call starts in the middle of a message, or "
            "waits for bytes that are gone. Read with sock.recv() (recv_exactly), or make one file "
            "for the whole conversation and read every message from it.")


@contextlib.contextmanager
def _one_file_per_call_explained(mine):
    """A failure of a recv_msg that made a buffered file per call is explained by that (its
    read-ahead). An unbuffered one (buffering=0) reads no more than asked: not that."""
    def per_call() -> bool:
        return sum(1 for b in mine.returned["makefile"] if b != 0) > 1
    try:
        yield
    except (Fail, LearnerRaised):
        if per_call():
            raise Fail("your recv_msg " + MAKEFILE) from None
        raise
    except DidNotReturn as d:
        if per_call():
            d.why = "it " + MAKEFILE
        raise


def _case_recv_chunks(ctx, send_msg, recv_msg):
    mine, peer = tcp_pair(ctx)
    with _one_file_per_call_explained(mine):
        _recv_chunks(ctx, recv_msg, mine, peer)


def _recv_chunks(ctx, recv_msg, mine, peer):
    messages = [b"hello", b"", bytes(ctx.rng.getrandbits(8) for _ in range(70_000)), b"a\nb"]
    stream = b"".join(_frame(m) for m in messages)
    sizes = [1, 3, 2] + chunk_sizes(ctx.rng, len(stream) - 6)  # the first header arrives in pieces
    # The header's first byte on its own: the rest only after the learner's first recv() returned.
    log = send_chunks(ctx, peer, stream, sizes, pause=0.002, then="shutdown",
                      gate=lambda k: k > 1 or recv_returns(mine)(1))
    for i, m in enumerate(messages):
        try:
            got = _recv_one(ctx, recv_msg, mine, log)
        except LearnerRaised as e:
            if i == 0 and isinstance(e.error, struct.error):
                raise Fail("your recv_msg raised struct.error reading the first header: the 4 header "
                           "bytes arrived in pieces (1, then 3), and one recv(4) returned fewer than 4. "
                           "Read the header with recv_exactly(sock, 4).") from None
            raise
        if not isinstance(got, (bytes, bytearray)):
            empty = " (b'' for an empty message)" if not m else ""
            raise Fail(f"message {i + 1}: your recv_msg returned {got!r:.40}; expected bytes{empty}.")
        if bytes(got) != m:
            if i == 0:
                raise Fail(f"the first message is b'hello' and its 4-byte header arrived in pieces "
                           f"(1, then 3 bytes); your recv_msg returned {shorten(got)}. Read exactly 4 "
                           "header bytes (recv_exactly), then exactly the length they give.")
            raise Fail(f"message {i + 1} ({plural(len(m), 'byte')}, in chunks of 1..4096 bytes): your "
                       f"recv_msg returned {shorten(got)}. Read exactly the announced length "
                       "(recv_exactly), no more, no less.")
    try:
        end = _recv_one(ctx, recv_msg, mine, log)
    except LearnerRaised as e:
        raise Fail(f"after the last message the peer closed cleanly, between messages; your recv_msg "
                   f"raised {type(e.error).__name__}. There it should return None (the end of the "
                   "conversation, not an error).") from None
    if end is not None:
        if end == b"":
            raise Fail("at a clean end (the peer closed between messages) your recv_msg returned b'': "
                       "return None, because b'' is a valid, empty message.")
        raise Fail(f"at a clean end your recv_msg returned {end!r:.40}; return None.")


def _case_recv_truncated(ctx, send_msg, recv_msg):
    mine, peer = tcp_pair(ctx)
    log = send_chunks(ctx, peer, struct.pack("!I", 10) + b"abc", [4, 3], pause=0.02, then="close")
    try:
        got = _recv_one(ctx, recv_msg, mine, log)
    except LearnerRaised as e:
        if isinstance(e.error, TimeoutError):
            raise Fail("your recv_msg raised TimeoutError; the peer had closed after 3 of 10 bytes, "
                       "which recv() reports as b''.") from None
        return  # right: the message is incomplete
    raise Fail(f"the header announced 10 bytes, the peer sent 3 and closed; your recv_msg returned "
               f"{got!r:.40}. A cut message must raise (e.g. EOFError), or the caller takes it for a "
               "whole one.")


def _case_round_trip(ctx, send_msg, recv_msg):
    a, b = tcp_pair(ctx)
    b_obs = type(a)(b)  # the peer end, observed too
    with _one_file_per_call_explained(b_obs):
        _round_trip(ctx, send_msg, recv_msg, a, b_obs)


def _round_trip(ctx, send_msg, recv_msg, a, b_obs):
    messages = [b"ping", bytes(5000), b"\n" * 3]
    for m in messages:
        ctx.call(send_msg, a, m, what="your send_msg")
    def diagnose():  # everything was sent: a recv_msg still waiting read a wrong length
        return ("your recv_msg is still waiting, although send_msg has sent every message. Do both "
                "read and write the header the same way, 4 bytes big-endian (struct '!I')? With "
                "another byte order the length read is wrong (b'\\x04\\x00\\x00\\x00' read "
                "as '!I' is 67108864), and recv_msg waits for bytes that never come.")
    for m in messages:
        got = ctx.call(recv_msg, b_obs, what="your recv_msg", diagnose=diagnose)
        if not isinstance(got, (bytes, bytearray)):
            raise Fail(f"send_msg then recv_msg of {shorten(m, 20)}: your recv_msg returned "
                       f"{type(got).__name__} {got!r:.40}; return the message as bytes"
                       f"{' (do not decode it)' if isinstance(got, str) else ''}.")
        if got != m:
            raise Fail(f"send_msg then recv_msg of {shorten(m, 20)} gave {shorten(got)}.")


SEND_RECV_MSG = Exercise(
    id="06.1",
    title="send_msg / recv_msg",
    anchor="2. **Half a message.**",
    names=("send_msg", "recv_msg"),
    limit=3.0,
    task="""2. **Length-prefix framing, by hand** *(exercise 06.1, checked below)*. Without `framing`, write
`send_msg(sock, data)`, which sends `data` with a 4-byte big-endian length in front
(`struct.pack("!I", len(data))`) in **one** `sendall()` (two writes also pass the check, with a tip:
they walk into the Nagle trap of section 6), and `recv_msg(sock)`, which returns the next message as
`bytes`, `None` if the peer closed cleanly *between* messages, and raises an exception (such as
`EOFError`) if it closed in the *middle* of one (for example a header announcing 10 bytes, then 3 bytes,
then the end).
Define `recv_exactly` in the same cell. The check sends you headers that arrive in pieces, an empty
message, 70 000 bytes in chunks of 1..4096 bytes, and a message cut short; and has your `send_msg`
send 4 MiB through a socket with a timeout. Then: what does the
`reverse_messages` server do when a client sends half a message and shuts down?""",
    hints=[
        "Sending is one line: `sock.sendall(struct.pack('!I', len(data)) + data)`. '!' means network "
        "byte order (big-endian); 'I' a 4-byte unsigned int.",
        "Receiving is two reads of exact sizes: `header = recv_exactly(sock, 4)`, "
        "`(n,) = struct.unpack('!I', header)`, then `return recv_exactly(sock, n)`. A single "
        "`recv(4)` may return 1, 2 or 3 bytes.",
        "Tell the clean end from a cut: read the header's first byte on its own; if `recv()` returns "
        "`b''` there, nothing started: `return None`. Anywhere later, `b''` means a cut: raise "
        "`EOFError`.",
    ],
    cases=[
        Case("send_msg(b'hello') puts b'\\x00\\x00\\x00\\x05hello' on the wire", _case_send_hello),
        Case("send_msg with an empty message and 100 kB of binary data", _case_send_binary),
        Case("send_msg of 4 MiB on a socket with a timeout: every byte arrives", _case_send_big),
        Case("recv_msg: 4 messages in chunks of 1..4096 bytes (a split header), then None at the end",
             _case_recv_chunks),
        Case("recv_msg: the peer closes in the middle of a message: an exception",
             _case_recv_truncated),
        Case("send_msg and recv_msg talk to each other", _case_round_trip),
    ],
)


# ---- 06.2 upper_lines with a limit

ERROR = b"ERROR line too long\n"


def _line_exchange(ctx, srv, data, sizes, pause, wait=2.0, until=None, expect=None, then="shutdown",
                   gate=None):
    c = ctx.own(socket.create_connection(srv.address, timeout=5))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    log = send_chunks(ctx, c, data, sizes, pause=pause, then=then, gate=gate)
    reply, how = read_all(c, wait, until=until, expect=expect,
                          stalled=_stalled(ctx, srv, lambda: log.sent if log.finished.is_set() else None))
    return c, reply, how, log


def _stalled(ctx, srv, sent):
    """Whether no reply can come any more: the clients have sent everything (``sent()``: the bytes
    sent, None while still sending), every handler has received all of it and waits in recv() for
    more, and the clients have acknowledged every byte the handlers sent (so it is all in their
    sockets). A handler that lost bytes is then judged at once, not after the whole wait."""
    def stalled() -> bool:
        total = sent()
        if total is None:
            return False
        got = sum(ev.nbytes or 0 for ev in _handler_recvs(srv))
        conns = srv.connections()
        if got < total or not conns or len(ctx.learner_threads()) != len(conns):
            return False
        # Unacknowledged bytes would still be on their way (Nagle, or a busy machine's network
        # processing): only none at all means every reply is here.
        return all(blocked_in_recv(handler) and unacked(conn) == 0 for conn, handler in conns)
    return stalled


def _judge_lines(ctx, srv, sent_lines, reply, how, who="the client"):
    ctx.raise_learner_errors("your handler")
    want = b"".join(ln.upper() + b"\n" for ln in sent_lines)
    if reply == want:
        return
    if not reply:
        made = [c for cs in _handler_calls(srv).values() for c in cs]
        if how == "timeout" and "recv" not in made and ctx.learner_threads():
            raise DidNotReturn("your handler", 2, f"it never called recv(); {who} sent "
                               f"{plural(len(sent_lines), 'line')} and is still waiting.")
        if not any(c.startswith("send") for c in made):
            raise Fail(f"{who} sent {plural(len(sent_lines), 'complete line')} and got no reply: does "
                       "your handler split the buffer at b'\\n' and sendall() each line?")
    got_lines = reply.split(b"\n")
    for i, (w, g) in enumerate(zip(want.split(b"\n"), got_lines)):
        if w != g and g + b"\n" == ERROR:
            raise Fail(f"your server answered line {i + 1} ({plural(len(w), 'byte')}, under the limit) "
                       "with the error: only an *unfinished* line longer than 1024 bytes is too long. "
                       "Check the limit after splitting off the complete lines.")
        if w != g:
            g_shown, w_shown = shorten(g + b"\n", 30), shorten(w + b"\n", 30)
            raise Fail(f"reply {i + 1} was {g_shown}, expected {w_shown}: "
                       "keep the bytes after the last b'\\n' in the buffer for the next recv(); a line "
                       "may arrive in several pieces.")
    raise Fail(f"{who} expected {shorten(want)} and got {shorten(reply)}.")


def _case_lines_split(ctx, handler):
    srv = _server(ctx, handler)
    data = b"one\ntwo\nthree\n"
    c, reply, how, log = _line_exchange(ctx, srv, data, [6, 5, 3], pause=0.05, expect=14)
    _judge_lines(ctx, srv, [b"one", b"two", b"three"], reply, how)
    c.shutdown(socket.SHUT_WR)
    rest, how = read_all(c, 2)
    if how == "timeout":
        raise DidNotReturn("your handler", 2, "the client shut down its sending side, but the "
                           "connection stayed open: when recv() returns b'', return.")


def _case_lines_many(ctx, handler):
    srv = _server(ctx, handler)
    lines = [bytes(ctx.rng.choice(b"abcdefghij ") for _ in range(ctx.rng.randint(0, 300)))
             for _ in range(60)]
    data = b"".join(ln + b"\n" for ln in lines)
    want_len = len(data)
    c, reply, how, log = _line_exchange(ctx, srv, data, chunk_sizes(ctx.rng, len(data), 1, 700),
                                        pause=0.001, expect=want_len, then="keep")
    _judge_lines(ctx, srv, lines, reply, how, who="a client sending 60 lines in random chunks")


def _case_burst(ctx, handler):
    srv = _server(ctx, handler)
    lines = [b"line %02d of a burst, short enough" % i for i in range(40)]
    data = b"".join(ln + b"\n" for ln in lines)        # 1400 bytes of complete lines, one write
    c, reply, how, log = _line_exchange(ctx, srv, data, [len(data)], pause=0, expect=len(data),
                                        then="keep")
    _judge_lines(ctx, srv, lines, reply, how, who="a client sending 40 short lines in one write")


def _case_too_long(ctx, handler):
    srv = _server(ctx, handler)
    c, reply, how, log = _line_exchange(ctx, srv, b"x" * 2048, [512, 512, 512, 512], pause=0.02,
                                        wait=3.0, then="keep")
    ctx.raise_learner_errors("your handler")
    # A reset is an end too: a handler that returns with bytes still unread (a small recv(n))
    # makes the OS reset the connection; the line it sent before stays readable (Linux).
    if reply == ERROR and how in ("closed", "reset"):
        return
    if reply.startswith(ERROR) and how in ("timeout", "stalled"):
        raise Fail("your server sent the error, but did not close the connection: return from the "
                   "handler after sending it.")
    if not reply and how in ("timeout", "stalled"):
        raise Fail("2048 bytes arrived without a newline and your server is still buffering them "
                   f"({'it waits in recv() for more' if how == 'stalled' else 'no reply after 3 s'}): "
                   "once the buffer holds more than 1024 bytes without b'\\n', send "
                   "b'ERROR line too long\\n' and return.")
    if not reply and how in ("closed", "reset"):
        raise Fail("your server closed the connection without sending b'ERROR line too long\\n' "
                   "first.")
    if reply == ERROR:  # how: 'complete' or whatever read_all learns to say next
        raise Fail(f"your server sent {ERROR!r}; then the connection did not end ({how}): return "
                   "from the handler after sending it.")
    raise Fail(f"for 2048 bytes without a newline your server replied {shorten(reply)}, expected "
               f"{ERROR!r} and then the end of the connection.")


def _case_long_ok(ctx, handler):
    srv = _server(ctx, handler)
    line = b"y" * 1024
    # The newline only once the handler has all 1024 bytes: a limit of >= 1024 fires then.
    has_line = lambda k: k < 4 or sum(ev.nbytes or 0 for ev in _handler_recvs(srv)) >= 1024  # noqa: E731
    c, reply, how, log = _line_exchange(ctx, srv, line + b"\n", [300, 300, 300, 124, 1], pause=0.02,
                                        expect=1025, then="keep", gate=has_line)
    if reply.startswith(ERROR):
        raise Fail("a line of exactly 1024 bytes got the error when its 1024 bytes had arrived and "
                   "the newline had not yet: only *more than* 1024 bytes without a newline is too "
                   "long (len(buf) > 1024).")
    _judge_lines(ctx, srv, [line], reply, how, who="a client sending a 1024-byte line")


def _case_two_clients(ctx, handler):
    srv = _server(ctx, handler)
    a = ctx.own(socket.create_connection(srv.address, timeout=5))
    b = ctx.own(socket.create_connection(srv.address, timeout=5))
    a.sendall(b"first from a, ")    # a line that is not finished yet ...
    b.sendall(b"from b\n")          # ... must not hold up the other client
    got_b, _ = read_all(b, 2, expect=7, stalled=_stalled(ctx, srv, lambda: 14 + 7))
    if got_b != b"FROM B\n":
        ctx.raise_learner_errors("your handler")  # a crash is the reason, not a shared buffer
        raise Fail(f"two clients: client a has sent half a line; client b sent b'from b\\n' and got "
                   f"{got_b!r}. Each connection needs its own buffer (a local variable).")
    a.sendall(b"then done\n")
    got_a, _ = read_all(a, 2, expect=24, stalled=_stalled(ctx, srv, lambda: 14 + 7 + 10))
    if got_a != b"FIRST FROM A, THEN DONE\n":
        raise Fail(f"client a's line arrived in two pieces and it got back {got_a!r}.")
    ctx.raise_learner_errors("your handler")


UPPER_LINES_LIMITED = Exercise(
    id="06.2",
    title="upper_lines_limited",
    anchor="1. **Too long.**",
    names=("upper_lines_limited",),
    limit=3.0,
    task="""1. **Too long** *(exercise 06.2, checked below)*. Write `upper_lines_limited(conn, server)`: like
`upper_lines`, it answers every line with the same line in capitals (and `b"\\n"`); but when more
than 1024 bytes have arrived without a newline, it replies `b"ERROR line too long\\n"` and returns (the
server closes the connection). The check sends lines split across chunks, 60 lines in random chunks of
1..700 bytes, 40 short lines in one write (over 1 KiB together), a 1024-byte line (fine), 2 KiB of
`b"x"` with no newline, and two clients at once.""",
    hints=[
        "Start from `upper_lines`: a buffer `buf`, `buf += data` after each recv(), and an inner "
        "`while b'\\n' in buf:` that splits off one line at a time with `buf.split(b'\\n', 1)`.",
        "After the inner loop, whatever is left in `buf` is an unfinished line. That is where the "
        "limit goes: `if len(buf) > 1024:` send the error and `return`.",
        "Keep `buf` a local variable of the handler: every connection runs its own call of the "
        "handler in its own thread.",
    ],
    cases=[
        Case("three lines split across recv() calls", _case_lines_split),
        Case("60 lines in random chunks", _case_lines_many),
        Case("40 short lines in one write (over 1 KiB together, each line short)", _case_burst),
        Case("a 1024-byte line is not too long", _case_long_ok),
        Case("2 KiB without a newline: the error, then the connection closes", _case_too_long),
        Case("two clients at once, one with half a line", _case_two_clients),
    ],
)

EXERCISES = [SEND_RECV_MSG, UPPER_LINES_LIMITED]
