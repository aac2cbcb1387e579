"""Notebook 05 (accept and data): recv_exactly, and an echo handler."""
from __future__ import annotations

import collections
import socket

from ..runtime import Thread
from ..servers import Server
from .core import Case, DidNotReturn, Exercise, Fail, LearnerRaised
from .peers import (HandlerConn, chunk_sizes, plural, read_all, recv_returns, send_chunks, shorten,
                    tcp_pair, unacked)


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

    got = ctx.call(recv_exactly, mine, n, what="your recv_exactly", diagnose=diagnose,
                   hopeless=hopeless)
    return got, mine, log


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


def _case_small_chunks(ctx, recv_exactly):
    data = b"hello, world"
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, data, [3, 4, 2, 3], pause=0.01, gated=True)
    _judge(got, data, mine, log)


def _case_random_chunks(ctx, recv_exactly):
    data = bytes(ctx.rng.getrandbits(8) for _ in range(100_000))
    sizes = chunk_sizes(ctx.rng, len(data))
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, data, sizes, pause=0.001)
    _judge(got, data, mine, log)


def _case_one_byte(ctx, recv_exactly):
    got, mine, log = _recv_exactly_once(ctx, recv_exactly, b"!", [1], pause=0)
    _judge(got, b"!", mine, log)


def _case_back_to_back(ctx, recv_exactly):
    mine, peer = tcp_pair(ctx)
    peer.sendall(b"helloworld!")
    first = _as_bytes(ctx.call(recv_exactly, mine, 5, what="your recv_exactly"))
    if first != b"hello":
        if first.startswith(b"hello") and len(first) > 5:
            raise Fail(f"asked for 5 bytes of b'helloworld!' (two messages back to back), your "
                       f"recv_exactly returned {first!r}: it took bytes of the next message, which "
                       "are now lost. Ask recv() for at most n - len(buf) bytes.")
        raise Fail(f"asked for 5 bytes of b'helloworld!', your recv_exactly returned {first!r}.")
    second = _as_bytes(ctx.call(recv_exactly, mine, 5, what="your recv_exactly"))
    if second != b"world":
        raise Fail(f"the second recv_exactly(sock, 5) returned {second!r}, expected b'world'.")


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
(`EOFError` or `ConnectionError`). The plain code of section 8 shows one way; try it yourself first.

The check sends you messages in chunks of random sizes (1 to 4096 bytes), slowly and quickly, two
messages back to back, and a peer that closes early. Then try it by hand with the exchange panel:
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
        return sum(ev.count for ev in _handler_recvs(srv)) >= k
    log = send_chunks(ctx, c, message, sizes, pause=pause, then="shutdown",
                      gate=gate if gated else None)
    reply, how = read_all(c, timeout, expect=None, stalled=lambda: _eof_ignored(srv))
    log.finished.wait(5)
    return reply, how, log


def _eof_ignored(srv) -> bool:
    """The handler's recv() returned b'' (the client is done) and it called recv() again: it will
    loop for ever. Stalled once the client has acknowledged all it was sent, so the echo is here."""
    eofs = collections.Counter(ev.side for ev in _handler_recvs(srv) if ev.nbytes == 0)
    conns = srv.connections()
    return (any(n >= 2 for n in eofs.values()) and len(conns) == 1
            and unacked(conns[0][0]) == 0)


def _judge_echo(ctx, srv, message, reply, how, log, who="the client", wait=3.0):
    ctx.raise_learner_errors("your handler")
    calls = _handler_calls(srv)
    made = [c for cs in calls.values() for c in cs]
    if reply == message and how == "closed":
        if "send" in made and "sendall" not in made:
            ctx.notes.append("you used send(); here it happened to send everything, but send() may "
                             "send only part of the data: sendall() is the safe choice.")
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
    reply, how, log = _echo_exchange(ctx, srv, msg, [4, 8, 6, len(msg) - 18], pause=0.01, gated=True)
    _judge_echo(ctx, srv, msg, reply, how, log)


def _case_echo_many(ctx, handler):
    srv = _echo_server(ctx, handler)
    msgs = [bytes(ctx.rng.getrandbits(8) for _ in range(20_000)) for _ in range(3)]
    socks = []
    for m in msgs:  # all three connected before any sends: served at the same time
        c = ctx.own(socket.create_connection(srv.address, timeout=5))
        socks.append(c)
    logs = [send_chunks(ctx, c, m, pause=0.001, then="shutdown") for c, m in zip(socks, msgs)]
    results = [None] * 3

    def reader(i):
        results[i] = read_all(socks[i], 5.0)
    readers = [Thread(target=reader, args=(i,), name="socklab-exercise-reader")
               for i in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(10)
    for i, (m, r) in enumerate(zip(msgs, results)):
        reply, how = r if r is not None else (b"", "timeout")
        if reply != m or how != "closed":
            others = [j for j, o in enumerate(msgs) if j != i and reply and o[:64] in reply]
            if others:
                raise Fail(f"three clients at once: client {i + 1} got bytes that client "
                           f"{others[0] + 1} sent. Keep each connection's data in variables of its "
                           "own handler call, not in a global.")
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
it against the `count_chunks` server of section 4 with 4 MiB.""",
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
