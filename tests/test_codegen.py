"""The generated plain-socket programs, run for real in subprocesses: configured AF_UNIX paths,
temporary directories removed, every message written as a valid bytes literal."""
from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import uuid

import pytest

import socklab
from socklab import ConfigError, SocketConfig
from test_engine import read_line, reap  # waiting for a program's line: selectors, no sleep

needs_unix = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract names are Linux")


def run_pair(cfg: SocketConfig, message, tmp_path):
    """Run server_code(cfg) and client_code(cfg, message); return (server's address line, reply line).

    TMPDIR is an empty directory of its own, so a temporary directory left behind shows up."""
    server_src, client_src = socklab.server_code(cfg), socklab.client_code(cfg, message=message)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-c", server_src], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env)
    try:
        shown = read_line(proc)[len("server address: "):]
        v = cfg.validate()
        answer = shown if v.family == "AF_UNIX" else str(ast.literal_eval(shown)[1])
        cli = subprocess.run([sys.executable, "-c", client_src], input=answer + "\n",
                             capture_output=True, text=True, timeout=20, cwd=tmp_path, env=env)
        assert cli.returncode == 0, cli.stderr
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        reap(proc)
    assert os.listdir(scratch) == [], "a temporary directory was left behind"
    return shown, "reply: " + cli.stdout.rsplit("reply: ", 1)[-1].strip()  # after input()'s prompt


TYPES = ["SOCK_STREAM", "SOCK_DGRAM"]


@needs_unix
@pytest.mark.parametrize("type_", TYPES)
def test_unix_code_binds_the_configured_path_even_with_odd_characters(type_, tmp_path):
    folder = tmp_path / "dir with 'quote\" \u00e9"
    folder.mkdir()
    path = str(folder / "s \u00f6.sock")
    cfg = SocketConfig(family="AF_UNIX", type=type_, path=path)
    shown, reply = run_pair(cfg, b"hello", tmp_path)
    assert shown == path                           # the server bound exactly the configured path
    assert reply == "reply: b'hello'"
    assert not os.path.exists(path)                # and removed its socket file


@needs_unix
@needs_linux
@pytest.mark.parametrize("type_", TYPES)
def test_unix_code_binds_an_abstract_name(type_, tmp_path):
    name = f"\0socklab-codegen-{uuid.uuid4().hex}"
    shown, reply = run_pair(SocketConfig(family="AF_UNIX", type=type_, path=name), b"hi", tmp_path)
    assert ast.literal_eval(shown) == name.encode()
    assert reply == "reply: b'hi'"


@needs_unix
@pytest.mark.parametrize("type_", TYPES)
def test_unix_code_with_a_private_path_removes_its_temporary_directory(type_, tmp_path):
    shown, reply = run_pair(SocketConfig(family="AF_UNIX", type=type_), b"hello", tmp_path)
    assert shown.startswith(str(tmp_path / "tmpdir"))   # made under TMPDIR...
    assert reply == "reply: b'hello'"                     # ...and gone (run_pair checks)


@pytest.mark.parametrize("message, sent", [
    pytest.param(memoryview(b"mv"), b"mv", id="memoryview"),
    pytest.param(bytearray(b"ba"), b"ba", id="bytearray"),
    pytest.param("h\u00e9", "h\u00e9".encode(), id="str as UTF-8"),
    pytest.param(bytes(range(256)), bytes(range(256)), id="every byte"),
])
@pytest.mark.parametrize("type_", TYPES)
def test_client_code_sends_bytes_like_and_str_messages(message, sent, type_, tmp_path):
    _, reply = run_pair(SocketConfig(type=type_), message, tmp_path)
    assert reply == f"reply: {sent!r}"


@pytest.mark.parametrize("message", [None, 5, [b"a"]])
def test_client_code_explains_other_message_types(message):
    with pytest.raises(ConfigError) as info:
        socklab.client_code(SocketConfig(), message=message)
    assert info.value.explanation.title == "A message must be bytes or str"


@pytest.mark.parametrize("type_", TYPES)
def test_code_for_a_link_local_address_with_its_zone_runs(type_, tmp_path):
    """'fe80::...%eth0' needs the interface's index in a 4-tuple: a (host, port) pair drops it."""
    from test_engine import _link_local_address
    found = _link_local_address()
    if found is None:
        pytest.skip("no link-local IPv6 address on this machine")
    addr, iface = found
    shown, reply = run_pair(SocketConfig(family="AF_INET6", type=type_, host=f"{addr}%{iface}"),
                            b"zoned", tmp_path)
    assert ast.literal_eval(shown)[3] == socket.if_nametoindex(iface)
    assert reply == "reply: b'zoned'"


@pytest.mark.parametrize("family, type_, limit", [
    ("AF_INET", "SOCK_DGRAM", 65507), ("AF_INET6", "SOCK_DGRAM", 65527),
    pytest.param("AF_UNIX", "SOCK_DGRAM", 65536, marks=needs_unix)])
def test_datagram_code_carries_the_largest_message_and_refuses_one_more(family, type_, limit, tmp_path):
    """The largest datagram runs end to end; one byte more is explained instead of generated (it
    failed with EMSGSIZE, and the generated server then waited out its 60 s timeout)."""
    cfg = SocketConfig(family=family, type=type_)
    shown, reply = run_pair(cfg, b"x" * limit, tmp_path)
    assert reply == "reply: " + repr(b"x" * limit)
    with pytest.raises(ConfigError) as info:
        socklab.client_code(cfg, message=b"x" * (limit + 1))
    e = info.value.explanation
    assert e.title == "Message too long for one datagram"
    assert f"{limit + 1} bytes" in e.what and str(limit) in e.what


def test_a_stream_message_has_no_datagram_limit(tmp_path):
    shown, reply = run_pair(SocketConfig(), b"y" * 70_000, tmp_path)
    assert reply == "reply: " + repr(b"y" * 70_000)


@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6"])
def test_localhost_code_runs_or_is_explained(family, tmp_path):
    """Whether 'localhost' has an address of each family depends on the hosts file: the generated
    programs run where it has one, and are refused, explained, where the program would fail."""
    cfg = SocketConfig(family=family, host="localhost")
    try:
        socket.getaddrinfo("localhost", None, getattr(socket, family))
    except socket.gaierror:
        for make in (socklab.server_code, lambda c: socklab.client_code(c, b"hi")):
            with pytest.raises(ConfigError) as info:
                make(cfg)
            assert info.value.explanation.title.startswith("'localhost' has no IPv")
        return
    shown, reply = run_pair(cfg, b"hi", tmp_path)
    assert reply == "reply: b'hi'"
