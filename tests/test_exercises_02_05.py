"""Exercise checks 02.1, 03.1, 03.2, 05.1 and 05.2: wrong solutions that a learner session found
passing, crashing the check, or getting feedback about something they did not do. Each must now
fail with its own feedback (and the right solutions still pass, without a wrong tip).

Like tests/test_exercises.py: real sockets and real peers, the learner's code as a source string.
"""
from __future__ import annotations

import textwrap
import time

import pytest

import socklab.exercises as exercises
from exercise_solutions import load, source

# What the notebooks' first cells import: wrong solutions below use it as a learner's would.
NOTEBOOK_IMPORTS = "import errno, os, socket, stat, struct, threading\n"


def run(exercise_id, src=None):
    ex = exercises.get(exercise_id)
    ns = load(exercise_id, NOTEBOOK_IMPORTS + textwrap.dedent(src) if src is not None else None)
    try:
        return exercises.run_check(ex, *[ns[n] for n in ex.names])
    finally:
        for s in ns.get("KEEP", ()):  # what a wrong solution leaked on purpose
            s.close()


def failed_with(res, says, case=None):
    """The check failed, ``says`` is in its feedback (in case ``case``, a name prefix, if given),
    and nothing blames socklab for the learner's mistake."""
    text = res.text()
    assert not res.passed and res.status == "failed", text
    assert "bug in socklab" not in text and "The check itself failed" not in text, text
    if case is None:
        assert says in text, f"expected {says!r} in:\n{text}"
        return
    [c] = [c for c in res.cases if c.name.startswith(case)]
    assert c.status == "failed" and says in "\n".join(c.lines), f"expected {says!r} in {case!r}:\n{text}"


def statuses(res):
    return [c.status for c in res.cases]


# ---- 02.1 make_server

def test_02_1_ipv6_socket_is_told_the_family_and_does_not_crash_the_check(leakcheck):
    res = run("02.1", """
        def make_server():
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind(("::1", 0)); s.listen(); return s
    """)
    failed_with(res, "your socket is AF_INET6: for 127.0.0.1 use AF_INET.", "returns a listening")
    assert statuses(res) == ["failed", "passed", "passed"], res.text()  # just the family mistake


def test_02_1_accept_inside_make_server_is_named_at_once(leakcheck):
    t0 = time.perf_counter()
    res = run("02.1", """
        def make_server():
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
            conn, addr = srv.accept()
            return srv
    """)
    failed_with(res, "your make_server called accept(): it waits for a client; the caller accepts "
                     "— return the listening socket.", "returns a listening")
    failed_with(res, "It waits at line 5 of your code (in make_server): conn, addr = srv.accept()")
    assert "recv" not in res.text() and "did not return within" not in res.text(), res.text()
    assert time.perf_counter() - t0 < 2.0  # seen waiting in accept(), not timed out (3 s a case)


def test_02_1_no_bind_is_told_it_never_called_bind(leakcheck):
    res = run("02.1", """
        def make_server():
            srv = socket.socket(); srv.listen(); return srv
    """)
    failed_with(res, "you never called bind(): listen() bound it to 0.0.0.0 on a random port",
                "returns a listening")
    assert "('0.0.0.0' or '')" not in res.text(), res.text()


def test_02_1_bind_to_all_interfaces_is_still_told_so(leakcheck):
    """The bind() that was called is seen (create_server() too, which calls it for the learner)."""
    res = run("02.1", """
        def make_server():
            return socket.create_server(("0.0.0.0", 0))
    """)
    failed_with(res, "your server listens on all interfaces ('0.0.0.0' or '')", "returns a listening")
    assert "never called bind()" not in res.text(), res.text()


def test_02_1_closed_before_return_names_the_close_not_a_with_block(leakcheck):
    res = run("02.1", """
        def make_server():
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
            srv.close()
            return srv
    """)
    failed_with(res, "your code called close() on it before returning it", "returns a listening")
    failed_with(res, "Closed at line 5 of your code (in make_server): srv.close()")
    assert "with" not in " ".join(res.feedback).replace("without", ""), res.text()


def test_02_1_closed_by_a_with_block_still_names_the_with_block(leakcheck):
    res = run("02.1", """
        def make_server():
            with socket.socket() as srv:
                srv.bind(("127.0.0.1", 0)); srv.listen()
                return srv
    """)
    failed_with(res, "already closed: a `with` block closes it at its end", "returns a listening")
    assert "called close()" not in res.text(), res.text()


def test_02_1_create_server_passes(leakcheck):
    res = run("02.1", """
        def make_server():
            return socket.create_server(("127.0.0.1", 0))
    """)
    assert res.passed, res.text()


# ---- 03.1 bind_unix

BIND_UNIX_RETURNS_NONE_WHEN_LIVE = """
    def bind_unix(path):
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise FileExistsError(errno.EEXIST, "not a socket file", path)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                try:
                    probe.connect(path)
                except ConnectionRefusedError:
                    os.unlink(path)
                else:
                    print("a server is listening there")
                    return None
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path); srv.listen()
        return srv
"""


def test_03_1_none_for_a_live_servers_path_must_raise(leakcheck, capsys):
    res = run("03.1", BIND_UNIX_RETURNS_NONE_WHEN_LIVE)
    failed_with(res, "a live server owns the path: raise (e.g. OSError/FileExistsError) instead of "
                     "returning None", "a live server's path")
    assert statuses(res) == ["passed", "passed", "failed", "passed"], res.text()


def test_03_1_none_for_a_regular_file_must_raise(leakcheck):
    res = run("03.1", source("03.1").replace(
        "            raise FileExistsError(errno.EEXIST, \"not a socket file\", path)\n",
        "            return None\n"))
    failed_with(res, "the path holds a regular file, not a socket file: raise (e.g. "
                     "OSError/FileExistsError) instead of returning None", "a regular file")


LIVE_RAISE = '                raise OSError(errno.EADDRINUSE, "a server is listening there", path)\n'


def test_03_1_a_slip_in_the_code_is_not_taken_for_the_error_it_must_raise(leakcheck):
    """A NameError on the live-server branch is a bug, not a refusal: it used to pass."""
    assert LIVE_RAISE in source("03.1")
    res = run("03.1", source("03.1").replace(LIVE_RAISE, "                raise OSEror(path)\n"))
    failed_with(res, "NameError", "a live server's path")
    assert statuses(res) == ["passed", "passed", "failed", "passed"], res.text()


def test_03_1_another_exception_passes_with_a_tip_for_oserror(leakcheck):
    res = run("03.1", source("03.1").replace(LIVE_RAISE, "                raise RuntimeError(path)\n"))
    assert res.passed, res.text()
    assert len(res.notes) == 1 and "raised RuntimeError" in res.notes[0] \
        and "except OSError" in res.notes[0], res.notes
    assert run("03.1").notes == []  # the reference raises OSError: no tip


def test_03_1_probe_left_open_when_raising_is_reported(leakcheck):
    """Consistent with the success path, where a probe left open was already reported."""
    res = run("03.1", """
        def bind_unix(path):
            if os.path.exists(path):
                if not stat.S_ISSOCK(os.stat(path).st_mode):
                    raise FileExistsError(errno.EEXIST, "not a socket file", path)
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                probe.settimeout(1)
                try:
                    probe.connect(path)
                except ConnectionRefusedError:
                    probe.close()
                    os.unlink(path)
                else:
                    raise OSError(errno.EADDRINUSE, "a server is listening there", path)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path); srv.listen()
            return srv
    """)
    failed_with(res, "your bind_unix raised (right), but left 1 socket it created open",
                "a live server's path")
    failed_with(res, "Made at line 7 of your code (in bind_unix): probe = socket.socket(")
    assert statuses(res) == ["passed", "passed", "failed", "passed"], res.text()


# ---- 03.2 reusable_server

def test_03_2_none_for_a_taken_port_must_let_the_error_through(leakcheck, capsys):
    res = run("03.2", """
        def reusable_server(port):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                print("could not bind:", e)
                s.close()
                return None
            s.listen()
            return s
    """)
    failed_with(res, "The port is taken: let the OSError through (or raise), don't return None",
                "a port another server listens on")
    assert "did you forget" not in res.text(), res.text()


def test_03_2_socket_left_open_when_bind_raises_is_reported(leakcheck):
    res = run("03.2", """
        def reusable_server(port):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
            return s
    """)
    failed_with(res, "your reusable_server raised (right), but left 1 socket it created open",
                "a port another server listens on")
    failed_with(res, "Made at line 4 of your code (in reusable_server): s = socket.socket()")


# ---- 05.1 recv_exactly

def test_05_1_recv_n_instead_of_the_rest_reads_into_the_next_message(leakcheck):
    res = run("05.1", source("05.1").replace("sock.recv(n - len(buf))", "sock.recv(n)"))
    failed_with(res, "Ask recv() for at most n - len(buf) bytes: you read 3 bytes of the next "
                     "message.", "two messages back to back")
    failed_with(res, "your recv_exactly returned b'hellowor': it took bytes of the next message")


def test_05_1_recv_n_cut_back_to_n_still_lost_the_next_messages_bytes(leakcheck):
    res = run("05.1", source("05.1").replace("sock.recv(n - len(buf))", "sock.recv(n)")
              .replace("return bytes(buf)", "return bytes(buf[:n])"))
    failed_with(res, "Ask recv() for at most n - len(buf) bytes: you read 3 bytes of the next "
                     "message.", "two messages back to back")


def test_05_1_makefile_reading_ahead_is_told_without_waiting(leakcheck):
    t0 = time.perf_counter()
    res = run("05.1", """
        def recv_exactly(sock, n):
            data = sock.makefile("rb").read(n)
            if len(data) < n:
                raise EOFError(f"peer closed after {len(data)} of {n} bytes")
            return data
    """)
    failed_with(res, "the first call read bytes of the next message (b'world') past the end of its "
                     "own", "two messages back to back")
    assert "did not return" not in res.text(), res.text()
    assert time.perf_counter() - t0 < 3.0


def test_05_1_none_at_an_early_close_is_told_to_raise(leakcheck):
    res = run("05.1", source("05.1").replace(
        "            raise EOFError(f\"peer closed after {len(buf)} of {n} bytes\")\n",
        "            return None\n"))
    failed_with(res, "the peer closed after 7 of 12 bytes: raise an exception (e.g. "
                     "EOFError/ConnectionError) rather than return None", "the peer closes")
    assert "did you forget" not in res.text(), res.text()


def test_05_1_closing_the_callers_socket_is_named(leakcheck):
    res = run("05.1", source("05.1").replace("    return bytes(buf)\n",
                                             "    sock.close()\n    return bytes(buf)\n"))
    failed_with(res, "your recv_exactly closed the socket it was given; the caller owns it",
                "two messages back to back")
    assert "close each socket exactly once" not in res.text(), res.text()


@pytest.mark.parametrize("label, src", [
    ("MSG_WAITALL", source("05.1").replace("sock.recv(n - len(buf))",
                                           "sock.recv(n - len(buf), socket.MSG_WAITALL)")),
    ("recv_into", """
        def recv_exactly(sock, n):
            buf = bytearray(n)
            view = memoryview(buf)
            got = 0
            while got < n:
                k = sock.recv_into(view[got:])
                if not k:
                    raise EOFError(f"peer closed after {got} of {n} bytes")
                got += k
            return bytes(buf)
    """),
])
def test_05_1_other_right_solutions_pass(label, src, leakcheck):
    res = run("05.1", src)
    assert res.passed, res.text()


# ---- 05.2 echo_handler

GLOBAL_BUFFER = """
    buffer = b""
    def echo_handler(conn, server):
        global buffer
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            conn.sendall(buffer)
            buffer = b""
"""


def test_05_2_a_global_buffer_is_caught_mixing_clients_every_time(leakcheck):
    for _ in range(5):  # it passed 2 runs in 22, and mostly got a byte dump: by timing luck
        res = run("05.2", GLOBAL_BUFFER)
        failed_with(res, "got bytes that client 1 sent", "three clients at once")
        failed_with(res, "Keep the buffer local to the handler, not in a global")
        assert statuses(res) == ["passed", "passed", "failed", "passed"], res.text()


def test_05_2_a_handler_that_never_calls_recv_is_told_so_every_time(leakcheck):
    for _ in range(5):  # it passed the first case in one kernel, failed it in another
        res = run("05.2", """
            def echo_handler(conn, server):
                conn.sendall(b"hello")
        """)
        failed_with(res, "your handler never called recv(): it sent b'hello' without reading what "
                         "the client sent.", "one client, one message")
        assert all(c.status == "failed" for c in res.cases), res.text()
        assert "got back b'hello'" not in res.text(), res.text()


def test_05_2_a_loop_over_send_passes_without_the_send_tip(leakcheck):
    """The loop the task asks for (my_sendall) handles partial sends: no 'send() may send only
    part' tip for it."""
    res = run("05.2", """
        def echo_handler(conn, server):
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    n = conn.send(view)
                    view = view[n:]
    """)
    assert res.passed, res.text()
    assert not res.notes and "send() may send only part" not in res.text(), res.text()


def test_05_2_send_tip_when_each_buffer_took_one_send(leakcheck):
    """The rule behind the tip, on a real server: one send() per received buffer (nothing shows
    that the code handles a partial send) gets it; more send() calls than buffers do not."""
    import socket

    from socklab.exercises.core import Context
    from socklab.exercises.nb05 import _echo_server, _send_tip
    from socklab.exercises.peers import read_all

    def lone(conn, server):
        while data := conn.recv(65536):
            conn.send(data)

    def halves(conn, server):  # two sends per buffer, as a loop over a partial send makes
        while data := conn.recv(65536):
            conn.send(data[:1])
            conn.send(data[1:])

    for handler, tip in ((lone, True), (halves, False)):
        ctx = Context("05.2", 0, 3.0)
        try:
            srv = _echo_server(ctx, handler)
            with socket.create_connection(srv.address, timeout=5) as c:
                c.sendall(b"hello")
                c.shutdown(socket.SHUT_WR)
                assert read_all(c, 5) == (b"hello", "closed")
            _send_tip(ctx, srv)
            assert bool(ctx.notes) is tip, (handler.__name__, ctx.notes)
        finally:
            ctx.close()


def test_the_reference_solutions_pass_with_no_tips(leakcheck):
    for exercise_id in ("02.1", "03.1", "03.2", "05.1", "05.2"):
        res = run(exercise_id)
        assert res.passed and not res.notes, res.text()
