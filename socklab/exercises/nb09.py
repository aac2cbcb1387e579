"""Notebook 09 (many clients): a thread-per-connection server that a slow client cannot hold up."""
from __future__ import annotations

import socket
import sys
import threading
import time

from ..errors import _instruction
from .core import (Case, Exercise, Fail, NotAttempted, _learner_site, cpu_queued, is_learner_file,
                   kept_cpu_busy, raised_lines, site_text, started_by_learner)
from .peers import plural, read_all, wait_for, waiting_in

EOF_LOOPS = 20  # recv() calls that returned b'' on one connection: a loop that will never end
FINISHING = 0.25  # s a client thread may take to end after serve() returned (see _start)
IDLE = 0.3  # s with no client at the start of _case_one: longer than the usual accept() timeouts


class _Conn(socket.socket):
    """A connection the learner's serve() accepted: a plain socket.socket that also counts the
    reads that returned nothing (b'': the client has closed its side), and knows its client."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eofs = 0
        self.peer = None

    def recv(self, *args, **kwargs):
        data = super().recv(*args, **kwargs)
        if not data:
            self.eofs += 1
        return data

    def recv_into(self, buffer, nbytes=0, flags=0):  # also what makefile() reads with
        n = super().recv_into(buffer, nbytes, flags)
        if not n and (nbytes or memoryview(buffer).nbytes):
            self.eofs += 1
        return n


class _Listener(socket.socket):
    """The listening socket handed to serve(): its accept() gives _Conn sockets, kept in
    ``accepted``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accepted: list = []
        self.timeouts = 0  # accept() calls that timed out

    def accept(self):  # socket.socket.accept, making a _Conn
        try:
            fd, addr = self._accept()
        except TimeoutError:
            self.timeouts += 1
            raise
        conn = _Conn(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        conn.peer = addr
        self.accepted.append(conn)
        return conn, addr


def _listener(ctx) -> socket.socket:
    lst = ctx.own(_Listener())
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    return lst


JOINS = (("threading.py", "join"),)  # where a serve() that joins its client threads waits
# Where a serve() waits for the next client: in accept() (our _Listener's, or socket.py's for a
# listener it made itself) or in a selector.
ACCEPTS = ((__file__.rsplit("/", 1)[-1], "accept"), ("socket.py", "accept"),
           ("selectors.py", "select"))


# Waits that the learner's own code may call to wait for a client, read from the call its
# innermost frame is making: select.select() and a sleep() are C functions, with no frame.
WAIT_CALLS = frozenset({"select", "poll", "epoll", "accept", "sleep", "wait"})


def _waiting_in(thread, library: tuple, calls: frozenset) -> str | None:
    """What ``thread`` waits in right now, read from its stack: a function of ``library`` (file
    name ending, function name) it is inside, or else a call of ``calls`` that the innermost frame
    of the learner's code is making (a C function such as select.select() has no frame)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if any(code.co_filename.endswith(f) and code.co_name == n for f, n in library):
            return code.co_name
        if is_learner_file(code.co_filename):
            try:
                _, callee = _instruction(code, frame.f_lasti)
            except Exception:  # bytecode this Python's dis cannot read: not known to wait
                return None
            return callee if callee in calls else None
        frame = frame.f_back  # e.g. threading.py's Event.wait(), called by the learner's code
    return None


def _waiting_for_a_client(thread) -> str | None:
    """What serve()'s thread waits in for the next client right now ('accept', 'select', ...)."""
    return _waiting_in(thread, ACCEPTS, WAIT_CALLS)


# Where serve() may wait for its client threads: join(), or a wait of its own (a Condition, an
# Event, a sleep between looks at is_alive()).
THREAD_WAITS = frozenset({"join", "wait", "wait_for", "sleep", "acquire"})


def _waiting_for_threads(thread) -> bool:
    """Whether serve()'s thread waits for its client threads right now."""
    return _waiting_in(thread, JOINS, THREAD_WAITS) is not None


def _client_threads(before: set, but=None) -> list:
    """Threads the learner's code started since ``before`` that are still running."""
    return [t for t in threading.enumerate() if t not in before and t is not but and t.is_alive()
            and not t.name.startswith(("socklab", "exercise-")) and started_by_learner(t)]


def _start(ctx, serve, before: set):
    lst = _listener(ctx)
    stop = threading.Event()
    ctx.later(stop.set)
    woken = threading.Event()  # made before the Run starts: its thread may end at once

    def ended(run):
        run.cpu = time.thread_time()  # in serve()'s own thread: the CPU time it used
        run.queued = cpu_queued()     # and the time it waited for a CPU
        # The moment serve() returns: a client thread still running now was not joined. One that
        # ends within a moment had finished its client (it signalled a counter or a Condition
        # that serve() waited for, then ran its last lines): only one still running then counts.
        # (Waited for on an Event, not with join(): _case_stop takes a serve() in join() for one
        # that waits for its client threads.)
        left = _client_threads(before, but=run.thread)
        wait_for(lambda: not any(t.is_alive() for t in left), FINISHING, ctx.stop, 0.005)
        run.left_running = [t for t in left if t.is_alive()]
        if not stop.is_set():
            # serve() ended on its own (the stub raises at once): no reply will come, so wake the
            # clients waiting for one rather than let each wait its full time.
            woken.set()  # before the wake: a connect it refuses knows why (see _connect)
            ctx.wake_own()
    run = ctx.start(serve, lst, stop, what="your serve", on_end=ended)
    run.before, run.listener, run.woken = before, lst, woken
    ctx.serve_run = run
    return lst, stop, run


def _judged_if_ended(case):
    """A case whose own sockets fail (refused, reset) after serve() ended on its own, which woke
    its listener, is judged on that ending: the failure is its consequence."""
    def judged(ctx, serve):
        try:
            case(ctx, serve)
        except OSError:
            run = getattr(ctx, "serve_run", None)
            if run is not None and run.woken.is_set():
                _ended_early(run)
            raise
    return judged


def _connect(ctx, run, address) -> socket.socket:
    _ended_early(run)
    try:
        return ctx.own(socket.create_connection(address, timeout=3))
    except OSError:
        _ended_early(run)  # refused because serve() ended and its listener was woken
        raise


def _ask(ctx, run, address, line: bytes, wait: float = 2.0):
    c = _connect(ctx, run, address)
    c.sendall(line)
    reply = read_all(c, wait, until=b"\n")
    c.close()  # like any client that has its answer (a server may wait for the client to close)
    return reply


def _ended_early(run):
    if run.woken.is_set():  # serve() ended on its own: its Run is done as soon as ended() returns
        run.done.wait(5)
    if run.done.is_set():
        if isinstance(run.error, NotImplementedError):
            raise NotAttempted("your serve")
        if run.error is not None:
            raise Fail(*raised_lines(run.error, "your serve()"))
        raise Fail("your serve() returned before stop was set: keep accepting until stop.is_set().")


NOT_JOINED = "keep the threads in a list and join() each one before serve() returns."


def _stop_and_join(ctx, stop, run, set_stop=True):
    if set_stop:
        _ended_early(run)  # not "after stop was set" for a serve() that had ended before
        # Set stop only once the server waits for the next client (else a server whose accept()
        # has no timeout could see stop just in time, by luck).
        wait_for(lambda: run.done.is_set() or _waiting_for_a_client(run.thread), 2.0, ctx.stop)
        stop.set()
    if not run.wait(2.0):
        busy = _client_threads(run.before, but=run.thread)
        looping = [c.eofs for c in list(run.listener.accepted) if c.eofs >= EOF_LOOPS]
        if looping and waiting_in(run.thread, JOINS):
            raise Fail("stop was set, but serve() did not return within 2 s: it waits in join() "
                       "for a client thread that never ends. Its client has closed the connection, "
                       "so its recv() returned b'', and it called recv() again "
                       f"({plural(max(looping), 'time')} so far): after the client has closed, "
                       "recv() returns b'' at once, for ever.",
                       "When recv() returns b'', stop reading: close the connection and return "
                       "(`if not chunk: return` inside the loop).")
        if busy and waiting_in(run.thread, JOINS):
            frames = sys._current_frames()
            at = [_learner_site(frames.get(t.ident)) for t in busy]
            raise Fail(f"stop was set, but serve() did not return within 2 s: it waits in join() "
                       f"for {plural(len(busy), 'client thread')} that did not end, although every "
                       "client had its answer and closed its connection.",
                       *[f"One waits at {site_text(a)}" for a in dict.fromkeys(at) if a[1]][:2],
                       "A client thread ends once it has answered, or when recv() returns b'' "
                       "(the client has closed); give each connection a timeout too "
                       "(conn.settimeout(5)), so that no client can hold serve() up for ever.")
        if _waiting_for_a_client(run.thread) in ("select", "poll", "epoll"):
            raise Fail("stop was set, but serve() did not return within 2 s: its select() is waiting "
                       "for a client that never comes. Give select() a timeout "
                       "(select.select([listener], [], [], 0.1), or sel.select(timeout=0.1)), and "
                       "check stop.is_set() each time it returns.")
        raise Fail("stop was set, but serve() did not return within 2 s: accept() is waiting for a "
                   "client that never comes. Give the listener a timeout (listener.settimeout(0.1)), "
                   "catch TimeoutError, and check stop.is_set() each time round.")
    if run.error is not None:
        raise Fail(*raised_lines(run.error, "your serve()", "after stop was set"))
    left = run.left_running
    if left:
        raise Fail(f"serve() returned while {len(left)} client thread(s) were still running: "
                   + NOT_JOINED)
    busy = kept_cpu_busy(run.cpu, getattr(run, "queued", 0.0), run.elapsed)
    if busy:
        raise Fail(f"serve() kept the CPU busy while it waited for clients: {busy}. A loop that asks "
                   "a non-blocking listener again and again burns a CPU core for nothing: let the "
                   "kernel wake serve() instead, "
                   "with listener.settimeout(0.1) and accept(), or select() with a timeout.")


def _thread_error(ctx, run) -> None:
    """A client thread of serve() raised: that is why its client got no (right) reply."""
    # The thread's `with conn:` closes the connection before its exception reaches the hook
    # that records it: wait for those of serve()'s threads that are ending.
    wait_for(lambda: ctx.thread_errors or not _client_threads(run.before, but=run.thread),
             0.5, ctx.stop)
    if ctx.thread_errors:
        ctx.thread_errors_shown = True
        raise Fail(*raised_lines(ctx.thread_errors[0], "a client thread of your serve()"))


def _case_one(ctx, serve):
    before = set(threading.enumerate())
    lst, stop, run = _start(ctx, serve, before)
    # No client for a while: a serve() that ends at its first accept() timeout (`except OSError:
    # break`: TimeoutError is an OSError) must show it. Over once serve() is back in accept()
    # after a timeout, or after IDLE s (a serve() waiting in select() has no accept() timeouts).
    wait_for(lambda: run.done.is_set()
             or (lst.timeouts > 0 and _waiting_for_a_client(run.thread) is not None), IDLE, ctx.stop)
    if run.done.is_set() and run.error is None and lst.timeouts:
        raise Fail("your serve() returned before stop was set, after its accept() timed out with no "
                   "client yet. A timeout only means 'no client this time': catch TimeoutError and "
                   "go round the loop again (TimeoutError is an OSError, so `except OSError: break` "
                   "ends serve() at the first timeout).")
    reply, how = _ask(ctx, run, lst.getsockname(), b"hello\n")
    _ended_early(run)
    if reply != b"done: hello\n":
        _thread_error(ctx, run)
        raise Fail(f"a client sent b'hello\\n' and got {reply!r}"
                   f"{' (nothing within 2 s)' if not reply else ''}; expected b'done: hello\\n'.")
    _stop_and_join(ctx, stop, run)


def _case_slow_client(ctx, serve):
    before = set(threading.enumerate())
    lst, stop, run = _start(ctx, serve, before)
    slow = _connect(ctx, run, lst.getsockname())
    slow.sendall(b"slo")                 # half a line ... and the rest only later (the accept
                                         # queue is first in, first out: it is accepted first)
    for i in range(3):
        reply, how = _ask(ctx, run, lst.getsockname(), b"quick %d\n" % i, wait=1.5)
        _ended_early(run)
        want = b"done: quick %d\n" % i
        if reply == want:
            continue
        _thread_error(ctx, run)
        if b"slo" in reply:
            raise Fail(f"client {i + 2} sent b'quick {i}\\n' and got {reply!r}: it holds bytes of "
                       "client 1's unfinished line (b'slo'). Each connection needs its own buffer: "
                       "a local variable of the function that serves it.")
        if reply or how != "timeout":
            raise Fail(f"client {i + 2} sent b'quick {i}\\n' and got {reply!r}"
                       f"{' before the connection closed' if how in ('closed', 'reset') else ''}; "
                       f"expected {want!r}.")
        raise Fail(f"client {i + 2} got no reply within 1.5 s while client 1 was still sending its "
                   "line: your server serves one client at a time, so one slow client holds up "
                   "everyone. Serve each connection in its own thread: "
                   "threading.Thread(target=handle, args=(conn,)).start().")
    slow.sendall(b"w\n")
    reply, _ = read_all(slow, 2, until=b"\n")
    slow.close()
    if reply != b"done: slow\n":
        raise Fail(f"the slow client's line arrived in two pieces (b'slo', b'w\\n'); it got {reply!r}. "
                   "Read until b'\\n' (a line can take several recv() calls).")
    _stop_and_join(ctx, stop, run)


def _case_stop(ctx, serve):
    before = set(threading.enumerate())
    lst, stop, run = _start(ctx, serve, before)
    replies = []
    for i in range(5):
        replies.append(_ask(ctx, run, lst.getsockname(), b"n%d\n" % i)[0])
    _ended_early(run)
    bad = [r for i, r in enumerate(replies) if r != b"done: n%d\n" % i]
    if bad:
        raise Fail(f"5 clients one after the other: {len(bad)} got a wrong reply (e.g. {bad[0]!r}).")
    # One more client is still sending its line when stop is set: serve() must wait for its thread.
    last = _connect(ctx, run, lst.getsockname())
    last.sendall(b"la")
    # The queue is first in, first out: once the client behind it has its reply, serve() has
    # accepted `last` and handed it to a thread.
    reply, _ = _ask(ctx, run, lst.getsockname(), b"n5\n")
    _ended_early(run)
    if reply != b"done: n5\n":
        raise Fail(f"a client sent b'n5\\n' while another one was still sending its line, and got "
                   f"{reply!r} within 2 s; expected b'done: n5\\n'. Serve each connection in its "
                   "own thread.")
    stop.set()
    wait_for(lambda: run.done.is_set() or _waiting_for_threads(run.thread), 2.0, ctx.stop)
    returned = run.done.is_set()
    last.sendall(b"st\n")
    got, _ = read_all(last, 2, until=b"\n")
    last.close()
    if returned and got == b"done: last\n":
        raise Fail("stop was set while a client was still sending its line; serve() returned at "
                   "once, and that client's thread answered it afterwards: serve() did not wait for "
                   "its client threads. " + NOT_JOINED[0].upper() + NOT_JOINED[1:])
    _stop_and_join(ctx, stop, run, set_stop=False)


def _case_closes_early(ctx, serve):
    before = set(threading.enumerate())
    lst, stop, run = _start(ctx, serve, before)
    c = _connect(ctx, run, lst.getsockname())
    c.sendall(b"no newline")
    c.shutdown(socket.SHUT_WR)  # ... and no more: the line will never be finished
    me = c.getsockname()

    def looping() -> list:
        return [conn for conn in list(lst.accepted) if conn.peer == me and conn.eofs >= EOF_LOOPS]
    reply, how = read_all(c, 2, stalled=lambda: bool(looping()))
    _ended_early(run)
    if how == "stalled":
        n = max(conn.eofs for conn in looping())
        raise Fail("a client sent b'no newline' and shut down its sending side, so its line will "
                   f"never be finished; your handler's recv() returned b'' and it called recv() "
                   f"again ({plural(n, 'time')} so far). After the client has closed, recv() "
                   "returns b'' at once, for ever: this loop never ends, and serve() could never "
                   "join its thread.",
                   "When recv() returns b'', stop reading: close the connection and return "
                   "(`if not chunk: return` inside the loop).")
    if how == "timeout":
        raise Fail("a client sent b'no newline' and shut down its sending side, so its line will "
                   "never be finished; 2 s later your server still had not closed that connection. "
                   "When recv() returns b'', the client has closed: close the connection and "
                   "return from the handler.")
    c.close()
    _stop_and_join(ctx, stop, run)


THREADED_SERVE = Exercise(
    id="09.1",
    title="serve (a thread per client)",
    names=("serve",),
    limit=8.0,
    anchor="2. **Your own threaded server** *(exercise 09.1)*.",
    close_tip="Each connection is closed by its thread when it is done: `with conn:` around the body "
              "of your handler.",
    task="""2. **Your own threaded server** *(exercise 09.1, checked below)*. Write `serve(listener, stop)`:
accept clients on the listening socket `listener` until the `threading.Event` `stop` is set, and
serve each one in its own thread: read one line (until `b"\\n"`), answer `b"done: " + line`, close.
Give `listener` a timeout so you notice `stop`, and join your client threads before returning. The
check sends one client, then a slow client (half a line, the rest later) with three quick ones
behind it, then five in a row, then a client that shuts down before its line ends (its thread must
end too), and stops your server each time; a `serve()` that keeps the CPU busy while it waits (a
loop that asks a non-blocking listener again and again) fails. Then time it yourself: run it in a
`threading.Thread`, time 20 clients with `total, results = concurrency.run_clients(listener.getsockname(), 20)`,
then set `stop` and join the thread. Do the same with a server that serves one client at a time:
with no work to wait for, threads buy nothing (starting one costs more than answering). Then give
each client 20 ms of waiting (`stop.wait(0.02)` in `handle`, standing in for a disk or a database)
and compare again: threads pay off when clients wait.""",
    hints=[
        "The accept loop: `listener.settimeout(0.1)`, then `while not stop.is_set():` with "
        "`try: conn, _ = listener.accept()` / `except TimeoutError: continue`.",
        "For each connection: `t = threading.Thread(target=handle, args=(conn,))`, `t.start()`, "
        "`threads.append(t)`; after the loop, `for t in threads: t.join()`.",
        "`handle(conn)`: `with conn:` give it a timeout, read with `recv()` until `b'\\n' in buf`, "
        "then `conn.sendall(b'done: ' + buf)`. If `recv()` returns `b''`, the client has closed "
        "before finishing its line: return.",
    ],
    cases=[
        Case("one client", _judged_if_ended(_case_one)),
        Case("a slow client does not hold up three quick ones",
             _judged_if_ended(_case_slow_client)),
        Case("five clients in a row, then stop: serve() returns and joins its threads",
             _judged_if_ended(_case_stop)),
        Case("a client that closes before its line ends: its thread ends too",
             _judged_if_ended(_case_closes_early)),
    ],
)

EXERCISES = [THREADED_SERVE]
