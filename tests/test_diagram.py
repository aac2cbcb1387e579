"""Sequence diagrams of real traces: text order, lifelines, errors, caps, SVG well-formedness."""
import re
import socket
import xml.etree.ElementTree as ET

import pytest

import socklab
from socklab.render.html import transcript_html

from socklab.render.diagram import diagram_html, diagram_svg, diagram_text
from socklab.servers import Client, Server
from socklab.trace import Trace, TracedSocket

SVG = "{http://www.w3.org/2000/svg}"


def conversation(trace: Trace, clients: int = 1) -> None:
    """A whole TCP exchange in one thread, so the event order is fixed."""
    srv = TracedSocket.create(trace=trace, side="server")
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)
    for _ in range(clients):
        c = TracedSocket.create(trace=trace, side=trace.new_side("client"))
        c.settimeout(5)
        c.connect(srv.getsockname())
        conn, _ = srv.accept()
        c.sendall(b"hello")
        assert conn.recv(100) == b"hello"
        conn.sendall(b"HELLO")
        assert c.recv(100) == b"HELLO"
        c.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b""
        conn.close()
        assert c.recv(100) == b""
        c.close()
    srv.close()


def lifelines(svg: str) -> list:
    root = ET.fromstring(svg)
    return [el.get("data-side") for el in root.iter(f"{SVG}line") if el.get("class") == "lifeline"]


def test_text_lists_events_in_order():
    t = Trace()
    conversation(t)
    assert diagram_text(t).splitlines() == [
        "lifelines: client | server | server/conn1",
        "server: socket(AF_INET, SOCK_STREAM) -> <server socket>",
        "server: bind(('127.0.0.1', 0))",
        "server: listen(2)",
        "client: socket(AF_INET, SOCK_STREAM) -> <client socket>",
        "client: settimeout(5)",
        "client ──connect──▶ server",
        "server ──accept──▶ server/conn1",
        "client ──sendall 5 B b'hello'──▶ server/conn1",
        "server/conn1 ◀──recv 5 B b'hello'── client",
        "server/conn1 ──sendall 5 B b'HELLO'──▶ client",
        "client ◀──recv 5 B b'HELLO'── server/conn1",
        "client ──shutdown(SHUT_WR): FIN──▶ server/conn1",
        "server/conn1 ◀──recv EOF (b'')── client",
        "server/conn1 ──close: FIN──▶ client",
        "client ◀──recv EOF (b'')── server/conn1",
        "client ──close: FIN──▶ server/conn1",
        "server: close()",
    ]


def test_one_lifeline_per_connection():
    t = Trace()
    conversation(t, clients=3)
    text = diagram_text(t)
    assert text.splitlines()[0] == \
        "lifelines: client | client2 | client3 | server | server/conn1 | server/conn2 | server/conn3"
    assert "client3 ──sendall 5 B b'hello'──▶ server/conn3" in text
    assert lifelines(diagram_svg(t)) == ["client", "client2", "client3", "server", "server/conn1",
                                         "server/conn2", "server/conn3"]


def test_svg_is_xml_with_arrows_and_labels():
    t = Trace()
    conversation(t)
    svg = diagram_svg(t)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert lifelines(svg) == ["client", "server", "server/conn1"]
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert "connect: SYN, SYN-ACK, ACK" in texts and "recv 5 B b'hello'" in texts
    assert len([g for g in root.iter(f"{SVG}g") if "arrow" in (g.get("class") or "")]) == 11
    html = diagram_html(t)
    assert html.count("<svg") == 1 and "overflow:auto" in html


def test_errors_are_marked():
    t = Trace()
    with socket.socket() as probe:  # a port with nothing listening: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        c = TracedSocket.create(trace=t, side="client")
        try:
            c.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            pass
        c.close()
    line = [x for x in diagram_text(t).splitlines() if "connect" in x][0]
    assert line.startswith("client: connect(('127.0.0.1', ") and "!! ConnectionRefusedError" in line
    svg = diagram_svg(t)
    root = ET.fromstring(svg)
    errors = [g for g in root.iter(f"{SVG}g") if "error" in (g.get("class") or "")]
    assert len(errors) == 1 and "#cf222e" in ET.tostring(errors[0], encoding="unicode")


def test_thousands_of_events_are_capped():
    t = Trace(coalesce=False)
    a, b = socket.socketpair()
    with a, b:
        ta, tb = TracedSocket(a, t, "client"), TracedSocket(b, t, "server/conn1")
        for i in range(3000):
            ta.send(b"x")
            tb.recv(1)
    text = diagram_text(t, last=100)
    lines = text.splitlines()
    assert len(lines) == 102 and lines[1] == "... 5900 earlier events"
    svg = diagram_svg(t, last=100)
    root = ET.fromstring(svg)
    assert len([g for g in root.iter(f"{SVG}g") if "row" in (g.get("class") or "")]) == 100
    assert "... 5900 earlier events" in svg


def test_coalesced_events_show_counts():
    t = Trace()
    a, b = socket.socketpair()
    with a, b:
        ta, tb = TracedSocket(a, t, "client"), TracedSocket(b, t, "server")
        for _ in range(50):
            ta.sendall(b"0123456789")
        got = 0
        while got < 500:
            got += len(tb.recv(4096))
    text = diagram_text(t, peers={"client": "server"})
    folded = re.findall(r"^client ──sendall x(\d+) (\d+) B──▶ server$", text, re.M)
    single = re.findall(r"^client ──sendall 10 B b'0123456789'──▶ server$", text, re.M)
    assert len(folded) == 1 and int(folded[0][0]) * 10 == int(folded[0][1])
    assert int(folded[0][0]) + len(single) == 50


def test_datagram_round_trip_with_background_server():
    srv = Server(type="SOCK_DGRAM", name="diagram-udp").start()
    c = Client(srv, name="diagram-udp-client")
    try:
        assert c.request(b"ping") == b"ping"
    finally:
        c.close()
        srv.stop()
    text = diagram_text(srv.trace)
    assert "client ──sendto 4 B b'ping'──▶ server" in text
    assert "server ◀──recvfrom 4 B b'ping'── client" in text
    assert "server ──sendto 4 B b'ping'──▶ client" in text
    assert text.index("client ──sendto") < text.index("server ◀──recvfrom")


def test_empty_trace():
    assert diagram_text(Trace()) == "(no socket calls yet)"
    ET.fromstring(diagram_svg(Trace()))


def test_a_huge_wrong_typed_argument_is_kept_short(leakcheck):
    """sendall('x' * 5_000_000) is explained (a str, not bytes); the trace and every view of it
    keep a short repr, not 5 MB."""
    with socklab.Server() as srv, socklab.Client(srv) as c:
        c.connect()
        with pytest.raises(TypeError):
            c.sendall("x" * 5_000_000)
        for view in (socklab.transcript(c.trace), transcript_html(c.trace), diagram_html(c.trace)):
            assert len(view) < 20_000 and "sendall('xxx" in view.replace("&#x27;", "'")


def test_control_characters_in_names_and_notes_keep_the_svg_well_formed():
    t = Trace()
    t.note("side\x1b[31m\x00", "a note with ESC \x1b and NUL \x00 and \x7f")
    t.record("client\x1b", "connect", (("127.0.0.1", 80),), result=None)
    svg = diagram_svg(t)
    ET.fromstring(svg)  # raises on a character XML forbids
    assert "\\x1b" in svg and "\\x00" in svg


def test_a_full_trace_drops_and_counts_one_event_per_event():
    t = Trace(max_events=3)
    early = t.t0 + 0.0  # a start before every event below: it sorts first
    for i in range(3):
        t.note("a", f"note {i}")
    t.record("b", "connect", (("127.0.0.1", 80),), start=early)
    assert len(list(t)) + t.dropped == 4, (list(t), t.dropped)
