"""Loopback packet capture of one port: the handshake and teardown as packets (root only)."""
import socket

import pytest

from socklab.capture import Capture, capture_text
import socklab
from socklab.config import can_raw

needs_raw = pytest.mark.skipif(not can_raw() or not hasattr(socket, "AF_PACKET"),
                               reason="needs Linux and root/CAP_NET_RAW")


@needs_raw
def test_handshake_data_and_teardown(leakcheck):
    with socket.socket() as listener, socket.socket() as other:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        other.bind(("127.0.0.1", 0))  # traffic on another port must not be recorded
        other.listen(1)
        port = listener.getsockname()[1]
        with Capture(port) as cap:
            with socket.create_connection(other.getsockname(), timeout=5):
                pass
            c = socket.create_connection(listener.getsockname(), timeout=5)
            a, _ = listener.accept()
            c.sendall(b"hello")
            assert a.recv(10) == b"hello"
            c.close()
            assert a.recv(10) == b""
            a.close()
        flags = [p.flags for p in cap.packets]
        assert flags[:3] == ["SYN", "SYN-ACK", "ACK"]
        assert all(port in (p.src[1], p.dst[1]) for p in cap.packets)
        fins = [p for p in cap.packets if "FIN" in p.flags]
        assert [p.src[1] == port for p in fins] == [False, True]  # the client's FIN first
        assert any(p.length == 5 for p in cap.packets)
        lines = cap.text().splitlines()
        assert lines[0].endswith("  SYN  seq 0") and lines[1].endswith("  SYN-ACK  seq 0  ack 1")
        assert lines[0].startswith("127.0.0.1:")


def test_unprivileged_user_gets_an_explanation(as_nobody):
    out = as_nobody(
        "import json, socklab.capture, socklab.errors\n"
        "try:\n"
        "    socklab.capture.Capture(5000).start()\n"
        "    print(json.dumps({'started': True}))\n"
        "except socklab.errors.ConfigError as exc:\n"
        "    print(json.dumps({'title': exc.explanation.title, 'why': exc.explanation.why}))\n")
    assert out.get("title") == "Packet capture is not possible here"
    assert "CAP_NET_RAW" in out["why"]


def test_text_of_no_packets():
    assert capture_text([]) == "(no packets on this port)"


@needs_raw
def test_stop_all_stops_every_capture(leakcheck):
    srv = socklab.Server().start()
    caps = [Capture(srv.address[1]).start() for _ in range(3)]  # one cell, one line: all kept
    assert all(c in socklab.running() for c in caps)
    assert socklab.stop_all() == 4  # the server and the three captures; leakcheck: no thread left


@pytest.mark.parametrize("kwargs", [dict(ports="80"), dict(ports=None), dict(ports=[80, 70000]),
                                    dict(ports=80, limit=None), dict(ports=80, limit=0)])
def test_bad_ports_or_limit_are_explained(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        Capture(**kwargs)
    assert err.value.explanation.title in ("Invalid ports", "Invalid limit")
