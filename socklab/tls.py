"""TLS on top of socklab's traced TCP sockets, with certificates made on the fly.

Layering, honestly: ``ssl.SSLSocket`` (what ``context.wrap_socket`` returns) reads and writes the
file descriptor itself, inside OpenSSL, so a ``TracedSocket`` cannot see what it sends. socklab
therefore runs TLS *in memory* (``ssl.SSLObject`` with two ``ssl.MemoryBIO``s, the same TLS engine)
and moves the encrypted records over a plain traced TCP socket itself: the trace shows exactly the
bytes on the wire (TLS records: ciphertext after the handshake), and the plaintext exists only
above, in ``TLSStream``.

Certificates come from ``trustme`` (a throwaway CA and a server certificate for localhost,
127.0.0.1 and ::1), imported only when ``Certificates()`` is made. Knows nothing of Jupyter.
"""
from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from . import runtime
from .errors import Explanation
from .recent import Recent
from .servers import DEFAULT_TIMEOUT, Server, _number
from .trace import Trace, TracedSocket, call_before

CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
HANDSHAKE_TYPES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 8: "EncryptedExtensions",
                   11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
                   14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished"}
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
          42: "bad_certificate", 45: "certificate_expired", 46: "certificate_unknown",
          48: "unknown_ca", 70: "protocol_version", 80: "internal_error", 112: "unrecognized_name"}
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}

TRUSTME_MISSING = (
    "socklab.tls makes its teaching certificates on the fly with the 'trustme' package, which is "
    "not installed in this Python. Install it with `pip install trustme` (it is part of socklab's "
    "test extra: `pip install 'socklab[test]'`), then restart the kernel. Everything else in socklab "
    "works without it.")


def _trustme():
    try:
        import trustme
    except ImportError as exc:
        raise ImportError(TRUSTME_MISSING) from exc
    return trustme


# ---- certificates

class Certificates:
    """A throwaway certificate authority and one server certificate it signed, made in memory.

    ``server_context()`` is what a TLS server loads (its certificate chain and private key);
    ``client_context(trust_ca=True)`` is a verifying client context that trusts this CA on top of
    the system's CAs; ``client_context(trust_ca=False)`` trusts only the system's CAs, so it rejects
    this server. Nothing is written to disk until ``ca_file()`` is asked for (tools such as
    ``openssl`` and ``curl`` want a file).
    """

    def __init__(self, names=("localhost", "127.0.0.1", "::1"), organization: str = "socklab teaching CA"):
        trustme = _trustme()
        self.names = tuple(names)
        self.ca = trustme.CA(organization_name=organization)
        self.cert = self.ca.issue_cert(*self.names)
        self._ca_path = None

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self, trust_ca: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context()  # CERT_REQUIRED and check_hostname=True
        if trust_ca:
            self.ca.configure_trust(ctx)
        return ctx

    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def ca_file(self) -> str:
        """The CA certificate as a PEM file in socklab's private directory (shown as <rundir>/...)."""
        if self._ca_path is None or not os.path.exists(self._ca_path):
            path = runtime.private_path("ca") + ".pem"
            with open(path, "wb") as f:
                f.write(self.ca_pem())
            self._ca_path = path
        return self._ca_path

    def describe(self) -> str:
        """The server certificate's subject, issuer and names, as a client will see them."""
        from cryptography import x509  # trustme depends on cryptography

        leaf = x509.load_pem_x509_certificate(self.cert.cert_chain_pems[0].bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
        names += [f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)]
        def org(name):  # trustme adds a random unit name ('Testing cert #...'): leave it out
            return ", ".join(f"O={a.value}" for a in name.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME))

        return "\n".join([f"subject: {org(leaf.subject)}",
                          f"issuer:  {org(leaf.issuer)}",
                          f"names:   {', '.join(names)}",
                          f"key:     {type(leaf.public_key()).__name__.lstrip('_')}"])


# ---- TLS over a traced socket

class TLSStream:
    """One TLS connection carried over a ``TracedSocket``.

    ``ssl.SSLObject`` does the cryptography in memory; this class moves its records: whatever
    OpenSSL wants to send goes out with ``sock.sendall`` (traced), whatever arrives with
    ``sock.recv`` (traced) is fed in. ``sent`` and ``received`` keep every byte that crossed the
    wire, so ``records(stream.sent)`` shows the TLS records. The handshake happens in
    ``do_handshake()`` (``connect()`` calls it for clients, the server handler right after accept).
    """

    def __init__(self, sock: TracedSocket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None):
        self.sock = sock
        self.side = sock.side
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                    server_hostname=server_hostname)
        self.sent = bytearray()
        self.received = bytearray()
        self.handshake_done = False
        self.key = None
        self._limit = None     # seconds the handshake may take from the peer's first byte
        self._own = None       # time.monotonic() by which the handshake must be done, once that byte came
        self._deadline = None  # the nearest deadline for each recv(): the handshake's or a caller's

    # moving records
    def _flush(self):
        data = self._out.read()
        if data:
            self.sock.sendall(data)
            self.sent += data

    def _fill(self) -> bool:
        data = self._recv()
        if not data:
            self._in.write_eof()
            return False
        if self._limit is not None and self._own is None:
            self._own = time.monotonic() + self._limit  # the peer's first byte: the clock starts
            self._deadline = self._own if self._deadline is None else min(self._deadline, self._own)
        self._in.write(data)
        self.received += data
        return True

    def _recv(self) -> bytes:
        """One recv(), cut short at the deadline (set untraced on the real socket)."""
        if self._deadline is None:
            return self.sock.recv(65536)
        try:
            return call_before(self._deadline, self.sock, self.sock.recv, 65536)
        except TimeoutError as exc:
            if self._own is None or time.monotonic() < self._own:
                raise  # the socket's own timeout (the peer went quiet), or a caller's deadline
            raise TimeoutError(f"the TLS handshake was not done within {self._limit:g} s") from exc

    def call_before(self, deadline: float, call, *args):
        """``call(*args)`` (e.g. ``self.recv``) with every recv() under it bounded by ``deadline``, a
        ``time.monotonic()`` value: one record can take many recv() calls, so a bound set once on
        the socket would let a peer that drips a record outlast it."""
        outer = self._deadline
        self._deadline = deadline if outer is None else min(outer, deadline)
        try:
            return call(*args)
        finally:
            self._deadline = outer

    def _run(self, fn, *args):
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()  # e.g. our ClientHello: send it, then wait for the answer
                self._fill()
                continue
            except ssl.SSLError:
                try:
                    self._flush()  # an alert telling the peer why we give up
                except OSError:
                    pass  # the peer is gone already
                raise
            self._flush()
            return result

    # the socket-like API
    def do_handshake(self, timeout: float | None = None) -> None:
        """Run the TLS handshake. With ``timeout``, it must be done within that many seconds of
        the peer's first byte (TimeoutError if not), so a peer that drips bytes cannot stall it;
        each wait is also bounded by the socket's own timeout."""
        outer = self._deadline  # a caller's deadline (call_before) still holds during the handshake
        self._limit, self._own, self._deadline = timeout, None, outer
        try:
            self._run(self.obj.do_handshake)
        finally:
            self._limit, self._own, self._deadline = None, None, outer
        self.handshake_done = True

    def sendall(self, data) -> None:
        view = memoryview(data)
        while view:
            n = self._run(self.obj.write, view)
            view = view[n:]

    def recv(self, bufsize: int = 65536) -> bytes:
        """Decrypted data; b'' when the peer closed (with or without a TLS close_notify)."""
        try:
            return self._run(self.obj.read, bufsize)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def close(self) -> None:
        """Send close_notify (TLS's 'goodbye', best effort), then close the TCP socket."""
        if self.sock.closed:
            return
        if self.handshake_done:
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                pass  # the peer's close_notify may follow; we do not wait for it
            except (ssl.SSLError, ValueError):
                pass  # already shut down or broken: nothing more to say politely
            try:
                self._flush()
            except OSError:
                pass  # the peer already closed: the TCP close below is all that is left
        self.sock.close()
        if self.key is not None:
            runtime.unregister(self.key, self)

    stop = close

    def version(self):
        return self.obj.version()

    def cipher(self):
        return self.obj.cipher()

    def getpeercert(self, binary_form: bool = False):
        return self.obj.getpeercert(binary_form)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.sock.closed else ("encrypted" if self.handshake_done else "handshaking")
        return f"<socklab.tls.TLSStream {self.side} {state}>"


def connect(address, context: ssl.SSLContext, server_hostname: str | None = "localhost", *,
            trace: Trace | None = None, side: str = "client", timeout: float = DEFAULT_TIMEOUT,
            name: str | None = None) -> TLSStream:
    """TCP connect to ``address``, then the TLS handshake; returns the TLSStream.

    ``server_hostname`` is the name the certificate must carry (and is sent in the ClientHello
    as SNI). On a failed handshake the socket is closed and the ``ssl`` error is raised as is.
    ``timeout`` bounds each wait, and the handshake from the server's first byte.
    Re-running the cell closes the stream the previous run opened.
    """
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    sock = TracedSocket.create(family, socket.SOCK_STREAM, trace=trace, side=side)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        stream = TLSStream(sock, context, server_side=False, server_hostname=server_hostname)
        stream.do_handshake(timeout)
    except BaseException:
        sock.close()
        raise
    stream.key = name if name is not None else runtime.caller_key(2)
    runtime.register(stream.key, stream, explicit=name is not None)
    return stream


STREAMS_KEPT = 100  # TLSEchoHandler.streams keeps the latest connections only


class TLSEchoHandler:
    """A socklab stream handler: TLS handshake on the accepted connection, then echo the plaintext.

    ``streams`` keeps each connection's TLSStream (for looking at the bytes afterwards), the latest
    ``STREAMS_KEPT`` only (``streams.dropped`` counts the older ones: a server may run all day); a failed
    handshake is noted in the trace and explained in ``server.errors``. ``handshake_timeout``: the
    handshake must be done within that many seconds of the client's first byte, or the connection
    is closed; default (None): the server's ``idle_timeout`` (900 s unless set).
    """

    def __init__(self, context: ssl.SSLContext, *, handshake_timeout: float | None = None):
        if handshake_timeout is not None:
            _number("handshake_timeout", handshake_timeout, integer=False, low=1e-3, high=86400,
                    fix="Use a number of seconds such as 10, or None for the server's idle_timeout.")
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.streams: list = Recent(STREAMS_KEPT)
        self._lock = threading.Lock()

    def __call__(self, conn: TracedSocket, server: Server) -> None:
        stream = TLSStream(conn, self.context, server_side=True)
        with self._lock:
            self.streams.append(stream)
        limit = self.handshake_timeout or server.idle_timeout
        try:
            stream.do_handshake(limit)
        except ssl.SSLError as exc:
            server.trace.note(conn.side, f"TLS handshake failed: {exc.reason or exc}")
            server.errors.append((conn.side, explain(exc)))
            return
        except TimeoutError as exc:
            if not stream.received:
                raise  # nothing came at all: an idle client, which the server explains as a timeout
            server.trace.note(conn.side, "TLS handshake not finished in time: closed")
            server.errors.append((conn.side, Explanation(
                "The TLS handshake took too long",
                f"The client started a handshake but did not finish it within {limit:g} s of its "
                "first byte (or went quiet in the middle); the server closed the connection.",
                "A handshake is a few messages that real clients send at once. A client that sends "
                "its ClientHello a byte at a time would hold a connection (one of max_connections) "
                "for ever, so the whole handshake has a time limit, not just each recv().",
                "Use a real TLS client (ssl, curl, openssl s_client); if the network is that slow, "
                "raise handshake_timeout.", f"TimeoutError: {exc}", "timeout")))
            return
        server.trace.note(conn.side, f"TLS handshake done: {stream.version()}")
        try:
            while True:
                data = stream.recv(server.max_message)
                if not data:
                    break
                stream.sendall(data)
        except ssl.SSLError as exc:  # e.g. a corrupted record: explained as TLS, not as a socket error
            server.trace.note(conn.side, f"TLS error: {exc.reason or exc}")
            server.errors.append((conn.side, explain(exc)))
        stream.close()


def echo_server(certs_or_context, *, handshake_timeout: float | None = None, trace: Trace | None = None,
                name: str | None = None, **kw) -> Server:
    """A socklab.Server (not started yet) that speaks TLS and echoes; ``.handler.streams`` keeps
    the server's side of each connection. ``handshake_timeout``: seconds from the client's first
    byte to the end of the handshake, else the connection is closed; default: ``idle_timeout``."""
    ctx = certs_or_context.server_context() if isinstance(certs_or_context, Certificates) \
        else certs_or_context
    return Server(handler=TLSEchoHandler(ctx, handshake_timeout=handshake_timeout), trace=trace,
                  name=name, **kw)


# ---- reading the wire

@dataclass(frozen=True)
class Record:
    """One TLS record header (5 bytes: type, version, length) and, where it is readable, what it is."""

    type: int
    version: int
    length: int
    detail: str = ""

    @property
    def type_name(self) -> str:
        return CONTENT_TYPES.get(self.type, f"type {self.type}")

    def describe(self, lengths: bool = True) -> str:
        size = f" {self.length} bytes" if lengths else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.type_name}{detail}{size}"


def records(data: bytes) -> list:
    """Split a byte stream into TLS records. Only cleartext records (the first handshake messages,
    alerts before encryption) have a readable ``detail``; application_data is ciphertext."""
    data = bytes(data)
    out, i, encrypted = [], 0, False
    while i + 5 <= len(data):
        typ, ver, length = data[i], int.from_bytes(data[i + 1:i + 3], "big"), \
            int.from_bytes(data[i + 3:i + 5], "big")
        body = data[i + 5:i + 5 + length]
        detail = ""
        if encrypted and typ in (21, 22):
            detail = "encrypted"
        elif typ == 22 and body:
            detail = HANDSHAKE_TYPES.get(body[0], f"handshake type {body[0]}")
        elif typ == 21 and len(body) == 2:
            detail = f"{'fatal' if body[0] == 2 else 'warning'} {ALERTS.get(body[1], body[1])}"
        out.append(Record(typ, ver, length, detail))
        if typ == 20:
            encrypted = True  # after ChangeCipherSpec a side sends only encrypted records
        if typ not in CONTENT_TYPES:
            break  # not TLS at all: stop rather than invent records
        i += 5 + length
    return out


def wire_summary(data: bytes, lengths: bool = False) -> str:
    """The records of one direction, one per line, identical runs folded ('x2')."""
    lines: list = []
    for r in records(data):
        text = r.describe(lengths)
        if lines and lines[-1][0] == text:
            lines[-1][1] += 1
        else:
            lines.append([text, 1])
    if not lines:
        return "(no TLS records)"
    return "\n".join(f"{t}{f'  x{n}' if n > 1 else ''}" for t, n in lines)


def hexdump(data: bytes, limit: int = 64, width: int = 16) -> str:
    """The first ``limit`` bytes as hex and ASCII, like ``xxd``."""
    data = bytes(data[:limit])
    rows = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f"{off:04x}  {hexpart:<{width * 3 - 1}}  {text}")
    return "\n".join(rows)


# ---- explaining TLS errors

_VERIFY = {
    20: ("The certificate is signed by a CA this client does not trust",
         "The client could not build a chain from the server's certificate to any CA in its trust "
         "store ('unable to get local issuer certificate').",
         "Clients trust only the CAs they are given: the system's list by default. Our teaching CA "
         "was made a minute ago and is in no such list, exactly like a company's internal CA.",
         "Give the client the CA certificate (context.load_verify_locations(cafile) or, with trustme, "
         "ca.configure_trust(context)). Never 'fix' it with CERT_NONE: that accepts any attacker."),
    62: ("The certificate is not valid for that host name",
         "The chain is trusted, but the certificate does not list the name the client asked for.",
         "With check_hostname=True the client compares server_hostname with the certificate's "
         "subjectAltName entries (DNS names and IP addresses); none matched.",
         "Connect with a name the certificate carries (here: 'localhost', '127.0.0.1' or '::1'), or "
         "issue a certificate that includes the name you use."),
    10: ("The certificate has expired", "The certificate's notAfter date has passed.",
         "Certificates are valid for a limited time; an expired one is rejected.",
         "Renew the certificate (and check the client's clock)."),
    18: ("Self-signed certificate", "The server sent a certificate signed by itself.",
         "A self-signed certificate is trusted only if the client has that exact certificate in its "
         "trust store.", "Load the certificate as a CA on the client, or use a CA-issued certificate."),
}

_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": (
        "The client rejected our certificate",
        "The peer sent a TLS alert 'unknown CA' during the handshake.",
        "The client does not trust the CA that signed the server's certificate, so it aborted the "
        "handshake and said why; the server sees this alert instead of a request.",
        "Give the client the CA certificate; the server is fine."),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "The peer rejected the certificate",
        "The peer sent a TLS alert 'bad certificate'.",
        "The client's verification failed (e.g. host name mismatch) and it told the server.",
        "Fix what the client reported: trust the CA, connect with a name the certificate carries."),
    "WRONG_VERSION_NUMBER": (
        "Not TLS on the other side",
        "The first bytes that arrived do not start a TLS record.",
        "A TLS record starts with a content type (22 = handshake) and a version (3, x). Plain text such "
        "as b'hello' or an HTTP request looks like nothing of the kind: the peer is speaking plain TCP "
        "to a TLS port, or TLS to a plain port.",
        "Use TLS on both ends (or neither): wrap the client socket too, and connect to the TLS port."),
    "HTTP_REQUEST": (
        "Plain HTTP sent to a TLS port",
        "The first bytes were an HTTP request, not a TLS ClientHello.",
        "The client spoke http:// to an https:// server.", "Use https:// (a TLS client)."),
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": (
        "A record failed its integrity check",
        "An encrypted record arrived whose authentication tag does not match its content.",
        "TLS protects every record with a tag computed from the key: a single changed bit (by an "
        "attacker, or a bug that mixes up streams) makes the tag wrong, and the record is rejected "
        "instead of being decrypted into garbage.",
        "Nothing to fix on this side: the data was altered on the way; reconnect."),
    "SSLV3_ALERT_BAD_RECORD_MAC": (
        "A record failed its integrity check",
        "The peer sent a TLS alert 'bad record MAC': it rejected a record we sent.",
        "TLS protects every record with a tag computed from the key; the peer found a record whose "
        "tag did not match (the bytes were changed on the way) and closed the connection.",
        "Nothing to fix in the peer: find what altered the bytes; reconnect."),
    "UNEXPECTED_MESSAGE": (
        "The peer answered, but not with TLS's next step",
        "A TLS message arrived that does not fit this point of the handshake.",
        "The client sent a ClientHello and expected a ServerHello. A plain echo server sends the "
        "ClientHello straight back, which is valid TLS but the wrong message: the peer does not speak "
        "TLS, it only repeats bytes.",
        "Connect to a TLS server (or wrap the server side too)."),
    "RECORD_LAYER_FAILURE": (
        "Not TLS on the other side",
        "What arrived could not be read as TLS records.",
        "The peer is not speaking TLS (plain TCP to a TLS port, or TLS to a plain port).",
        "Use TLS on both ends, and connect to the TLS port."),
}


def explain(exc: BaseException) -> Explanation:
    """A learner's explanation of an ``ssl`` error (anything else: socklab.explain)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        short = f"SSLCertVerificationError: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None):
        short = f"{type(exc).__name__}: {exc.reason}"
    else:
        short = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        t = _VERIFY.get(exc.verify_code)
        if t:
            return Explanation(t[0], t[1], t[2], t[3], short, f"verify code {exc.verify_code}",
                               details=(f"OpenSSL says: {exc.verify_message}",))
        return Explanation("Certificate verification failed", f"OpenSSL: {exc.verify_message}.",
                           "The client checks the certificate chain, dates and host name before it "
                           "sends anything.", "Fix the certificate or give the client the right CA.",
                           short, f"verify code {exc.verify_code}")
    if isinstance(exc, ssl.SSLError):
        t = _REASONS.get(getattr(exc, "reason", None) or "")
        if t:
            return Explanation(t[0], t[1], t[2], t[3], short, exc.reason)
        if isinstance(exc, ssl.SSLEOFError):
            return Explanation("The peer closed during TLS", "The TCP connection ended in the middle of "
                               "the TLS exchange.", "The other side closed it: it rejected the handshake "
                               "(a certificate it does not trust, a protocol version it does not "
                               "offer), it gave up waiting (a server's handshake or idle timeout, after a "
                               "pause between connect() and the handshake), or its program ended.",
                               "Look at the other side's error or trace; after a long pause, connect "
                               "again and go on at once.", short)
        reason = getattr(exc, "reason", None) or ""
        return Explanation(f"TLS error {reason}".strip(), str(exc),
                           "OpenSSL stopped the TLS exchange.", "Read OpenSSL's reason above; check that "
                           "both sides speak TLS and trust each other's certificates.", short, reason)
    from .errors import explain as _explain
    return _explain(exc)


PLAIN_SERVER = '''\
# First make a CA and a certificate for localhost in this directory:
#     python -m trustme        (writes server.pem, server.key and client.pem, the CA)
import socket
import ssl

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("server.pem", "server.key")

with socket.create_server(("127.0.0.1", 8443)) as listener:
    print("TLS echo server on 127.0.0.1:8443")
    conn, addr = listener.accept()
    conn.settimeout(10)  # before wrap_socket: a client that never sends a ClientHello must not hang us
    # The TLS handshake runs here, on the accepted socket (do_handshake_on_connect=True);
    # the TLS socket keeps conn's timeout.
    with context.wrap_socket(conn, server_side=True) as tls:
        print("handshake done:", tls.version(), tls.cipher()[0])
        while data := tls.recv(65536):
            tls.sendall(data)
'''

PLAIN_CLIENT = '''\
import socket
import ssl

context = ssl.create_default_context(cafile="client.pem")   # trust the CA that trustme made

with socket.create_connection(("127.0.0.1", 8443), timeout=5) as tcp:
    # The handshake runs inside wrap_socket; it checks the chain and that the certificate
    # is valid for server_hostname. On failure: ssl.SSLCertVerificationError.
    with context.wrap_socket(tcp, server_hostname="localhost") as tls:
        print(tls.version(), tls.cipher()[0])
        tls.sendall(b"hello over TLS")
        print(tls.recv(65536))
'''
