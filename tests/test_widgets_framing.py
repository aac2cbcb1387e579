"""The framing panels on real sockets: drive the buttons' methods, check the trace and the widgets."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab.widgets.framing import FramingPanel, NaglePanel, ratio_words  # noqa: E402


def test_no_framing_merges_the_messages(leakcheck):
    p = FramingPanel(name="t-framing-none")
    try:
        r = p.send_message()
        assert r["chunks"] == [b"helloworld!"]       # three sendall() calls, one recv()
        assert r["messages"] == [b"helloworld!"]     # the naive server sees ONE message
        assert "helloworld!" in p.result.value
        text = p.transcript().text
        assert "sendall(b'hello')" in text and "recv(1024)  -> b'helloworld!'" in text
        assert p.trace.calls("client").count("sendall") == 3
        log = "".join(o.get("text", "") for o in p.events.outputs)  # the live event log
        assert "recv(1024)  -> b'helloworld!'" in log
    finally:
        p.stop()
    assert p.server is None


@pytest.mark.parametrize("kind", ["delimiter", "prefix"])
def test_framing_recovers_the_messages(leakcheck, kind):
    p = FramingPanel(framing_kind=kind, name=f"t-framing-{kind}")
    try:
        p.start_server()
        assert "listening" in p.status.value
        r = p.send_message()
        assert r["messages"] == [b"hello", b"world", b"!"]
        assert len(r["chunks"]) == 1 and r["error"] is None
        assert "[message b'world']" in p.transcript().text
        s = p.summary()
        assert "messages the server decoded: 3" in s
        # small recv size: many chunks, same messages
        p.bufsize.value = 3
        r = p.send_message(["a longer message", "and another"])
        assert r["messages"] == [b"a longer message", b"and another"]
        assert len(r["chunks"]) > 2
    finally:
        p.stop()


def test_framing_one_write_and_eager_reader(leakcheck):
    p = FramingPanel(framing_kind="delimiter", writes="one", read_late=False, name="t-framing-eager")
    try:
        r = p.send_message(["x", "y"])
        assert r["messages"] == [b"x", b"y"]
        assert p.trace.calls("client").count("sendall") == 1
    finally:
        p.stop()


def test_framing_error_is_reported(leakcheck):
    p = FramingPanel(framing_kind="delimiter", name="t-framing-error")
    try:
        p.messages.value = "a"
        r = p.send_message([b"ok", b"two\nlines"])  # the client refuses to encode: explained in the alert
        assert r is None
        assert "FramingError" in p.alert.value
    finally:
        p.stop()


def test_nagle_panel_compare(leakcheck):
    p = NaglePanel(rounds=8, name="t-nagle")
    res = p.compare()
    assert list(res) == [label for label, _ in NaglePanel.CASES]
    assert all(len(t) == 8 for t in res.values())
    assert p.progress.value == 8
    v = p.verdicts()
    assert v[0] == "two writes, Nagle on: slow: more than 10x slower than the fastest case"
    assert v[1].endswith("fast: within 10x of the fastest case")
    assert v[2].endswith("fast: within 10x of the fastest case")
    assert "median round trip" in p.table.value
    assert "over 8 rounds" in p.transcript().text


def test_nagle_panel_run_uses_the_controls(leakcheck):
    p = NaglePanel(rounds=3, nodelay=True, name="t-nagle-run")
    times = p.run()
    assert len(times) == 3
    assert list(p.results) == ["two writes, TCP_NODELAY"]
    # one case is its own baseline: no 'fast' verdict for a Nagle trap measured alone
    assert p.verdicts() == ["two writes, TCP_NODELAY: measured alone: press Compare (or Run another "
                            "setting) to compare it"]


def test_ratio_words():
    assert ratio_words(1.0, 1.0).startswith("fast")
    assert ratio_words(9.0, 1.0).startswith("fast")
    assert ratio_words(50.0, 1.0).startswith("slow")


@pytest.mark.parametrize("kwargs,words", [(dict(framing_kind="json"), "'none', 'delimiter', 'prefix'"),
                                          (dict(writes="all"), "'each', 'one'")])
def test_framing_panel_unknown_choice_is_explained(kwargs, words):
    with pytest.raises(socklab.ConfigError) as err:
        FramingPanel(name="t-framing-bad", **kwargs)
    assert words in err.value.explanation.text()


@pytest.mark.parametrize("rounds", [-1, 0, 51, "5", 2.5])
def test_nagle_panel_rounds_out_of_range_is_explained(rounds):
    with pytest.raises(socklab.ConfigError) as err:
        NaglePanel(rounds=rounds, name="t-nagle-bad")
    assert "1..50" in err.value.explanation.text()


@pytest.mark.parametrize("kwargs", [dict(bufsize=0)])
def test_framingpanel_refuses_numbers_outside_its_controls(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        FramingPanel(name="t-range", **kwargs)
    assert "outside this panel's range" in err.value.explanation.what
