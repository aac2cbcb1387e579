"""The ping panel in plain Python, with and without raw-socket privileges."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ipywidgets")

from socklab import runtime  # noqa: E402
from socklab.config import can_raw  # noqa: E402
from socklab.widgets.icmp import PLAIN_PING, PingPanel  # noqa: E402

needs_raw = pytest.mark.skipif(not can_raw(), reason="raw sockets need root or CAP_NET_RAW")


@needs_raw
def test_ping_ipv4_and_ipv6(leakcheck):
    p = PingPanel(name="t-ping", count=2)
    rtts = p.ping()
    assert len(rtts) == 2 and all(r is not None for r in rtts)
    assert "2 of 2 replies" in p.status.value and "allowed" in p.privilege.value
    if runtime.has_ipv6():
        p.host.value = "::1"
        assert all(r is not None for r in p.ping(count=1))
    assert p.transcript().text.splitlines()[0] == "ping 127.0.0.1 x2: 2 of 2 echo replies"
    calls = p.trace.calls()
    assert calls[:2] == ["socket", "settimeout"] and "sendto" in calls and calls[-1] == "close"
    p.stop()


@needs_raw
def test_plain_ping_runs():
    r = subprocess.run([sys.executable, "-c", PLAIN_PING], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("reply from 127.0.0.1: seq=1 ttl=")


def test_without_privileges_the_panel_explains(monkeypatch):
    import socklab.config
    monkeypatch.setattr(socklab.config, "can_raw", lambda: False)
    p = PingPanel(name="t-ping-noraw")
    assert p.ping() is None
    assert p.steps == ["ping 127.0.0.1: not done: Raw sockets need privileges"]
    assert "CAP_NET_RAW" in p.alert.value
    p.stop()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to uid 65534")
def test_really_unprivileged_the_panel_explains():
    """As uid 65534 for real: a child imports everything as root, drops privileges, then pings."""
    code = ("import json, os, ipywidgets, socklab.widgets.icmp as m\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "p = m.PingPanel(name='t')\n"
            "r = p.ping()\n"
            "print(json.dumps({'r': r, 'steps': p.steps, 'alert': p.alert.value, 'priv': p.privilege.value}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["r"] is None
    assert out["steps"] == ["ping 127.0.0.1: not done: Raw sockets need privileges"]
    assert "CAP_NET_RAW" in out["alert"] and "not allowed" in out["priv"]


def test_text_repr():
    p = PingPanel(name="t-ping-repr")
    assert "ping panel" in p._repr_mimebundle_()["text/plain"]
    assert p.transcript().text == "(no pings yet)"
    p.stop()
