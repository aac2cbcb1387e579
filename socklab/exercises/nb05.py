"""Notebook 05 (accept and data): recv_exactly, and an echo handler."""
from __future__ import annotations

import collections
import errno
import socket
import sys
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock

from ..runtime import Thread
from ..servers import Server
from .core import Case, DidNotReturn, Exercise, Fail, LearnerRaised, raised_lines
from .peers import (HandlerConn, blocked_in_recv, chunk_sizes, plural, read_all, recv_returns,
                    send_chunks, shorten, tcp_pair, unacked, wait_for, waiting_in)


# ---- 05.1 recv_exactly

def _recv_exactly_once(ctx, recv_exactly, data, sizes, pause, n=None, then="keep", gated=False):
    """Send ``data`` in chunks ``sizes``; return (result, Observed sock, peer log). ``gated``: each
    chunk only after the learner's previous recv() returned, so every recv() sees one chunk."""
    n = len(data) if n is None else n
    mine, peer = tcp_pair(ctx)
    log = send_chunks(ctx, peer, data, sizes, pause=pause, then=then,
                      gate=recv_returns(mine) if gated else None)

    def hopeless():
        # recv() gave b'' (the peer closed) and was called again: it gives b'' for ever
        return then == "close" and log.finished.is_set() and mine.eofs() >= 2

    def diagnose():
        recvs = mine.calls["recv"] + mine.calls["recv_into"]
        got = sum(mine.returned["recv"]) + sum(mine.returned["recv_into"])
        if hopeless():
            return (f"the peer closed after {log.sent} bytes, and recv() returned b'' and your code "
                    "called it again: after the peer closes, recv() returns b'' at once, forever. "
                    "Check for b'' and raise (e.g. EOFError).")
        if recvs == 0:
            return ("your code has not called recv() on the socket at all: is it stuck in a loop, "
                    "or waiting for something that never happens?")
        if log.finished.is_set() and not mine.in_call():
            return (f"the peer sent all {plural(log.sent, 'byte')} and your code has received {got}; "
                    "it is not waiting in recv() but still running: a loop that never ends? Check "
                    "that each pass of your loop calls recv() or makes progress toward n bytes.")
        if log.finished.is_set():
            return (f"the peer sent all {plural(log.sent, 'byte')} ({plural(len(log.chunks), 'chunk')}) "
                    f"and your code has received {got}; it is waiting in recv() for data that never "
                    "comes. Ask recv() only for what is still missing (n - len(buf)) and stop at n "
                    "bytes.")
        return "is a recv waiting for data that never comes? set a timeout"

    try:
        got = ctx.call(recv_exactly, mine, n, what="your recv_exactly", diagnose=diagnose,
                       hopeless=hopeless)
    except LearnerRaised as e:
        if then == "keep" and isinstance(e.error, (EOFError, ConnectionError)) \
                and not isinstance(e.error, ConnectionResetError):
            asked_zero = any(a == 0 for a in mine.asked.get("recv", []))
            raise Fail(*e.lines(), f"The peer had not closed: your code had received "
                       f"{_received(mine)} of {n} bytes when it raised. "
                       + ("It called recv(0), which returns b'' at once: ask for n - len(buf) "
                          "bytes while len(buf) < n (not <=)." if asked_zero else
                          "recv() may return fewer bytes than asked for: that is normal, not the "
                          "end. Only b'' means the peer closed.")) from None
        raise
    log.sent_when_done = log.sent
    return got, mine, log


def _received(mine) -> int:
    """Bytes the learner's recv()/recv_into() calls on ``mine`` have returned so far."""
    return sum(mine.returned["recv"]) + sum(mine.returned["recv_into"])


def _not_closed(mine, what="recv_exactly") -> None:
    """Fail if the learner's function closed the socket the check gave it (close(), `with sock:`)."""
    if mine.sock.fileno() == -1:
        raise Fail(f"your {what} closed the socket it was given; the caller owns it: it reads the "
                   "next message from it, and closes it when it is done. Leave it open (no "
                   "sock.close(), no `with sock:` in your function).")


def _as_bytes(got, what="recv_exactly"):
    if isinstance(got, (bytes, bytearray, memoryview)):
        return bytes(got)
    if got is None:
        raise Fail(f"your {what} returned None: did you forget `return bytes(buf)`?")
    if isinstance(got, str):
        raise Fail(f"your {what} returned a str ({got[:20]!r}): return the bytes themselves, "
                   "not decoded text.")
    raise Fail(f"your {what} returned {type(got).__name__}, not bytes.")


def _judge(got, data, mine, log, n=None):
    n = len(data) if n is None else n
    got = _as_bytes(got)
    if got == data[:n]:
        return
    recvs = mine.calls["recv"] + mine.calls["recv_into"]
    if len(got) < n and data[:n].startswith(got):
        first = mine.returned["recv"][:1]
        if recvs == 1:
            raise Fail(f"your recv_exactly returned {len(got)} of {n} bytes after the first recv(); "
                       f"the message was {plural(len(log.planned), 'chunk')} long. recv() returns whatever has "
                       "arrived so far: keep calling it until you have n bytes.")
        raise Fail(f"your recv_exactly returned {len(got)} of {n} bytes (after {recvs} recv() calls"
                   f"{', the first returned ' + str(first[0]) + ' bytes' if first else ''}). "
                   "Loop until len(buf) == n.")
    if len(got) > n:
        raise Fail(f"asked for {n} bytes, your recv_exactly returned {len(got)}: it read past the end "
                   "of the message, so those bytes are lost for the next call. Ask recv() for at "
                   "most n - len(buf) bytes.")
    raise Fail(f"your recv_exactly returned {shorten(got)}, expected {shorten(data[:n])}: the bytes "
               "differ (are chunks added in order, each exactly once?).")


PAUSE = 0.3  # s a slow peer stops between two chunks: a pause is not the end of a message


def _case_small_chunks(ctx, recv_exactly):
    data = b"hello, world"
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, data, [3, 4, 2, 3],
                                        pause=[0.01, PAUSE, 0.01, 0], gated=True)
    short = _as_bytes(got)
    if log.sent_when_done is not None and log.sent_when_done < len(data) \
            and data.startswith(short) and len(short) < len(data):
        raise Fail(f"your recv_exactly returned {len(short)} of {len(data)} bytes while the peer "
                   f"paused for {PAUSE:g} s between two chunks: a pause is not the end of a "
                   "message. Keep calling recv() until you have n bytes (or it returns b'': then "
                   "raise), with no timeout of your own that ends the message.")
    _judge(got, data, mine, log)
    _not_closed(mine)


def _case_random_chunks(ctx, recv_exactly):
    data = bytes(ctx.rng.getrandbits(8) for _ in range(100_000))
    sizes = chunk_sizes(ctx.rng, len(data))
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, data, sizes, pause=0.001)
    _judge(got, data, mine, log)
    _not_closed(mine)


def _case_one_byte(ctx, recv_exactly):
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, b"!", [1], pause=0)
    _judge(got, b"!", mine, log)
    _not_closed(mine)


PAST_END = "Ask recv() for at most n - len(buf) bytes: you read {} of the next message."


def _case_back_to_back(ctx, recv_exactly):
    # Two messages, b'hello' and b'world'. The first arrives in two parts: b'hel' alone, then,
    # once the learner's recv() has returned it, b'lo' with the whole next message behind it, in
    # one write (one segment). A second recv(5) then finds 7 bytes waiting: recv(n) instead of
    # recv(n - len(buf)) takes 3 bytes of the next message, whatever the timing.
    mine, peer = tcp_pair(ctx)
    first_part = recv_returns(mine)

    def taken() -> bool:
        # b'hel' is read: a recv() returned it, or it reached the learner's socket (the peer has
        # no unacknowledged bytes) and is no longer queued there (a recv(5, MSG_WAITALL) holds it
        # and waits for more: it must get the rest, or it would wait for ever).
        return first_part(1) or (unacked(peer) == 0 and _inq(mine.sock) == 0)

    def send():
        peer.sendall(b"hel")
        wait_for(taken, ctx.limit, ctx.stop, 0.002)
        if not ctx.stop.is_set():
            peer.sendall(b"loworld")
            peer.shutdown(socket.SHUT_WR)  # nothing more: a read past the end ends, not hangs
    ctx.spawn(send, name="sender")
    first = _as_bytes(ctx.call(recv_exactly, mine, 5, what="your recv_exactly"))
    over = _received(mine) - 5
    if len(first) > 5 and first.startswith(b"hello"):
        raise Fail(f"asked for 5 bytes of b'helloworld' (two messages back to back; the first arrived "
                   f"in two parts), your recv_exactly returned {first!r}: it took bytes of the next "
                   "message, which are now lost.", PAST_END.format(plural(len(first) - 5, "byte")))
    if first == b"hello" and over > 0:
        raise Fail(f"your recv_exactly returned b'hello' (right), but its recv() calls read "
                   f"{5 + over} bytes: it took bytes of the next message and dropped them.",
                   PAST_END.format(plural(over, "byte")))
    if first != b"hello":
        raise Fail(f"asked for 5 bytes of b'helloworld' (two messages back to back), your "
                   f"recv_exactly returned {first!r}.")
    _not_closed(mine)
    try:
        second = _as_bytes(ctx.call(recv_exactly, mine, 5, what="your recv_exactly"))
    except LearnerRaised as e:
        if isinstance(e.error, (EOFError, ConnectionError)):
            raise Fail("the first recv_exactly(sock, 5) returned b'hello' (right), but the second "
                       "found the connection at its end: the first call read bytes of the next "
                       "message (b'world') past the end of its own, and they are lost.",
                       "Ask recv() for at most n - len(buf) bytes, and read nothing else (a "
                       "makefile() reads ahead).") from None
        raise
    if second != b"world":
        raise Fail(f"the second recv_exactly(sock, 5) returned {second!r}, expected b'world'.")
    _not_closed(mine)


def _case_early_close(ctx, recv_exactly):
    data = b"only 7 b"[:7]
    try:
        got, mine, log = _recv_exactly_once(ctx, recv_exactly, data, [4, 3], pause=0.02, n=12,
                                            then="close")
    except LearnerRaised as e:
        if isinstance(e.error, (TimeoutError,)):
            raise Fail("the peer closed after 7 of 12 bytes; your recv_exactly raised TimeoutError "
                       "instead of noticing the close: recv() returning b'' means the peer closed.")
        return  # any other exception is right: the caller learns the message is incomplete
    if got is None:
        raise Fail(f"the peer closed after {log.sent} of 12 bytes: raise an exception (e.g. "
                   "EOFError/ConnectionError) rather than return None, as your recv_exactly did. A "
                   "caller that forgets to check for None fails later, far from the cause.")
    got = _as_bytes(got)
    raise Fail(f"the peer closed after 7 of 12 bytes and your recv_exactly returned {got!r}: a short "
               "result looks like a whole message to the caller. When recv() returns b'' before n "
               "bytes have arrived, raise an exception (e.g. EOFError).")


RECV_EXACTLY = Exercise(
    id="05.1",
    title="recv_exactly",
    anchor="**1. `recv_exactly`.**",
    names=("recv_exactly",),
    limit=3.0,
    task="""**1. `recv_exactly`** *(exercise 05.1, checked below)*. Write `recv_exactly(sock, n)`: return
exactly `n` bytes from the connected socket `sock` as `bytes`, calling `recv()` as often as needed (it
may return fewer bytes than asked for), and never reading past the `n`th byte (the next message's bytes
must stay in the socket). If the peer closes first (`recv()` returns `b''`), raise an exception
(`EOFError` or `ConnectionError`). Leave `sock` open: it belongs to the caller, who may read the next
message from it. The plain code of section 8 shows one way; try it yourself first.

The check sends you messages in chunks of random sizes (1 to 4096 bytes), slowly (with a pause) and
quickly, two messages back to back, and a peer that closes early. Then try it by hand with the exchange panel:
`ex.connect()`, three `ex.client_send(...)`, then `recv_exactly(ex.server.sock, 12)`.""",
    hints=[
        "`recv(n)` returns *up to* n bytes: whatever has arrived. So loop: keep a buffer "
        "(`buf = bytearray()`) and call `recv()` until `len(buf) == n`.",
        "Ask only for what is still missing: `sock.recv(n - len(buf))`. Asking for more could take "
        "bytes that belong to the next message.",
        "`recv()` returning `b''` means the peer closed and nothing more will ever come: inside the "
        "loop, `if not chunk: raise EOFError(f'peer closed after {len(buf)} of {n} bytes')`.",
    ],
    cases=[
        Case("12 bytes in 4 chunks from a slow peer", _case_small_chunks),
        Case("100 000 bytes in random chunks of 1..4096 bytes", _case_random_chunks),
        Case("a single byte", _case_one_byte),
        Case("two messages back to back: the second stays in the socket", _case_back_to_back),
        Case("the peer closes after 7 of 12 bytes: an exception", _case_early_close),
    ],
)


# ---- 05.2 echo handler

def _echo_server(ctx, handler):
    adopted = ctx.adopt(handler)

    def serve_conn(conn, server):  # the learner's handler gets conn with all of a socket's calls
        return adopted(HandlerConn(conn), server)
    srv = Server(handler=serve_conn, name=f"exercise-{ctx.exercise_id}-{id(ctx)}",
                 idle_timeout=10, lifetime=60)
    srv.start()
    ctx.later(srv.stop)
    return srv


def _handler_calls(srv, conn_side=None):
    """Names of the calls each connection's handler made, by side ('server/conn1': [...])."""
    out = {}
    for ev in srv.trace:
        if ev.side.startswith("server/conn") and (conn_side is None or ev.side == conn_side):
            out.setdefault(ev.side, []).extend([ev.call] * ev.count)
    return out


def _handler_recvs(srv) -> list:
    """The successful recv() calls of the server's handlers (one event may fold several)."""
    return [ev for ev in srv.trace
            if ev.side.startswith("server/conn") and ev.call == "recv" and ev.ok]


def _partial_sends(srv):
    """(sent, asked) for the first send() that sent less than it was given, or None."""
    for ev in srv.trace:
        if ev.side.startswith("server/conn") and ev.call == "send" and ev.error is None:
            asked = ev.args[0].size if hasattr(ev.args[0], "size") else None
            if asked is not None and isinstance(ev.result, int) and ev.result < asked:
                return ev.result, asked
    return None


def _echo_exchange(ctx, srv, message, sizes, pause, timeout=3.0, who="the client", gated=False):
    """Connect, send ``message`` in chunks, half-close, read until the server closes. ``gated``:
    each chunk only after the handler's previous recv() returned."""
    c = ctx.own(socket.create_connection(srv.address, timeout=5))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def gate(k):
        if ctx.learner_errors:  # the handler raised (the stub does at once): no recv() will come
            return True
        if srv.connections_served and not srv.connections():  # the handler has returned
            return True
        return sum(ev.count for ev in _handler_recvs(srv)) >= k
    log = send_chunks(ctx, c, message, sizes, pause=pause, then="shutdown",
                      gate=gate if gated else None)
    reply, how = read_all(c, timeout, expect=None, stalled=lambda: _eof_ignored(srv))
    log.sent_when_done = log.sent
    log.finished.wait(5)
    return reply, how, log


def _eof_ignored(srv) -> bool:
    """The handler's recv() returned b'' (the client is done) and it called recv() again: it will
    loop for ever. Stalled once the client has acknowledged all it was sent, so the echo is here."""
    eofs = collections.Counter(ev.side for ev in _handler_recvs(srv) if ev.nbytes == 0)
    conns = srv.connections()
    return (any(n >= 2 for n in eofs.values()) and len(conns) == 1
            and unacked(conns[0][0]) == 0)


RECVS = ("recv", "recvfrom", "recvmsg")  # what the trace calls the handler's reads (recv_into: recv)


def _judge_echo(ctx, srv, message, reply, how, log, who="the client", wait=3.0):
    handed_over = [e for e in ctx.thread_errors if isinstance(e, OSError) and e.errno == errno.EBADF]
    if handed_over:  # its thread used conn after the handler returned and the server closed conn
        ctx.thread_errors_shown = True
        where = [ln for ln in raised_lines(handed_over[0], "a thread your code started")
                 if not ln.lstrip().startswith(("What happened", "Why", "How to fix"))]
        raise Fail(*where, "Your handler returned while a thread it started still used conn: the "
                   "server closes conn as soon as the handler returns. Do the echo in the handler "
                   "itself (the server already runs it in a thread of its own), or join() the "
                   "thread before returning.")
    ctx.raise_learner_errors("your handler")
    calls = _handler_calls(srv)
    made = [c for cs in calls.values() for c in cs]
    if reply and not any(c in RECVS for c in made):
        # Judged before the reply: b'hello' sent blindly echoes b'hello' too. (Whether the client
        # then saw the close or a reset, for the bytes the handler left unread, is timing.)
        raise Fail(f"your handler never called recv(): it sent {shorten(reply)} without reading "
                   f"what {who} sent. An echo reads with conn.recv() in a loop and sends back what "
                   "each recv() returned.")
    if reply == message and how == "closed":
        return
    partial = _partial_sends(srv)
    if partial and len(reply) < len(message):
        raise Fail(f"your handler used send(), which sent only {partial[0]} of the {partial[1]} "
                   f"bytes it was given; {who} got {len(reply)} of {len(message)} bytes back. Use "
                   "sendall(), which loops until everything is sent.")
    if not reply and how == "timeout" and ctx.learner_threads():
        if "recv" not in made:
            raise DidNotReturn("your handler", wait, f"it never called recv(); {who} sent "
                               f"{plural(len(message), 'byte')} and is still waiting for the echo.")
        if not any(c.startswith("send") for c in made):
            raise DidNotReturn("your handler", wait, f"it received data from {who} but never sent a "
                               "reply; did you call sendall()?")
    if not reply and how == "stalled":
        raise DidNotReturn("your handler", wait, f"{who} sent {plural(len(message), 'byte')} and shut "
                           "down its sending side; your handler's recv() returned b'' and it called "
                           "recv() again, for ever, without sending a reply. When recv() returns "
                           "b'', the client is done: leave the loop.", never=True)
    if not reply:
        if "recv" not in made:
            raise Fail(f"your server accepted the connection but your handler never called recv(): "
                       f"{who} sent {plural(len(message), 'byte')} and got nothing back.")
        if not any(c.startswith("send") for c in made):
            raise Fail(f"your server accepted the connection and received data from {who}, but "
                       "never sent a reply; did you call sendall()?")
    if reply == message and how in ("timeout", "stalled"):
        seen = " (its recv() returned b'' and your handler called it again)" if how == "stalled" else ""
        raise DidNotReturn("your handler", wait, f"{who} got its {plural(len(message), 'byte')} back, "
                           f"then shut down its sending side, but the connection stayed open{seen}. "
                           "When recv() returns b'', the client is done: leave the loop and return.",
                           never=how == "stalled")
    if message.startswith(reply) and len(reply) < len(message):
        raise Fail(f"your handler echoed {len(reply)} of {len(message)} bytes and then "
                   f"{'stopped' if how == 'timeout' else 'closed'}: the message was "
                   f"{plural(len(log.planned), 'chunk')} long. It stops after the first recv(); loop "
                   "until recv() returns b''.")
    if len(reply) > len(message) and reply.endswith(message):
        extra = reply[:len(reply) - len(message)]
        if message.startswith(extra[:min(8, len(extra))]):  # the client's own bytes, again
            raise Fail(f"{who} got back {len(reply) - len(message)} bytes more than it sent: your "
                       "handler sent some of the client's bytes more than once. After each recv(), "
                       "send back only what that recv() returned, not everything received so far.")
        raise Fail(f"{who} got back {len(reply) - len(message)} bytes more than it sent, before its "
                   "own: data from an earlier connection. Keep the data in a local variable of "
                   "the handler, not in a global.")
    raise Fail(f"{who} sent {shorten(message)} and got back {shorten(reply)}"
               f"{' (the server never closed)' if how == 'timeout' else ''}.")


def _case_echo_one(ctx, handler):
    srv = _echo_server(ctx, handler)
    reply, how, log = _echo_exchange(ctx, srv, b"hello", [5], pause=0)
    _judge_echo(ctx, srv, b"hello", reply, how, log)


def _case_echo_chunks(ctx, handler):
    srv = _echo_server(ctx, handler)
    msg = b"one message, four chunks"
    reply, how, log = _echo_exchange(ctx, srv, msg, [4, 8, 6, len(msg) - 18],
                                     pause=[0.01, PAUSE, 0.01, 0], gated=True)
    if how == "closed" and log.sent_when_done is not None and log.sent_when_done < len(msg) \
            and msg.startswith(reply):
        ctx.raise_learner_errors("your handler")
        raise Fail(f"your handler closed the connection while the client paused for {PAUSE:g} s "
                   f"between two chunks (it had sent {log.sent_when_done} of {len(msg)} bytes): "
                   "a pause is not the end. Only recv() returning b'' means the client is done; do "
                   "not end the conversation on a timeout of your own.")
    _judge_echo(ctx, srv, msg, reply, how, log)


SENDS = (("trace.py", "sendall"), ("trace.py", "send"))  # a handler inside conn.sendall()/send()
SETTLE = 2.0  # s client 1's handler may take to settle (see _case_echo_many)


def _inq(sock) -> int | None:
    """Bytes waiting in ``sock``'s receive queue (FIONREAD); None where that cannot be read."""
    try:
        import fcntl
        import termios
        out = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4)
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return int.from_bytes(out, sys.byteorder, signed=True)


def _conn_of(srv, client):
    """(the server's traced connection, its handler thread) for ``client``, or None."""
    me = client.getsockname()
    for conn, t in srv.connections():
        try:
            if conn.getpeername() == me:
                return conn, t
        except OSError:
            continue  # closed meanwhile
    return None


def _settled(ctx, srv, client, total):
    """A predicate: client 1's handler has gone as far as it can while client 1 does not read.

    Either it waits inside a send call that cannot finish (client 1's receive queue and the
    server's send queue are full and stay so from one look to the next), or it has received all
    ``total`` bytes and waits in recv() (a handler that echoes only at the end), or it is done."""
    last = []

    def settled() -> bool:
        if ctx.learner_errors:
            return True
        found = _conn_of(srv, client)
        if found is None:  # not accepted yet, or its handler is over already (all 3 accepted)
            return srv.connections_served >= 3
        conn, t = found
        if waiting_in(t, SENDS):
            state = (unacked(conn.sock), _inq(client))
            stuck = bool(last) and last[-1] == state and bool(state[0])
            last.append(state)
            return stuck
        last.clear()
        got = sum(ev.nbytes or 0 for ev in _handler_recvs(srv) if ev.side == conn.side)
        return got >= total and blocked_in_recv(t)
    return settled


def _foreign(reply: bytes, i: int, msgs: list) -> list:
    """[(j, bytes), ...] in client order, for each client j whose bytes ``reply`` (client i's)
    holds: runs of at least 8 bytes of msgs[j] (random bytes: no run that long is in two messages
    by chance). Empty if none."""
    k = 8
    index = {}
    for j, m in enumerate(msgs):
        if j != i:
            for p in range(len(m) - k + 1):
                index.setdefault(m[p:p + k], j)
    found = {}
    covered_until = -1
    for p in range(len(reply) - k + 1):
        j = index.get(reply[p:p + k])
        if j is not None:
            start = max(p, covered_until)
            found[j] = found.get(j, 0) + p + k - start
            covered_until = p + k
    return sorted(found.items())


def _case_echo_many(ctx, handler):
    srv = _echo_server(ctx, handler)
    # Small buffers: the server's connections (inherited from the listener) and client 1's. Client
    # 1 sends all its bytes first and reads nothing yet, so its echo fills those buffers and its
    # handler waits inside a send call, half-way through its loop. Only then do clients 2 and 3
    # send (and read). A handler that keeps the data in a global is caught with that global full
    # of client 1's bytes, every time: the mix-up does not depend on when threads switch.
    srv.sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    msgs = [bytes(ctx.rng.getrandbits(8) for _ in range(20_000)) for _ in range(3)]
    socks = []
    for i in range(3):  # all three connected before any sends: served at the same time
        c = ctx.own(socket.socket())
        if i == 0:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        c.settimeout(5)
        c.connect(srv.address)
        socks.append(c)
    logs = [send_chunks(ctx, socks[0], msgs[0], then="keep")]
    wait_for(_settled(ctx, srv, socks[0], len(msgs[0])), SETTLE, ctx.stop, 0.005)
    logs += [send_chunks(ctx, c, m, pause=0.001, then="shutdown") for c, m in zip(socks[1:], msgs[1:])]
    results = [None] * 3
    deadline = monotonic() + 5.0  # for all three replies, as when they were read at the same time

    def reader(i):
        results[i] = read_all(socks[i], max(0.1, deadline - monotonic()))
    readers = [Thread(target=reader, args=(i,), name="socklab-exercise-reader") for i in (1, 2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(10)
    # Client 1, done sending, shuts its side down and reads at last.
    logs[0].finished.wait(max(0.1, deadline - monotonic()))
    try:
        socks[0].shutdown(socket.SHUT_WR)
    except OSError as exc:  # the server has reset the connection already: read_all sees that
        if exc.errno not in (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE):
            raise
    results[0] = read_all(socks[0], max(1.0, deadline - monotonic()))
    replies = [r if r is not None else (b"", "timeout") for r in results]
    # Every client that got another's bytes, in client order: which client's bytes dominate a
    # reply depends on how the threads took turns, that some got client 1's does not.
    mixed = [(i, _foreign(reply, i, msgs)) for i, (m, (reply, how)) in enumerate(zip(msgs, replies))
             if reply != m]
    mixed = [f"client {i + 1} got bytes that client {j + 1} sent ({plural(n, 'byte')} of them)"
             for i, found in mixed if found for j, n in found]
    if mixed:
        raise Fail(f"three clients at once: {'; '.join(mixed)}. Keep the buffer local to the "
                   "handler, not in a global: each connection runs your handler in its own "
                   "thread, at the same time as the others.")
    for i, (m, (reply, how)) in enumerate(zip(msgs, replies)):
        if reply != m or how != "closed":
            _judge_echo(ctx, srv, m, reply, how, logs[i], who=f"client {i + 1} of 3")
    ctx.raise_learner_errors("your handler")


def _case_echo_large(ctx, handler):
    srv = _echo_server(ctx, handler)
    # Small send buffers for the connections it accepts (inherited from the listener), so a lone
    # send() finds little room and sends only part of what it is given.
    srv.sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    msg = bytes(ctx.rng.getrandbits(8) for _ in range(1_000_000))
    c = ctx.own(socket.socket())
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a slow reader: small buffer
    c.settimeout(5)
    c.connect(srv.address)
    log = send_chunks(ctx, c, msg, [65536] * 15 + [len(msg) - 65536 * 15], then="shutdown")
    buf = bytearray()
    how = "timeout"
    while True:  # read in small pieces, so the server's sends often find little room
        try:
            c.settimeout(3)
            chunk = c.recv(4096)
        except TimeoutError:
            break
        except OSError:  # reset: the handler closed with data unread
            how = "reset"
            break
        if not chunk:
            how = "closed"
            break
        buf += chunk
    log.finished.wait(5)
    _judge_echo(ctx, srv, msg, bytes(buf), how, log, who="a client sending 1 MB")
    ctx.raise_learner_errors("your handler")
    _send_tip(ctx, srv)


def _send_tip(ctx, srv) -> None:
    """The send() tip, for a handler that echoed all of 1 MB with send() and no sendall().

    The rule: each recv() that returned data gave the handler one buffer to send. If it made more
    send() calls than that, some buffer took several: a send() sent only part of it and the code
    sent the rest (a loop over send(), as in my_sendall): no tip. If it made one send() per buffer
    (or fewer), every send() sent all it was given (the echo is complete): right here, by luck,
    so the tip says why sendall() is safer. Counted from the trace (a folded event counts each of
    its calls), so it holds however many calls there were."""
    calls = [c for cs in _handler_calls(srv).values() for c in cs]
    if "send" not in calls or "sendall" in calls:
        return
    buffers = sum(ev.count for ev in _handler_recvs(srv) if ev.nbytes)
    if calls.count("send") <= buffers:
        ctx.notes.append("send() may send only part of what it is given (here each send() took "
                         "all of it). If your code does not send the rest of what send() did not "
                         "take, use sendall(); a loop like my_sendall is right as it is.")


ECHO_HANDLER = Exercise(
    id="05.2",
    title="echo_handler",
    anchor="**2. Your own `sendall`.**",
    names=("echo_handler",),
    limit=8.0,
    task="""**2. An echo handler** *(exercise 05.2, checked below)*. Write `echo_handler(conn, server)`, a
handler for `socklab.Server(handler=echo_handler)`: it is called in its own thread for every
accepted connection `conn`, and must send back everything it receives, until the client shuts its
sending side down (`recv()` returns `b''`); then it returns (the server closes `conn`).

The check connects clients that send one short message, one message in four slow chunks, three
clients at once, and one that sends 1 MB while reading slowly (where `send()` alone is not enough).
Then write `my_sendall(sock, data)` yourself, with a loop over `send()` and a `memoryview`, and try
it with 4 MiB against a `count_chunks` server like the one of section 4 (start a new one: that one
was stopped at the end of section 5).""",
    hints=[
        "The shape is a loop: `while True:` read with `data = conn.recv(65536)`; if `not data`, "
        "the client is done: `return`; otherwise send `data` back.",
        "Send with `conn.sendall(data)`, not `conn.send(data)`: `send()` may take only part of the "
        "bytes when the client reads slowly, and the rest would be lost.",
        "Do not keep the data in a global variable: each connection runs the handler in its own "
        "thread, so three clients at once would mix their bytes.",
    ],
    cases=[
        Case("one client, one message", _case_echo_one),
        Case("one message in four slow chunks", _case_echo_chunks),
        Case("three clients at once, 20 000 bytes each in random chunks", _case_echo_many),
        Case("1 MB to a client that reads slowly", _case_echo_large, limit=10.0),
    ],
)

EXERCISES = [RECV_EXACTLY, ECHO_HANDLER]
