"""Notebook 09 (many clients): a thread-per-connection server that a slow client cannot hold up."""
from __future__ import annotations

import socket
import threading

from .core import Case, Exercise, Fail, NotAttempted, raised_lines, started_by_learner
from .peers import read_all, wait_for, waiting_in


def _listener(ctx) -> socket.socket:
    lst = ctx.own(socket.socket())
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    return lst


JOINS = (("threading.py", "join"),)  # where a serve() that joins its client threads waits


def _client_threads(before: set, but=None) -> list:
    """Threads the learner's code started since ``before`` that are still running."""
    return [t for t in threading.enumerate() if t not in before and t is not but and t.is_alive()
            and not t.name.startswith(("socklab", "exercise-")) and started_by_learner(t)]


def _start(ctx, serve, before: set):
    lst = _listener(ctx)
    stop = threading.Event()
    ctx.later(stop.set)

    def ended(run):
        # The moment serve() returns: a client thread still running now was not joined.
        run.left_running = _client_threads(before, but=run.thread)
        if not stop.is_set():
            # serve() ended on its own (the stub raises at once): no reply will come, so wake the
            # clients waiting for one rather than let each wait its full time.
            ctx.wake_own()
    run = ctx.start(serve, lst, stop, what="your serve", on_end=ended)
    return lst, stop, run


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
    return read_all(c, wait, until=b"\n")


def _ended_early(run):
    if run.done.is_set():
        if isinstance(run.error, NotImplementedError):
            raise NotAttempted("your serve")
        if run.error is not None:
            raise Fail(*raised_lines(run.error, "your serve()"))
        raise Fail("your serve() returned before stop was set: keep accepting until stop.is_set().")


NOT_JOINED = "keep the threads in a list and join() each one before serve() returns."


def _stop_and_join(ctx, stop, run, set_stop=True):
    if set_stop:
        # Set stop only once the server waits for the next client (else a server whose accept()
        # has no timeout could see stop just in time, by luck).
        wait_for(lambda: run.done.is_set() or waiting_in(run.thread), 2.0, ctx.stop)
        stop.set()
    if not run.wait(2.0):
        raise Fail("stop was set, but serve() did not return within 2 s: accept() is waiting for a "
                   "client that never comes. Give the listener a timeout (listener.settimeout(0.1)), "
                   "catch TimeoutError, and check stop.is_set() each time round.")
    if run.error is not None:
        raise Fail(*raised_lines(run.error, "your serve()", "after stop was set"))
    left = run.left_running
    if left:
        raise Fail(f"serve() returned while {len(left)} client thread(s) were still running: "
                   + NOT_JOINED)


def _case_one(ctx, serve):
    before = set(threading.enumerate())
    lst, stop, run = _start(ctx, serve, before)
    reply, how = _ask(ctx, run, lst.getsockname(), b"hello\n")
    _ended_early(run)
    if reply != b"done: hello\n":
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
        if reply != b"done: quick %d\n" % i:
            raise Fail(f"client {i + 2} got {reply!r} within 1.5 s while client 1 was still sending its "
                       "line: your server serves one client at a time, so one slow client holds up "
                       "everyone. Serve each connection in its own thread: "
                       "threading.Thread(target=handle, args=(conn,)).start().")
    slow.sendall(b"w\n")
    reply, _ = read_all(slow, 2, until=b"\n")
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
    wait_for(lambda: run.done.is_set() or waiting_in(run.thread, JOINS), 2.0, ctx.stop)
    returned = run.done.is_set()
    last.sendall(b"st\n")
    got, _ = read_all(last, 2, until=b"\n")
    if returned and got == b"done: last\n":
        raise Fail("stop was set while a client was still sending its line; serve() returned at "
                   "once, and that client's thread answered it afterwards: serve() did not wait for "
                   "its client threads. " + NOT_JOINED[0].upper() + NOT_JOINED[1:])
    _stop_and_join(ctx, stop, run, set_stop=False)


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
behind it, then five in a row, and stops your server. Then time it yourself: run it in a
`threading.Thread`, time it with `concurrency.run_clients(listener.getsockname(), 20)`, then set
`stop`.""",
    hints=[
        "The accept loop: `listener.settimeout(0.1)`, then `while not stop.is_set():` with "
        "`try: conn, _ = listener.accept()` / `except TimeoutError: continue`.",
        "For each connection: `t = threading.Thread(target=handle, args=(conn,))`, `t.start()`, "
        "`threads.append(t)`; after the loop, `for t in threads: t.join()`.",
        "`handle(conn)`: `with conn:` give it a timeout, read with `recv()` until `b'\\n' in buf`, "
        "then `conn.sendall(b'done: ' + buf)`.",
    ],
    cases=[
        Case("one client", _case_one),
        Case("a slow client does not hold up three quick ones", _case_slow_client),
        Case("five clients in a row, then stop: serve() returns and joins its threads", _case_stop),
    ],
)

EXERCISES = [THREADED_SERVE]
