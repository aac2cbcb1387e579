"""The error explorer: every scenario provokes its error live, fast, explained, leaving nothing open."""
from __future__ import annotations

import errno
import socket

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab import runtime  # noqa: E402
from socklab.widgets.errorlab import SCENARIOS, ErrorExplorer, provoke  # noqa: E402

# scenario -> (exception class, errno or None, explanation title)
EXPECTED = {
    "refused": (ConnectionRefusedError, errno.ECONNREFUSED, "Connection refused"),
    "queue_full": (TimeoutError, None, "Timed out"),
    "in_use": (OSError, errno.EADDRINUSE, "Address already in use"),
    "not_available": (OSError, errno.EADDRNOTAVAIL, "Cannot assign requested address"),
    "family_mismatch": (socket.gaierror, None, "Address family does not match the address"),
    "no_such_name": (socket.gaierror, socket.EAI_NONAME, "Unknown host name"),
    "recv_timeout": (TimeoutError, None, "Timed out"),
    "would_block": (BlockingIOError, errno.EAGAIN, "Would block"),
    "broken_pipe": (BrokenPipeError, errno.EPIPE, "Broken pipe"),
    "reset": (ConnectionResetError, errno.ECONNRESET, "Connection reset by peer"),
    "message_too_long": (OSError, errno.EMSGSIZE, "Message too long"),
    "port_out_of_range": (OverflowError, None, "Port out of range"),
    "address_as_string": (TypeError, None, "Wrong address format"),
    "send_str": (TypeError, None, "Sockets send bytes, not str"),
}


def test_every_scenario_is_covered():
    assert set(EXPECTED) == set(SCENARIOS)


@pytest.mark.parametrize("key", list(EXPECTED))
def test_scenario_provokes_its_error_quickly_and_leaves_nothing(key, leakcheck):
    cls, num, title = EXPECTED[key]
    out = provoke(key)
    assert isinstance(out.error, cls), out.error
    if num is not None:
        assert out.error.errno == num
    assert out.explanation.title == title
    assert out.seconds < 1.5
    failed = [e for e in out.trace if e.error is not None]
    assert failed and failed[-1].error is out.error   # the failing call is in the trace
    closes = [e for e in out.trace if e.call == "close"]
    opened = [e for e in out.trace if e.call == "socket" or e.call == "accept"]
    assert len(closes) == len(opened)                 # every socket opened was closed


def test_family_mismatch_is_eai_addrfamily_on_linux():
    out = provoke("family_mismatch")
    assert out.error.errno in (getattr(socket, "EAI_ADDRFAMILY", None), socket.EAI_FAMILY,
                               socket.EAI_NONAME)


def test_queue_full_lets_backlog_plus_one_in_then_times_out():
    out = provoke("queue_full")
    connects = [e for e in out.trace if e.call == "connect"]
    assert [e.ok for e in connects] == [True, False]   # listen(0): one fits, the next waits


def test_broken_pipe_first_send_succeeds():
    out = provoke("broken_pipe")
    sends = [e for e in out.trace if e.call == "send"]
    assert sends[0].ok and not sends[-1].ok


def test_explanation_names_the_address_of_the_failing_call():
    out = provoke("not_available")
    assert "203.0.113.5" in out.explanation.what
    assert out.error_name == "OSError (errno 99, EADDRNOTAVAIL)"


def test_panel_run_shows_explanation_and_transcript(leakcheck):
    panel = ErrorExplorer(name="t-el1")
    assert panel.transcript().text == "(no scenario run yet)"
    out = panel.run("reset")
    assert panel.scenario.value == "reset"
    assert "Connection reset by peer" in panel.alert.value
    assert "ConnectionResetError" in panel.status.value
    assert "SO_LINGER" in panel.calls.value
    panel.scenario.value = "in_use"
    panel.run_button.click()
    assert len(panel.outcomes) == 2 and panel.outcomes[0] is out
    text = panel.transcript().text
    assert text.startswith("scenario: recv() after the peer reset")
    assert "error: OSError (errno 98, EADDRINUSE)" in text
    assert panel.transcript(last=1).text.startswith("scenario: bind(): port in use")
    assert "Address already in use" in panel.transcript().html


def test_panel_registers_and_stop_is_harmless():
    panel = ErrorExplorer(name="t-el2")
    assert panel in runtime.running()
    ErrorExplorer(name="t-el2")
    assert panel not in runtime.running()
    data = panel._repr_mimebundle_()
    assert data["text/plain"].startswith("socklab error explorer")


def test_an_unknown_scenario_is_explained_with_the_choices():
    with pytest.raises(socklab.ConfigError) as err:
        ErrorExplorer(scenario="nope", name="t-errlab-bad")
    assert "'refused'" in err.value.explanation.text() and "'send_str'" in err.value.explanation.text()
    p = ErrorExplorer(name="t-errlab-bad")
    with pytest.raises(socklab.ConfigError):
        p.run("nope")
    assert p.scenario.value == "refused" and p.outcomes == []
    p.stop()


def test_transcript_last_0_shows_none_and_a_negative_count_is_refused(leakcheck):
    panel = ErrorExplorer(name="t-el-last")
    panel.run("reset")
    panel.run("in_use")
    assert "scenario:" not in panel.transcript(last=0).text  # outcomes[-0:] would be all of them
    assert panel.transcript(last=2).text.count("scenario:") == 2
    with pytest.raises(socklab.ConfigError) as err:
        panel.transcript(last=-1)
    assert "last=-1 is not a number of scenarios" in str(err.value)
