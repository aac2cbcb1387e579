"""The bind explorer on real sockets: each try is a real bind(), and the panel cleans up after itself."""
from __future__ import annotations

import errno
import os
import socket

import pytest

from socklab import ConfigError, runtime
from socklab.widgets.addresses import BindExplorer


def test_port_zero_gets_a_real_port_and_is_kept(leakcheck):
    p = BindExplorer(name="t-bind")
    att = p.try_bind()
    assert att.ok and att.kept
    assert att.address == ("127.0.0.1", 0)
    assert att.bound[0] == "127.0.0.1" and att.bound[1] != 0
    assert p.trace.calls("try1") == ["socket", "bind", "note"]
    assert "kept" in p.held.value.lower() and str(att.bound[1]) in p.held.value
    assert "worked" in p.result.value
    assert p.release() == 1
    assert p.kept == [] and "no sockets kept" in p.held.value
    p.stop()


def test_second_bind_on_a_kept_port_is_address_in_use(leakcheck):
    p = BindExplorer(name="t-bind")
    first = p.try_bind()
    second = p.try_bind(port=first.bound[1])
    assert not second.ok and second.error.errno == errno.EADDRINUSE
    assert second.explanation.code == "EADDRINUSE"
    assert "Address already in use" in p.result.value
    ev = [e for e in p.trace if e.side == "try2" and e.call == "bind"][0]
    assert isinstance(ev.error, OSError)
    assert p.trace.calls("try2")[-1] == "close"  # a failed try leaves nothing open
    assert "Address already in use" in p.summary().splitlines()[1]
    p.stop()


def test_reuseaddr_never_shares_a_listening_port(leakcheck):
    p = BindExplorer(name="t-bind")
    first = p.try_bind(reuse=True, listen=True)
    assert p.trace.calls("try1")[:2] == ["socket", "setsockopt"] and "listen" in p.trace.calls("try1")
    second = p.try_bind(port=first.bound[1])
    assert second.error is not None and second.error.errno == errno.EADDRINUSE
    p.stop()


def test_fixed_port_warning_matches_what_bind_does(leakcheck):
    """The warning on a fixed port says what the explorer itself shows: two SO_REUSEADDR sockets
    that do not listen share a TCP port, and UDP's port of the same number is separate (it used to
    say only one socket at a time can use a port)."""
    p = BindExplorer(name="t-bind")
    first = p.try_bind(reuse=True)
    port = first.bound[1]
    second = p.try_bind(port=port, reuse=True)
    third = p.try_bind(port=port, type="SOCK_DGRAM")
    assert second.ok and third.ok and [a.bound[1] for a in (second, third)] == [port, port]
    assert "SO_REUSEADDR or SO_REUSEPORT can allow sharing" in " ".join(second.warnings)
    assert "TCP and UDP ports are separate" in " ".join(third.warnings)
    p.stop()


def test_all_interfaces_needs_the_checkbox(leakcheck):
    p = BindExplorer(name="t-bind")
    blocked = p.try_bind(host="0.0.0.0")
    assert not blocked.ok and blocked.error is None
    assert "all interfaces" in blocked.explanation.title
    assert p.trace.calls("try1") == ["note"]  # no socket was created
    allowed = p.try_bind(all_interfaces=True, keep=False)
    assert allowed.ok and allowed.bound[0] == "0.0.0.0"
    assert any("all interfaces" in w for w in allowed.warnings)
    assert "Warning" in p.result.value
    p.stop()


@pytest.mark.parametrize("changes, exc_type, title", [
    ({"port": 70000}, OverflowError, "Port out of range"),
    ({"host": "203.0.113.5"}, OSError, "Cannot assign requested address"),
    ({"host": "::1"}, socket.gaierror, "Address family does not match the address"),
])
def test_os_errors_are_explained(leakcheck, changes, exc_type, title):
    p = BindExplorer(name="t-bind")
    att = p.try_bind(**changes)
    assert isinstance(att.error, exc_type)
    assert att.explanation.title == title
    p.stop()


@pytest.mark.skipif(not socket.has_ipv6 or not runtime.has_ipv6(), reason="no IPv6 here")
def test_ipv6_dual_stack_option_is_set(leakcheck):
    p = BindExplorer(name="t-bind")
    att = p.try_bind(family="AF_INET6", host="::", all_interfaces=True, v6only="0 (dual stack)")
    assert att.ok and att.bound[0] == "::"
    assert p.kept[0].sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    ev = [e for e in p.trace if e.call == "setsockopt"][0]
    assert repr(ev.args[1]) == "IPV6_V6ONLY"
    p.stop()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
def test_unix_stale_file_then_release_removes_it(leakcheck):
    p = BindExplorer(name="t-bind")
    path = os.path.join(runtime.rundir(), "t-explorer.sock")
    first = p.try_bind(family="AF_UNIX", host=path, keep=False)
    assert first.ok and os.path.exists(path)  # closed, but the file stays
    stale = p.try_bind()
    assert stale.error.errno == errno.EADDRINUSE
    assert "<rundir>/t-explorer.sock" in p.transcript().text
    p.release()
    assert not os.path.exists(path)
    p.stop()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
def test_unix_abstract_name_leaves_no_file(leakcheck):
    p = BindExplorer(name="t-bind")
    att = p.try_bind(family="AF_UNIX", host="\0socklab-test-explorer-%d" % os.getpid())
    assert att.ok and isinstance(att.bound, bytes) and att.bound.startswith(b"\0")
    p.stop()


def test_unknown_control_is_refused():
    p = BindExplorer(name="t-bind")
    with pytest.raises(TypeError):
        p.try_bind(colour="red")
    p.stop()


def test_registering_again_releases_the_old_panel(leakcheck):
    old = BindExplorer(name="t-bind-rerun")
    old.try_bind()
    assert len(old.kept) == 1
    new = BindExplorer(name="t-bind-rerun")  # what re-running the cell does
    assert old.kept == []
    new.stop()


def test_text_forms():
    p = BindExplorer(name="t-bind")
    assert "bind explorer" in p._repr_mimebundle_()["text/plain"]
    assert p.summary() == "(nothing tried yet)"
    p.try_bind(keep=False)
    text = p.transcript().text
    assert "bind(('127.0.0.1', 0))" in text and "[bound to ('127.0.0.1'," in text
    p.stop()


def test_an_unknown_family_is_explained_and_aliases_are_read(leakcheck):
    with pytest.raises(ConfigError) as err:
        BindExplorer(family="AF_PACKET", name="t-bind-bad")
    assert "AF_INET, AF_INET6, AF_UNIX" in err.value.explanation.text()
    p = BindExplorer(family="inet6", name="t-bind-alias")
    assert p.family.value == "AF_INET6"
    with pytest.raises(ConfigError):
        p.try_bind(family="AF_PACKET")
    assert p.family.value == "AF_INET6" and p.attempts == []
    p.stop()
