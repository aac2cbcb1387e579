"""Many learners on one shared host: 20 processes run the standard demos at the same moment.

Each process is what a kernel is to socklab: its own registry and its own private AF_UNIX
directory. All 20 start their demos together (released by one line on stdin each), hold their
servers while the parent compares what they got, then stop. With default settings there must be
zero collisions: no 'Address already in use', every port distinct, every AF_UNIX file inside its
own process's private directory (mode 0700), nothing left behind after exit.
"""
from __future__ import annotations

import json
import os
import pathlib
import selectors
import subprocess
import sys
import time

import pytest

N = 20
DEADLINE = 180.0  # s for the whole run (imports of 20 interpreters on 2 cores dominate)
ROOT = pathlib.Path(__file__).resolve().parent.parent

WORKER = r'''
import json, os, socket, stat, sys, traceback
import socklab
from socklab import runtime
from socklab.widgets import LabPanel
import socklab.exercises as exercises
sys.path.insert(0, sys.argv[1])
from exercise_solutions import load

print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
report = {"pid": os.getpid(), "errors": [], "tcp": [], "udp": [], "unix": [], "checks": {}}
try:
    tcp = socklab.Server(name="tcp").start()                       # TCP echo, port 0
    c = socklab.Client(tcp)
    assert c.request(b"tcp %d" % os.getpid()) == b"tcp %d" % os.getpid()
    report["tcp"] += [tcp.address[1], c.sock.getsockname()[1]]
    udp = socklab.Server(type="SOCK_DGRAM", name="udp").start()    # UDP echo
    u = socklab.Client(udp)
    assert u.request(b"udp") == b"udp"
    report["udp"] += [udp.address[1], u.sock.getsockname()[1]]
    unix = socklab.Server(family="AF_UNIX", name="unix").start()   # AF_UNIX echo, private path
    x = socklab.Client(unix)
    assert x.request(b"unix") == b"unix"
    report["unix"].append(unix.address)
    ud = socklab.Server(family="AF_UNIX", type="SOCK_DGRAM", name="unix-dgram").start()
    xd = socklab.Client(ud)
    assert xd.request(b"unix dgram") == b"unix dgram"
    report["unix"] += [ud.address, xd._own_path]
    panel = LabPanel(name="panel")                                  # a panel's demo
    text = panel.run_demo("hello").text
    # (its server has stopped again, so its port is free for others: not compared)
    report["panel"] = {"ran": "connect(" in text and "recv" in text, "errors": "!!" in text}
    for ex_id in ("03.1", "05.1"):                                  # exercise checks, same host
        ex = exercises.get(ex_id)
        ns = load(ex_id)
        report["checks"][ex_id] = exercises.check(ex_id, *[ns[n] for n in ex.names]).passed
    report["rundir"] = runtime.rundir()
    report["rundir_mode"] = stat.S_IMODE(os.stat(runtime.rundir()).st_mode)
    report["files"] = sorted(os.listdir(runtime.rundir()))
except Exception:
    report["errors"].append(traceback.format_exc())
print(json.dumps(report), flush=True)
assert sys.stdin.readline().strip() == "stop"                      # hold everything until told
print(json.dumps({"stopped": socklab.stop_all()}), flush=True)
'''


class Worker:
    def __init__(self, script: pathlib.Path):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, str(script), str(ROOT / "tests")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        self.lines: list = []

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()


def read_lines(workers, want: int, deadline: float) -> None:
    """Until every worker has printed ``want`` lines (or the deadline): read their stdout."""
    with selectors.DefaultSelector() as sel:
        for w in workers:
            if len(w.lines) < want:
                sel.register(w.p.stdout, selectors.EVENT_READ, w)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                late = [w.p.pid for w in workers if len(w.lines) < want]
                pytest.fail(f"workers {late} did not print line {want} in time")
            for key, _ in sel.select(left):
                w = key.data
                line = w.p.stdout.readline()
                if not line:  # it exited
                    sel.unregister(w.p.stdout)
                    err = w.p.stderr.read()
                    pytest.fail(f"worker {w.p.pid} exited early (rc {w.p.wait(5)}):\n{err[-3000:]}")
                w.lines.append(line.strip())
                if len(w.lines) >= want:
                    sel.unregister(w.p.stdout)


@pytest.mark.timeout(DEADLINE + 60)
def test_twenty_processes_run_the_demos_at_once_without_collisions(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    deadline = time.monotonic() + DEADLINE
    workers = [Worker(script) for _ in range(N)]
    try:
        read_lines(workers, 1, deadline)                 # all imported and waiting
        assert all(w.lines[0] == "ready" for w in workers)
        for w in workers:                                # release them together
            w.send("go")
        read_lines(workers, 2, deadline)
        reports = [json.loads(w.lines[1]) for w in workers]

        errors = [r["errors"] for r in reports if r["errors"]]
        assert not errors, "a worker failed:\n" + "\n".join(e[0] for e in errors)
        assert not any("EADDRINUSE" in json.dumps(r) or "already in use" in json.dumps(r)
                       for r in reports)
        tcp = [p for r in reports for p in r["tcp"]]
        udp = [p for r in reports for p in r["udp"]]
        assert len(tcp) == 2 * N and len(set(tcp)) == len(tcp), "two TCP sockets got the same port"
        assert len(udp) == 2 * N and len(set(udp)) == len(udp), "two UDP sockets got the same port"
        assert all(0 < p < 65536 for p in tcp + udp)
        rundirs = [r["rundir"] for r in reports]
        assert len(set(rundirs)) == N, "two processes share a private directory"
        assert all(r["rundir_mode"] == 0o700 for r in reports)
        for r in reports:
            for path in r["unix"]:
                assert os.path.dirname(path) == r["rundir"], f"{path} outside {r['rundir']}"
            assert r["panel"] == {"ran": True, "errors": False}
            assert r["checks"] == {"03.1": True, "05.1": True}
        unix = [p for r in reports for p in r["unix"]]
        assert len(set(unix)) == len(unix) == 3 * N
        for w in workers:
            w.send("stop")
        read_lines(workers, 3, deadline)
        for w in workers:
            assert w.p.wait(max(1.0, deadline - time.monotonic())) == 0, w.p.stderr.read()[-2000:]
        for r in reports:                                # each cleaned up its own directory
            assert not os.path.exists(r["rundir"])
    finally:
        for w in workers:
            if w.p.poll() is None:
                w.p.kill()
            w.p.wait(10)
            for f in (w.p.stdin, w.p.stdout, w.p.stderr):
                f.close()
