"""Notebook 04 (listen and the accept queue): measure how many clients a backlog lets in."""
from __future__ import annotations

import socket

from .core import Case, Exercise, Fail, LearnerRaised, site_text, where
from .nb02 import _listening

MAX_CLIENTS = 32  # the measurement (the checker's and the learner's) never needs more
KEPT_ON = 20      # connects past what the queue holds after which a loop is judged never to end


def measure_capacity(backlog: int, timeout: float) -> int:
    """The checker's own measurement: clients that connect to a listener that never accepts."""
    clients = []
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(backlog)
        try:
            for _ in range(MAX_CLIENTS):
                c = socket.socket()
                clients.append(c)
                c.settimeout(timeout)
                try:
                    c.connect(lst.getsockname())
                except (TimeoutError, BlockingIOError, ConnectionRefusedError):
                    break
        finally:
            for c in clients:
                c.close()
    return len(clients) - 1


def _case_capacity(backlog):
    def case(ctx, queue_capacity):
        timeout = 0.05  # loopback handshakes take microseconds; a dropped SYN waits 1 s
        expected = measure_capacity(backlog, timeout)

        def hopeless():
            # Only expected + 1 connects are needed; this many more means a loop that never stops.
            return len(ctx.connects) > expected + KEPT_ON

        def diagnose():
            n = sum(1 for m in ctx.made if m.left_open())
            untimed = [c for c in ctx.connects if c.timeout is None]
            if hopeless() and not untimed:
                return (f"your code kept connecting: {len(ctx.connects)} clients so far, every "
                        f"connect() with a timeout, and its loop never ended (the queue holds "
                        f"{expected} here). Stop at the first client that cannot connect: its "
                        "connect() raises TimeoutError (break out of the loop there; do not go on "
                        "to the next client).")
            if untimed:
                return ("a connect() without a timeout is waiting. With a full queue Linux drops "
                        "the handshake, and connect() keeps retrying for minutes: call "
                        f"settimeout({timeout}) on each client before connect(), and stop at the "
                        f"first TimeoutError. It waits at {site_text(untimed[-1].site)}")
            return (f"your code has {n} socket(s) open and has not returned. Is a connect() waiting "
                    f"without a timeout? With a full queue Linux drops the handshake, and connect() "
                    f"keeps retrying for minutes: call settimeout({timeout}) on each client before "
                    "connect(), and stop at the first TimeoutError.")
        what = f"your queue_capacity({backlog}, {timeout})"
        try:
            got = ctx.call(queue_capacity, backlog, timeout, what=what, diagnose=diagnose,
                           hopeless=hopeless)
        except LearnerRaised as e:
            if isinstance(e.error, TimeoutError):
                raise Fail(f"{what} raised TimeoutError.", where(e.error),
                           "That timeout is the answer you are measuring, not an error: on Linux a "
                           "full accept queue does not refuse a client (no ConnectionRefusedError); "
                           "it drops the client's handshake, so connect() waits until its timeout "
                           "and raises TimeoutError. Catch TimeoutError around connect() and stop "
                           "counting there.") from None
            raise
        # Judged by the sockets the learner's code created (not by the process's descriptors:
        # other code in the kernel, e.g. a server of an earlier cell, opens sockets meanwhile).
        left = ctx.unclosed()
        listeners = [m for m in left if _listening(m.sock)]
        if listeners:
            raise Fail("your queue_capacity left its listening socket open: close it (a `with` "
                       "block or try/finally) before returning.",
                       *[f"Made at {site_text(m.site)}" for m in listeners[:1]])
        if left:
            raise Fail(f"your queue_capacity left {len(left)} socket(s) open: close every client "
                       "before returning (keep them in a list, close them in a finally: block).",
                       *[f"Made at {site_text(s)}" for s in dict.fromkeys(m.site for m in left)])
        if not isinstance(got, int) or isinstance(got, bool):
            raise Fail(f"return the number of clients that connected (an int); got {got!r:.60}.")
        made = len(ctx.connects)
        # The clients that got in, and the one that did not: fewer calls measured nothing.
        unmeasured = [] if made >= expected + 1 else [
            f"Your code called connect() {'only ' if made else ''}{made} "
            f"time{'s' if made != 1 else ''}: to measure the queue, connect clients until one "
            f"cannot get in ({expected + 1} connect() calls here). The answer must come from the "
            "experiment, not from a formula."]
        if got == expected:
            if not unmeasured:
                return
            raise Fail(f"you returned {got} for listen({backlog}), the number the check measured; "
                       "but not by measuring it.", *unmeasured)
        if got == backlog and expected == backlog + 1:
            raise Fail(f"you returned {got} for listen({backlog}), the backlog itself; but the queue "
                       f"held {expected} clients here. Did you count every client that connected? "
                       "On Linux the queue holds backlog + 1.", *unmeasured)
        if got == expected + 1:
            raise Fail(f"you returned {got} for listen({backlog}); {expected} clients connected here. "
                       "You also counted the client whose connect() timed out.", *unmeasured)
        if got == 0:
            raise Fail(f"you returned 0 for listen({backlog}); {expected} clients connected here. Are "
                       "the clients connecting to the listener's address (lst.getsockname())?",
                       *unmeasured)
        raise Fail(f"you returned {got} for listen({backlog}); {expected} clients connected here "
                   "(measured by the check the same way, a moment ago).", *unmeasured)
    return case


QUEUE_CAPACITY = Exercise(
    id="04.1",
    title="queue_capacity",
    names=("queue_capacity",),
    limit=8.0,
    anchor="**1. Predict, then measure.**",
    task="""**1. Predict, then measure** *(exercise 04.1, checked below)*. Write `queue_capacity(backlog,
timeout)`: a TCP listener on `('127.0.0.1', 0)` with `listen(backlog)` that never calls `accept()`;
connect clients to it one after the other, each with `settimeout(timeout)`, until one cannot connect;
close every socket; return how many clients connected. Predict the answer for backlog 0 and 2 first,
then let the check compare your function with its own measurement. Then predict how many of 8
clients get in with `listen(5)`, and check with the panel:
`panel.run(backlog=5, clients=8, connect_timeout=0.5)`.""",
    hints=[
        "Keep the clients in a list (`clients = []`) so you can close them all at the end. Closing a "
        "client early would not free its place: the kernel keeps the connection in the accept queue "
        "until the server accept()s it.",
        "A client that does not get in does not get an error at once on Linux: its connect() waits. "
        "`c.settimeout(timeout)` before `c.connect(...)` turns that into a TimeoutError after "
        "`timeout` seconds; stop counting there.",
        "Close everything in a `finally:` block: every client, then the listener. Count only the "
        "clients whose connect() succeeded.",
    ],
    cases=[
        Case("listen(0)", _case_capacity(0)),
        Case("listen(2)", _case_capacity(2)),
    ],
)

EXERCISES = [QUEUE_CAPACITY]
