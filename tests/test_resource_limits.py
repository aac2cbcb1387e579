"""socklab's own machinery under a classroom host's resource limits (a spawner's ``ulimit``).

Each test runs a child process with the limit (never this test process): out of file descriptors
(RLIMIT_NOFILE), out of threads (RLIMIT_NPROC, as an otherwise unused uid, so only the child's own
threads count) or out of memory. The child prints one JSON line: what socklab said, and what was
left once ``socklab.stop_all()`` ran (descriptors, threads, files in the private AF_UNIX directory).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/fd"),
                                reason="Linux resource limits and /proc")

PRELUDE = """
import encodings.idna, errno, json, os, resource, socket, sys, threading, time
import socklab, socklab.backlog, socklab.concurrency, socklab.exercises
from socklab import runtime

def fds():
    return len(os.listdir("/proc/self/fd"))

def left(fd0):
    socklab.stop_all()
    return dict(fds=fds() - fd0, rundir=os.listdir(runtime.rundir()),
                threads=[t.name for t in threading.enumerate() if t is not threading.main_thread()])

def no_more_threads(extra=0):
    # As an unused uid, RLIMIT_NPROC counts this process's threads only (root is never limited).
    uid = 61000 + os.getpid() % 3000
    os.chown(runtime.rundir(), uid, uid)  # made before, as root
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
    n = threading.active_count() + extra
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n + 64))

def more_threads():
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    resource.setrlimit(resource.RLIMIT_NPROC, (hard, hard))

def cpu(thread):
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))

def text(exc):
    return f"{type(exc).__name__}: {exc}"

runtime.rundir()  # made before any limit, as a kernel that ran a cell before would have
"""


def child(code: str, timeout: float = 90) -> dict:
    """Run ``code`` (after PRELUDE) in a child; its last stdout line is JSON, returned. The child
    must exit normally, within ``timeout``, with no traceback of a thread on its stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, cwd=str(ROOT), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def clean(r: dict) -> None:
    assert r["left"] == {"fds": 0, "rundir": [], "threads": []}, r["left"]


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="RLIMIT_NPROC for this process alone needs a uid of its own (root)")


# ---- out of file descriptors

@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX"])
def test_a_server_out_of_descriptors_waits_explained_and_serves_again(family):
    """accept() fails with EMFILE while a client waits in the queue: the server must not retry at
    once for ever (100% CPU, an error per try), and must serve the client once descriptors are free."""
    r = child(f"""
        fd0 = fds()
        srv = socklab.Server(name="s", family={family!r}).start()
        failed = threading.Event()
        srv.trace.subscribe(lambda ev: ev.call == "accept" and ev.error is not None and failed.set())
        resource.setrlimit(resource.RLIMIT_NOFILE, (fds() + 8, 1024))
        hog = []
        try:
            while True:
                hog.append(socket.socket())
        except OSError:
            pass
        hog.pop().close()  # one for the client: the server's accept() has none left
        c = socket.socket(srv.sock.family, socket.SOCK_STREAM)
        c.settimeout(30)
        c.connect(srv.address)
        c.sendall(b"hello")
        assert failed.wait(30)
        serving = next(t for t in threading.enumerate() if t.name == "socklab-" + srv.side)
        before = cpu(serving)
        threading.Event().wait(1.0)  # a second of EMFILE: how much of it did the server spend?
        spent = cpu(serving) - before
        errors = [e.text() for _, e in srv.errors]
        for h in hog:
            h.close()
        reply = c.recv(100)  # served once descriptors are free again
        c.close()
        srv.stop()
        print(json.dumps(dict(spent=spent, errors=errors, reply=reply.decode(), left=left(fd0))))
    """)
    assert r["spent"] < 0.3, r["spent"]  # waiting, not spinning (a spinning loop spends ~1 s)
    assert len(r["errors"]) == 1, r["errors"][:3]  # explained once, not once per retry
    assert r["errors"][0].startswith("Too many open files")
    assert "`ulimit -n`) is " in r["errors"][0] and " here." in r["errors"][0]  # the actual limit
    assert r["reply"] == "hello"
    clean(r)


def test_too_many_open_files_names_the_limit_in_force():
    r = child("""
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 1024))
        srv = socklab.Server(name="s").start()
        clients = []
        try:
            while True:
                clients.append(socklab.Client(srv).connect())
        except OSError as exc:
            err = str(exc)
        for c in clients:
            c.close()
        print(json.dumps(dict(err=err, left=left(0) | dict(fds=0))))
    """)
    assert r["err"].startswith("Too many open files")
    assert "its limit (`ulimit -n`) is 64 here." in r["err"]
    assert "classroom host" in r["err"] and "with` block" in r["err"]


@pytest.mark.parametrize("style", ["threads", "selectors", "asyncio"])
def test_a_measurement_out_of_descriptors_serves_who_it_can_and_says_why(style):
    """40 clients, 40 descriptors: both ends of every connection count. The server keeps accepting
    (it does not die of EMFILE, asyncio does not log tracebacks) and the run says why some failed."""
    r = child(f"""
        fd0 = fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 1024))
        try:
            m = socklab.concurrency.measure({style!r}, 40, 0.05, timeout=15)
            out = dict(answered=m.answered, problem=m.problem and m.problem.text())
        except Exception as exc:
            out = dict(raised=text(exc))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        print(json.dumps(dict(out, left=left(fd0))))
    """)
    assert "raised" not in r, r["raised"]
    assert r["answered"] < 40 and r["problem"].startswith("Too many open files"), r
    assert "is 40 here" in r["problem"]
    clean(r)


def test_the_backlog_experiment_out_of_descriptors_is_explained_and_closes_everything():
    r = child("""
        fd0 = fds()
        out = {}
        for family in ("AF_INET", "AF_UNIX"):
            for limit in range(fd0 + 1, fd0 + 8):  # out of descriptors at each step of the set-up
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, 1024))
                try:
                    socklab.backlog.run_backlog_experiment(2, 10, 0.5, family=family)
                except OSError as exc:
                    out[f"{family} {limit - fd0}"] = str(exc)
                resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
                assert fds() == fd0, (family, limit, fds(), fd0)
        print(json.dumps(dict(out=out, left=left(fd0))))
    """)
    assert len(r["out"]) == 14, r["out"]
    for where, err in r["out"].items():
        assert err.startswith("Too many open files"), (where, err)
        assert "`ulimit -n`) is " in err
    clean(r)


# ---- out of threads

@needs_root
@pytest.mark.parametrize("make", ['socklab.Server(name="s", family="AF_UNIX")'] +
                         [f'socklab.concurrency.make_server({style!r}, name="s")'
                          for style in ("iterative", "threads", "selectors", "asyncio")])
def test_a_server_that_cannot_start_its_thread_raises_explained_and_leaves_nothing(make):
    r = child(f"""
        fd0 = fds()
        no_more_threads()
        try:
            {make}.start()
            err = None
        except RuntimeError as exc:
            err = str(exc)
        print(json.dumps(dict(err=err, running=len(runtime.running()), left=left(fd0))))
    """)
    assert r["err"].startswith("Cannot start a thread") and "ulimit -u" in r["err"], r["err"]
    assert r["running"] == 0
    clean(r)


@needs_root
def test_a_server_refused_a_handler_thread_says_so_and_keeps_serving():
    """A thread per connection: when the OS refuses one, that client is closed, the reason is kept
    (errors, trace), and the server goes on; once threads are allowed again it serves as before."""
    r = child("""
        fd0 = fds()
        no_more_threads(extra=1)  # the serving thread, and no more
        srv = socklab.Server(name="s", family="AF_UNIX").start()
        c = socklab.Client(srv, timeout=10).connect()
        try:
            first = c.recv(10).decode()  # closed by the server: no thread to serve it
        except ConnectionError as exc:
            first = text(exc)
        c.close()
        errors = [e.text() for _, e in srv.errors]
        notes = [e.args[0] for e in srv.trace if e.call == "note"]
        running = srv.running
        more_threads()
        second = socklab.Client(srv, timeout=10).request(b"again").decode()
        print(json.dumps(dict(first=first, errors=errors, notes=notes, running=running,
                              second=second, left=left(fd0))))
    """)
    assert r["first"] in ("", "ConnectionResetError: Connection reset by peer") or \
        r["first"].startswith("ConnectionResetError"), r["first"]
    assert r["running"]
    assert len(r["errors"]) == 1 and r["errors"][0].startswith("Cannot start a thread"), r["errors"]
    assert any("no thread could be started" in n for n in r["notes"]), r["notes"]
    assert r["second"] == "again"
    clean(r)


@needs_root
def test_a_client_the_server_could_not_serve_is_told_why():
    """The client side of the case above (a client with an address: AF_INET): request() raises
    ConnectionError explained as not served for want of a thread; a plain recv() gets b'' and the
    trace says why."""
    r = child("""
        fd0 = fds()
        no_more_threads(extra=1)  # the serving thread, and no more
        srv = socklab.Server(name="s").start()
        try:
            socklab.Client(srv, timeout=10).request(b"hello")
            said = None
        except ConnectionError as exc:
            said = exc.explanation.title + " | " + exc.explanation.what
        c = socklab.Client(srv, timeout=10).connect()
        got = c.recv(10).decode()
        notes = [e.args[0] for e in srv.trace if e.call == "note" and e.side == c.side]
        c.close()
        more_threads()
        print(json.dumps(dict(said=said, got=got, notes=notes, left=left(fd0))))
    """)
    assert r["said"] and r["said"].startswith("Not served: no thread | The server accepted this"), r
    assert r["got"] == ""
    assert any("could not start a thread to serve it" in n for n in r["notes"]), r["notes"]
    clean(r)


@needs_root
def test_load_clients_that_cannot_all_start_are_explained_and_joined():
    r = child("""
        fd0 = fds()
        srv = socklab.concurrency.make_server("threads", 0.01, name="s").start()
        no_more_threads(extra=5)
        try:
            socklab.concurrency.run_clients(srv.address, 20)
            err = None
        except RuntimeError as exc:
            err = str(exc)
        more_threads()
        srv.stop()
        print(json.dumps(dict(err=err, left=left(fd0))))
    """)
    assert r["err"] is not None and r["err"].startswith("Cannot start a thread"), r["err"]
    assert "use fewer clients" in r["err"]
    clean(r)


@needs_root
def test_the_backlog_experiment_without_threads_is_explained():
    r = child("""
        fd0 = fds()
        no_more_threads(extra=3)
        try:
            socklab.backlog.run_backlog_experiment(2, 10, 0.5)
            err = None
        except RuntimeError as exc:
            err = str(exc)
        print(json.dumps(dict(err=err, left=left(fd0))))
    """)
    assert r["err"] is not None and r["err"].startswith("Cannot start a thread"), r["err"]
    clean(r)


@needs_root
def test_panels_that_cannot_start_their_thread_say_why():
    pytest.importorskip("ipywidgets")
    r = child("""
        import re
        from socklab.widgets.backlog import BacklogPanel
        from socklab.widgets.manyclients import ManyClientsPanel
        fd0 = fds()
        mc = ManyClientsPanel(clients=5, style="threads", service_ms=5, name="mc")
        bl = BacklogPanel(name="bl")
        no_more_threads()
        mc.buttons["Run"].click()  # a button: the alert box says it, nothing is raised
        try:
            mc.run()
            raised = None
        except RuntimeError as exc:
            raised = str(exc)
        bl.buttons["Run"].click()
        plain = lambda html: re.sub(r"<[^>]+>", " ", html)
        print(json.dumps(dict(mc=plain(mc.alert.value), mc_status=plain(mc.status.value), raised=raised,
                              bl=plain(bl.alert.value), left=left(fd0))))
    """)
    assert "Cannot start a thread" in r["mc"] and "failed" in r["mc_status"], r
    assert r["raised"] is not None and r["raised"].startswith("Cannot start a thread")
    assert "Cannot start a thread" in r["bl"], r["bl"]
    clean(r)


@needs_root
@pytest.mark.parametrize("exercise", ["05.2", "09.1", "10.1"])
def test_an_exercise_check_without_threads_blames_the_limit_not_a_bug(exercise):
    """check() never raises for what the host does, and a limit is not 'a bug in socklab's exercise'."""
    r = child(f"""
        sys.path.insert(0, "tests")
        from exercise_solutions import load, source
        ex = socklab.exercises.get({exercise!r})
        ns = load({exercise!r}, "import errno, os, socket, stat, struct, threading\\n" + source({exercise!r}))
        fd0 = fds()
        no_more_threads()
        try:
            res = socklab.exercises.check({exercise!r}, *[ns[n] for n in ex.names])
            out = dict(passed=res.passed, text=res.text())
        except Exception as exc:
            out = dict(raised=text(exc))
        print(json.dumps(dict(out, left=left(fd0))))
    """)
    assert "raised" not in r, r["raised"]
    assert not r["passed"]
    assert "annot start a thread" in r["text"] and "please report" not in r["text"], r["text"]
    clean(r)


# ---- out of memory

def test_out_of_memory_is_explained_as_such():
    r = child("""
        from socklab.errors import explain
        resource.setrlimit(resource.RLIMIT_AS, (2 ** 30, resource.RLIM_INFINITY))
        try:
            big = b"x" * 2 ** 31
        except MemoryError as exc:
            e = explain(exc)
        print(json.dumps(dict(title=e.title, text=e.text(), left=left(0) | dict(fds=0))))
    """)
    assert r["title"] == "Out of memory"
    assert "in pieces" in r["text"] and "ulimit -v" in r["text"]
