"""socklab's own threads block SIGINT, so Jupyter's interrupt is never taken by one of them (Python
raises KeyboardInterrupt only in the main thread). Read from the kernel's view of each thread."""
from __future__ import annotations

import os
import signal
import threading

import pytest

import socklab
from socklab.runtime import Thread

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


def blocked(thread: threading.Thread) -> set:
    """The signals ``thread`` blocks, from /proc/self/task/<tid>/status (SigBlk)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    return {s for s in signal.Signals if mask >> (s - 1) & 1}


def test_a_socklab_thread_blocks_sigint_and_its_starter_does_not():
    started, release = threading.Event(), threading.Event()

    def work():
        started.set()
        release.wait(10)
    t = Thread(target=work, name="socklab-test")
    t.start()
    try:
        assert started.wait(10)
        assert t.daemon
        assert signal.SIGINT in blocked(t)
        assert signal.SIGINT not in blocked(threading.main_thread())
    finally:
        release.set()
        t.join(10)


def test_every_thread_of_a_running_demo_blocks_sigint(leakcheck):
    # an AF_UNIX server runs beside them: its threads are checked too
    with socklab.Server() as srv, socklab.Client(srv) as c, socklab.Server(family="AF_UNIX"):
        c.connect()
        assert c.request(b"hello") == b"hello"  # the connection's thread is serving by now
        ours = [t for t in threading.enumerate() if t.name.startswith("socklab-")]
        # two accept loops and the TCP connection's thread
        assert len(ours) >= 3, [t.name for t in ours]
        assert {t.name: signal.SIGINT in blocked(t) for t in ours} == {t.name: True for t in ours}
    assert signal.SIGINT not in blocked(threading.main_thread())
