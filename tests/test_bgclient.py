"""BackgroundClient on real sockets: bad arguments are explained up front and leave nothing behind."""
from __future__ import annotations

import pytest

import socklab
from socklab import runtime
from socklab.bgclient import BackgroundClient


@pytest.fixture
def echo_server():
    with socklab.Server() as srv:
        yield srv


@pytest.mark.parametrize("args, kw, title", [
    pytest.param((b"hello",), {}, "messages must be a list of messages", id="one bytes"),
    pytest.param(("hello",), {}, "messages must be a list of messages", id="one str"),
    pytest.param((bytearray(b"hi"),), {}, "messages must be a list of messages", id="one bytearray"),
    pytest.param((None,), {}, "messages must be a list of messages", id="None"),
    pytest.param(([b"a", 7],), {}, "A message must be bytes or str", id="an int message"),
    pytest.param(([b"a"],), {"timeout": "5"}, "Invalid timeout", id="timeout str"),
    pytest.param(([b"a"],), {"timeout": 0}, "Invalid timeout", id="timeout 0"),
    pytest.param(([b"a"],), {"timeout": None}, "Invalid timeout", id="timeout None"),
])
def test_bad_arguments_are_explained_and_nothing_starts(echo_server, args, kw, title, leakcheck):
    with pytest.raises(socklab.ConfigError) as info:
        BackgroundClient(echo_server.address, *args, name="bg-bad", **kw)
    assert info.value.explanation.title == title
    assert [o for o in runtime.running() if isinstance(o, BackgroundClient)] == []


def test_single_message_explanation_suggests_a_list(echo_server):
    with pytest.raises(socklab.ConfigError) as info:
        BackgroundClient(echo_server.address, "hello", name="bg-one")
    assert "one character at a time" in info.value.explanation.what
    assert "['hello']" in info.value.explanation.fix


def test_str_and_bytes_like_messages_are_sent_as_bytes(echo_server, leakcheck):
    bg = BackgroundClient(echo_server.address, [b"a", "\u00e9", bytearray(b"b"), memoryview(b"mv")],
                          name="bg-good", timeout=5)
    try:
        assert bg.wait(10) == [b"a", "\u00e9".encode(), b"b", b"mv"]
        assert bg.error is None
    finally:
        bg.stop()
