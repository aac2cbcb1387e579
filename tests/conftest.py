"""Shared fixtures for socklab's engine tests.

* ``leakcheck``: fails a test that leaves a file descriptor, a thread, a listening socket or a file in
  socklab's private AF_UNIX directory behind.
* ``as_nobody``: runs a Python snippet as the unprivileged user 65534 (nobody), for the errors a learner
  without root sees (EACCES on port 80, EPERM on raw sockets).
* every test ends with ``socklab.stop_all()``, so one failing test cannot leave servers to the next.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest

import socklab
from socklab import kstate, runtime

NOBODY = 65534
JOIN_TIMEOUT = 5.0

# A job started in the background (`make test &`, nohup, some CI runners) inherits SIGINT ignored,
# and Python then never raises KeyboardInterrupt: the tests of Jupyter's stop button need it, as a
# kernel has it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def rundir_files() -> list:
    return sorted(os.listdir(runtime.rundir()))


@dataclass
class Snapshot:
    fds: int
    threads: int
    thread_set: frozenset
    listening: list
    files: list


def snapshot() -> Snapshot:
    return Snapshot(fd_count(), threading.active_count(), frozenset(threading.enumerate()),
                    kstate.listening(), rundir_files())


def join_new_threads(before: frozenset, timeout: float = JOIN_TIMEOUT) -> list:
    """Join every thread started since ``before``; return the names of those still alive."""
    alive = []
    for t in threading.enumerate():
        if t in before or t is threading.current_thread():
            continue
        t.join(timeout)
        if t.is_alive():
            alive.append(t.name)
    return alive


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _stop_everything():
    """Runs after every test (and after ``leakcheck``, which must see leaks before this hides them)."""
    yield
    socklab.stop_all()


@pytest.fixture
def interrupt_when():
    """``with interrupt_when(event):`` sends SIGINT to the main thread once ``event`` is set, as
    Jupyter's stop button does to a kernel: Python raises KeyboardInterrupt there, wherever it
    waits. (A fixture: test modules cannot import from conftest, there are two of them.)"""
    return _interrupt_when


@contextlib.contextmanager
def _interrupt_when(event: threading.Event, timeout: float = 10.0):
    main = threading.main_thread().ident
    sender = threading.Thread(target=lambda: event.wait(timeout) and signal.pthread_kill(main, signal.SIGINT))
    sender.start()
    try:
        yield
    finally:
        sender.join()


@pytest.fixture
def leakcheck(request):
    """Snapshot fds, threads, listening sockets and rundir files; assert them unchanged afterwards.

    Threads the test started are joined (never waited for by sleeping) before counting.
    The fixture value is the snapshot taken before the test. When the test itself failed, its own
    clean-up was skipped: then socklab.stop_all() runs first, so only leaks it cannot fix are reported.
    """
    if not os.path.isdir("/proc/self/fd") or not kstate.available():
        pytest.skip("leak checks read /proc (Linux only)")
    before = snapshot()
    yield before
    if request.node.stash.get(_CALL_FAILED, False):
        socklab.stop_all()
    alive = join_new_threads(before.thread_set)
    after = snapshot()
    problems = []
    if alive:
        problems.append(f"threads still running: {alive}")
    # Only growth is a leak: something an earlier test left may finish during this one.
    if after.threads > before.threads:
        problems.append(f"thread count {before.threads} -> {after.threads}")
    if after.fds > before.fds:
        problems.append(f"fd count {before.fds} -> {after.fds}")
    new_listening = set(after.listening) - set(before.listening)
    if new_listening:
        problems.append(f"new listening sockets {sorted(new_listening)}")
    new_files = set(after.files) - set(before.files)
    if new_files:
        problems.append(f"new files in rundir {sorted(new_files)}")
    assert not problems, "leak: " + "; ".join(problems)


# ---- running code as an unprivileged user

# Imported as root before dropping privileges (fallback mode): after setuid() the interpreter's own
# files may be unreadable, so everything a snippet uses must already be in sys.modules.
_DROP = (
    "import errno, json, os, socket, struct, sys, socklab, socklab.config, socklab.errors, "
    "socklab.servers\n"
    f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    f"assert os.getuid() == os.geteuid() == {NOBODY} and not socklab.config.can_raw()\n"
)


def _env():
    env = dict(os.environ)
    env["HOME"] = "/tmp"
    env.pop("PYTHONSTARTUP", None)
    return env


def _as_user(args, timeout):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd="/",
                          env=_env(), user=NOBODY, group=NOBODY, extra_groups=[])


@functools.lru_cache(maxsize=1)
def nobody_mode() -> tuple:
    """('user', '') when uid 65534 can run sys.executable and import socklab;
    ('drop', why) when it cannot, but a root process can import socklab and then drop to uid 65534;
    ('self', '') when the tests already run as a normal user without privileges (a maintainer's
    laptop): the snippet runs as that user; (None, reason) when none of these works."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        import socklab.config
        if hasattr(os, "geteuid") and not socklab.config.can_raw() \
                and not socklab.config.can_bind_low_ports():
            return "self", ""
        return None, "needs root to switch to uid 65534 (this user holds network privileges)"
    probe = f"import os, socklab; assert os.geteuid() == {NOBODY}"
    try:
        r = _as_user([sys.executable, "-c", probe], 30)
        if r.returncode == 0:
            return "user", ""
        why = f"uid {NOBODY} cannot import socklab with {sys.executable}: {r.stderr.strip()[-300:]}"
    except PermissionError as exc:
        why = f"uid {NOBODY} cannot run {sys.executable} ({exc})"
    r = subprocess.run([sys.executable, "-c", _DROP + "print('ok')"], capture_output=True, text=True,
                       timeout=30, cwd="/", env=_env())
    if r.returncode == 0 and r.stdout.strip() == "ok":
        return "drop", why
    return None, why + f"; dropping privileges after import failed too: {r.stderr.strip()[-300:]}"


def run_as_nobody(code: str, timeout: float = 30) -> dict:
    """Run ``code`` as uid/gid 65534 (or as this user, already unprivileged: see nobody_mode) with
    sys.executable; it must print one JSON object as its last stdout line, which is returned. Skips
    (with the reason) where that is impossible."""
    mode, why = nobody_mode()
    if mode is None:
        pytest.skip(f"cannot run code as a non-root user: {why}")
    if mode == "user":
        r = _as_user([sys.executable, "-c", code], timeout)
    elif mode == "self":
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, cwd="/", env=_env())
    else:
        r = subprocess.run([sys.executable, "-c", _DROP + code], capture_output=True, text=True,
                           timeout=timeout, cwd="/", env=_env())
    assert r.returncode == 0, f"snippet failed as uid {NOBODY} ({mode} mode):\n{r.stderr}"
    lines = r.stdout.strip().splitlines()
    assert lines, f"snippet printed nothing as uid {NOBODY}; stderr:\n{r.stderr}"
    return json.loads(lines[-1])


@pytest.fixture
def as_nobody():
    """``as_nobody(code) -> dict``: see ``run_as_nobody``."""
    return run_as_nobody
