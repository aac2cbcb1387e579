"""The framing panels on real sockets: drive the buttons' methods, check the trace and the widgets."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab.widgets.framing import MAX_BYTES, MAX_RECVS, FramingPanel, NaglePanel, ratio_words  # noqa: E402


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
    twin = next(w for w in p.children if "socklab-progressbar" in w._dom_classes)
    assert 'aria-label="rounds timed: round" aria-valuemin="0" aria-valuemax="3" aria-valuenow="0"' in twin.value
    times = p.run()
    assert len(times) == 3
    assert 'aria-label="rounds timed: two writes, TCP_NODELAY"' in twin.value
    assert 'aria-valuenow="3"' in twin.value
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


def test_a_send_too_big_to_draw_is_refused_before_anything_is_sent(leakcheck):
    """2 MB used to run 5 s past the panel's own wait, return None and blame a connect() timeout,
    although the data had arrived. Now one explained ConfigError, before any socket exists."""
    p = FramingPanel(name="t-framing-big")
    try:
        with pytest.raises(socklab.ConfigError) as err:
            p.send_message(["a" * 2_000_000])
        assert (f"1 message(s) make 2000000 bytes on the wire; one Send carries at most {MAX_BYTES}"
                in err.value.explanation.what)
        p.bufsize.value = 1
        with pytest.raises(socklab.ConfigError) as err:
            p.send_message(["a" * MAX_RECVS, "b"])  # few bytes, but one recv() call each
        exp = err.value.explanation
        assert f"the server would call recv() {MAX_RECVS + 1} times" in exp.what
        assert "Raise the recv size to at least 2" in exp.fix
        assert p.server is None and list(p.trace) == [] and p.last is None
        # from the messages box (the Send button): the same explanation in the alert, nothing sent
        p.messages.value = "x" * (MAX_RECVS + 1)
        assert p.send_message() is None
        assert "recv() 1001 times" in p.alert.value and list(p.trace) == []
    finally:
        p.stop()


@pytest.mark.parametrize("kind", ["none", "delimiter", "prefix"])
def test_the_largest_send_allowed_arrives_whole_again_and_again(kind, leakcheck):
    """MAX_RECVS recv() calls of 1 byte, three times on one panel: each Send ends well within its
    wait with every chunk (1000 recv() calls took over 5 s while the event log grew per line)."""
    p = FramingPanel(framing_kind=kind, bufsize=1, name=f"t-framing-max-{kind}")
    header = {"none": 0, "delimiter": 1, "prefix": 4}[kind]
    try:
        for _ in range(3):
            r = p.send_message([b"m" * (MAX_RECVS - header)])
            assert r is not None, p.alert.value
            assert len(r["chunks"]) == MAX_RECVS and r["error"] is None
            assert r["messages"] == ([b"m"] * MAX_RECVS if kind == "none" else [b"m" * (MAX_RECVS - header)])
    finally:
        p.stop()


def test_messages_may_be_str_bytes_or_one_of_them(leakcheck):
    """A bare str used to be split into its characters, one message each."""
    p = FramingPanel(framing_kind="delimiter", messages=b"box, msgs", name="t-framing-types")
    try:
        assert p.send_message("solo")["messages"] == [b"solo"]
        assert p.send_message(b"\xffraw")["messages"] == [b"\xffraw"]
        assert p.send_message(["hé", b"b"])["messages"] == ["hé".encode(), b"b"]
        assert p.send_message()["messages"] == [b"box", b"msgs"]
        for bad, words in ((5, "messages must be a list of str or bytes, got int 5"),
                           (["ok", 5], "messages[1] must be a str or bytes, got int 5")):
            with pytest.raises(socklab.ConfigError) as err:
                p.send_message(bad)
            assert words in err.value.explanation.what
    finally:
        p.stop()


@pytest.mark.parametrize("make,words", [
    (lambda: FramingPanel(messages=5, name="t-framing-type"),
     "messages must be text (str or bytes), got int 5"),
    (lambda: FramingPanel(read_late="yes", name="t-framing-type"),
     "read_late must be True or False, got str"),
    (lambda: FramingPanel(read_late=1, name="t-framing-type"), "read_late must be True or False, got int 1"),
    (lambda: NaglePanel(nodelay=None, name="t-nagle-type"), "nodelay must be True or False, got NoneType"),
    (lambda: NaglePanel(split="no", name="t-nagle-type"), "split must be True or False, got str 'no'"),
], ids=["messages-int", "read_late-str", "read_late-int", "nodelay-none", "split-str"])
def test_a_setting_of_the_wrong_type_is_explained(make, words):
    """These used to end in ipywidgets' TraitError traceback, or were cast (1 ticked the box,
    None unticked it)."""
    with pytest.raises(socklab.ConfigError) as err:
        make()
    assert words in err.value.explanation.what
