"""socklab.tls on real loopback sockets: handshake, verification failures, what the wire carries,
standard ssl clients and (where installed) openssl s_client against the TLS echo server."""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

import socklab

trustme = pytest.importorskip("trustme", reason="socklab.tls needs trustme (pip install trustme)")
from socklab import tls  # noqa: E402


@pytest.fixture(scope="module")
def certs():
    return tls.Certificates()


@pytest.fixture
def srv(certs):
    with tls.echo_server(certs) as s:
        yield s


def test_certificate_names(certs):
    text = certs.describe()
    assert "names:   DNS:localhost, IP:127.0.0.1, IP:::1" in text
    assert "O=socklab teaching CA" in text


def test_handshake_echo_and_ciphertext_on_the_wire(leakcheck, certs, srv):
    c = tls.connect(srv.address, certs.client_context(), trace=srv.trace)
    assert c.version() == "TLSv1.3" and c.handshake_done
    c.sendall(b"hello")
    assert c.recv() == b"hello"
    c.close()
    assert srv.wait_idle()
    # the client's first bytes: a cleartext handshake record carrying a ClientHello with SNI
    first = tls.records(c.sent)[0]
    assert (first.type_name, first.detail) == ("handshake", "ClientHello")
    assert b"localhost" in bytes(c.sent)
    assert b"hello" not in bytes(c.sent) and b"hello" not in bytes(c.received)
    # TLS 1.3 encrypts the certificate: the CA's name is not visible on the wire
    assert b"socklab teaching CA" not in bytes(c.received)
    # the server read exactly the bytes the client wrote
    assert bytes(srv.handler.streams[0].received) == bytes(c.sent)
    # and the trace of the TCP socket recorded those bytes (previews start with record headers)
    sends = [e for e in srv.trace if e.side == "client" and e.call == "sendall"]
    assert sends[0].args[0].head.startswith(b"\x16\x03\x01")
    assert all(e.args[0].head[:1] in (b"\x14", b"\x15", b"\x16", b"\x17") for e in sends)
    notes = [e.args[0] for e in srv.trace if e.call == "note"]
    assert "TLS handshake done: TLSv1.3" in notes
    srv.stop()


def test_application_record_size(certs, srv):
    with tls.connect(srv.address, certs.client_context(), trace=srv.trace) as c:
        before = len(c.sent)
        c.sendall(b"hello")
        recs = tls.records(c.sent[before:])
        assert [(r.type_name, r.length) for r in recs] == [("application_data", 5 + 1 + 16)]
        assert c.recv() == b"hello"


def test_record_summary_is_stable(certs, srv):
    summaries = set()
    for _ in range(3):
        with tls.connect(srv.address, certs.client_context(), trace=srv.trace) as c:
            c.sendall(b"x")
            c.recv()
            summaries.add(tls.wire_summary(c.sent))
    assert len(summaries) == 1
    assert summaries.pop().splitlines()[:2] == ["handshake (ClientHello)", "change_cipher_spec"]


def test_unknown_ca(certs, srv):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls.connect(srv.address, certs.client_context(trust_ca=False), trace=srv.trace)
    assert info.value.verify_code == 20
    assert tls.explain(info.value).title.startswith("The certificate is signed by a CA")
    assert srv.wait_idle()
    side, exp = srv.errors[-1]
    assert exp.code == "TLSV1_ALERT_UNKNOWN_CA"
    client_sends = [e for e in srv.trace if e.side == "client" and e.call == "sendall"]
    assert tls.records(client_sends[-1].args[0].head)[0].describe() == "alert (fatal unknown_ca) 2 bytes"
    assert not socklab.running() or all(not isinstance(o, tls.TLSStream) for o in socklab.running())


def test_hostname_mismatch(certs, srv):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls.connect(srv.address, certs.client_context(), server_hostname="example.org")
    assert info.value.verify_code == 62
    assert "Hostname mismatch" in info.value.verify_message
    assert tls.explain(info.value).title == "The certificate is not valid for that host name"


def test_ip_address_names(certs, srv):
    with tls.connect(srv.address, certs.client_context(), server_hostname="127.0.0.1") as c:
        assert c.getpeercert()["subjectAltName"][1] == ("IP Address", "127.0.0.1")


def test_standard_ssl_socket_against_socklab_server(certs, srv):
    with socket.create_connection(srv.address, timeout=5) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert isinstance(s, ssl.SSLSocket) and raw.fileno() == -1  # the SSLSocket took the fd
            s.sendall(b"ping")
            assert s.recv(100) == b"ping"


def test_plain_client_to_tls_server(srv):
    c = socklab.Client(srv, timeout=3)
    c.connect()
    c.sendall(b"hello\n")
    assert c.recv() == b""  # the server gives up on non-TLS bytes and closes
    c.close()
    assert srv.wait_idle()
    assert srv.errors[-1][1].title == "Not TLS on the other side"


def test_tls_client_to_plain_echo_server(certs):
    with socklab.Server() as plain:
        with pytest.raises(ssl.SSLError) as info:
            tls.connect(plain.address, certs.client_context(), trace=plain.trace, timeout=3)
    assert info.value.reason == "UNEXPECTED_MESSAGE"
    assert "ClientHello straight back" in tls.explain(info.value).why


def test_tls12_shows_the_certificate_in_clear(certs, srv):
    ctx = certs.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls.connect(srv.address, ctx, trace=srv.trace) as c:
        assert c.version() == "TLSv1.2"
        assert b"socklab teaching CA" in bytes(c.received)
        details = [r.detail for r in tls.records(c.received)]
        assert details[:2] == ["ServerHello", "Certificate"] and "encrypted" in details


def test_ca_file_and_rerun_closes_stream(certs, srv):
    path = certs.ca_file()
    assert socklab.runtime.display_path(path).startswith("<rundir>/") and path.endswith(".pem")
    ctx = ssl.create_default_context(cafile=path)
    a = tls.connect(srv.address, ctx, name="t-tls")
    b = tls.connect(srv.address, ctx, name="t-tls")
    assert a.sock.closed and not b.sock.closed
    b.close()


def test_hexdump():
    assert tls.hexdump(b"\x16\x03\x01AB") == "0000  16 03 01 41 42" + " " * 33 + "  ...AB"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client(certs, srv):
    base = [shutil.which("openssl"), "s_client", "-connect", f"127.0.0.1:{srv.address[1]}",
            "-servername", "localhost", "-verify_return_error", "-brief"]
    ok = subprocess.run(base + ["-CAfile", certs.ca_file()], stdin=subprocess.DEVNULL, capture_output=True,
                        text=True, timeout=15)
    assert ok.returncode == 0 and "Verification: OK" in ok.stderr
    bad = subprocess.run(base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    assert bad.returncode != 0 and "unable to get local issuer certificate" in bad.stderr


def test_missing_trustme_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **kw):
        if name == "trustme":
            raise ImportError("No module named 'trustme'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install trustme"):
        tls.Certificates()


def trustme_files_and_port(tmp_path) -> int:
    """`python -m trustme` in ``tmp_path`` (server.pem, server.key, client.pem); a free port."""
    made = subprocess.run([sys.executable, "-m", "trustme", "-q", "-d", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert {"server.pem", "server.key", "client.pem"} <= {p.name for p in tmp_path.iterdir()}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_plain_code_runs_end_to_end(tmp_path):
    """The printed plain TLS server and client work, with files from `python -m trustme`."""
    port = trustme_files_and_port(tmp_path)
    (tmp_path / "s.py").write_text(tls.PLAIN_SERVER.replace("8443", str(port)))
    (tmp_path / "c.py").write_text(tls.PLAIN_CLIENT.replace("8443", str(port)))
    srv = subprocess.Popen([sys.executable, "-u", "s.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().startswith("TLS echo server on")
        c = subprocess.run([sys.executable, "c.py"], cwd=tmp_path, capture_output=True, text=True, timeout=20)
        assert c.returncode == 0, c.stderr
        assert c.stdout.splitlines() == ["TLSv1.3 TLS_AES_256_GCM_SHA384", "b'hello over TLS'"]
        assert srv.wait(20) == 0
        assert "handshake done: TLSv1.3" in srv.stdout.read()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait(5)
        srv.stdout.close()


def test_plain_server_gives_up_on_a_client_that_never_says_hello(tmp_path):
    """The printed plain TLS server's timeout covers the handshake: a TCP client that sends no
    ClientHello ends it with a timeout instead of blocking it for ever (timeout 10 s -> 0.5 s here)."""
    port = trustme_files_and_port(tmp_path)
    src = tls.PLAIN_SERVER.replace("8443", str(port)).replace("settimeout(10)", "settimeout(0.5)")
    (tmp_path / "s.py").write_text(src)
    srv = subprocess.Popen([sys.executable, "-u", "s.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().startswith("TLS echo server on")
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # ... and say nothing
            assert srv.wait(10) != 0  # it gave up: no hang
        assert "timed out" in srv.stderr.read()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait(5)
        srv.stdout.close()
        srv.stderr.close()


def test_corrupted_record_is_explained_as_tls(certs, srv):
    """Flip one byte of an encrypted record: the server's TLS layer rejects it (authentication tag)."""
    c = tls.connect(srv.address, certs.client_context(), trace=srv.trace)
    c.sendall(b"ok")
    assert c.recv() == b"ok"
    before = len(c.sent)
    c.obj.write(b"tampered")          # encrypt without sending ...
    record = bytearray(c._out.read())
    record[-1] ^= 0x01                # ... change one bit of the tag ...
    c.sock.sendall(bytes(record))     # ... and send it by hand
    with pytest.raises(ssl.SSLError) as info:  # the server answers with an alert and closes
        c.recv()
    assert info.value.reason == "SSLV3_ALERT_BAD_RECORD_MAC"
    assert tls.explain(info.value).title == "A record failed its integrity check"
    c.close()
    assert srv.wait_idle()
    assert len(c.sent) == before
    side, exp = srv.errors[-1]
    assert exp.title == "A record failed its integrity check"


def client_hello(certs) -> bytes:
    """The bytes of a real ClientHello, made in memory (no server needed)."""
    obj = certs.client_context().wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(),
                                          server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


@pytest.mark.parametrize("kw", [{"idle_timeout": 0.5}, {"idle_timeout": 5, "handshake_timeout": 0.5}])
def test_dripped_client_hello_is_cut_off(leakcheck, certs, kw):
    """One byte every 0.05 s never trips a per-recv timeout; the handshake's own time limit does."""
    hello = client_hello(certs)
    with tls.echo_server(certs, **kw) as srv:
        closed = False
        with socket.create_connection(srv.address, timeout=5) as s:
            s.settimeout(0.05)  # the bounded wait between bytes doubles as the wait for the close
            for i in range(min(len(hello), 80)):
                try:
                    s.sendall(hello[i:i + 1])
                    closed = s.recv(65536) == b""
                except TimeoutError:
                    continue  # the server is still waiting for the rest: send the next byte
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                break
        assert closed and i < len(hello) - 1
        assert srv.wait_idle()
        side, exp = srv.errors[-1]
        assert exp.title == "The TLS handshake took too long" and "0.5 s" in exp.what


def test_handshake_deadline_leaves_later_reads_alone(certs):
    """The limit covers the handshake only: an idle encrypted connection outlives it."""
    with tls.echo_server(certs, handshake_timeout=0.2) as srv:
        with tls.connect(srv.address, certs.client_context(), timeout=5) as c:
            assert c.sock.gettimeout() == 5  # the handshake's deadline put the timeout back
            c.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):  # 0.5 s of quiet, longer than the handshake limit ...
                c.recv()
            c.sendall(b"later")                # ... and the server still echoes
            assert c.recv() == b"later"
        assert srv.wait_idle()
        assert not srv.errors


def test_a_deadline_over_tls_bounds_every_recv_of_a_dripped_record(certs, leakcheck):
    """http.Reader's deadline over a TLSStream covers each recv() of a record: a peer dripping
    one record (a byte per 0.05 s) cannot outlast it. It used to be checked between records only."""
    from socklab import http as H

    stop, sent, record = threading.Event(), [], []

    def drip(conn, server):
        stream = tls.TLSStream(conn, certs.server_context(), server_side=True)
        stream.do_handshake(5)
        stream.obj.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        record.append(stream._out.read())  # one encrypted record, not yet sent
        for i in range(len(record[0])):
            if stop.wait(0.05):  # a slow peer on purpose: a bounded pause between bytes
                return
            conn.sendall(record[0][i:i + 1])
            sent.append(i)

    with socklab.Server(handler=drip, name="tls-dripper") as srv:
        with tls.connect(srv.address, certs.client_context(), timeout=5) as c:
            with pytest.raises(TimeoutError):
                H.read_response(H.Reader(c, deadline=time.monotonic() + 0.5), "GET")
            assert len(sent) < len(record[0]) - 1  # the record was still incomplete
            stop.set()
    socklab.stop_all()


def test_a_callers_deadline_holds_through_a_handshake(certs):
    """call_before(deadline, do_handshake) with a server that never speaks TLS, on a socket with no
    timeout of its own: only the caller's deadline can end the handshake (it used to be dropped)."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)  # accepts in the kernel, never speaks TLS
        t = socklab.trace.Trace()
        sock = socklab.trace.TracedSocket.create(trace=t, side="client")
        sock.connect(lsock.getsockname())  # no timeout: blocking
        stream = tls.TLSStream(sock, certs.client_context(), server_side=False, server_hostname="localhost")
        outcome = []

        def handshake():
            try:
                stream.call_before(time.monotonic() + 0.3, stream.do_handshake, 2.0)
            except TimeoutError as exc:
                outcome.append(exc)

        th = threading.Thread(target=handshake, daemon=True)
        th.start()
        th.join(10)
        if th.is_alive():
            sock.sock.shutdown(socket.SHUT_RDWR)  # let the thread end before failing
            th.join(10)
            pytest.fail("the handshake ignored the caller's deadline")
        assert len(outcome) == 1 and "handshake was not done" not in str(outcome[0])
        assert sock.gettimeout() is None  # put back
        sock.close()
