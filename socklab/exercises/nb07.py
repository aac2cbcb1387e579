"""Notebook 07 (UDP): a pinger with timeouts, retries, sequence numbers and exponential backoff."""
from __future__ import annotations

import socket
import threading
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock

from ..servers import Server
from .core import Case, Exercise, Fail, LearnerRaised
from .peers import plural


TIMEOUT = 0.05  # s: the first wait the check asks for (replies on loopback take microseconds)


class Lossy:
    """A datagram handler: answers or drops each datagram as ``plan`` says, recording arrivals.

    ``plan(i, data)`` returns a list of replies to send for the i-th datagram (1-based); [] drops it.
    """

    def __init__(self, plan):
        self.plan = plan
        self.arrivals: list = []   # (monotonic time, data, address)
        self.lock = threading.Lock()

    def __call__(self, sock, data, addr, server):
        with self.lock:
            self.arrivals.append((monotonic(), data, addr))
            i = len(self.arrivals)
        for reply in self.plan(i, data):
            sock.sendto(reply, addr)


def _server(ctx, plan) -> tuple:
    handler = Lossy(plan)
    srv = Server(type="SOCK_DGRAM", handler=handler, name=f"exercise-udp-{id(ctx)}", lifetime=60)
    srv.start()
    ctx.later(srv.stop)
    return srv, handler


def _client(ctx) -> socket.socket:
    """A fresh UDP socket for the learner: blocking, no timeout (as socket.socket() makes it)."""
    s = ctx.own(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    return s


def _ping(ctx, ping_backoff, sock, address, seq, handler, limit=3.0):
    def diagnose():
        n = len(handler.arrivals)
        if sock.gettimeout() is None:
            return (f"your UDP client waited forever: the server got {plural(n, 'datagram')} and "
                    "dropped the last one, so no reply will ever come, and recvfrom() has no "
                    "timeout. Set one (sock.settimeout(timeout)) and send again when it expires.")
        return (f"the server has received {plural(n, 'datagram')}; with tries=3 and timeouts of "
                f"{TIMEOUT:g}, {2 * TIMEOUT:g} and {4 * TIMEOUT:g} s the function should be done "
                f"after about {7 * TIMEOUT:g} s.")
    t0 = monotonic()
    value = ctx.call(ping_backoff, sock, address, seq, TIMEOUT, 3, limit=limit, what="your ping_backoff",
                     diagnose=diagnose)
    if value is not None and type(value) is not int:  # exactly int: not True, not 1.0, not a look-alike
        raise Fail(f"your ping_backoff returned {value!r:.40} (a {type(value).__name__}): return the "
                   "number of tries as an int, or None when no reply came.")
    return value, monotonic() - t0


def _request(seq) -> bytes:
    return b"ping %d" % seq


def _case_answered(ctx, ping_backoff):
    srv, handler = _server(ctx, lambda i, d: [d])
    got, _ = _ping(ctx, ping_backoff, _client(ctx), srv.address, 1, handler)
    if handler.arrivals and handler.arrivals[0][1] != _request(1):
        raise Fail(f"the server received {handler.arrivals[0][1]!r}; send b'ping 1' for seq=1 "
                   "(b'ping %d' % seq), as ping() does.")
    if got != 1:
        raise Fail(f"the server answered the first datagram at once; your ping_backoff returned {got!r}, "
                   "expected 1 (one try).")


def _case_first_lost(ctx, ping_backoff):
    srv, handler = _server(ctx, lambda i, d: [] if i == 1 else [d])
    got, _ = _ping(ctx, ping_backoff, _client(ctx), srv.address, 2, handler)
    if got != 2:
        raise Fail(f"the server dropped the first datagram and answered the second; your "
                   f"ping_backoff returned {got!r}, expected 2 (tries).")


def _case_all_lost(ctx, ping_backoff):
    t = TIMEOUT
    srv, handler = _server(ctx, lambda i, d: [])
    got, took = _ping(ctx, ping_backoff, _client(ctx), srv.address, 3, handler)
    times = [at for at, _, _ in handler.arrivals]
    if len(times) != 3:
        raise Fail(f"the server dropped every datagram; with tries=3 your ping_backoff sent "
                   f"{plural(len(times), 'datagram')}, expected 3.")
    if got is not None:
        raise Fail(f"no reply ever came; your ping_backoff returned {got!r}, expected None.")
    gaps = [b - a for a, b in zip(times, times[1:])]
    shown = ", ".join(f"{g:.2f} s" for g in gaps)
    if gaps[0] < 0.7 * t:
        raise Fail(f"the retries came {shown} apart: the first wait should be the timeout, {t:g} s.")
    if gaps[1] < 1.6 * t:  # 2t expected after the first try's t (room for jitter)
        raise Fail(f"the retries came {shown} apart: each wait should be twice the previous one "
                   f"({t:g} s, then {2 * t:g} s, then {4 * t:g} s before giving up). Double the "
                   "timeout after each try: sock.settimeout(timeout * 2 ** attempt).")
    if took < 5.5 * t:
        raise Fail(f"your ping_backoff gave up after {took:.2f} s: after the third datagram it should "
                   f"still wait {4 * t:g} s for a reply.")


def _case_stale_reply(ctx, ping_backoff):
    # The first try gets only a late reply to an *earlier* ping; the second try gets the right one.
    srv, handler = _server(ctx, lambda i, d: [b"ping 99"] if i == 1 else [d])
    try:
        got, _ = _ping(ctx, ping_backoff, _client(ctx), srv.address, 4, handler)
    except LearnerRaised:
        raise
    if got == 1:
        raise Fail("the only reply to the first try was b'ping 99', a late answer to another ping; "
                   "your ping_backoff returned 1 as if it were the answer. Compare the reply with "
                   "the request and keep waiting if they differ.")
    if got != 2:
        raise Fail(f"the first try got only a stale reply (b'ping 99'), the second the right one; "
                   f"your ping_backoff returned {got!r}, expected 2.")


PING_BACKOFF = Exercise(
    id="07.1",
    title="ping_backoff",
    anchor="3. **Exponential backoff.**",
    names=("ping_backoff",),
    limit=3.0,
    task="""3. **Exponential backoff** *(exercise 07.1, checked below)*. Write `ping_backoff(sock, address,
seq, timeout=0.1, tries=3)`: like `ping()` above, it sends `b"ping %d" % seq` and returns the
number of tries once the matching reply arrives (or `None` after `tries` tries); but each retry waits
twice as long as the previous one: 0.1 s, 0.2 s, 0.4 s. The check runs it against servers that
answer at once, drop the first datagram, drop everything, or send a stale reply first. Why do real
protocols back off like this?""",
    hints=[
        "Start from `ping()`: the loop over `attempt`, `sendto`, then `recvfrom` in a `try:` that "
        "catches `TimeoutError`. Only the timeout changes from try to try.",
        "Set the timeout inside the loop, before each `recvfrom`: "
        "`sock.settimeout(timeout * 2 ** (attempt - 1))` for attempt = 1, 2, 3.",
        "Keep the inner `while True:` that skips replies that are not `== request`: a late reply to "
        "another ping is not your answer.",
    ],
    cases=[
        Case("a server that answers at once: 1 try", _case_answered),
        Case("the first datagram is dropped: 2 tries", _case_first_lost),
        Case(f"everything is dropped: None, after waiting {TIMEOUT:g}, {2 * TIMEOUT:g} and "
             f"{4 * TIMEOUT:g} s", _case_all_lost),
        Case("a stale reply (to another ping) is not the answer", _case_stale_reply),
    ],
)

EXERCISES = [PING_BACKOFF]
