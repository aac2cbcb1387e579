"""Notebook 12 (TLS): a client that verifies the server against a given CA, and the name."""
from __future__ import annotations

import errno
import os
import socket
import ssl

from .core import Case, Exercise, Fail, LearnerRaised
from .peers import shorten

_certs: dict = {}  # made once per process: key generation is the slow part


def _certificates(which: str):
    from .. import tls
    if which not in _certs:
        _certs[which] = tls.Certificates(organization=f"socklab exercise CA {which}")
    return _certs[which]


def _server(ctx, certs):
    """A TLS echo server; ``srv.names_asked`` collects the name each client asked for (SNI; None
    when it sent none, as for an IP address)."""
    from .. import tls
    context = certs.server_context()
    names: list = []
    context.sni_callback = lambda obj, name, context: names.append(name)
    srv = tls.echo_server(context, name=f"exercise-tls-{id(ctx)}", lifetime=60)
    srv.names_asked = names
    srv.start()
    ctx.later(srv.stop)
    return srv


def _ca_file(ctx, certs) -> str:
    path = certs.ca_file()

    def remove():
        if os.path.exists(path):
            os.unlink(path)
        certs._ca_path = None
    ctx.later(remove)
    return path


def _request(ctx, tls_request, address, ca_file, hostname, data):
    return ctx.call(tls_request, address, ca_file, hostname, data,
                    what=f"your tls_request(address, ca_file, {hostname!r}, data)",
                    why="is a recv waiting for data that never comes? The echo server sends "
                        "len(data) bytes back and keeps the connection open: read exactly that many.")


def _verification_error(error: BaseException):
    """The ssl.SSLCertVerificationError that ``error`` is, or was raised from (or while handling)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ssl.SSLCertVerificationError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _misused_socket(error: BaseException) -> None:
    """Fail with the likely cause when the plain and the wrapped socket were mixed up."""
    if not isinstance(error, OSError) or isinstance(error, ssl.SSLError):
        return
    if isinstance(error, socket.gaierror):
        raise Fail(f"your code raised gaierror ({error.strerror}): it looked up a host name to "
                   "connect to. Connect to address, as given (the check's server); hostname is "
                   "only the name the certificate must carry: server_hostname=hostname.")
    if error.errno == errno.EBADF:
        raise Fail(f"your code raised {type(error).__name__}: {error.strerror}. wrap_socket() takes "
                   "over the socket it is given (that socket's fileno() is -1 afterwards): send and "
                   "receive with the SSLSocket that wrap_socket() returned, only.")
    if error.errno in (errno.EPIPE, errno.ENOTCONN):
        raise Fail(f"your code raised {type(error).__name__}: it sent on a socket that is not "
                   "connected. Did you wrap a new socket instead of the one you connected? Give "
                   "wrap_socket() the connected socket and use the SSLSocket it returns.")


def _case_ok(ctx, tls_request):
    certs = _certificates("A")
    srv = _server(ctx, certs)
    # Over 16 KiB: more than one TLS record, so one recv() cannot return it all.
    data = b"hello over TLS " * 3000
    try:
        got = _request(ctx, tls_request, srv.address, _ca_file(ctx, certs), "localhost", data)
    except LearnerRaised as e:
        refused = _verification_error(e.error)
        if refused is not None:
            raise Fail("the right CA and the right name, but your client did not accept the "
                       f"certificate ({refused.verify_message}): load the CA with "
                       "ssl.create_default_context(cafile=ca_file).") from None
        _misused_socket(e.error)
        raise
    if isinstance(got, str):
        raise Fail(f"your tls_request returned a str of {len(got)} characters: return the bytes "
                   "the server echoed, not decoded text.")
    if got is None:
        raise Fail("your tls_request returned None: return the bytes the server echoed.")
    if bytes(got) != data:
        raise Fail(f"sent {len(data)} bytes, the server echoed them all, and your tls_request returned "
                   f"{shorten(bytes(got))}: TLS records arrive in pieces too, keep reading until you "
                   "have len(data) bytes.")
    srv.wait_idle(2)
    if srv.errors:
        side, exp = srv.errors[0]
        raise Fail(f"the server reported a problem: {exp.title}.")


def _expect_verification_error(e: LearnerRaised, srv):
    """Pass on ssl.SSLCertVerificationError (the handshake's own verdict) raised before the
    handshake completed; explain any other SSLError or an exception raised from it."""
    if isinstance(e.error, ssl.SSLCertVerificationError):
        srv.wait_idle(2)
        # A client that verifies refuses before its Finished message: the server's handshake never
        # completes. One that completed it talked to an unverified server, whatever it raised after.
        if any(st.handshake_done for st in srv.handler.streams):
            raise Fail("your client raised SSLCertVerificationError, but only after the handshake "
                       "had completed: from then on it could send data to a server that was not "
                       "verified. Let the handshake verify (keep verify_mode=CERT_REQUIRED and "
                       "check_hostname=True): it refuses before anything is sent.") from None
        return
    if isinstance(e.error, ssl.SSLError) or _verification_error(e.error) is not None:
        said = getattr(e.error, "strerror", None) or \
            (e.error.args[0] if len(e.error.args) == 1 else str(e.error))
        raise Fail(f"your client refused, but with {type(e.error).__name__}: {said}. The handshake "
                   "raises ssl.SSLCertVerificationError when a certificate does not verify: let that "
                   "exception through as it is (its verify_message says what was wrong).") from None
    _misused_socket(e.error)
    raise e


def _refused_quietly(srv, got) -> None:
    """Fail if the client never connected, or refused the handshake but hid it (returned instead
    of raising)."""
    srv.wait_idle(2)
    streams = srv.handler.streams
    if not streams:
        raise Fail(f"your tls_request returned {got!r:.30} without connecting to the server: open a "
                   "TCP connection to address, wrap it, send data and return the echo (or let the "
                   "handshake's error through).")
    if not any(st.handshake_done for st in streams):
        raise Fail(f"your client refused the certificate (the handshake failed; nothing was sent) "
                   f"but returned {got!r:.30} instead of raising: let ssl.SSLCertVerificationError "
                   "through (no try/except around it, or re-raise it with a bare `raise`).")


def _case_other_ca(ctx, tls_request):
    trusted, other = _certificates("A"), _certificates("B")
    srv = _server(ctx, other)
    try:
        got = _request(ctx, tls_request, srv.address, _ca_file(ctx, trusted), "localhost", b"secret")
    except LearnerRaised as e:
        _expect_verification_error(e, srv)
        return
    _refused_quietly(srv, got)
    raise Fail(f"this server's certificate was signed by a CA you were not told to trust, and your "
               f"client sent it b'secret' anyway (got {got!r:.30} back). It did not verify the "
               "certificate: keep verify_mode=CERT_REQUIRED (ssl.create_default_context does), and "
               "trust only cafile=ca_file.")


def _case_wrong_name(ctx, tls_request):
    certs = _certificates("A")
    srv = _server(ctx, certs)
    try:
        got = _request(ctx, tls_request, srv.address, _ca_file(ctx, certs), "example.org", b"secret")
    except LearnerRaised as e:
        _expect_verification_error(e, srv)
        return
    _refused_quietly(srv, got)
    asked = [n for n in srv.names_asked if n != "example.org"]
    if asked and len(asked) == len(srv.names_asked):
        shown = repr(asked[0]) if asked[0] is not None else "no name (as for an IP address)"
        raise Fail(f"the check called tls_request with hostname='example.org', but your client "
                   f"asked the server for {shown}, so the certificate (for localhost) was checked "
                   "against that. Pass server_hostname=hostname to wrap_socket().")
    raise Fail("the certificate is for localhost, and the check called tls_request with "
               "hostname='example.org'; your client asked for that name and still talked to the "
               "server: it did not check the name. Keep check_hostname=True.")


TLS_REQUEST = Exercise(
    id="12.1",
    title="tls_request",
    names=("tls_request",),
    limit=4.0,
    task="""5. **A verifying TLS client** *(exercise 12.1, checked below)*. Write
`tls_request(address, ca_file, hostname, data)`: open a TCP connection to `address`, wrap it with a
context from `ssl.create_default_context(cafile=ca_file)` and `server_hostname=hostname`, send `data`,
read the echo (exactly `len(data)` bytes) and return it. The check talks to a socklab TLS echo server
whose certificate its CA signed for `localhost`; to a server whose CA you do not trust; and with the
wrong name. The last two must fail with `ssl.SSLCertVerificationError`, before any data is sent.""",
    hints=[
        "`ctx = ssl.create_default_context(cafile=ca_file)` verifies certificates and names by "
        "default. Do not change `verify_mode` or `check_hostname`.",
        "`with socket.create_connection(address, timeout=5) as raw, "
        "ctx.wrap_socket(raw, server_hostname=hostname) as tls:` the handshake happens here and "
        "raises if the certificate does not verify.",
        "Then `tls.sendall(data)` and a loop of `tls.recv(...)` until you have `len(data)` bytes: "
        "the server keeps the connection open, so do not wait for b''.",
    ],
    cases=[
        Case("the right CA and name: the echo comes back", _case_ok),
        Case("a certificate from another CA: SSLCertVerificationError", _case_other_ca),
        Case("the right CA, the wrong name: SSLCertVerificationError", _case_wrong_name),
    ],
)

EXERCISES = [TLS_REQUEST]
