"""The ping panel in plain Python, with and without raw-socket privileges."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
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


@pytest.mark.parametrize("kwargs", [dict(host=5), dict(host="10.0.0.1"), dict(count=100),
                                    dict(count=0), dict(timeout=None), dict(timeout="1"),
                                    dict(timeout=0), dict(timeout=-1)])
def test_bad_settings_are_explained_when_the_panel_is_made(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        PingPanel(name="t-ping-bad", **kwargs)
    name, value = next(iter(kwargs.items()))
    assert f"{name}={value!r}" in err.value.explanation.text()


@pytest.mark.parametrize("count", [1000, 0, -1, "3", True])
def test_a_count_outside_the_panel_range_is_explained_and_nothing_is_sent(count):
    """count=1000 used to send 1000 pings past the box's limit of 10; count=0 used to ping with
    the box's count instead."""
    p = PingPanel(name="t-ping-count")
    with pytest.raises(socklab.ConfigError) as err:
        p.ping(count=count)
    assert "1..10" in err.value.explanation.text()
    assert list(p.trace) == [] and p.steps == []
    p.stop()


@pytest.mark.parametrize("count,words", [("3", "count must be a whole number (int), got str '3'"),
                                         (True, "count must be a whole number (int), got bool True"),
                                         (2.0, "count must be a whole number (int), got float 2.0")])
def test_a_count_of_the_wrong_type_is_called_that_not_out_of_range(count, words):
    """count='3' used to be 'outside this panel's range 1..10'."""
    p = PingPanel(name="t-ping-count-type")
    with pytest.raises(socklab.ConfigError) as err:
        p.ping(count=count)
    assert words in err.value.explanation.what
    if count == "3":
        assert "count=3, without quotes" in err.value.explanation.fix
    assert list(p.trace) == [] and p.steps == []
    p.stop()


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "", 5])
def test_a_host_argument_is_checked_as_the_constructor_does(host):
    """ping(host='example.com') used to look the name up (gaierror) and return None, although the
    panel offers only 127.0.0.1 and ::1; host='' pinged the box's host instead."""
    p = PingPanel(name="t-ping-host")
    with pytest.raises(socklab.ConfigError) as err:
        p.ping(host=host)
    assert f"host={host!r} is not one of this panel's choices" in err.value.explanation.what
    assert "'127.0.0.1', '::1'" in err.value.explanation.fix
    assert list(p.trace) == [] and p.steps == []
    p.stop()
