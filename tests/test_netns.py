"""Default binds are loopback only, seen from another host.

Two network namespaces made for this test, 'server host' and 'client host', joined by a veth pair
with addresses 10.200.<n>.1/30 and .2/30 that exist only inside them (no traffic leaves this
machine, the root namespace is not touched). A socklab server runs in the server namespace (a
subprocess under ``ip netns exec``), a socklab client in the client namespace:

- the default server (127.0.0.1) serves its own host, yet from the other host its port is refused;
- an explicit all-interfaces server (host='0.0.0.0', allow_all_interfaces=True) is reachable from
  the other host, and prints its warning.

Skips with the reason where ``ip netns`` is not permitted (not root, no CAP_SYS_ADMIN, no iproute2).

Run: .venv/bin/python -m pytest tests/test_netns.py
"""
from __future__ import annotations

import json
import os
import pathlib
import selectors
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are Linux's")

# Runs in the server namespace: start a socklab server, prove it serves its own host, print one
# JSON line (the readiness line), then serve until the test closes stdin.
SERVER = r"""
import json, sys, socklab
kw = json.loads(sys.argv[1])
srv = socklab.Server(lifetime=120, **kw).start()
with socklab.Client(("127.0.0.1", srv.address[1]), timeout=2) as own:
    local = own.request(b"from this host").decode()
print(json.dumps({"address": list(srv.address), "warnings": list(srv.warnings), "local": local}),
      flush=True)
sys.stdin.read()  # until the test closes our stdin (or the lifetime cap stops the server)
srv.stop()
print(json.dumps({"served": srv.connections_served}), flush=True)
"""

# Runs in the client namespace: one exchange, reported as JSON.
CLIENT = r"""
import json, sys, socklab
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socklab.Client((host, port), timeout=2) as c:
        reply = c.request(b"from the other host")
    print(json.dumps({"ok": True, "reply": reply.decode()}))
except Exception as exc:
    e = socklab.explain(exc)
    print(json.dumps({"ok": False, "type": type(exc).__name__, "title": e.title}))
"""


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=TIMEOUT, check=check)


class Namespaces:
    """Two namespaces and a veth pair between them; ``close()`` removes everything."""

    def __init__(self):
        n = os.getpid() % 250 + 1  # a /30 per test process: parallel runs do not collide
        self.srv, self.cli = f"slsrv{os.getpid()}", f"slcli{os.getpid()}"
        self.srv_ip, self.cli_ip = f"10.200.{n}.1", f"10.200.{n}.2"
        self.made = []
        for ns in (self.srv, self.cli):
            ip("netns", "add", ns)
            self.made.append(ns)
        # created inside the server namespace, its peer straight into the client namespace
        ip("-n", self.srv, "link", "add", "veth-srv", "type", "veth", "peer", "name", "veth-cli",
           "netns", self.cli)
        ip("-n", self.srv, "addr", "add", f"{self.srv_ip}/30", "dev", "veth-srv")
        ip("-n", self.cli, "addr", "add", f"{self.cli_ip}/30", "dev", "veth-cli")
        for ns, dev in ((self.srv, "veth-srv"), (self.cli, "veth-cli")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")

    def close(self):
        for ns in self.made:  # deleting a namespace deletes its end of the veth pair too
            ip("netns", "del", ns, check=False)
        self.made = []

    def python(self, ns, code, *args):
        return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


def _why_no_netns() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN)"
    probe = f"slprobe{os.getpid()}"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"'ip netns add' is not permitted here: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def namespaces():
    why = _why_no_netns()
    if why:
        pytest.skip(why)
    ns = None
    try:
        ns = Namespaces()
        yield ns
    finally:
        if ns is not None:
            ns.close()
        else:  # setup failed half-way: remove what exists
            for name in (f"slsrv{os.getpid()}", f"slcli{os.getpid()}"):
                ip("netns", "del", name, check=False)


def read_line(proc, timeout=TIMEOUT) -> str:
    """The next stdout line of ``proc``, waiting on a selector (never a sleep), bounded."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line from the server within {timeout} s"
            if sel.select(left):
                line = proc.stdout.readline()
                assert line, f"the server exited: {proc.stderr.read() if proc.poll() is not None else ''}"
                return line
    finally:
        sel.close()


class ServerIn:
    """A socklab server in namespace ``ns``: started, ready (its JSON line read), stopped on exit."""

    def __init__(self, ns: Namespaces, **kw):
        self.proc = subprocess.Popen(ns.python(ns.srv, SERVER, json.dumps(kw)), cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def __enter__(self):
        self.info = json.loads(read_line(self.proc))
        return self

    def stop(self) -> dict:
        self.proc.stdin.close()  # the server stops and reports
        out = json.loads(read_line(self.proc))
        self.proc.wait(TIMEOUT)
        return out

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait(TIMEOUT)
        for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if f is not None and not f.closed:
                f.close()


def client_from(ns: Namespaces, host: str, port: int) -> dict:
    r = subprocess.run(ns.python(ns.cli, CLIENT, host, str(port)), cwd=ROOT, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_default_server_is_loopback_only_and_all_interfaces_is_reachable(namespaces):
    ns = namespaces
    # the path between the two hosts works at all: shown by the all-interfaces server below
    with ServerIn(ns) as default:
        host, port = default.info["address"]
        assert host == "127.0.0.1" and default.info["warnings"] == []
        assert default.info["local"] == "from this host"  # it really serves, on its own host
        across = client_from(ns, ns.srv_ip, port)
        assert not across["ok"] and across["type"] == "ConnectionRefusedError", across
        assert across["title"] == "Connection refused"
        # the other host's own loopback is its own: nothing of the server host is there either
        own_lo = client_from(ns, "127.0.0.1", port)
        assert not own_lo["ok"] and own_lo["type"] == "ConnectionRefusedError", own_lo
        assert default.stop() == {"served": 1}  # only its own host's client got in

    with ServerIn(ns, host="0.0.0.0", allow_all_interfaces=True) as everywhere:
        host, port = everywhere.info["address"]
        assert host == "0.0.0.0"
        assert any("all interfaces" in w and "other machines" in w for w in everywhere.info["warnings"]), \
            everywhere.info["warnings"]
        across = client_from(ns, ns.srv_ip, port)
        assert across == {"ok": True, "reply": "from the other host"}, across
        assert everywhere.stop() == {"served": 2}


def test_all_interfaces_without_the_explicit_choice_is_refused(namespaces):
    ns = namespaces
    r = subprocess.run(ns.python(ns.srv, "import socklab\ntry:\n    socklab.Server(host='0.0.0.0').start()\n"
                                 "except socklab.ConfigError as e:\n    print(e.explanation.title)\n"),
                       cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Binding to all interfaces needs an explicit choice"


def test_namespaces_are_removed(namespaces):
    """The fixture's clean-up is real: after close() neither namespace exists."""
    names = (namespaces.srv, namespaces.cli)
    listed = ip("netns", "list").stdout
    assert all(n in listed for n in names)
    namespaces.close()
    listed = ip("netns", "list").stdout
    assert not any(n in listed for n in names), listed
