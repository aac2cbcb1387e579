"""Notebook 10 (errors): connect_with_retry, which retries only what waiting can fix."""
from __future__ import annotations

import errno
import socket
from time import monotonic  # bound here: learner code replacing time.monotonic cannot stop our clock

from ..errors import explain
from .core import Case, Exercise, Fail, LearnerRaised, site_text
from .nb02 import _returned_socket
from .peers import plural, read_all

# An address whose connect() fails at once, locally, with no packet sent: a link-local IPv6 address
# needs an interface (scope id), so Linux answers EINVAL; without IPv6, socket() fails instead.
UNFIXABLE = ("fe80::1", 9)
DELAY = 0.05       # s between tries in the cases that retry
LATE = 0.1         # s before the refusing server of the "late" case starts listening
ROOM_AFTER = 0.12  # s before the full queue of the "queue full" case gets room


def _refusing(ctx) -> socket.socket:
    """A port that refuses connections: bound, not (yet) listening."""
    s = ctx.own(socket.socket())
    s.bind(("127.0.0.1", 0))
    return s


CONNECTED = ("return the connected socket itself (what socket.create_connection() returned), not "
             "its address and not a tuple: the caller sends and receives on it, and closes it.")


def _returned(ctx, value):
    return _returned_socket(ctx, value, "connect_with_retry", instead=CONNECTED)


def _connected(ctx, value, address):
    sock = _returned(ctx, value)
    try:
        peer = sock.getpeername()
    except OSError:
        raise Fail("connect_with_retry returned a socket that is not connected: return the socket "
                   "whose connect() succeeded.") from None
    if tuple(peer[:2]) != tuple(address[:2]):
        raise Fail(f"the socket you returned is connected to {peer!r}, not to {address!r}.")
    return sock


def _call(ctx, fn, address, tries, delay, timeout, limit=None):
    t0 = monotonic()
    try:
        value = ctx.call(fn, address, tries, delay, timeout, limit=limit,
                         what=f"your connect_with_retry(..., tries={tries}, delay={delay}, "
                              f"timeout={timeout})",
                         why="is a connect() waiting without a timeout? pass timeout to "
                             "socket.create_connection(address, timeout=timeout)")
    except LearnerRaised as e:
        e.elapsed = monotonic() - t0
        _judge_connects(ctx, e.error)
        raise
    _judge_connects(ctx)
    return value, monotonic() - t0


def _judge_connects(ctx, error=None):
    """A connect() with no timeout, or a second connect() on one socket: wrong whatever the case
    saw (a blocking connect can get in by luck, on the kernel's SYN retry 1 s later)."""
    untimed = [c for c in ctx.connects if c.timeout is None]
    if untimed:
        raise Fail("your connect_with_retry called connect() with no timeout, at "
                   f"{site_text(untimed[0].site)}.",
                   "Without a timeout, a connect() to a server whose accept queue is full waits "
                   "while Linux resends the handshake (after 1 s, then again and again, for about "
                   "two minutes). Pass the timeout on: socket.create_connection(address, "
                   "timeout=timeout).")
    seen = set()
    for c in ctx.connects:
        if id(c.sock) in seen:
            raised = f" (it raised {type(error).__name__})" if error is not None else ""
            raise Fail("your connect_with_retry called connect() again on a socket whose connect() "
                       f"had failed{raised}, at {site_text(c.site)}.",
                       "A socket whose connect() failed cannot be connected again: the kernel "
                       "ends that attempt for good (ECONNABORTED), or it is still in progress "
                       "(EALREADY). Make a new socket for each try and close the failed one: "
                       "socket.create_connection(address, timeout=timeout) does both.")
        seen.add(id(c.sock))


def _case_up(ctx, connect_with_retry):
    lst = ctx.own(socket.create_server(("127.0.0.1", 0)))
    lst.settimeout(3)
    value, _ = _call(ctx, connect_with_retry, lst.getsockname(), 3, 0.1, 0.5)
    sock = _connected(ctx, value, lst.getsockname())
    conn, _ = lst.accept()
    ctx.own(conn)
    sock.sendall(b"hi")
    got, _ = read_all(conn, 2, expect=2)
    if got != b"hi":
        raise Fail(f"the server received {got!r} from your socket, expected b'hi'.")


def _case_late(ctx, connect_with_retry):
    srv = _refusing(ctx)
    address = srv.getsockname()

    def start_listening_late():
        if not ctx.stop.wait(LATE):
            srv.listen()
    ctx.spawn(start_listening_late, name="late-listener")
    try:
        value, took = _call(ctx, connect_with_retry, address, 10, DELAY, 0.5)
    except LearnerRaised as e:
        if isinstance(e.error, ConnectionRefusedError):
            raise Fail(f"your connect_with_retry gave up with ConnectionRefusedError after "
                       f"{e.elapsed:.2f} s; the server started listening {LATE:g} s after the first try. "
                       "Catch ConnectionRefusedError, wait `delay` seconds, and try again "
                       "(up to `tries` times).") from None
        raise
    _connected(ctx, value, address)


def _tries(ctx, address) -> int:
    """How many times the learner's code called connect() (or connect_ex()) to ``address``."""
    return sum(1 for c in ctx.connects
               if isinstance(c.address, tuple) and tuple(c.address[:2]) == tuple(address[:2]))


def _case_never(ctx, connect_with_retry):
    address = _refusing(ctx).getsockname()
    tries = 3
    try:
        value, took = _call(ctx, connect_with_retry, address, tries, DELAY, 0.5)
    except LearnerRaised as e:
        if not isinstance(e.error, ConnectionRefusedError):
            raise Fail(f"nobody ever listened; your connect_with_retry raised "
                       f"{type(e.error).__name__}. Raise the last error itself "
                       "(ConnectionRefusedError), so the caller sees why it failed.") from None
        made = _tries(ctx, address)
        if made < tries:
            raise Fail(f"nobody ever listened; with tries={tries} your connect_with_retry tried to "
                       f"connect {plural(made, 'time')} and then raised ConnectionRefusedError.",
                       f"`tries` is the number of tries in all, the first one included: make "
                       f"{tries} connection attempts before giving up (for attempt in "
                       "range(tries), not range(tries - 1) or range(1, tries)).") from None
        if made > tries:
            raise Fail(f"nobody ever listened; with tries={tries} your connect_with_retry tried to "
                       f"connect {plural(made, 'time')}: at most `tries` times in all, the first "
                       "one included (for attempt in range(tries)).") from None
        if e.elapsed < 1.5 * DELAY:
            raise Fail(f"your connect_with_retry raised ConnectionRefusedError after {e.elapsed:.2f} s: "
                       f"with tries=3 and delay={DELAY:g} it should try 3 times, waiting {DELAY:g} s "
                       "between tries.") from None
        return
    if value is None:
        raise Fail("nobody ever listened and your connect_with_retry returned None; after the last "
                   "try, raise the last error (`raise`), so the caller cannot mistake it for a "
                   "socket.")
    _returned(ctx, value)
    raise Fail("nobody ever listened, yet your connect_with_retry returned a socket.")


def _case_queue_full(ctx, connect_with_retry):
    lst = ctx.own(socket.socket())
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)                   # the queue holds one connection ...
    address = lst.getsockname()
    ctx.own(socket.create_connection(address, timeout=2))  # ... and here it is

    def accept_later():
        if ctx.stop.wait(ROOM_AFTER):
            return
        lst.settimeout(0.2)
        while not ctx.stop.is_set():  # make room, then accept whoever comes
            try:
                conn, _ = lst.accept()
                ctx.own(conn)
            except TimeoutError:
                continue
            except OSError:
                return
    ctx.spawn(accept_later, name="slow-acceptor")
    try:
        value, _ = _call(ctx, connect_with_retry, address, 6, DELAY, 0.1, limit=5.0)
    except LearnerRaised as e:
        if isinstance(e.error, TimeoutError) or getattr(e.error, "errno", None) == errno.ETIMEDOUT:
            raise Fail(f"your connect_with_retry gave up with {type(e.error).__name__}: the server's "
                       "accept queue was full, so Linux dropped the handshake and connect() timed "
                       f"out; {ROOM_AFTER:g} s later there was room. A timeout is worth retrying too.") from None
        raise
    _connected(ctx, value, address)


def _case_unfixable(ctx, connect_with_retry):
    t0 = monotonic()
    try:
        socket.create_connection(UNFIXABLE, timeout=0.5).close()
        return  # this machine can connect there (unusual): nothing to test
    except (ConnectionRefusedError, TimeoutError):
        return  # not an unfixable error here
    except OSError as exc:
        probe = exc
    if monotonic() - t0 > 0.3:
        return  # not a quick local failure here: nothing to test
    try:
        value, took = _call(ctx, connect_with_retry, UNFIXABLE, 5, 0.3, 0.5)
    except LearnerRaised as e:
        # One retry alone would wait 0.3 s (four of them 1.2 s); a retry without a pause is still
        # a second connect() to the address.
        made = _tries(ctx, UNFIXABLE)
        if e.elapsed >= 0.5 or made > 1:
            name = errno.errorcode.get(getattr(e.error, "errno", None) or 0, "")
            tried = f"tried {plural(made, 'time')} in" if made > 1 else "took"
            raise Fail(f"connecting to {UNFIXABLE!r} fails at once with {type(e.error).__name__}"
                       f"{' ' + name if name else ''} ({explain(probe).title}) and "
                       f"waiting will not change that, but your connect_with_retry {tried} "
                       f"{e.elapsed:.1f} s: it retried. Retry only ConnectionRefusedError and "
                       "TimeoutError; raise anything else at once.") from None
        return
    if value is None:
        raise Fail(f"connecting to {UNFIXABLE!r} fails with {type(probe).__name__}; your "
                   "connect_with_retry returned None instead of raising it.")
    _returned(ctx, value)


CONNECT_WITH_RETRY = Exercise(
    id="10.1",
    title="connect_with_retry",
    names=("connect_with_retry",),
    limit=4.0,
    anchor="4. **Retry what waiting can fix** *(exercise 10.1)*.",
    close_tip=("A try whose connect() failed leaves a socket too: close it before the next try "
               "(socket.create_connection() closes it for you)."),
    task="""4. **Retry what waiting can fix** *(exercise 10.1, checked below)*. Write
`connect_with_retry(address, tries=5, delay=0.1, timeout=0.5)`: call
`socket.create_connection(address, timeout=timeout)`; on `ConnectionRefusedError` (nobody listens
*yet*) or `TimeoutError` (for example a full accept queue), wait `delay` seconds
(`threading.Event().wait(delay)`) and try again, at most `tries` times in all, then raise the last
error. Any other error (look at its type or `exc.errno`) will not get better by waiting: raise it at
once. Return the connected socket. The check tries a running server, one that starts late, one that
never starts, one whose queue is full for a moment, and an address that can never work.""",
    hints=[
        "A `for attempt in range(tries):` loop around `return socket.create_connection(address, "
        "timeout=timeout)`: a successful try returns straight out of the loop.",
        "Catch only what is worth retrying: `except (ConnectionRefusedError, TimeoutError) as exc:` "
        "keep `last = exc` and pause `delay` seconds (`threading.Event().wait(delay)`). "
        "Anything else is not caught, so it is raised at once.",
        "After the loop, `raise last`: the caller sees the real reason (refused, or timed out), "
        "not None.",
    ],
    cases=[
        Case("a server is listening: connected at once", _case_up),
        Case(f"the server starts listening {LATE:g} s late: retried until connected", _case_late),
        Case("nobody ever listens: ConnectionRefusedError after every try", _case_never),
        Case("a full accept queue (a timeout), then room: retried until connected", _case_queue_full,
             limit=5.0),
        Case("an address that can never work: the error at once, no retries", _case_unfixable),
    ],
)

EXERCISES = [CONNECT_WITH_RETRY]
