"""Notebook 07 (UDP): a pinger with timeouts, retries, sequence numbers and exponential backoff."""
from __future__ import annotations

import socket
import sys
import threading
import time
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock

from ..servers import Server
from .core import Case, Exercise, Fail, LearnerRaised, is_learner_file, site_text
from .core import cpu_queued as _queued, kept_cpu_busy
from .peers import plural


TIMEOUT = 0.05  # s: the first wait the check asks for (replies on loopback take microseconds)
# The case with a late reply asks for a longer first wait, so that a right solution has 75 ms to
# spare however busy the machine: the reply comes LATE x the first wait after the second datagram,
# after a first wait that did not grow (the learner's recvfrom() has timed out by then) and well
# before the second try's grown timeout (2 x the first wait) ends.
LATE_TIMEOUT = 0.1
ANSWERED_TIMEOUT = 0.5  # the first wait asked for where the server answers at once
LATE = 1.25
# Tolerances on the waits of the learner's tries, as fractions of the first wait: a timeout never
# fires early, so a wait is short only by how late the server's thread saw a datagram (SLACK_DOWN);
# on a loaded machine a wait can be longer by the learner's thread being scheduled late (SLACK_UP).
# Both are tight enough to tell the asked-for waits (t, 2t, 4t) from the usual mistakes: doubling
# before the first try (2t, 4t, 8t), a sleep after a fixed timeout (2t, 3t, 5t), no doubling (t, t,
# t) and linear growth (t, 2t, 3t).
SLACK_DOWN = 0.3
SLACK_UP = 0.5


class Lossy:
    """A datagram handler: answers or drops each datagram as ``plan`` says, recording arrivals.

    ``plan(i, data)`` returns a list of replies for the i-th datagram (1-based); [] drops it. A
    reply is bytes (sent at once) or (delay, bytes): sent ``delay`` s after the datagram arrived,
    by a peer thread that waits on the case's stop Event (never sleeps), and that notes where the
    learner's code was at that moment (``late``: (sent at, learner's site or None))."""

    def __init__(self, ctx, plan):
        self.ctx, self.plan = ctx, plan
        self.arrivals: list = []   # (monotonic time, data, address)
        self.late: list = []       # (when a delayed reply was sent, the learner's site then)
        self.learner: threading.Thread | None = None  # the thread running the learner's function
        self.cpu: float | None = None  # CPU time that thread had used when the function returned
        self.queued = 0.0  # and the time it had waited for a CPU (see _queued)
        self.lock = threading.Lock()

    def __call__(self, sock, data, addr, server):
        at = monotonic()
        with self.lock:
            self.arrivals.append((at, data, addr))
            i = len(self.arrivals)
        for reply in self.plan(i, data):
            if isinstance(reply, tuple):
                self.ctx.spawn(self._later, sock, at + reply[0], reply[1], addr, name="late-reply")
            else:
                sock.sendto(reply, addr)

    def _later(self, sock, when, reply, addr):
        if self.ctx.stop.wait(max(0.0, when - monotonic())):
            return
        with self.lock:  # noted before it is sent: the learner's code may return as soon as it is
            self.late.append((monotonic(), self._learner_site()))
        sock.sendto(reply, addr)

    def _learner_site(self):
        """(file, line, function) of the learner's code that its thread is running right now (the
        innermost frame of the learner's code: a sleep or a recvfrom() shows as the line calling
        it), or None."""
        t = self.learner
        frame = sys._current_frames().get(t.ident) if t is not None and t.ident else None
        while frame is not None:
            code = frame.f_code
            if is_learner_file(code.co_filename):
                return code.co_filename, frame.f_lineno, code.co_name
            frame = frame.f_back
        return None


# A try makes a few calls that let go of the interpreter lock (sendto(), the receive, returning):
# each may have to wait as long as the probe's worst to get it back, when a busy thread holds it.
WAKE_UPS = 3


class _Lateness:
    """How late this machine wakes a waiting thread right now: a peer thread waits STEP s again and
    again and keeps the largest overshoot. A busy machine, or a busy thread of this kernel holding
    the interpreter lock, wakes the learner's thread late by as much: the waits allow for it."""

    STEP = 0.005

    def __init__(self, ctx):
        self.worst = 0.0
        ctx.spawn(self._run, ctx.stop, name="lateness")

    @property
    def allowance(self) -> float:
        """Time a wait may run over, for this machine's lateness meanwhile."""
        return WAKE_UPS * self.worst

    def _run(self, stop):
        while True:
            t0 = monotonic()
            if stop.wait(self.STEP):
                return
            self.worst = max(self.worst, monotonic() - t0 - self.STEP)


def _server(ctx, plan) -> tuple:
    handler = Lossy(ctx, plan)
    srv = Server(type="SOCK_DGRAM", handler=handler, name=f"exercise-udp-{id(ctx)}", lifetime=60)
    srv.start()
    ctx.later(srv.stop)
    return srv, handler


class _Noted(socket.socket):
    """A plain UDP socket that notes each send (sendto(), send()) and each receive: (what, when it
    began, the timeout in force, how long it took). The check then knows the wait the code asked
    for, besides the wait it got, which a busy machine stretches by waking the thread late. Also
    noted, in ``queued``: how long the thread had waited for a CPU so far, at each send, and at
    the start and end of each receive (the time a busy machine keeps it from running)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list = []
        self.queued: list = []  # per call: (before, after), seconds of waiting for a CPU so far

    def _sent(self):
        q = _queued()
        self.queued.append((q, q))
        self.calls.append(("send", monotonic(), None, 0.0))

    def sendto(self, *args):
        self._sent()
        return super().sendto(*args)

    def send(self, *args):  # on a socket the code connect()ed to the server
        self._sent()
        return super().send(*args)

    def _received(self, receive, args):
        began, timeout, q = monotonic(), self.gettimeout(), _queued()
        try:
            return receive(*args)
        finally:
            self.queued.append((q, _queued()))
            self.calls.append(("recv", began, timeout, monotonic() - began))

    def recvfrom(self, *args):
        return self._received(super().recvfrom, args)

    def recv(self, *args):
        return self._received(super().recv, args)


# It is a socket.socket, and prints as one: the learner's code got a socket, not a check's object.
_Noted.__module__, _Noted.__qualname__ = "socket", "socket"


def _client(ctx) -> _Noted:
    """A fresh UDP socket for the learner: blocking, no timeout (as socket.socket() makes it)."""
    return ctx.own(_Noted(socket.AF_INET, socket.SOCK_DGRAM))


def _tries(calls: list, ended: float) -> list:
    """Per datagram sent: (when, the wait until the next one or the return, [(timeout, how long)]
    of the receives in between)."""
    sends = [i for i, c in enumerate(calls) if c[0] == "send"]
    out = []
    for n, i in enumerate(sends):
        j = sends[n + 1] if n + 1 < len(sends) else len(calls)
        end = calls[j][1] if j < len(calls) else ended
        out.append((calls[i][1], end - calls[i][1], [(c[2], c[3]) for c in calls[i + 1:j]]))
    return out


def _outside(calls: list, queued: list) -> list:
    """Per datagram sent: how long the learner's thread waited for a CPU outside its receives,
    from that send to the next (as far as the notes show: the last try's return is not noted)."""
    if len(queued) != len(calls):
        return [0.0] * sum(c[0] == "send" for c in calls)
    out = []
    for i, c in enumerate(calls):
        if c[0] == "send":
            out.append(0.0)
        if out and i + 1 < len(calls):  # from this call's end to the next one's start
            out[-1] += max(0.0, queued[i + 1][0] - queued[i][1])
    return out


def _asked_for(tries: list, asked: list, t: float, late: float = 0.0, outside=None) -> list:
    """Per try, the wait the code asked for, where that is all it did: a single receive with a
    timeout, and no time spent outside it (beyond ``late``, the machine's lateness, and the try's
    ``outside``: how long the thread waited for a CPU outside its receive); else None.
    The wait it got can be longer: the OS wakes the thread when the timeout ends, and a busy
    machine runs it later. (A deadline-based timeout is a little less than the asked-for wait.)"""
    out = []
    for (_, wait, receives), a, queued in zip(tries, asked, outside or [0.0] * len(tries)):
        timeout, took = receives[0] if len(receives) == 1 else (None, 0.0)
        if timeout is not None and wait - took - queued < SLACK_UP * t + late:
            out.append(a if a - SLACK_DOWN * t <= timeout <= a + 1e-9 else timeout)
        else:
            out.append(None)
    return out


def _ping(ctx, ping_backoff, sock, address, seq, handler, timeout=TIMEOUT, limit=3.0, tries=3):
    """Run the learner's ping_backoff(sock, address, seq, timeout, tries): (its value, the
    monotonic time it was called, the time it returned)."""
    def diagnose():
        n = len(handler.arrivals)
        if sock.gettimeout() is None:
            return (f"your UDP client waited forever: the server got {plural(n, 'datagram')} and "
                    "dropped the last one, so no reply will ever come, and recvfrom() has no "
                    "timeout. Set one (sock.settimeout(timeout)) and send again when it expires.")
        return (f"the server has received {plural(n, 'datagram')}; with tries={tries} and a first "
                f"timeout of {timeout:g} s the function should be done after about "
                f"{(2 ** tries - 1) * timeout:g} s.")
    cpu: dict = {}

    def cpu_at_end(r):  # in the learner's thread as it ends: the CPU time that thread has used
        cpu["used"], cpu["queued"] = time.thread_time(), _queued()
    run = ctx.start(ping_backoff, sock, address, seq, timeout, tries, what="your ping_backoff",
                    on_end=cpu_at_end)
    handler.learner = run.thread
    value = run.result(limit, diagnose=diagnose)
    handler.cpu, handler.queued = cpu.get("used"), cpu.get("queued", 0.0)
    if value is not None and type(value) is not int:  # exactly int: not True, not 1.0, not a look-alike
        raise Fail(f"your ping_backoff returned {value!r:.40} (a {type(value).__name__}): return the "
                   "number of tries as an int, or None when no reply came.")
    return value, run.started, run.started + run.elapsed


def _request(seq) -> bytes:
    return b"ping %d" % seq


def _case_answered(ctx, ping_backoff):
    # A sleep before reading returns a whole first wait (ANSWERED_TIMEOUT) after the send; a
    # right solution returns as soon as the reply is there, which a busy machine can delay by a
    # tenth of a second or more. Half the first wait tells the two apart, and a run that came
    # back late is tried again: a sleep is late every time, a busy moment passes.
    for _ in range(ATTEMPTS):
        took = _answered_once(ctx, ping_backoff)
        if took is None:
            return
    raise Fail(f"the server answered at once, but your ping_backoff returned {took:.2f} s after it "
               "sent: wait for the reply in recvfrom() with a timeout, which returns as soon as the "
               "reply is there, not in a sleep first.")


def _answered_once(ctx, ping_backoff):
    """One run against a server that answers at once: None, or how long after its first send the
    function returned, where that was too long for a reply that was there at once."""
    srv, handler = _server(ctx, lambda i, d: [d])
    probe, sock = _Lateness(ctx), _client(ctx)
    # A long first wait: a right solution returns as soon as the reply is there anyway, and the
    # check's server may answer late when the machine is busy.
    got, _, ended = _ping(ctx, ping_backoff, sock, srv.address, 1, handler, timeout=ANSWERED_TIMEOUT)
    if handler.arrivals and handler.arrivals[0][1] != _request(1):
        raise Fail(f"the server received {handler.arrivals[0][1]!r}; send b'ping 1' for seq=1 "
                   "(b'ping %d' % seq), as ping() does.")
    if got != 1:
        raise Fail(f"the server answered the first datagram at once; your ping_backoff returned {got!r}, "
                   "expected 1 (one try).")
    sent = [c[1] for c in sock.calls if c[0] == "send"]
    if sent and ended - sent[0] > ANSWERED_TIMEOUT / 2 + probe.allowance:
        return ended - sent[0]
    return None


ATTEMPTS = 3  # runs of a case that a busy machine can make come out late (its reply, or the return)
BUSY = ["This machine was too busy for this case: the check's reply, meant to come within your "
        "timeout, went out too late each time it tried. That says nothing about your code: run the "
        "check again when the machine is less busy."]


def _reply_was_late(handler, sock, i: int, planned: float, window: float) -> bool:
    """Whether the delayed reply to datagram ``i`` (0-based) went out so late (planned ``planned``
    s after it came) that it missed a wait of ``window`` s from when the learner's code sent that
    datagram: not the learner's doing (a busy machine ran the check's threads late)."""
    sends = [c[1] for c in sock.calls if c[0] == "send"]
    if len(sends) > i:
        since = sends[i]
    elif len(handler.arrivals) > i:
        since = handler.arrivals[i][0]
    else:
        return False
    # When it went out; or, if it has not yet (the learner's code returned first), the earliest it
    # can: not before now, nor before ``planned`` s after the server's thread saw the datagram
    # (a busy machine delays both that thread and the one that sends the reply).
    if handler.late:
        out = handler.late[0][0]
    elif len(handler.arrivals) > i:
        out = max(handler.arrivals[i][0] + planned, monotonic())
    else:
        return False
    return out - since > planned + 0.8 * (window - planned)


def _case_first_lost(ctx, ping_backoff):
    # The reply to the second try comes late, but within that try's grown timeout: only a receive
    # timeout that grows catches it. A sleep after a timeout that stays the same misses it (the
    # reply waits unread, and the third try takes it as its own answer).
    t, late = LATE_TIMEOUT, LATE * LATE_TIMEOUT
    for _ in range(ATTEMPTS):
        srv, handler = _server(ctx, lambda i, d: [] if i == 1 else [(late, d)] if i == 2 else [d])
        sock = _client(ctx)
        got, _, _ = _ping(ctx, ping_backoff, sock, srv.address, 2, handler, timeout=t)
        if got == 2:
            return
        if not _reply_was_late(handler, sock, 1, late, 2 * t):
            break
    else:
        raise Fail(*BUSY)
    lines = [f"the server drops the first datagram and answers the second {late:g} s after it "
             f"comes, within the second try's timeout (2 x {t:g} = {2 * t:g} s); your ping_backoff "
             f"returned {got!r}, expected 2 (tries)."]
    times = [at for at, _, _ in handler.arrivals]
    site = handler.late[0][1] if handler.late else None
    text = site_text(site) if site else ""
    if len(times) >= 3 and times[2] < times[1] + late:  # the third try left before the reply was due
        lines.append(f"Your second try gave up after {times[2] - times[1]:.2f} s, before the reply "
                     "came: double the timeout after each try, "
                     "sock.settimeout(timeout * 2 ** (attempt - 1)).")
    elif site and "recv" not in text:
        lines.append(f"When the reply came, your code was not in recvfrom() but at {text}. The "
                     "reply waited unread, and the next try took it as its own.")
        if "sleep(" in text or "wait(" in text:
            lines.append("A sleep after a timeout is not backoff: make the receive timeout itself "
                         "grow (sock.settimeout(timeout * 2 ** (attempt - 1))), with no sleep.")
    raise Fail(*lines)


def _waits_problem(waits: list, before: float, t: float, asked_for=(None, None, None),
                   late: float = 0.0) -> str:
    """What is wrong with the waits of the three tries (t, 2t, 4t asked for), or ''. ``before``:
    the time until the first datagram; ``asked_for``: per try, the wait the code asked for if
    known (see _asked_for): judged instead of the wait it got, which the machine may have
    stretched; ``late``: how late the machine woke threads meanwhile (_Lateness), allowed on top."""
    asked = [t, 2 * t, 4 * t]
    waits = [w if a is None else a for w, a in zip(waits, asked_for)]
    up = SLACK_UP * t + late
    low = [a - SLACK_DOWN * t for a in asked]
    high = [a + up for a in asked]
    if all(2 * a - SLACK_DOWN * t <= w < 2 * a + up for w, a in zip(waits, asked)):
        return ("Each wait is twice the one asked for: you double the timeout before the first try. "
                "The first try waits timeout itself: sock.settimeout(timeout * 2 ** (attempt - 1)) "
                "with attempt = 1, 2, 3.")
    w1, w2, w3 = waits
    if w1 < low[0]:
        return f"The first wait should be the timeout, {t:g} s; yours was shorter."
    if w1 >= high[0]:
        return (f"The first wait should be the timeout itself, {t:g} s, with nothing added: the "
                "first try waits timeout, and only the tries after it wait longer.")
    if w2 < low[1]:
        return (f"Each wait should be twice the previous one ({t:g} s, then {2 * t:g} s, then "
                f"{4 * t:g} s before giving up). Double the timeout after each try: "
                "sock.settimeout(timeout * 2 ** (attempt - 1)).")
    if w2 >= high[1]:
        return f"The second wait should be twice the first, {2 * t:g} s."
    if w3 < low[2]:
        return (f"After the third datagram it should still wait {4 * t:g} s (twice the second "
                "wait) for a reply before giving up.")
    if w3 >= high[2]:
        return f"After the third datagram it should wait {4 * t:g} s, then give up and return None."
    if before >= 2 * t + late:
        return (f"Your first datagram left {before:.2f} s after the call began: send it at once; "
                f"the three waits ({t:g}, {2 * t:g} and {4 * t:g} s) are all the time it takes.")
    return ""


def _case_all_lost(ctx, ping_backoff):
    t = TIMEOUT
    srv, handler = _server(ctx, lambda i, d: [])
    probe, sock = _Lateness(ctx), _client(ctx)
    got, started, ended = _ping(ctx, ping_backoff, sock, srv.address, 3, handler)
    times = [at for at, _, _ in handler.arrivals]
    if len(times) != 3:
        raise Fail(f"the server dropped every datagram; with tries=3 your ping_backoff sent "
                   f"{plural(len(times), 'datagram')}, expected 3.")
    if got is not None:
        raise Fail(f"no reply ever came; your ping_backoff returned {got!r}, expected None.")
    tries = _tries(sock.calls, ended)
    if len(tries) == 3:  # measured where the learner's code sent, not where the server saw it
        times = [at for at, _, _ in tries]
        asked_for = _asked_for(tries, [t, 2 * t, 4 * t], t, probe.allowance,
                               _outside(sock.calls, sock.queued))
    else:  # e.g. a sendmsg(): only the server saw the datagrams
        asked_for = [None] * 3
    waits = [times[1] - times[0], times[2] - times[1], ended - times[2]]
    problem = _waits_problem(waits, times[0] - started, t, asked_for, probe.allowance)
    if problem:
        raise Fail(f"the server dropped every datagram; your ping_backoff waited "
                   f"{waits[0]:.2f} s, {waits[1]:.2f} s, then {waits[2]:.2f} s before giving up: "
                   f"asked for {t:g} s, {2 * t:g} s and {4 * t:g} s (timeout={t:g}, doubled after "
                   "each try).", problem)
    wall = ended - started
    if handler.cpu is None:
        return
    busy = kept_cpu_busy(handler.cpu, handler.queued, wall)
    if busy:
        raise Fail(f"your ping_backoff kept the CPU busy while it waited: {busy}. A loop that asks a "
                   "non-blocking socket again and again burns a CPU core for nothing. Let the kernel "
                   "wake your code instead: "
                   "sock.settimeout(...) and recvfrom(), or select() with a timeout.")


STALE_THEN = 0.4  # the right reply comes this fraction of the first wait after the stale one


def _case_stale_reply(ctx, ping_backoff):
    # The first try gets a late reply to an *earlier* ping, then its own reply, well within its
    # timeout: only code that keeps waiting after the stale one returns 1.
    t, then = LATE_TIMEOUT, STALE_THEN * LATE_TIMEOUT
    for _ in range(ATTEMPTS):
        srv, handler = _server(ctx, lambda i, d: [b"ping 99", (then, d)] if i == 1 else [d])
        sock = _client(ctx)
        got, _, ended = _ping(ctx, ping_backoff, sock, srv.address, 4, handler, timeout=t)
        if got == 1 and handler.late and handler.late[0][0] <= ended:
            return
        if not _reply_was_late(handler, sock, 0, then, t):
            break
    else:
        raise Fail(*BUSY)
    if got == 1:  # returned before its own reply was even sent
        raise Fail("the first reply was b'ping 99', a late answer to another ping; your ping_backoff "
                   "returned 1 as if it were the answer. Compare the reply with the request and "
                   "keep waiting if they differ.")
    if got == 2 and len(handler.arrivals) >= 2 and handler.arrivals[1][0] - handler.arrivals[0][0] < then:
        raise Fail(f"the first reply was b'ping 99', a late answer to another ping, and the right "
                   f"one came {then:g} s later, within the first try's timeout ({t:g} s). Your code "
                   "sent again as soon as the stale reply came: keep waiting in recvfrom() for the "
                   "right reply until the timeout (an inner `while True:` that skips other replies).")
    raise Fail(f"the first try got a stale reply (b'ping 99'), then its own {then:g} s later, within "
               f"its timeout ({t:g} s); your ping_backoff returned {got!r}, expected 1.")


def _case_one_try(ctx, ping_backoff):
    srv, handler = _server(ctx, lambda i, d: [])
    got, _, _ = _ping(ctx, ping_backoff, _client(ctx), srv.address, 5, handler, tries=1)
    n = len(handler.arrivals)
    if n != 1:
        raise Fail(f"with tries=1 your ping_backoff sent {plural(n, 'datagram')}; expected 1. Use the "
                   "tries argument for the number of tries.")
    if got is not None:
        raise Fail(f"with tries=1 and no reply your ping_backoff returned {got!r}, expected None.")


PING_BACKOFF = Exercise(
    id="07.1",
    title="ping_backoff",
    anchor="3. **Exponential backoff.**",
    names=("ping_backoff",),
    limit=3.0,
    task=f"""3. **Exponential backoff** *(exercise 07.1, checked below)*. Write `ping_backoff(sock, address,
seq, timeout=0.1, tries=3)`: like `ping()` above, it sends `b"ping %d" % seq` and returns the
number of tries once the matching reply arrives (or `None` after `tries` tries); but each retry waits
twice as long as the previous one: 0.1 s, 0.2 s, 0.4 s with the default `timeout=0.1`. The check
passes its own `timeout` (with `timeout={TIMEOUT:g}` the waits are {TIMEOUT:g} s, \
{2 * TIMEOUT:g} s, {4 * TIMEOUT:g} s) and runs it
against servers that answer at once, drop the first datagram, drop everything (with 3 tries and
with 1), or send a stale reply before the right one. Why do real protocols back off like this?""",
    hints=[
        "Start from `ping()`: the loop over `attempt`, `sendto`, then `recvfrom` in a `try:` that "
        "catches `TimeoutError`. Only the timeout changes from try to try.",
        "Set the timeout inside the loop, before each `recvfrom`: "
        "`sock.settimeout(timeout * 2 ** (attempt - 1))` for attempt = 1, 2, 3. The wait is the "
        "receive timeout itself: a sleep after a timeout would miss a reply that comes "
        "meanwhile.",
        "Keep the inner `while True:` that skips replies that are not `== request`: a late reply to "
        "another ping is not your answer.",
    ],
    cases=[
        Case("a server that answers at once: 1 try", _case_answered),
        Case("the first datagram is dropped: 2 tries", _case_first_lost),
        Case(f"everything is dropped: None, after waiting {TIMEOUT:g}, {2 * TIMEOUT:g} and "
             f"{4 * TIMEOUT:g} s (called with timeout={TIMEOUT:g})", _case_all_lost),
        Case("a stale reply (to another ping) is not the answer: it keeps waiting", _case_stale_reply),
        Case("tries=1: one datagram, then None", _case_one_try),
    ],
)

EXERCISES = [PING_BACKOFF]
