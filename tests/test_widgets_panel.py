"""LabPanel (socklab/widgets/panel.py) on real sockets: bad choices and a failed connect, explained."""
from __future__ import annotations

import socket

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab.widgets import LabPanel  # noqa: E402


def test_send_first_without_a_server_reports_the_refused_connect(leakcheck):
    """Send connects first; when that fails, the refusal is what the learner sees (not a Broken
    pipe from sending on the failed socket), and no half-made client is kept."""
    p = LabPanel(name="t-panel-send-first")
    assert p.send_message() is None
    assert "Connection refused" in p.alert.value and "Broken pipe" not in p.alert.value
    assert "server is not started" in p.alert.value
    assert p.client is None
    assert "sendall" not in p.trace.calls("client")
    assert p.run_demo("after").text  # the panel still works: start, connect, send
    assert p.alert.value == "", p.alert.value
    p.stop()


def test_family_and_type_as_socketconfig_reads_them():
    p = LabPanel(family="inet", type="dgram", name="t-panel-choice")
    assert (p.family.value, p.type.value) == ("AF_INET", "SOCK_DGRAM")
    p.stop()
    p = LabPanel(family=socket.AF_INET6, name="t-panel-choice")
    assert p.family.value == "AF_INET6"
    p.stop()


@pytest.mark.parametrize("kwargs", [dict(family="udp"), dict(family=None), dict(family=True),
                                    dict(type="tcp")])
def test_an_unknown_family_or_type_is_explained_with_the_choices(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        LabPanel(name="t-panel-choice-bad", **kwargs)
    text = err.value.explanation.text()
    assert "AF_INET, AF_INET6, AF_UNIX" in text or "SOCK_STREAM, SOCK_DGRAM" in text, text


@pytest.mark.parametrize("make", [
    lambda: LabPanel(backlog="5", name="t-range"),
    lambda: LabPanel(backlog=10 ** 6, name="t-range"),
], ids=["labpanel-backlog-str", "labpanel-backlog-huge"])
def test_a_number_outside_a_control_is_explained_not_clamped(make):
    with pytest.raises(socklab.ConfigError) as err:
        make()
    assert "outside this panel's range" in err.value.explanation.what


def test_send_message_takes_bytes_and_explains_a_wrong_type(leakcheck):
    p = LabPanel(name="t-send-types")
    try:
        p.start_server()
        assert p.send_message(b"raw") == b"raw"
        with pytest.raises(socklab.ConfigError) as err:
            p.send_message(5)
        assert "message must be a str or bytes, got int 5" in str(err.value)
    finally:
        p.stop()
