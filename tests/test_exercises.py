"""socklab.exercises: every check accepts the reference solution, rejects each typical wrong
solution with the right feedback, says 'not attempted' for the stub, and ends within its bound on a
solution that never returns, leaving nothing behind (leakcheck).

Reference solutions live in tests/exercise_solutions/ (the instructor notebooks' cells); the
wrong ones below are what learners typically write.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import socklab
import socklab.exercises as exercises
from socklab.exercises import core
from socklab.exercises.core import Context, Fail

from exercise_solutions import load, source

ALL = sorted(exercises.EXERCISES)


def solution_of(ex, ns):
    return [ns[n] for n in ex.names]


# What the notebooks' first cells import: wrong solutions below use it as a learner's would.
NOTEBOOK_IMPORTS = "import errno, os, socket, stat, struct, threading\n"


def run(exercise_id, src=None):
    ex = exercises.get(exercise_id)
    ns = load(exercise_id, NOTEBOOK_IMPORTS + textwrap.dedent(src) if src is not None else None)
    try:
        return exercises.run_check(ex, *solution_of(ex, ns))
    finally:
        for s in ns.get("KEEP", ()):  # what a wrong solution leaked on purpose
            s.close()


# ---- the reference solutions pass, with no leaks

@pytest.mark.parametrize("exercise_id", ALL)
def test_reference_solution_passes(exercise_id, leakcheck):
    res = run(exercise_id)
    assert res.passed, res.text()
    assert res.status == "passed" and all(c.status == "passed" for c in res.cases)
    assert "✅" in res.text() and res.feedback == res.notes


def test_every_notebook_from_02_to_13_has_an_exercise():
    nbs = {ex.notebook for ex in exercises.EXERCISES.values()}
    assert nbs == {f"{n:02d}" for n in range(2, 14)}
    assert len(exercises.by_notebook("05")) == 2 and len(exercises.by_notebook("06")) == 2


@pytest.mark.parametrize("exercise_id", ALL)
def test_exercise_definition_is_complete(exercise_id):
    ex = exercises.get(exercise_id)
    assert ex.title and ex.names and ex.cases and len(ex.hints) >= 2
    assert f"exercise {ex.id}" in ex.task
    src = source(exercise_id)
    assert src.count("### BEGIN SOLUTION") == src.count("### END SOLUTION") >= 1
    for name in ex.names:
        assert f"def {name}(" in src


# ---- the stub of the student version: "not attempted", kindly

def stub_source(exercise_id):
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
    from classroom import strip_solutions
    return strip_solutions(source(exercise_id))


@pytest.mark.parametrize("exercise_id", ALL)
def test_student_stub_is_not_attempted(exercise_id, leakcheck):
    res = run(exercise_id, stub_source(exercise_id))
    assert res.status == "not attempted", res.text()
    assert not res.passed
    assert "not attempted yet" in res.text() and "NotImplementedError" in res.text()


@pytest.mark.parametrize("body, says", [
    ("raise NotImplementedError()", "not attempted yet"),
    ("return", "returned before stop was set"),
    ("raise ValueError('oops')", "raised ValueError: oops"),
])
def test_serve_that_ends_at_once_is_judged_without_waiting_for_replies(body, says, monkeypatch,
                                                                       leakcheck):
    """09.1: when serve() ends before stop is set, the check's clients are woken at once; before,
    each waited out its 2 s for a reply that could not come (13 s for the untouched stub)."""
    from socklab.exercises import nb09
    hows = []

    def spy(*args, **kwargs):
        data, how = read_all(*args, **kwargs)
        hows.append(how)
        return data, how
    read_all = nb09.read_all
    monkeypatch.setattr(nb09, "read_all", spy)
    res = run("09.1", f"def serve(listener, stop):\n    {body}\n")
    assert not res.passed and says in res.text(), res.text()
    assert "timeout" not in hows, hows


@pytest.mark.parametrize("wait, says", [
    ("select.select([sock], [], [], 10)", "select"),
    ("stop.wait(10)", "wait"),  # Event.wait(): frames of threading.py, then the learner's
])
def test_a_serve_waiting_in_a_call_of_its_own_is_seen_waiting(wait, says, leakcheck):
    """09.1 sets stop once serve() waits for the next client. Read from the learner's frame for
    select.select() (a C function: no frame of its own), also once its call site is hot: Python
    3.11 then makes the call in PRECALL, and the check saw no call at all and waited 2 s a case."""
    from socklab.exercises.nb09 import _waiting_for_a_client
    from socklab.exercises.peers import wait_for
    ns = load("09.1", f"""
import select, time
def serve(sock, warm, stop):
    for _ in range(200):  # the call site gets hot
        select.select([sock], [], [], 0)
    warm.set()
    {wait}
""")
    a, b = socket.socketpair()
    warm, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=ns["serve"], args=(a, warm, stop), name="t-learner-serve")
    t.start()
    try:
        assert warm.wait(5)
        assert wait_for(lambda: _waiting_for_a_client(t) == says, 5, stop), _waiting_for_a_client(t)
    finally:
        stop.set()
        b.send(b"x")  # ends the select()
        t.join(15)
        a.close()
        b.close()


@pytest.mark.parametrize("wait", ["idle.wait_for(stop.is_set, 10)", "stop.wait(10)",
                                  "worker.join(10)"])
def test_a_serve_waiting_for_its_client_threads_is_seen_waiting(wait, leakcheck):
    """09.1 waits until serve() waits for its client threads; a Condition or an Event was not
    recognised, and every such right solution took 2 s more per check."""
    from socklab.exercises.nb09 import _waiting_for_threads
    from socklab.exercises.peers import wait_for
    ns = load("09.1", f"""
def serve(stop, worker, idle):
    with idle:
        {wait}
""")
    stop, idle = threading.Event(), threading.Condition()
    worker = threading.Thread(target=stop.wait, args=(10,), name="t-client-thread")
    worker.start()
    t = threading.Thread(target=ns["serve"], args=(stop, worker, idle), name="t-learner-serve")
    t.start()
    try:
        assert wait_for(lambda: _waiting_for_threads(t), 5, threading.Event())
    finally:
        stop.set()
        with idle:
            idle.notify_all()
        t.join(15)
        worker.join(15)


def test_read_all_returns_once_the_peer_is_stalled_with_what_it_sent():
    """read_all(stalled=...): judged as soon as nothing more can come, with every byte already
    sent, even bytes that arrive at the moment it decides (the peer's last sendall before it
    stalled)."""
    from socklab.exercises.peers import read_all
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"first ")
        looks = []

        def stalled():
            looks.append(1)
            if len(looks) == 1:
                b.sendall(b"and last")  # just before the peer blocks for good
                return True
            return False
        data, how = read_all(a, 30, stalled=stalled)
        assert (data, how) == (b"first and last", "stalled")
        b.sendall(b"more")
        data, how = read_all(a, 0.1, stalled=lambda: False)  # never stalled: the full wait
        assert (data, how) == (b"more", "timeout")
        b.close()
        assert read_all(a, 30, stalled=lambda: True) == (b"", "closed")


def test_blocked_in_recv_only_inside_the_os_call():
    from socklab.exercises.peers import blocked_in_recv
    a, b = socket.socketpair()
    ta = socklab.trace.TracedSocket(a, socklab.Trace(), "server")
    got, proceed = [], threading.Event()

    def handler():
        got.append(ta.recv(100))
        proceed.wait(10)  # after recv(): busy with the data, not waiting for more
    t = threading.Thread(target=handler)
    t.start()
    try:
        assert _until(lambda: blocked_in_recv(t))
        b.sendall(b"x")
        assert _until(lambda: got == [b"x"])
        assert not blocked_in_recv(t) and t.is_alive()
    finally:
        proceed.set()
        t.join(10)
        ta.close()
        b.close()
    assert not blocked_in_recv(threading.current_thread())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ is Linux's")
def test_unacked_counts_what_the_peer_has_not_acknowledged():
    from socklab.exercises.peers import unacked
    with socket.create_server(("127.0.0.1", 0)) as lst, \
            socket.create_connection(lst.getsockname(), timeout=5) as c:
        conn, _ = lst.accept()
        with conn:
            conn.sendall(b"hello")
            assert c.recv(5) == b"hello"
            assert _until(lambda: unacked(conn) == 0)   # the ACK arrives, then nothing is pending
            conn.setblocking(False)
            try:
                while True:                              # until both buffers are full
                    conn.send(bytes(65536))
            except BlockingIOError:
                pass
            assert unacked(conn) > 0                     # the reader's window is closed: unacked
    assert unacked(conn) is None                         # closed: nothing to read


def _until(pred, timeout=10.0) -> bool:
    from socklab.exercises.peers import wait_for
    return wait_for(pred, timeout, threading.Event())


def test_missing_or_wrong_kind_of_solution():
    ex = exercises.get("05.1")
    assert exercises.run_check(ex, None).status == "not attempted"
    res = exercises.run_check(ex, 42)
    assert res.status == "failed" and "should be a function" in res.text()
    res = exercises.run_check(exercises.get("06.1"), lambda s, d: None)
    assert "takes 2 solution arguments" in res.text()


# ---- typical wrong solutions, each with its feedback

# An HTTP client that ignores Content-Length: it reads until the server is quiet for QUIET s.
QUIET_HTTP_GET = """
def http_get(address, path):
    s = socket.create_connection(address, timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
    s.settimeout(QUIET)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        pass
    s.close()
    head, body = data.split(b"\\r\\n\\r\\n", 1)
    return int(head.split(b" ")[1]), body
"""


# An HTTP client that sends REQUEST (an f-string) and reads until the server closes.
READ_TO_END_HTTP_GET = """
def http_get(address, path):
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(REQUEST.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    return int(head.split(b" ")[1]), body
"""


# 09.1 served with select.select(): waits in a C function, which has no Python frame.
SELECT_SERVE = """
    import select
    def serve(listener, stop):
        def handle(conn):
            with conn:
                conn.settimeout(5)
                buf = b""
                while b"\\n" not in buf:
                    chunk = conn.recv(1024)
                    if not chunk:
                        return
                    buf += chunk
                conn.sendall(b"done: " + buf)
        threads = []
        while not stop.is_set():
            if select.select([listener], [], [], 0.1)[0]:
                conn, _ = listener.accept()
                t = threading.Thread(target=handle, args=(conn,))
                t.start()
                threads.append(t)
        for t in threads:
            t.join()
"""


# A non-blocking listener, polled: serve() waits in time.sleep() between tries.
# 09.1 with a non-blocking listener, polled: serve() waits in time.sleep() between tries (right);
# without the sleep it asks again at once, a busy loop (wrong).
OTHER_RIGHT_NONBLOCKING = """
    import time
    def serve(listener, stop):
        def handle(conn):
            with conn:
                conn.settimeout(5)
                buf = b""
                while b"\\n" not in buf:
                    chunk = conn.recv(1024)
                    if not chunk:
                        return
                    buf += chunk
                conn.sendall(b"done: " + buf)
        threads = []
        listener.setblocking(False)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                time.sleep(0.01)
                continue
            t = threading.Thread(target=handle, args=(conn,))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
"""


WRONG = {
    "02.1": [
        ("not listening", """
            def make_server():
                s = socket.socket(); s.bind(("127.0.0.1", 0)); return s
         """, "not listening"),
        ("all interfaces", """
            def make_server():
                s = socket.socket(); s.bind(("", 0)); s.listen(); return s
         """, "all interfaces"),
        ("fixed port", """
            def make_server():
                s = socket.socket(); s.bind(("127.0.0.1", 45678)); s.listen(); return s
         """, "Address already in use"),
        ("closed by a with block", """
            def make_server():
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0)); s.listen(); return s
         """, "already closed"),
        ("no return", """
            def make_server():
                s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
         """, "returned None"),
        ("UDP", """
            def make_server():
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); return s
         """, "SOCK_DGRAM"),
    ],
    "03.1": [
        ("always unlinks", """
            def bind_unix(path):
                if os.path.exists(path): os.unlink(path)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(); return s
         """, "took it over"),
        ("never unlinks", """
            def bind_unix(path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(); return s
         """, "Address already in use"),
        ("any existing file is live", """
            def bind_unix(path):
                if os.path.exists(path): raise FileExistsError(path)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(); return s
         """, "should be removed"),
        ("no listen", """
            def bind_unix(path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); return s
         """, "not listening"),
        ("refused means stale, even for a regular file", """
            def bind_unix(path):
                if os.path.exists(path):
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                        probe.settimeout(1)
                        try:
                            probe.connect(path)
                        except ConnectionRefusedError:
                            os.unlink(path)
                        else:
                            raise OSError(errno.EADDRINUSE, "live", path)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(); return s
         """, "regular file, and your bind_unix deleted it"),
    ],
    "03.2": [
        ("no SO_REUSEADDR", """
            def reusable_server(port):
                s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(); return s
         """, "SO_REUSEADDR is not set"),
        ("SO_REUSEADDR after bind", """
            def reusable_server(port):
                s = socket.socket(); s.bind(("127.0.0.1", port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.listen(); return s
         """, "*before* bind()"),
        ("falls back to another port", """
            def reusable_server(port):
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    s.bind(("127.0.0.1", 0))
                s.listen(); return s
         """, "instead of raising"),
    ],
    "04.1": [
        # the prediction alone, returned without any experiment
        ("a formula, no experiment", """
            def queue_capacity(backlog, timeout=0.5):
                return backlog + 1
         """, "Your code called connect() 0 times"),
        ("returns the backlog", """
            def queue_capacity(backlog, timeout=0.5):
                return backlog
         """, "the backlog itself"),
        ("counts the client that timed out", """
            def queue_capacity(backlog, timeout=0.5):
                clients = []
                with socket.socket() as lst:
                    lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                    try:
                        while True:
                            c = socket.socket(); c.settimeout(timeout); clients.append(c)
                            try:
                                c.connect(lst.getsockname())
                            except TimeoutError:
                                break
                    finally:
                        for c in clients: c.close()
                return len(clients)
         """, "also counted the client whose connect() timed out"),
        ("leaves the listener open", """
            KEEP = []
            def queue_capacity(backlog, timeout=0.5):
                lst = socket.socket(); KEEP.append(lst)
                lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                n = 0
                clients = []
                while True:
                    c = socket.socket(); c.settimeout(timeout)
                    try:
                        c.connect(lst.getsockname())
                    except TimeoutError:
                        c.close(); break
                    clients.append(c); n += 1
                for c in clients: c.close()
                return n
         """, "left its listening socket open"),
        # Python's refcounting closed forgotten sockets on return, so the fd count saw none open
        ("closes nothing", """
            def queue_capacity(backlog, timeout=0.5):
                lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                n = 0
                while True:
                    c = socket.socket(); c.settimeout(timeout)
                    try:
                        c.connect(lst.getsockname())
                    except TimeoutError:
                        break
                    n += 1
                return n
         """, "left its listening socket open"),
        ("closes the listener, not the clients", """
            def queue_capacity(backlog, timeout=0.5):
                n = 0
                with socket.socket() as lst:
                    lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                    while True:
                        c = socket.socket(); c.settimeout(timeout)
                        try:
                            c.connect(lst.getsockname())
                        except TimeoutError:
                            break
                        n += 1
                return n
         """, "left 2 socket(s) open: close every client"),
        ("catches only ConnectionRefusedError", """
            def queue_capacity(backlog, timeout=0.5):
                clients = []
                with socket.socket() as lst:
                    lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                    try:
                        while True:
                            c = socket.socket(); c.settimeout(timeout); clients.append(c)
                            c.connect(lst.getsockname())
                    except ConnectionRefusedError:
                        pass
                    finally:
                        for c in clients: c.close()
                return len(clients) - 1
         """, "a full accept queue does not refuse a client (no ConnectionRefusedError)"),
        ("goes on after a timeout", """
            def queue_capacity(backlog, timeout=0.5):
                clients = []; n = 0
                with socket.socket() as lst:
                    lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
                    try:
                        while n <= backlog + 5:
                            c = socket.socket(); c.settimeout(timeout); clients.append(c)
                            try:
                                c.connect(lst.getsockname()); n += 1
                            except TimeoutError:
                                continue
                    finally:
                        for c in clients: c.close()
                return n
         """, "would never return: your code kept connecting"),
    ],
    "05.1": [
        # was told only "raised EOFError": the peer never closed; recv(0) returned b''
        ("<= in the loop", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) <= n:
                    chunk = sock.recv(n - len(buf))
                    if not chunk:
                        raise EOFError
                    buf += chunk
                return buf
         """, "It called recv(0), which returns b'' at once"),
        ("a short recv taken for the end", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) < n:
                    chunk = sock.recv(n - len(buf))
                    if len(chunk) < n - len(buf):
                        raise EOFError("short read")
                    buf += chunk
                return buf
         """, "recv() may return fewer bytes than asked for: that is normal"),
        # a short silence taken for the end of the message: passed (the peer never paused long)
        ("a quiet spell ends it", """
            def recv_exactly(sock, n):
                sock.settimeout(0.05)
                buf = b""
                try:
                    while len(buf) < n:
                        chunk = sock.recv(n - len(buf))
                        if not chunk:
                            raise EOFError
                        buf += chunk
                except TimeoutError:
                    pass
                return buf
         """, "while the peer paused for 0.3 s between two chunks: a pause is not the end"),
        ("one recv", """
            def recv_exactly(sock, n):
                return sock.recv(n)
         """, "after the first recv()"),
        ("reads past the end", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) < n:
                    chunk = sock.recv(4096)
                    if not chunk: raise EOFError
                    buf += chunk
                return buf
         """, "took bytes of the next message"),
        ("ignores b''", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) < n:
                    buf += sock.recv(n - len(buf))
                return buf
         """, "would never return: the peer closed after 7 bytes, and recv() returned b'' and your "
             "code called it again"),
        ("returns short data at the end", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) < n:
                    chunk = sock.recv(n - len(buf))
                    if not chunk: break
                    buf += chunk
                return buf
         """, "raise an exception"),
        ("decodes", """
            def recv_exactly(sock, n):
                buf = b""
                while len(buf) < n:
                    chunk = sock.recv(n - len(buf))
                    if not chunk: raise EOFError
                    buf += chunk
                return buf.decode("latin-1")
         """, "returned a str"),
    ],
    "05.2": [
        # was told "Create a new socket" and "It stops after the first recv()"
        ("hands conn to a thread", """
            import threading
            def echo_handler(conn, server):
                def work():
                    while data := conn.recv(65536):
                        conn.sendall(data)
                threading.Thread(target=work, daemon=True).start()
         """, "Your handler returned while a thread it started still used conn"),
        # was asked "did you call sendall()?": it does, after a loop that never sees the end
        ("waits for a newline", """
            def echo_handler(conn, server):
                buf = b""
                while b"\\n" not in buf:
                    buf += conn.recv(1024)
                conn.sendall(buf)
         """, "your handler's recv() returned b'' and it called recv() again"),
        ("a quiet spell ends it", """
            def echo_handler(conn, server):
                conn.settimeout(0.05)
                try:
                    while data := conn.recv(65536):
                        conn.sendall(data)
                except TimeoutError:
                    return
         """, "your handler closed the connection while the client paused for 0.3 s"),
        # was told "data from an earlier connection ... not in a global": the buffer is local
        ("sends all it has so far", """
            def echo_handler(conn, server):
                seen = b""
                while data := conn.recv(65536):
                    seen += data
                    conn.sendall(seen)
         """, "sent some of the client's bytes more than once"),
        ("one recv only", """
            def echo_handler(conn, server):
                conn.sendall(conn.recv(65536))
         """, "It stops after the first recv()"),
        ("never replies", """
            def echo_handler(conn, server):
                while conn.recv(65536):
                    pass
         """, "never sent a reply; did you call sendall()?"),
        ("send instead of sendall", """
            def echo_handler(conn, server):
                while data := conn.recv(65536):
                    conn.send(data)
         """, "Use sendall()"),
        ("a global buffer", """
            BUF = []
            def echo_handler(conn, server):
                while data := conn.recv(4096):
                    BUF.append(data)
                conn.sendall(b"".join(BUF))
         """, "not in a global"),
        ("ignores b''", """
            def echo_handler(conn, server):
                while True:
                    conn.sendall(conn.recv(65536))
         """, "would never return: the client got its 5 bytes back, then shut down its sending "
             "side, but the connection stayed open (its recv() returned b'' and your handler "
             "called it again)"),
    ],
    "06.1": [
        # send() may take only part: on a blocking socket with no timeout Linux takes it all
        ("send instead of sendall", source("06.1").replace("sock.sendall(", "sock.send("),
         "did you use send() instead of sendall()?"),
        ("sendmsg", source("06.1").replace("sock.sendall(struct.pack(\"!I\", len(data)) + data)",
                                           "sock.sendmsg([struct.pack(\"!I\", len(data)), data])"),
         "sendmsg(), like send(), may send only part of the data"),
        # send_msg little-endian, recv_msg right: the round trip hung, and was told to set a timeout
        ("little-endian send_msg only", source("06.1").replace('"!I"', '"<I"', 1),
         "Do both read and write the header the same way"),
        ("little-endian header", """
            import struct
            def send_msg(sock, data): sock.sendall(struct.pack("<I", len(data)) + data)
            def recv_msg(sock):
                raise NotImplementedError()
         """, "little-endian"),
        ("no header", """
            def send_msg(sock, data): sock.sendall(data)
            def recv_msg(sock):
                raise NotImplementedError()
         """, "no header"),
        ("header with one recv(4)", source("06.1").split("def recv_msg")[0] + """
def recv_msg(sock):
    header = sock.recv(4)
    if not header:
        return None
    (n,) = struct.unpack("!I", header)
    return recv_exactly(sock, n)
""", "recv_exactly(sock, 4)"),
        ("raises at a clean end", source("06.1").split("def recv_msg")[0] + """
def recv_msg(sock):
    (n,) = struct.unpack("!I", recv_exactly(sock, 4))
    return recv_exactly(sock, n)
""", "should return None"),
        ("b'' at a clean end", source("06.1").split("def recv_msg")[0] + """
def recv_msg(sock):
    first = sock.recv(1)
    if not first:
        return b""
    (n,) = struct.unpack("!I", first + recv_exactly(sock, 3))
    return recv_exactly(sock, n)
""", "b'' is a valid, empty message"),
        ("returns a cut message", source("06.1").split("def recv_msg")[0] + """
def recv_msg(sock):
    first = sock.recv(1)
    if not first:
        return None
    (n,) = struct.unpack("!I", first + recv_exactly(sock, 3))
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            break
        body += chunk
    return body
""", "must raise"),
        ("returns str", source("06.1").replace("return recv_exactly(sock, size)",
                                               "return recv_exactly(sock, size).decode('latin-1')"),
         "send_msg then recv_msg of b'ping': your recv_msg returned str 'ping'; return the message "
         "as bytes"),
        # a file per call reads ahead and drops the rest: was told "raised EOFError" and, in the
        # round trip, to check the byte order
        ("a buffered file per call", source("06.1").split("def recv_msg")[0] + """
def recv_msg(sock):
    f = sock.makefile("rb")
    head = f.read(4)
    if not head:
        return None
    (n,) = struct.unpack("!I", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError("short body")
    return data
""", "makes a new file with sock.makefile() each time it is called. A file reads ahead"),
    ],
    "06.2": [
        ("no limit", """
            def upper_lines_limited(conn, server):
                buf = b""
                while data := conn.recv(4096):
                    buf += data
                    while b"\\n" in buf:
                        line, buf = buf.split(b"\\n", 1)
                        conn.sendall(line.upper() + b"\\n")
         """, "still buffering them (it waits in recv() for more)"),
        ("error but no close", """
            def upper_lines_limited(conn, server):
                buf = b""
                while data := conn.recv(4096):
                    buf += data
                    while b"\\n" in buf:
                        line, buf = buf.split(b"\\n", 1)
                        conn.sendall(line.upper() + b"\\n")
                    if len(buf) > 1024:
                        conn.sendall(b"ERROR line too long\\n"); buf = b""
         """, "did not close the connection"),
        ("loses the rest of the buffer", """
            def upper_lines_limited(conn, server):
                while data := conn.recv(4096):
                    for line in data.split(b"\\n")[:-1]:
                        conn.sendall(line.upper() + b"\\n")
                    if len(data) > 1024 and b"\\n" not in data:
                        conn.sendall(b"ERROR line too long\\n"); return
         """, "keep the bytes after the last"),
        ("limit checked before splitting", """
            def upper_lines_limited(conn, server):
                buf = b""
                while data := conn.recv(4096):
                    buf += data
                    if len(buf) > 1024:
                        conn.sendall(b"ERROR line too long\\n"); return
                    while b"\\n" in buf:
                        line, buf = buf.split(b"\\n", 1)
                        conn.sendall(line.upper() + b"\\n")
         """, "under the limit"),
        # the task says more than 1024: 1024 bytes still waiting for their newline are fine
        ("limit at 1024 itself", source("06.2").replace("if len(buf) > 1024:", "if len(buf) >= 1024:"),
         "only *more than* 1024 bytes without a newline is too long"),
        ("one buffer for everyone", """
            STATE = {"buf": b""}
            def upper_lines_limited(conn, server):
                while data := conn.recv(4096):
                    STATE["buf"] += data
                    while b"\\n" in STATE["buf"]:
                        line, STATE["buf"] = STATE["buf"].split(b"\\n", 1)
                        conn.sendall(line.upper() + b"\\n")
                    if len(STATE["buf"]) > 1024:
                        conn.sendall(b"ERROR line too long\\n"); return
         """, "own buffer"),
    ],
    "07.1": [
        ("no backoff", """
            def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
                request = b"ping %d" % seq
                sock.settimeout(timeout)
                for attempt in range(1, tries + 1):
                    sock.sendto(request, address)
                    try:
                        while True:
                            reply, _ = sock.recvfrom(1024)
                            if reply == request:
                                return attempt
                    except TimeoutError:
                        continue
                return None
         """, "twice the previous one"),
        ("any reply will do", """
            def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
                for attempt in range(1, tries + 1):
                    sock.settimeout(timeout * 2 ** (attempt - 1))
                    sock.sendto(b"ping %d" % seq, address)
                    try:
                        sock.recvfrom(1024)
                        return attempt
                    except TimeoutError:
                        continue
                return None
         """, "Compare the reply with the request"),
        ("one try too many", """
            def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
                request = b"ping %d" % seq
                for attempt in range(1, tries + 2):
                    sock.settimeout(timeout * 2 ** (attempt - 1))
                    sock.sendto(request, address)
                    try:
                        while True:
                            reply, _ = sock.recvfrom(1024)
                            if reply == request:
                                return attempt
                    except TimeoutError:
                        continue
                return None
         """, "sent 4 datagrams, expected 3"),
        ("counts from 0", """
            def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
                request = b"ping %d" % seq
                for attempt in range(tries):
                    sock.settimeout(timeout * 2 ** attempt)
                    sock.sendto(request, address)
                    try:
                        while True:
                            reply, _ = sock.recvfrom(1024)
                            if reply == request:
                                return attempt
                    except TimeoutError:
                        continue
                return None
         """, "expected 1 (one try)"),
    ],
    "08.1": [
        ("no chmod", source("08.1").replace("os.chmod(path, 0o600)", "pass"), "os.chmod(path, 0o600)"),
        ("leaves its file", source("08.1").replace("        os.unlink(path)\n", ""),
         "left its socket file"),
        ("try starts before remove_stale", """
            def serve(path, stop):
                srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    remove_stale(path)
                    srv.bind(path); os.chmod(path, 0o600); srv.listen(); srv.settimeout(0.2)
                    while not stop.is_set():
                        try:
                            conn, _ = srv.accept()
                        except TimeoutError:
                            continue
                        with conn:
                            while data := conn.recv(65536):
                                conn.sendall(data)
                finally:
                    srv.close()
                    if os.path.exists(path): os.unlink(path)
         """, "removed the live server's socket file"),
        ("unlinks blindly", source("08.1").replace("remove_stale(path)",
                                                   "os.path.exists(path) and os.unlink(path)"),
         "a live server was already listening at the path, and your serve() removed its socket file"),
    ],
    "09.1": [
        ("one client at a time", """
            def serve(listener, stop):
                listener.settimeout(0.2)
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    with conn:
                        conn.settimeout(5)
                        buf = b""
                        while b"\\n" not in buf:
                            chunk = conn.recv(1024)
                            if not chunk: break
                            buf += chunk
                        conn.sendall(b"done: " + buf)
         """, "one client at a time"),
        ("one recv per line", source("09.1").replace(
            """            while b"\\n" not in buf:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                buf += chunk
""", """            buf = conn.recv(1024)
"""), "Read until b'\\n'"),
        ("no join", source("09.1").replace("    for t in threads:\n        t.join()\n", ""),
         "serve() did not wait for its client threads"),
        ("never closes the connection", source("09.1").replace("        with conn:\n",
                                                               "        if True:\n"),
         "of your code (in serve): conn, _ = listener.accept()"),
        # no client ever closed without finishing its line: the endless loop on b'' passed
        # TimeoutError is an OSError: this serve() ends at its first accept() timeout
        ("ends at the first accept() timeout", source("09.1").replace(
            "        except TimeoutError:\n            continue\n",
            "        except OSError:\n            break\n"),
         "after its accept() timed out with no client yet"),
        ("reply without its newline", source("09.1").replace(
            'conn.sendall(b"done: " + buf)', 'conn.sendall(b"done: " + buf.strip())'),
         "expected b'done: quick 0\\n'"),
        ("a client thread that crashes", source("09.1").replace(
            'conn.sendall(b"done: " + buf)', 'conn.sendall("done: " + buf)'),
         "a client thread of your serve() raised TypeError: str and bytes mixed"),
        ("busy non-blocking accept loop", OTHER_RIGHT_NONBLOCKING.replace(
            "                time.sleep(0.01)\n", ""),   # asks again at once, for ever
         "serve() kept the CPU busy while it waited for clients"),
        ("select() with no timeout", SELECT_SERVE.replace("select.select([listener], [], [], 0.1)",
                                                           "select.select([listener], [], [])"),
         "its select() is waiting for a client that never comes. Give select() a timeout"),
        ("loops for ever on b''", source("09.1").replace(
            """                chunk = conn.recv(1024)
                if not chunk:
                    return
                buf += chunk
""", """                buf += conn.recv(1024)
"""), "your handler's recv() returned b'' and it called recv() again"),
    ],
    "10.1": [
        ("no retry", """
            def connect_with_retry(address, tries=5, delay=0.1, timeout=0.5):
                return socket.create_connection(address, timeout=timeout)
         """, "gave up with ConnectionRefusedError"),
        ("does not retry timeouts", source("10.1").replace("(ConnectionRefusedError, TimeoutError)",
                                                           "ConnectionRefusedError"),
         "A timeout is worth retrying too"),
        ("returns None at the end", source("10.1").replace("    raise last\n", "    return None\n"),
         "returned None"),
        ("retries everything", source("10.1").replace("(ConnectionRefusedError, TimeoutError)",
                                                      "OSError"), "it retried"),
        ("raises its own error", source("10.1").replace("    raise last\n",
                                                        "    raise RuntimeError('no luck')\n"),
         "Raise the last error itself"),
        # a blocking connect() got in on the kernel's SYN retry 1 s later: it passed every case
        ("no timeout", source("10.1").replace("create_connection(address, timeout=timeout)",
                                              "create_connection(address)"),
         "called connect() with no timeout, at line"),
        ("leaves failed sockets open", source("10.1").replace(
            "            return socket.create_connection(address, timeout=timeout)\n",
            "            s = socket.socket(); s.settimeout(timeout); s.connect(address); return s\n"),
         "close it before the next try"),
        ("reuses one socket", source("10.1").replace("    last = None\n",
                                                     "    last = None; s = socket.socket()\n").replace(
            "            return socket.create_connection(address, timeout=timeout)\n",
            "            s.settimeout(timeout); s.connect(address); return s\n"),
         "called connect() again on a socket whose connect() had failed (it raised "
         "ConnectionAbortedError)"),
        # waiting after every try, it took as long as 3 tries would: the timing let it pass
        ("one try too few", """
            def connect_with_retry(address, tries=5, delay=0.1, timeout=0.5):
                for attempt in range(tries - 1):
                    try:
                        return socket.create_connection(address, timeout=timeout)
                    except (ConnectionRefusedError, TimeoutError) as exc:
                        last = exc
                        threading.Event().wait(delay)
                raise last
         """,
         "with tries=3 your connect_with_retry tried to connect 2 times"),
        ("returns the address", source("10.1").replace(
            "            return socket.create_connection(address, timeout=timeout)\n",
            "            with socket.create_connection(address, timeout=timeout):\n"
            "                return address\n"),
         "return the connected socket itself"),
    ],
    "11.1": [
        # the peer closing before Content-Length bytes was never tried: both of these passed
        ("ignores b'' in the body loop", source("11.1").replace(
            "            if not chunk:\n                raise EOFError(\"the connection closed inside the body\")",
            "            pass"),
         "your http_get is still running. After the server closes, recv() returns b''"),
        ("returns a cut body", source("11.1").replace(
            "raise EOFError(\"the connection closed inside the body\")", "break"),
         "instead of raising. A cut body must raise"),
        # the head was read whole; the wrong field: was told the head comes in small pieces
        ("the wrong status field", """
            import socket
            def http_get(address, path):
                with socket.create_connection(address, timeout=5) as s:
                    s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
                    buf = b""
                    while b"\\r\\n\\r\\n" not in buf:
                        c = s.recv(4096)
                        if not c:
                            raise EOFError
                        buf += c
                    head, body = buf.split(b"\\r\\n\\r\\n", 1)
                    return int(head.split(b" ")[2]), body
         """, "the code is its second field"),
        ("bare newlines", source("11.1").replace('\\r\\nHost: {host}:{port}\\r\\n\\r\\n',
                                                 '\\nHost: {host}:{port}\\n\\n'), "bare \\n"),
        ("no Host header", source("11.1").replace('Host: {host}:{port}\\r\\n', ''), "no Host header"),
        ("status as text", source("11.1").replace("status = int(lines[0].split(b\" \")[1])",
                                                  "status = lines[0].split(b\" \")[1].decode()"),
         "as an int"),
        ("one recv", """
            def http_get(address, path):
                with socket.create_connection(address, timeout=5) as s:
                    s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
                    data = s.recv(65536)
                    while b"\\r\\n\\r\\n" not in data:
                        data += s.recv(65536)
                    head, body = data.split(b"\\r\\n\\r\\n", 1)
                    return int(head.split()[1]), body
         """, "Keep reading until the body has Content-Length bytes"),
        ("header name with its case", source("11.1").replace("name.strip().lower() == b\"content-length\"",
                                                             "name.strip() == b\"Content-Length\""),
         "case-insensitive"),
        # ignores Content-Length: reads until the server goes quiet for 0.3 s
        ("reads until quiet", QUIET_HTTP_GET.replace("QUIET", "0.3"),
         "sent before the server paused for 0.5 s, of 30000: a pause is not the end"),
        ("one recv, split at once", """
            def http_get(address, path):
                with socket.create_connection(address, timeout=5) as s:
                    s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
                    data = s.recv(65536)
                    head, body = data.split(b"\\r\\n\\r\\n", 1)
                    return int(head.split(b" ")[1]), body
         """, "one recv() returns only what has arrived so far"),
        # the server's 400 comes back (and the connection closes), not a timeout
        ("HTTP/1.0, reads to the end",
         READ_TO_END_HTTP_GET.replace("REQUEST", 'f"GET {path} HTTP/1.0\\r\\n\\r\\n"'),
         "the server answered 400 Bad Request: the version is b'HTTP/1.0'"),
    ],
    "12.1": [
        ("does not verify", source("12.1").replace(
            "context = ssl.create_default_context(cafile=ca_file)   # verifies the chain and the name",
            "context = ssl.create_default_context(cafile=ca_file)\n"
            "    context.check_hostname = False\n    context.verify_mode = ssl.CERT_NONE"),
         "did not verify the certificate"),
        ("does not check the name", source("12.1").replace(
            "context = ssl.create_default_context(cafile=ca_file)   # verifies the chain and the name",
            "context = ssl.create_default_context(cafile=ca_file)\n    context.check_hostname = False"),
         "still talked to the server: it did not check the name"),
        ("wraps the verification error", source("12.1").replace(
            "        with context.wrap_socket(raw, server_hostname=hostname) as tls:",
            "        try:\n"
            "            tls = context.wrap_socket(raw, server_hostname=hostname)\n"
            "        except ssl.SSLCertVerificationError as e:\n"
            "            raise ssl.SSLError('could not connect securely') from e\n"
            "        with tls:"),
         "with SSLError: could not connect securely. The handshake raises"),
        ("never connects", """
            def tls_request(address, ca_file, hostname, data):
                return None
         """, "your tls_request returned None without connecting to the server"),
        ("one recv", """
            import ssl
            def tls_request(address, ca_file, hostname, data):
                ctx = ssl.create_default_context(cafile=ca_file)
                with socket.create_connection(address, timeout=5) as raw, \\
                        ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                    tls.sendall(data)
                    return tls.recv(65536)
         """, "TLS records arrive in pieces too, keep reading until you have len(data) bytes"),
        ("swallows the refusal", source("12.1").replace(
            "    with socket.create_connection(address, timeout=5) as raw:\n",
            "    try:\n        return _inner(context, address, hostname, data)\n"
            "    except ssl.SSLError as e:\n        print('TLS failed:', e)\n        return None\n\n"
            "def _inner(context, address, hostname, data):\n"
            "    with socket.create_connection(address, timeout=5) as raw:\n"),
         "your client refused the certificate (the handshake failed; nothing was sent) but "
         "returned None instead of raising"),
        ("raises another exception from it", source("12.1").replace(
            "        with context.wrap_socket(raw, server_hostname=hostname) as tls:",
            "        try:\n"
            "            tls = context.wrap_socket(raw, server_hostname=hostname)\n"
            "        except ssl.SSLCertVerificationError as e:\n"
            "            raise ConnectionError(f'certificate problem: {e}') from e\n"
            "        with tls:"),
         "your client refused, but with ConnectionError: certificate problem"),
        # was told "your client asked for example.org": it asked for the address instead
        ("asks for the address, not the name", source("12.1").replace(
            "context.wrap_socket(raw, server_hostname=hostname)",
            "context.wrap_socket(raw, server_hostname=address[0])"),
         "asked the server for no name (as for an IP address)"),
        ("asks for localhost", source("12.1").replace(
            "context.wrap_socket(raw, server_hostname=hostname)",
            "context.wrap_socket(raw, server_hostname='localhost')"),
         "asked the server for 'localhost'"),
        # was given DNS advice: it connected to (hostname, port)
        ("connects to the hostname", source("12.1").replace(
            "socket.create_connection(address, timeout=5)",
            "socket.create_connection((hostname, address[1]), timeout=5)"),
         "Connect to address, as given"),
        ("returns str", source("12.1").replace("    return reply", "    return reply.decode()"),
         "returned a str of 45000 characters: return the bytes"),
        # the check itself crashed: 'RuntimeError' object has no attribute 'strerror'
        ("raises RuntimeError from it", source("12.1").replace(
            "        with context.wrap_socket(raw, server_hostname=hostname) as tls:",
            "        try:\n"
            "            tls = context.wrap_socket(raw, server_hostname=hostname)\n"
            "        except ssl.SSLCertVerificationError as e:\n"
            "            raise RuntimeError('certificate rejected') from e\n"
            "        with tls:"),
         "your client refused, but with RuntimeError: certificate rejected"),
        # passed: no name check in the handshake, data sent, then a hand-made check raised
        ("checks the name after sending", source("12.1").replace(
            "context = ssl.create_default_context(cafile=ca_file)   # verifies the chain and the name",
            "context = ssl.create_default_context(cafile=ca_file)\n    context.check_hostname = False")
         .replace("                reply += chunk\n",
                  "                reply += chunk\n"
                  "            names = [v for k, v in tls.getpeercert()['subjectAltName']]\n"
                  "            if hostname not in names:\n"
                  "                raise ssl.SSLCertVerificationError('hostname mismatch')\n"),
         "only after the handshake had completed"),
        ("sends on the plain socket", source("12.1").replace("            tls.sendall(data)",
                                                             "            raw.sendall(data)"),
         "wrap_socket() takes over the socket it is given"),
        ("wraps a new socket", source("12.1").replace(
            "        with context.wrap_socket(raw, server_hostname=hostname) as tls:",
            "        with context.wrap_socket(socket.socket(), server_hostname=hostname) as tls:"),
         "Did you wrap a new socket instead of the one you connected?"),
    ],
    "13.1": [
        # takes old out with an end-around borrow: wrong when the other words sum to 0xffff
        ("end-around borrow", """
            def update_checksum(csum, old, new):
                s = ~csum & 0xFFFF
                s -= old
                if s < 0:
                    s = (s - 1) & 0xFFFF
                s += new
                if s > 0xFFFF:
                    s = (s & 0xFFFF) + 1
                return ~s & 0xFFFF
         """, "update_checksum(0xfffe, 0x0001, 0x0000) returned 0xffff, expected 0x0000"),
        ("no complement", source("13.1").replace("return ~total & 0xFFFF", "return total"),
         "one's complement"),
        ("carries thrown away", source("13.1").replace(
            "    while total >> 16:                      # fold the carries back in\n"
            "        total = (total & 0xFFFF) + (total >> 16)\n", "    total &= 0xFFFF\n"),
         "instead of added back in"),
        ("folds once", source("13.1").replace("while total >> 16:", "if total >> 16:"),
         "fold in a loop"),
    ],
}

WRONG_CASES = [(ex_id, label, src, expect) for ex_id, items in WRONG.items()
               for label, src, expect in items]


@pytest.mark.parametrize("exercise_id,label,src,expect", WRONG_CASES,
                         ids=[f"{e}-{lbl}" for e, lbl, _, _ in WRONG_CASES])
def test_wrong_solution_gets_specific_feedback(exercise_id, label, src, expect, leakcheck):
    res = run(exercise_id, src)
    assert not res.passed, f"{label!r} should not pass:\n{res.text()}"
    assert res.status == "failed"
    assert expect in res.text(), f"expected {expect!r} in the feedback for {label!r}:\n{res.text()}"
    assert "bug in socklab" not in res.text(), res.text()  # the learner's mistake is the learner's


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux schedstat")
def test_09_a_busy_accept_loop_is_refused_when_a_busy_machine_gives_it_little_cpu(leakcheck):
    """Under load the busy non-blocking accept loop passed: sharing a CPU with many others, it got
    too little CPU time to be seen. It never waits, though: the time it spent ready to run but
    waiting for a CPU counts too."""
    cpu = min(os.sched_getaffinity(0))
    spin = [sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.monotonic() + 30\nwhile time.monotonic() < end: pass"]
    busy = [subprocess.Popen(spin) for _ in range(6)]
    src = OTHER_RIGHT_NONBLOCKING.replace("                time.sleep(0.01)\n", "").replace(
        "        threads = []\n",  # serve()'s thread shares that CPU with six spinners
        f"        threads = []\n        os.sched_setaffinity(0, {{{cpu}}})\n")
    try:
        res = run("09.1", src)
    finally:
        for p in busy:
            p.kill()
            p.wait(5)
    assert not res.passed, res.text()
    assert "serve() kept the CPU busy while it waited for clients" in res.text(), res.text()


def test_a_handler_that_crashes_with_two_clients_is_told_it_crashed(leakcheck):
    """06.2: client b got no reply because the handler raised, not because of a shared buffer."""
    res = run("06.2", source("06.2").replace("conn.sendall(line.upper() + b\"\\n\")",
                                             "conn.sendall(line.decode().upper() + \"\\n\")"))
    two = res.cases[-1]
    assert two.name.startswith("two clients") and two.status == "failed", res.text()
    assert "your handler raised TypeError" in two.lines[0], res.text()
    assert "own buffer" not in res.text()


# Right solutions written another way than the reference: with no `with` around each socket, a
# thread pool, an ExitStack. Sockets and threads are judged closed and joined, not the style.
OTHER_RIGHT = {
    # one file for the whole conversation, kept per socket: the read-ahead stays in it
    "06.1 one file per socket": """
        import struct
        _files = {}
        def send_msg(sock, data):
            sock.sendall(struct.pack("!I", len(data)) + data)
        def recv_msg(sock):
            f = _files.setdefault(sock.fileno(), sock.makefile("rb"))
            head = f.read(4)
            if not head:
                return None
            if len(head) < 4:
                raise EOFError("cut in the header")
            (n,) = struct.unpack("!I", head)
            data = f.read(n)
            if len(data) < n:
                raise EOFError("cut in the body")
            return data
     """,
    "10.1 own socket per try": """
        def connect_with_retry(address, tries=5, delay=0.1, timeout=0.5):
            for attempt in range(tries):
                s = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
                s.settimeout(timeout)
                try:
                    s.connect(address)
                    return s
                except (ConnectionRefusedError, TimeoutError) as exc:
                    s.close()
                    last = exc
                    threading.Event().wait(delay)
                except BaseException:
                    s.close()
                    raise
            raise last
    """,
    "09.1 thread pool": """
        import concurrent.futures
        def serve(listener, stop):
            def handle(conn):
                with conn:
                    buf = b""
                    while b"\\n" not in buf:
                        chunk = conn.recv(1024)
                        if not chunk:
                            return
                        buf += chunk
                    conn.sendall(b"done: " + buf)
            listener.settimeout(0.1)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:   # joins its threads at the end
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    pool.submit(handle, conn)
    """,
    "04.1 ExitStack": """
        import contextlib
        def queue_capacity(backlog, timeout=0.5):
            n = 0
            with contextlib.ExitStack() as stack:
                lst = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=backlog))
                while True:
                    c = stack.enter_context(socket.socket())
                    c.settimeout(timeout)
                    try:
                        c.connect(lst.getsockname())
                    except TimeoutError:
                        return n
                    n += 1
    """,
}


# A handler gets socklab.Server's traced connection: it had no recv_into() and no makefile().
OTHER_RIGHT["05.2 recv_into"] = """
    def echo_handler(conn, server):
        buf = bytearray(65536)
        while n := conn.recv_into(buf):
            conn.sendall(memoryview(buf)[:n])
"""
# Reads 100 bytes at a time: it returns after the error with bytes unread, so the OS resets
# the connection instead of closing it; the error line arrives all the same.
OTHER_RIGHT["06.2 small recv"] = source("06.2").replace("conn.recv(4096)", "conn.recv(100)")
OTHER_RIGHT["06.2 makefile and readline"] = """
    def upper_lines_limited(conn, server):
        with conn.makefile("rb") as lines:
            while line := lines.readline(1025):
                if not line.endswith(b"\\n"):          # the end of the stream, or too long
                    if len(line) > 1024:
                        conn.sendall(b"ERROR line too long\\n")
                    return
                conn.sendall(line[:-1].upper() + b"\\n")
"""
# Waits for its client to close before closing (a lingering close): the check's clients never
# closed, so serve() could not join, and was told its accept() had no timeout.
OTHER_RIGHT["09.1 waits for the client to close"] = source("09.1").replace(
    '            conn.sendall(b"done: " + buf)\n',
    '            conn.sendall(b"done: " + buf)\n'
    '            conn.shutdown(socket.SHUT_WR)\n'
    '            while conn.recv(1024):           # until the client has closed its side too\n'
    '                pass\n')
# Waits for a count of busy clients instead of join(): a thread that signalled, then ran its last
# line, was still alive the moment serve() returned (under load: 1 run in 6 failed).
OTHER_RIGHT["09.1 a Condition instead of join"] = """
    def serve(listener, stop):
        busy = [0]
        idle = threading.Condition()
        served = []
        def handle(conn, addr):
            try:
                with conn:
                    conn.settimeout(5)
                    buf = b""
                    while b"\\n" not in buf:
                        chunk = conn.recv(1024)
                        if not chunk:
                            return
                        buf += chunk
                    conn.sendall(b"done: " + buf)
            finally:
                with idle:
                    busy[0] -= 1
                    idle.notify_all()
                served.append(addr)                  # its last line, after the count
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, addr = listener.accept()
            except TimeoutError:
                continue
            with idle:
                busy[0] += 1
            threading.Thread(target=handle, args=(conn, addr)).start()
        with idle:
            idle.wait_for(lambda: busy[0] == 0)
"""

OTHER_RIGHT["09.1 select.select"] = SELECT_SERVE
OTHER_RIGHT["09.1 non-blocking accept"] = OTHER_RIGHT_NONBLOCKING


# A backlog of 0 or 1: the check's clients find the AF_UNIX accept queue full now and then, and a
# connect() with a timeout then fails at once with EAGAIN (notebook 08, section 8).
OTHER_RIGHT["08.1 listen(0)"] = source("08.1").replace("srv.listen()", "srv.listen(0)")
OTHER_RIGHT["08.1 listen(1)"] = source("08.1").replace("srv.listen()", "srv.listen(1)")


@pytest.mark.parametrize("label", sorted(OTHER_RIGHT))
def test_other_right_solutions_pass(label, leakcheck):
    res = run(label.split()[0], OTHER_RIGHT[label])
    assert res.passed, res.text()


def test_sockets_that_other_code_opens_meanwhile_are_not_the_learners(leakcheck):
    """04.1 compared the process's socket descriptors and listening sockets before and after the
    learner's call: a server of an earlier cell starting meanwhile was blamed on the learner."""
    started, done = threading.Event(), threading.Event()

    def earlier_cell():  # e.g. a server the notebook started before, getting going just now
        started.wait(10)
        with socket.create_server(("127.0.0.1", 0)):
            done.wait(10)
    other = threading.Thread(target=earlier_cell, name="earlier-cell")
    other.start()
    src = source("04.1").replace("    clients = []\n",
                                 "    OTHER.set()  # the other code starts now\n    clients = []\n")
    assert "OTHER.set()" in src
    ns = load("04.1", src)
    ns["OTHER"] = started
    try:
        res = exercises.run_check(exercises.get("04.1"), ns["queue_capacity"])
    finally:
        done.set()
        other.join(10)
    assert started.is_set() and res.passed, res.text()


def test_an_interrupted_check_ends_short_and_leaves_nothing_open(leakcheck):
    """Ctrl-C while the learner's code hangs: the check ends what it started, then the interrupt
    reaches the caller (the cell stops) with one line, not a traceback through the checker."""
    import traceback
    ns = load("04.1", NOTEBOOK_IMPORTS + textwrap.dedent("""
        import signal
        def queue_capacity(backlog, timeout=0.5):
            lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
            clients = []
            try:
                while True:
                    c = socket.socket(); clients.append(c)
                    if len(clients) == backlog + 2:  # no timeout: waits for minutes; the learner interrupts
                        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                    c.connect(lst.getsockname())
            finally:
                for c in clients: c.close()
                lst.close()
    """))
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as err:
        exercises.check("04.1", ns["queue_capacity"])
    assert time.monotonic() - t0 < exercises.get("04.1").limit  # not after the case's time limit
    assert isinstance(err.value, exercises.CheckInterrupted)
    assert str(err.value) == "check 04.1 stopped by interrupt; nothing left open."
    frames = traceback.extract_tb(err.value.__traceback__)
    assert [f.name for f in frames][1:] == ["check"], frames  # this test, then check(): no internals
    assert err.value.__suppress_context__ and not core.stuck_threads()
    assert run("04.1").passed  # the next check runs


def test_two_writes_pass_with_a_tip_about_nagle(leakcheck):
    src = source("06.1").replace('sock.sendall(struct.pack("!I", len(data)) + data)',
                                 'sock.sendall(struct.pack("!I", len(data)))\n    sock.sendall(data)')
    res = run("06.1", src)
    assert res.passed, res.text()
    assert any("Nagle" in n for n in res.notes)


# ---- code that never returns: bounded, reported, cleaned up

def event_loop_forever(names):
    """A solution whose functions loop forever waiting on an Event (woken only by the check)."""
    return "import threading\n" + "".join(
        f"def {n}(*args):\n    ev = threading.Event()\n    while True:\n        ev.wait(0.05)\n"
        for n in names)


NEVER = {
    # exercise: solution that never returns by itself (default: an Event-wait loop)
    "04.1": """
        def queue_capacity(backlog, timeout=0.5):
            lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(backlog)
            clients = []
            try:
                while True:                     # no timeout: the extra client's connect() waits
                    c = socket.socket(); clients.append(c); c.connect(lst.getsockname())
            finally:
                for c in clients: c.close()
                lst.close()
    """,
    "05.1": """
        def recv_exactly(sock, n):
            buf = b""
            while len(buf) <= n:                # off by one: waits for a byte that never comes
                chunk = sock.recv(4096)
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf[:n]
    """,
    "07.1": """
        def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
            for attempt in range(1, tries + 1):   # no timeout: a dropped datagram means forever
                sock.sendto(b"ping %d" % seq, address)
                reply, _ = sock.recvfrom(1024)
                if reply == b"ping %d" % seq:
                    return attempt
    """,
    "08.1": source("08.1").replace("        srv.settimeout(0.2)\n", ""),
    "09.1": source("09.1").replace("    listener.settimeout(0.1)\n", ""),
    "11.1": """
        def http_get(address, path):
            with socket.create_connection(address) as s:
                s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
                data = b""
                while chunk := s.recv(4096):    # waits for the end of the connection
                    data += chunk
            head, body = data.split(b"\\r\\n\\r\\n", 1)
            return int(head.split()[1]), body
    """,
    "12.1": """
        import ssl
        def tls_request(address, ca_file, hostname, data):
            ctx = ssl.create_default_context(cafile=ca_file)
            with socket.create_connection(address) as raw, ctx.wrap_socket(raw, server_hostname=hostname) as s:
                s.sendall(data)
                out = b""
                while chunk := s.recv(4096):    # the echo server keeps the connection open
                    out += chunk
            return out
    """,
    "13.1": """
        def update_checksum(csum, old, new):
            total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
            while total:                        # never 0: loops forever
                total = (total & 0xFFFF) + (total >> 16) + 1
            return total
    """,
}


@pytest.mark.parametrize("exercise_id", ALL)
def test_never_returning_solution_ends_within_the_bound(exercise_id, leakcheck):
    ex = exercises.get(exercise_id)
    src = NEVER.get(exercise_id) or event_loop_forever(ex.names)
    t0 = time.monotonic()
    res = run(exercise_id, src)
    took = time.monotonic() - t0
    assert not res.passed
    assert took < ex.bound, f"took {took:.1f} s, bound {ex.bound:.1f} s"
    assert "did not return within" in res.text(), res.text()
    assert not core.stuck_threads()
    # the kernel (this process) is still usable: the reference solution passes straight after
    assert run(exercise_id).passed


def test_recv_forever_says_set_a_timeout(leakcheck):
    src = """
        def recv_exactly(sock, n):
            sock.settimeout(None)
            return sock.recv(1) + sock.recv(1) + sock.recv(n)
    """
    ex = exercises.get("05.1")
    t0 = time.monotonic()
    res = run("05.1", src)
    assert time.monotonic() - t0 < ex.limit + core.GRACE + 2
    assert "did not return within 3 s" in res.text()
    assert "waiting in recv()" in res.text()


def test_udp_client_without_timeout_waited_forever(leakcheck):
    res = run("07.1", NEVER["07.1"])
    assert "your UDP client waited forever" in res.text() and "settimeout" in res.text()


def test_unstoppable_code_is_reported_and_the_check_still_ends():
    """A wait with no timeout on a lock nobody releases cannot be ended from outside: the check
    still returns within its bound, says so, and records the thread."""
    gate = threading.Event()
    src = "GATE = None\ndef recv_exactly(sock, n):\n    GATE.wait()\n"
    ex = exercises.get("05.1")
    ns = load("05.1", src)
    ns["GATE"] = gate
    t0 = time.monotonic()
    res = exercises.run_check(ex, ns["recv_exactly"])
    assert time.monotonic() - t0 < ex.limit + core.GRACE + 2
    assert "did not return within" in res.text()
    assert "could not be stopped" in res.text()
    assert any("05.1" in d for d in core.stuck_threads())
    gate.set()  # let it go, so the test leaves no thread behind
    for t in threading.enumerate():
        if t.name.startswith("exercise-05.1"):
            t.join(5)
    assert not core.stuck_threads()


# ---- the framework's own behaviour

def _context_and_blocking_pair():
    """A case context owning both ends of a socketpair; ``a`` blocks with no timeout."""
    ctx = Context("x", 1, 1.0)
    a, b = socket.socketpair()
    ctx.own(a)
    ctx.own(b)
    a.settimeout(None)
    return ctx, a, b


def test_context_wakes_a_recv_blocked_forever_and_closes_everything(leakcheck):
    ctx, a, b = _context_and_blocking_pair()
    with pytest.raises(core.DidNotReturn) as err:
        ctx.call(a.recv, 10, limit=0.3, what="a recv")
    assert "a recv did not return within 0.3 s" in str(err.value)
    assert ctx.close() == ""
    assert a.fileno() == -1 and b.fileno() == -1


def test_learner_sockets_are_closed_when_its_code_raises(leakcheck):
    def opens_then_fails():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        raise ValueError("oops")
    ctx = Context("x", 1, 1.0)
    with pytest.raises(core.LearnerRaised) as err:
        ctx.call(opens_then_fails)
    assert isinstance(err.value.error, ValueError)
    ctx.close()


def test_learner_exception_is_explained():
    def refused():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=1)
    ctx = Context("x", 1, 1.0)
    try:
        with pytest.raises(core.LearnerRaised) as err:
            ctx.call(refused)
    finally:
        ctx.close()
    lines = err.value.lines()
    assert lines[0].startswith("your function raised ConnectionRefusedError: Connection refused")
    assert any(ln.startswith("How to fix:") for ln in lines)


def test_a_bug_in_a_check_is_not_blamed_on_the_learner():
    def broken(ctx, fn):
        raise KeyError("oops")
    ex = core.Exercise("99.9", "broken", "task (exercise 99.9)", ["h1", "h2"], ("f",),
                       [core.Case("a case", broken)])
    res = exercises.run_check(ex, lambda: None)
    assert not res.passed and "bug in socklab's exercise" in res.text()


def test_a_diagnosis_that_fails_is_reported_with_the_timeout(leakcheck):
    ctx, a, _ = _context_and_blocking_pair()
    try:
        with pytest.raises(core.DidNotReturn) as err:
            ctx.call(a.recv, 10, limit=0.2, what="a recv", diagnose=lambda: {}["missing"])
    finally:
        ctx.close()
    text = "\n".join(err.value.lines())
    assert "a recv did not return within 0.2 s" in text
    assert "KeyError: 'missing'" in text and "bug in socklab's exercise" in text


def test_a_peer_that_cannot_be_stopped_is_reported(leakcheck):
    ctx = Context("x", 1, 1.0)
    srv = socklab.Server(name="exercise-unstoppable")
    srv.start()
    ctx.later(srv.stop)
    ctx.later(lambda: (_ for _ in ()).throw(RuntimeError("peer thread did not stop")))
    said = ctx.close()
    assert "RuntimeError: peer thread did not stop" in said and "please report it" in said
    assert not srv.running  # the closers after the failing one still ran


def test_fail_lines_and_result_forms():
    ex = core.Exercise("99.8", "demo", "task (exercise 99.8)", ["h1", "h2"], ("f",), [
        core.Case("good", lambda ctx, f: None),
        core.Case("bad", lambda ctx, f: (_ for _ in ()).throw(Fail("first line", "second"))),
    ])
    res = exercises.run_check(ex, lambda: None)
    assert res.status == "failed" and res.feedback == ["first line", "second"]
    text = res.text()
    assert text.splitlines()[0] == "❌ 99.8 demo: not yet (1 of 2 checks passed)"
    assert "  ✓ good" in text and "  ✗ bad" in text and "      first line" in text
    bundle = res._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert "socklab-ex fail" in bundle["text/html"] and "first line" in bundle["text/html"]


def test_check_caches_the_same_function_and_grade_raises():
    ns = load("13.1")
    first = exercises.check("13.1", ns["update_checksum"])
    assert exercises.check("13.1", ns["update_checksum"]) is first
    assert exercises.grade("13.1", ns["update_checksum"]) is first
    wrong = load("13.1", source("13.1").replace("return ~total & 0xFFFF", "return total"))
    with pytest.raises(AssertionError) as err:
        exercises.grade("13.1", wrong["update_checksum"])
    assert "one's complement" in str(err.value)


def test_hints_are_revealed_one_at_a_time():
    exercises.reset_hints("05.1")
    ex = exercises.get("05.1")
    shown = [exercises.hint("05.1") for _ in range(len(ex.hints) + 1)]
    assert [h.number for h in shown] == [1, 2, 3, 3]
    assert shown[0].hint == ex.hints[0] and "Run this cell again" in shown[0].text()
    assert shown[-1].last and "last hint" in shown[-1].text()
    assert exercises.hints_shown("05.1") == 3
    assert "Hint 1 of 3" in shown[0]._repr_mimebundle_()["text/html"]
    exercises.reset_hints()
    assert exercises.hint("05.1").number == 1
    exercises.reset_hints()


def test_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        exercises.get("99.1")
    assert "05.1" in str(err.value)


def test_checking_core_does_not_import_jupyter():
    import subprocess
    import sys
    code = ("import sys, socklab.exercises as E; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('IPython', 'ipywidgets', "
            "'ipykernel')], sorted(m for m in sys.modules if 'ipy' in m.lower())")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_socklab_exposes_exercises_lazily():
    assert socklab.exercises is exercises


# ---- a solution that abuses the check (found by an exploratory session)

def test_replacing_time_monotonic_cannot_stop_the_checks_clock(leakcheck):
    res = run("05.1", """
        import time
        def recv_exactly(sock, n):
            time.monotonic = lambda: 0.0
            while True:
                pass
    """)
    assert time.monotonic is not None and time.monotonic() > 0  # put back
    assert not res.passed and "did not return within" in res.text()
    assert "your code replaced time.monotonic" in res.text()
    assert res.cases[1].status == "not run"  # a case that did not return ends the check
    assert run("05.1").passed  # and the next check works


_RECV_LOOP = ('    buf = b""\n    while len(buf) < n:\n        chunk = sock.recv(n - len(buf))\n'
              '        if not chunk:\n            raise EOFError("closed")\n        buf += chunk\n'
              '    return buf\n')


def recv_exactly_doing(first_line: str, prelude: str = "") -> str:
    """A right recv_exactly that first does ``first_line`` (the abuse under test)."""
    return f"{prelude}\ndef recv_exactly(sock, n):\n    {first_line}\n{_RECV_LOOP}"


def test_replacing_socket_socket_is_named_and_undone(leakcheck):
    res = run("05.1", recv_exactly_doing("socket.socket = None", "import socket"))
    assert socket.socket is not None and socket.socket.__name__ == "socket"
    assert not res.passed and "your code replaced socket.socket" in res.text()
    assert "bug in socklab" not in res.text()
    assert run("05.1").passed


def test_a_check_called_from_inside_the_solution_is_refused(leakcheck):
    src = recv_exactly_doing(
        'INNER.append(socklab.exercises.run_check(socklab.exercises.get("05.1"), recv_exactly))',
        "import socklab.exercises\nINNER = []")
    ns = load("05.1", NOTEBOOK_IMPORTS + src)
    res = exercises.run_check(exercises.get("05.1"), ns["recv_exactly"])
    assert res.passed, res.text()  # the solution itself is right, and no nested run piled up
    assert ns["INNER"] and all("already running" in r.text() for r in ns["INNER"]), ns["INNER"]


def test_a_detached_socket_is_still_closed(leakcheck):
    src = source("05.1").replace("return bytes(buf)", "sock.detach()\n    return bytes(buf)")
    assert "sock.detach()" in src
    res = run("05.1", src)
    assert res.text()  # judged; leakcheck finds no descriptor left open


@pytest.mark.parametrize("exercise_id, src, says", [
    ("11.1", """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
        def http_get(address, path):
            return AlwaysEqual(), b""
    """, "return it as an int"),
    ("07.1", """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
        def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
            return AlwaysEqual()
    """, "as an int"),
], ids=["11.1-status", "07.1-tries"])
def test_a_value_that_equals_everything_is_not_accepted(exercise_id, src, says, leakcheck):
    res = run(exercise_id, src)
    assert not res.passed and says in res.text(), res.text()


def test_a_busy_loop_is_not_called_waiting_in_recv(leakcheck):
    res = run("05.1", """
        def recv_exactly(sock, n):
            sock.recv(1)
            while True:
                pass
    """)
    assert "not waiting in recv() but still running" in res.text(), res.text()


# pytest reports a thread's uncaught exception as this warning (made an error here) instead of
# printing it: the learner would see it as a traceback in the cell
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_threads_ended_by_the_check_print_no_traceback(capfd, leakcheck):
    # spin never ends by itself; it is pure Python, so the check can end it
    res = run("05.1", recv_exactly_doing("threading.Thread(target=spin).start()",
                                         "import threading\ndef spin():\n    while True:\n        pass"))
    assert res.text()
    err = capfd.readouterr().err
    assert "CheckAbandoned" not in err, err


def test_a_failing_socket_call_of_the_check_is_not_blamed_on_socklab_alone():
    def case(ctx, fn):
        with socket.socket() as s:  # the check's own call, failing as if something was closed under it
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=1)
    ex = core.Exercise("99.7", "own call", "task (exercise 99.7)", ["h1", "h2"], ("f",),
                       [core.Case("a case", case)])
    res = exercises.run_check(ex, lambda: None)
    assert not res.passed and "The check's own connection failed (ConnectionRefusedError" in res.text()


def test_ending_a_case_leaves_sockets_that_older_threads_made_meanwhile_alone(leakcheck):
    """A server from an earlier cell that accepts a client while a check runs keeps that client:
    waking the learner's stuck code shuts down only the case's sockets and the learner's."""
    go, made, stop = threading.Event(), threading.Event(), threading.Event()
    pairs = []

    def earlier_cell():  # started before the check: not the learner's code of this case
        go.wait(10)
        pairs.append(socket.socketpair())
        made.set()
        stop.wait(10)

    older = threading.Thread(target=earlier_cell, name="earlier-cell")
    older.start()

    def stuck(ctx, fn):
        ctx.call(fn, limit=0.3, what="stuck()")

    def learner():
        go.set()
        made.wait(5)
        a, b = socket.socketpair()
        try:
            a.recv(10)  # no timeout: blocked until the check wakes it
        finally:
            a.close()
            b.close()

    ex = core.Exercise("99.7", "stuck", "task (exercise 99.7)", ["h1", "h2"], ("f",),
                       [core.Case("stuck", stuck)])
    try:
        res = exercises.run_check(ex, learner)
        assert not res.passed and "did not return within 0.3 s" in res.text(), res.text()
        a, b = pairs[0]
        a.sendall(b"still here")  # BrokenPipeError if the check had shut it down
        b.settimeout(5)
        assert b.recv(100) == b"still here"
    finally:
        stop.set()
        older.join(5)
        for s in (pairs[0] if pairs else ()):
            s.close()


# What the task asks of every client since the cut-body case: a body shorter than Content-Length
# (the server closed early) raises.
CUT_CHECKED = """    length = next(int(line.split(b":")[1]) for line in head.split(b"\\r\\n")[1:]
                  if line.split(b":")[0].strip().lower() == b"content-length")
    if len(body) < length:
        raise EOFError("the connection closed inside the body")
    return int(head.split(b" ")[1]), body"""


def test_11_1_connection_close_and_reading_to_the_end_passes_with_a_tip(leakcheck):
    """Asking the server to close is valid HTTP/1.1: the test server honours it (and a body cut
    short is still told from a whole one, by its Content-Length)."""
    src = READ_TO_END_HTTP_GET.replace(
        "REQUEST", 'f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"')
    res = run("11.1", src.replace('    return int(head.split(b" ")[1]), body', CUT_CHECKED))
    assert res.passed, res.text()
    assert any("Connection: close" in n for n in res.notes), res.notes
    # without the length check, the cut body passes for a whole one
    assert "A cut body must raise" in run("11.1", src).text()


def test_11_1_waiting_longer_than_the_pause_for_quiet_gets_a_tip(leakcheck):
    res = run("11.1", QUIET_HTTP_GET.replace("QUIET", "0.7").replace(
        '    return int(head.split(b" ")[1]), body', CUT_CHECKED))
    assert res.passed, res.text()  # it waits out every pause: right, but slow
    assert any("does it wait for the server to go quiet" in n for n in res.notes), res.notes


def test_closing_a_case_closes_a_socket_whose_makefile_is_alive_once(leakcheck):
    """socket.close() keeps the descriptor while a makefile() is alive, and the file closes it by
    number later: the case must not leave that number to be closed again under a newer socket."""
    ctx = Context("x", 1, 1.0)
    a, b = socket.socketpair()
    f = a.makefile("rb", buffering=0)  # e.g. held by a learner's traceback
    ctx.own(a)
    ctx.own(b)
    ctx.close()
    assert a.fileno() == -1
    newer = socket.socket()  # gets the lowest free descriptor: likely a's old one
    try:
        f.close()  # must not close `newer`'s descriptor
        newer.bind(("127.0.0.1", 0))
        assert newer.getsockname()[1] > 0
    finally:
        newer.close()


def test_an_abandon_that_python_could_not_raise_is_not_printed(monkeypatch, leakcheck):
    """CheckAbandoned, raised into a learner's thread spinning on b'' (05.2), landed in a weakref
    callback once: Python printed "Exception ignored in: <function WeakSet...>" to the cell. During
    a check such a report is dropped; any other goes on to the hook in force before."""
    import types
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    def report(exc_type):  # what the interpreter does with an exception it cannot raise
        sys.unraisablehook(types.SimpleNamespace(exc_type=exc_type, exc_value=exc_type(),
                                                 exc_traceback=None, err_msg=None, object=None))

    def recv_exactly(sock, n):
        report(core.CheckAbandoned)
        report(ValueError)
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    res = exercises.run_check(exercises.get("05.1"), recv_exactly)
    assert res.passed, res.text()
    assert seen and {a.exc_type for a in seen} == {ValueError}, seen
    assert sys.unraisablehook == seen.append  # put back after the check
