"""Uncaught errors in a notebook cell, in a real kernel after ``socklab.notebook.setup()``.

A learner's run found that running a cell again after a later (clean-up) cell closed its socket
showed a bare traceback: ``OSError: [Errno 9] Bad file descriptor`` (notebook 06), ``[Errno 98]
Address already in use`` (notebook 08). Only socklab's own errors were explained. Now an OSError
that a socket call raised in plain code is explained too, above a traceback of the cell's own
code; every other error shows as IPython shows it.
"""
from __future__ import annotations

import re

import pytest

from test_rerun import ROOT, Kernel

pytest.importorskip("jupyter_client")

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Cells(Kernel):
    def cell(self, code: str, timeout: float = 30, interrupt_on: str | None = None) -> dict:
        """Run ``code`` as a cell: {status, shown (display_data text), stdout, ename, traceback};
        interrupt the kernel (the stop button) once it prints ``interrupt_on``."""
        shown, out, tb = [], [], []

        def hook(msg):
            kind, c = msg["msg_type"], msg["content"]
            if kind == "display_data":
                shown.append(c["data"].get("text/plain", ""))
            elif kind == "stream":
                out.append(c["text"])
                if interrupt_on and interrupt_on in "".join(out):
                    self.km.interrupt_kernel()
            elif kind == "error":
                tb.extend(ANSI.sub("", line) for line in c["traceback"])

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook,
                                            allow_stdin=False, stop_on_error=False)
        c = reply["content"]
        return {"status": c["status"], "ename": c.get("ename"), "shown": "\n".join(shown),
                "stdout": "".join(out), "traceback": "\n".join(tb)}


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kernel = Cells(ROOT, tmp_path_factory.mktemp("ipython"))
    try:
        r = kernel.cell("import socket, socklab\nsocklab.notebook.setup(check=False)")
        assert r["status"] == "ok", r
        yield kernel
    finally:
        kernel.cell("socklab.stop_all()")
        kernel.shutdown()


def test_a_cell_run_again_after_its_socket_was_closed_is_explained(k):
    assert k.cell("s = socket.socket()\ns.bind(('127.0.0.1', 0))")["status"] == "ok"
    assert k.cell("s.close()  # the notebook's clean-up cell")["status"] == "ok"
    r = k.cell("s.bind(('127.0.0.1', 0))  # the first cell, run again")
    assert r["status"] == "error" and r["ename"] == "OSError", r
    assert "The socket was already closed" in r["shown"], r
    assert "Note: In a notebook this often means a cell ran again" in r["shown"], r
    # the traceback still points at the line, and ends with the error as Python prints it
    assert "s.bind(('127.0.0.1', 0))" in r["traceback"], r
    assert "OSError: [Errno 9] Bad file descriptor" in r["traceback"], r


def test_binding_again_in_a_cell_run_twice_is_explained(k):
    first = k.cell("path = socklab.runtime.private_path()\n"
                   "u = socket.socket(socket.AF_UNIX)\nu.bind(path)")
    assert first["status"] == "ok", first
    r = k.cell("u.bind(path)")
    assert r["ename"] == "OSError" and "Address already in use" in r["traceback"], r
    assert "a file already exists at the AF_UNIX path" in r["shown"], r
    assert "binds it a second time when it runs again" in r["shown"], r
    assert k.cell("u.close()\nimport os\nos.unlink(path)")["status"] == "ok"


def test_binding_a_tcp_socket_again_is_einval_with_the_note(k):
    """For TCP and UDP the second bind() of one socket is EINVAL (AF_UNIX's is EADDRINUSE)."""
    assert k.cell("t2 = socket.socket()\nt2.bind(('127.0.0.1', 0))")["status"] == "ok"
    r = k.cell("t2.bind(('127.0.0.1', 0))")
    assert r["ename"] == "OSError" and "Invalid argument" in r["traceback"], r
    assert "binds it a second time when it runs again" in r["shown"], r
    assert k.cell("t2.close()")["status"] == "ok"


def test_a_port_held_by_another_udp_socket_is_not_told_as_a_rebind(k):
    r = k.cell("u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu1.bind(('127.0.0.1', 0))\n"
               "u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu2.bind(u1.getsockname())")
    assert r["ename"] == "OSError" and "Address already in use" in r["traceback"], r
    assert "another UDP socket is bound" in r["shown"] and "Do not set SO_REUSEADDR" in r["shown"], r
    assert "binds it a second time" not in r["shown"] and "earlier run's socket" in r["shown"], r
    assert "accept()" not in r["shown"].split("Note:")[-1], r  # UDP has no accept()
    assert k.cell("u1.close()\nu2.close()")["status"] == "ok"


def test_sending_on_the_listening_socket_is_told_as_that(k):
    r = k.cell("srv = socket.create_server(('127.0.0.1', 0))\n"
               "cli = socket.create_connection(srv.getsockname(), timeout=5)\n"
               "conn, addr = srv.accept()\nsrv.settimeout(0.1)\nsrv.sendall(b'welcome')")
    assert r["ename"] == "TimeoutError", r
    assert "called on the listening socket" in r["shown"] and "conn.sendall" in r["shown"], r
    assert "conn, addr = srv.accept()" in r["shown"], r
    assert k.cell("for x in (srv, cli, conn):\n    x.close()")["status"] == "ok"


@pytest.mark.parametrize("code, ename, says", [
    ("c = socket.socket()\ntry:\n    c.sendall('hello')\nfinally:\n    c.close()", "TypeError",
     "Sockets send bytes, not str"),
    ("with socket.socket() as s:\n    s.bind('127.0.0.1:8080')", "TypeError", "Wrong address format"),
    ("with socket.socket() as s:\n    s.bind(('127.0.0.1', 70000))", "OverflowError", "Port out of range"),
    ("socket.create_connection('127.0.0.1:8080')", "ValueError", "Wrong address format"),
    ("with socket.socket() as s:\n    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, '65536')",
     "TypeError", "Wrong option value"),
    ("a, b = socket.socketpair()\ntry:\n    a.recv(-1)\nfinally:\n    a.close()\n    b.close()",
     "ValueError", "a stream has no end until the peer closes"),
    ("a, b = socket.socketpair()\ntry:\n    a.recv(2**60)\nfinally:\n    a.close()\n    b.close()",
     "MemoryError", "sets aside a buffer of n bytes"),
])
def test_a_socket_call_refusing_its_arguments_is_explained(k, code, ename, says):
    r = k.cell(code)
    assert r["status"] == "error" and r["ename"] == ename, r
    assert says in r["shown"], r
    assert "socket.py" not in r["traceback"], r["traceback"]


@pytest.mark.parametrize("code, says, not_says", [
    ("with socket.socket() as s:\n    s.connect('127.0.0.1', 8080)", "connect(('127.0.0.1', 8080))",
     "wrong type"),
    ("with socket.socket() as s:\n    s.bind('', 8080)", "takes ONE argument", "wrong type"),
    ("with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:\n    u.sendto(b'reply')",
     "the address recvfrom() returned", "recv(1024) rather"),
    ("with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:\n"
     "    u.sendto(('127.0.0.1', 9), b'reply')", "Arguments swapped", "AF_UNIX"),
    ("with socket.socket() as s:\n    s.recv()", "recv(1024)", "wrong type"),
    ("socket.socket('AF_INET', 'SOCK_STREAM')", "socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
     "wrong type"),
    ("with socket.socket() as s:\n    s.sendall(len(b'hello'))", "to_bytes", "encode('utf-8')"),
    ("import select\nc = socket.socket()\nc.close()\nselect.select([c], [], [], 0)",
     "already closed", "Negative value"),
    ("import ssl\nwith socket.socket() as raw:\n    ssl.create_default_context().wrap_socket(raw)",
     "server_hostname='localhost'", "ssl.py"),
])
def test_common_argument_mistakes_are_told_as_what_they_are(k, code, says, not_says):
    r = k.cell(code)
    assert r["status"] == "error" and says in r["shown"], r
    assert not_says not in r["shown"] + r["traceback"], r


def test_a_non_blocking_connect_called_again_is_not_told_as_a_timeout(k):
    # A full accept queue (backlog 0, one client in it) drops the SYN: the handshake stays going on.
    r = k.cell("lst = socket.socket()\nlst.bind(('127.0.0.1', 0))\nlst.listen(0)\n"
               "filler = socket.create_connection(lst.getsockname(), timeout=5)\n"
               "c = socket.socket()\nc.setblocking(False)\n"
               "try:\n    c.connect(lst.getsockname())\nexcept BlockingIOError:\n    pass\n"
               "c.connect(lst.getsockname())")
    assert r["ename"] == "BlockingIOError" and "Operation already in progress" in r["traceback"], r
    assert "still going on" in r["shown"] and "timed out" not in r["shown"], r
    assert k.cell("for x in (c, filler, lst):\n    x.close()")["status"] == "ok"


def test_a_rebind_note_only_for_a_socket_bound_before(k):
    r = k.cell("s6 = socket.socket(socket.AF_INET6)\ns6.bind(('fe80::1', 0))")
    assert r["status"] == "error" and "binds it a second time" not in r["shown"], r
    assert k.cell("s6.close()")["status"] == "ok"
    r = k.cell("with socket.socket(socket.AF_INET6) as s6:\n    s6.bind(('fe80::1', 0))")
    assert r["status"] == "error" and "binds it a second time" not in r["shown"], r  # closed by now


def test_a_udp_socket_that_never_bound_waits_for_nothing(k):
    r = k.cell("with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:\n"
               "    u.settimeout(0.1)\n    u.recvfrom(1024)")
    assert r["ename"] == "TimeoutError" and "never bound" in r["shown"], r


@pytest.mark.parametrize("code, ename", [
    ("int('eighty')", "ValueError"),
    ("def g():\n    yield 1\ng().send(5)", "TypeError"),
    ("'port' + 80", "TypeError"),
])
def test_other_argument_errors_are_left_to_ipython(k, code, ename):
    r = k.cell(code)
    assert r["ename"] == ename and r["shown"] == "", r


def test_a_socket_error_in_a_thread_of_the_learners_is_explained(k):
    """Notebook 09's servers run in threads: `srv.recv()` for `conn.recv()` there is explained too,
    with the thread's own lines; other thread errors print as Python prints them."""
    r = k.cell("import threading\n"
               "srv = socket.create_server(('127.0.0.1', 0))\nsrv.settimeout(0.2)\n"
               "def serve():\n    data = srv.recv(1024)\n"
               "t = threading.Thread(target=serve, name='server-thread')\nt.start()\nt.join(5)\n"
               "srv.close()")
    assert r["status"] == "ok", r
    assert "Exception in thread server-thread:\n  Not a connection" in r["stdout"], r
    assert "data = srv.recv(1024)" in r["stdout"] and "threading.py" not in r["stdout"], r
    assert "Cell In[" in r["stdout"] and "ipykernel_" not in r["stdout"], r  # no temporary path
    r = k.cell("def boom():\n    raise RuntimeError('not a socket matter')\n"
               "t = threading.Thread(target=boom, name='other')\nt.start()\nt.join(5)")
    assert "RuntimeError: not a socket matter" in r["stdout"] and "What happened" not in r["stdout"], r


def test_library_frames_are_left_out_and_percent_tb_still_has_them(k):
    """create_connection() fails three frames down in socket.py: the cell shows its own line, the
    explanation, and the error; %tb shows every frame."""
    port = k.cell("with socket.socket() as t:\n    t.bind(('127.0.0.1', 0))\n"
                  "    print(t.getsockname()[1])")["stdout"].strip()
    r = k.cell(f"def fetch():\n    return socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
               "fetch()")
    assert r["ename"] == "ConnectionRefusedError", r
    assert "nothing accepts connections at this address" in r["shown"], r
    assert "fetch()" in r["traceback"] and "socket.create_connection" in r["traceback"], r
    assert "socket.py" not in r["traceback"], r["traceback"]
    full = k.cell("%tb")
    assert "socket.py" in full["stdout"] + full["traceback"], full


@pytest.mark.parametrize("code, ename, says", [
    ("open('/no/such/file')", "FileNotFoundError", "No such file or directory"),
    # os.close() and a file's read() share names with socket calls: EBADF was explained as "the
    # socket was already closed", a file's UnsupportedOperation as a socket error
    ("import os\nos.close(12345)", "OSError", "Bad file descriptor"),
    ("import tempfile\nwith tempfile.TemporaryFile('w') as f:\n    f.read()", "UnsupportedOperation",
     "not readable"),
    ("raise ConnectionResetError(104, 'my own')", "ConnectionResetError", "my own"),
    ("1 / 0", "ZeroDivisionError", "division by zero"),
], ids=["open()", "os.close()", "a file's read()", "raised by the code itself", "not an OSError"])
def test_other_errors_show_as_ipython_shows_them(k, code, ename, says):
    """open()'s ENOENT is not an AF_UNIX path problem; an error the code raises on purpose needs
    no explanation: both keep IPython's traceback, with nothing displayed above it."""
    r = k.cell(code)
    assert r["ename"] == ename and says in r["traceback"], r
    assert r["shown"] == "", r
    assert "Traceback (most recent call last)" in r["traceback"], r


@pytest.mark.parametrize("code, ename", [
    ("import asyncio\nasync def main():\n    await asyncio.open_connection('127.0.0.1', PORT)\n"
     "await main()", "ConnectionRefusedError"),
    ("import urllib.request\nurllib.request.urlopen(f'http://127.0.0.1:{PORT}/', timeout=2)",
     "URLError"),
], ids=["asyncio", "urllib"])
def test_a_socket_error_one_layer_up_is_explained_without_the_library_frames(k, code, ename):
    """asyncio raises the refusal in a `raise` of its own, urllib wraps it in URLError: both showed
    a wall of 45 to 60 lines of library frames, unexplained."""
    port = k.cell("with socket.socket() as t:\n    t.bind(('127.0.0.1', 0))\n"
                  "    print(t.getsockname()[1])")["stdout"].strip()
    r = k.cell(code.replace("PORT", port))
    assert r["ename"] == ename, r
    assert "nothing accepts connections at this address" in r["shown"], r
    assert "asyncio/" not in r["traceback"] and "urllib/" not in r["traceback"], r["traceback"]
    assert "http/client.py" not in r["traceback"], r["traceback"]
    assert len(r["traceback"].splitlines()) < 25, r["traceback"]


def test_a_misspelt_service_name_is_explained_as_that(k):
    """It was explained as a host that could not be looked up ("use a numeric address")."""
    r = k.cell("socket.getaddrinfo('127.0.0.1', 'htp')")
    assert r["ename"] == "gaierror", r
    assert "Unknown port or service name" in r["shown"], r
    assert "Give the port as a number" in r["shown"], r


@pytest.mark.parametrize("code, says", [
    ("socket.socket(socket.AF_INET, socket.SOCK_RAW)", "Protocol not supported"),
    ("socket.socket(family=999)", "What happened:"),
], ids=["SOCK_RAW without a protocol", "an unknown family"])
def test_an_error_of_the_socket_constructor_is_explained(k, code, says):
    """socket.socket() itself was not taken for a socket call: a bare traceback, with the frame
    of socket.py's __init__ (so was SOCK_RAW without privileges, notebook 13)."""
    r = k.cell(code)
    assert r["status"] == "error", r
    assert says in r["shown"], r
    assert "socket.py" not in r["traceback"], r["traceback"]


def test_socklab_errors_keep_their_one_line(k):
    r = k.cell("socklab.Client(('127.0.0.1', 1)).connect()")
    assert r["ename"] == "ConnectionRefusedError", r
    assert "What happened:" in r["shown"], r
    assert "(explained above; %tb shows the full traceback)" in r["traceback"], r


# Run in a cell before a blocking call: prints 'waiting' once the cell's thread is inside the
# function named %(inside)r. No event marks that moment, so the thread looks at the cell's frames
# every millisecond (up to 5 s).
ANNOUNCE = """import sys as _s, threading as _t
_main = _t.get_ident()
def _announce():
    for _ in range(5000):
        f = _s._current_frames().get(_main)
        while f is not None and f.f_code.co_name != %(inside)r:
            f = f.f_back
        if f is not None:
            print("waiting", flush=True)
            return
        _t.Event().wait(0.001)
_t.Thread(target=_announce, daemon=True).start()"""


def test_an_interrupt_shows_the_cell_and_what_is_still_open(k):
    """An interrupt while a traced accept() waited showed the frames of socklab's trace.py and of
    socket.py (with their absolute paths) under the cell's line."""
    # 'waiting' comes from another thread once the cell is inside accept(): printed by the cell
    # itself, the interrupt could land while its print was still being sent (in zmq's frames).
    r = k.cell("socklab.stop_all()\nlst = socklab.socket(side='server')\n"
               "lst.bind(('127.0.0.1', 0))\nlst.listen()\nlst.settimeout(30)\n"
               f"{ANNOUNCE % {'inside': 'accept'}}\nconn, addr = lst.accept()", interrupt_on="waiting")
    assert r["ename"] == "KeyboardInterrupt", r
    assert "conn, addr = lst.accept()" in r["traceback"], r
    assert "trace.py" not in r["traceback"] and "socket.py" not in r["traceback"], r["traceback"]
    assert "Interrupted: the cell stopped" in r["shown"], r
    assert "<TracedSocket server AF_INET SOCK_STREAM open>" in r["shown"], r
    assert "socklab.stop_all()" in r["shown"], r
    assert k.cell("print(socklab.stop_all())")["stdout"].strip() == "1"


def test_an_interrupt_with_nothing_of_socklab_open_says_only_where(k):
    # a finished Background is still registered (until a re-run or stop_all()), but not running
    r = k.cell("socklab.stop_all()\nfinished = socklab.Background(len, b'abc')\nfinished.result(5)\n"
               f"import threading\nnever = threading.Event()\n{ANNOUNCE % {'inside': 'wait'}}\n"
               "never.wait(30)", interrupt_on="waiting")
    assert r["ename"] == "KeyboardInterrupt", r
    assert r["shown"] == "", r
    assert "never.wait(30)" in r["traceback"], r


def test_the_kernel_stays_usable(k):
    assert k.cell("print(1 + 1)")["stdout"].strip() == "2"
