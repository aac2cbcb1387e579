"""The TLS panel: a TLS echo server, a verifying client, and the records that cross the wire.

Choose whether the client trusts the teaching CA, which host name it expects, and the TLS version;
connect and send, and see the handshake's outcome (or the explained verification error) and the
TLS records of each direction. ``transcript()`` is the stable text form (outcomes and record types);
``trace()`` shows the raw socket calls, whose bytes are fresh ciphertext on every run.
"""
from __future__ import annotations

import html as _html
import ssl

import ipywidgets as W

from ..errors import explain as _explain
from ..notebook import Rich, show
from ..servers import Server
from ..trace import Data, Trace
from .base import Choice, ServerPanel, check_bool, check_choice, check_data, check_text, kept, with_dropped

HOSTNAMES = ("localhost", "127.0.0.1", "example.org")
VERSIONS = {"TLS 1.3": ssl.TLSVersion.TLSv1_3, "TLS 1.2": ssl.TLSVersion.TLSv1_2}


class TLSPanel(ServerPanel):
    """Buttons Start TLS server, Connect, Send, Close client, Stop server; methods ``start_server()``,
    ``connect()``, ``send_message(text)``, ``close_client()``, ``stop_server()`` do the same from code.
    A method returns its result, or None after a failure, which the alert box explains and the
    transcript records (the exception is in ``last``). Re-running the cell that made the panel stops
    what the old one started.
    """

    def __init__(self, trust_ca: bool = True, hostname: str = "localhost", version: str = "TLS 1.3",
                 message: str | bytes = "hello", name: str | None = None):
        check_bool("trust_ca", trust_ca)
        check_choice("hostname", hostname, HOSTNAMES)
        check_choice("version", version, tuple(VERSIONS))
        message = check_text("message", message)
        from .. import tls  # imports nothing heavy; trustme is imported when certificates are made
        self._tls = tls
        self.trace = Trace()
        self.certs = None
        self.server: Server | None = None
        self.client = None  # a socklab.tls.TLSStream
        self.last = None
        self.steps: list = kept()  # the stable text form, one line per step (the latest KEPT)
        self._label = ""
        self._errors_seen = 0
        self.trust = W.Checkbox(value=trust_ca, description="client trusts the teaching CA", indent=False)
        wide = {"description_width": "initial"}  # the default label width cut these to 'server_ho...'
        self.hostname = Choice("hostname", options=HOSTNAMES, value=hostname, description="server_hostname",
                               style=wide)
        self.version = Choice("version", options=tuple(VERSIONS), value=version, description="max version",
                              style=wide)
        self.message = W.Text(value=message, description="message")
        self.buttons = self._buttons((("Start TLS server", self.start_server, "success"),
                                 ("Connect", self.connect, "info"), ("Send", self.send_message, "info"),
                                 ("Close client", self.close_client, ""),
                                 ("Stop server", self.stop_server, "danger")))
        self._status_alert_log("<i>no server yet</i>")
        self.records_view = self._view("socklab-records")
        tabs = self._tabs(((self.events, "socket calls (live)"), (self.records_view, "TLS records")))
        super().__init__([W.HBox([self.trust, self.hostname, self.version]), self.message,
                          W.HBox(list(self.buttons.values())), self.status, self.alert, tabs])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    # ---- static forms
    def _plain_text(self) -> str:
        return ("socklab TLS panel: interactive in JupyterLab; the transcript below "
                              "shows a run.")

    def transcript(self) -> Rich:
        """What happened, step by step: outcomes and TLS record types (stable from run to run)."""
        text = "\n".join(with_dropped(self.steps, "lines")) if self.steps else "(nothing yet)"
        return Rich(text, f"<pre>{_html.escape(text)}</pre>")

    def trace_view(self) -> Rich:
        """The raw TCP socket calls (ciphertext: different bytes on every run)."""
        return show(self.trace, order="side")

    # ---- plumbing
    def _explain(self, exc, call=None):
        # without ``call``: explain() would word a step label such as 'connect (server_hostname=...)'
        # as if it were a socket call
        return self._tls.explain(exc) if isinstance(exc, ssl.SSLError) else _explain(exc)

    def _act(self, what, fn):
        self._label = what  # connect() puts its settings into it
        return super()._act(what, fn)

    def _act_failed(self, what, exc):
        exp = self._alert_error(exc)
        self.steps.append(f"{self._label}: FAILED: {exp.title} [{exp.error}]")
        for line in self._new_server_errors():
            self.steps.append(f"  the server saw: {line}")

    def _new_server_errors(self) -> list:
        if self.server is None:
            return []
        errors = self.server.errors  # a Recent: indexes shift as old errors are dropped
        new = errors.since(self._errors_seen)
        self._errors_seen = errors.total
        return [f"{exp.title} [{exp.error}]" for _side, exp in new]

    def _redraw(self):
        if self.client is None:
            return
        tls = self._tls
        out = tls.wire_summary(self.client.sent, lengths=True)
        back = tls.wire_summary(self.client.received, lengths=True)
        self.records_view.value = (f"<b>client → server</b><pre>{_html.escape(out)}</pre>"
                                   f"<b>server → client</b><pre>{_html.escape(back)}</pre>")

    def _context(self):
        ctx = self.certs.client_context(trust_ca=self.trust.value)
        ctx.maximum_version = VERSIONS[self.version.value]
        return ctx

    # ---- buttons
    def start_server(self):
        """Start (or restart) the TLS echo server on 127.0.0.1, port 0."""
        def go():
            self._stop_server()
            if self.certs is None:
                self.certs = self._tls.Certificates()
            self.server = self._tls.echo_server(self.certs, trace=self.trace,
                                                name=f"{self.key}/server").start()
            self._errors_seen = 0
            host, port = self.server.address[:2]
            self.status.value = f"TLS server <b>listening</b> on <code>{host}:{port}</code>"
            self.steps.append(f"start server: TLS echo server listening, certificate for "
                            f"{', '.join(self.certs.names)}")
            return self.server
        return self._act("start server", go)

    def connect(self):
        """TCP connect, then the TLS handshake with the chosen trust, host name and version; returns
        the client's TLS stream, or None if the handshake failed (explained in the alert box)."""
        def go():
            self._close_client()
            if self.server is None or not self.server.running:
                self.start_server()
            what = (f"connect (server_hostname={self.hostname.value!r}, trusts CA: "
                    f"{'yes' if self.trust.value else 'no'}, up to {self.version.value})")
            self._label = what
            try:
                self.client = self._tls.connect(self.server.address, self._context(), self.hostname.value,
                                                trace=self.trace, side=self.trace.new_side("client"),
                                                name=f"{self.key}/client")
            except Exception:
                self.server.wait_idle()  # the server has noted the failed handshake
                raise
            self.steps.append(f"{what}: handshake done, {self.client.version()} {self.client.cipher()[0]}")
            self.steps.append("  client -> server: " +
                            " | ".join(self._tls.wire_summary(self.client.sent).splitlines()))
            self.status.value = (f"connected: <b>{_html.escape(self.client.version())}</b> "
                                 f"{_html.escape(self.client.cipher()[0])}")
            return self.client
        return self._act("connect", go)

    def send_message(self, text: str | bytes | None = None):
        """Encrypt and send ``text`` (a str, sent as UTF-8, or bytes; default: the message box);
        read the echo; return it, or None after a failure (explained in the alert box)."""
        data = None if text is None else check_data("text", text)

        def go():
            if self.client is None:
                self.connect()
            if self.client is None:
                return None
            msg = self.message.value.encode("utf-8") if data is None else data
            before = len(self.client.sent)
            self.client.sendall(msg)
            recs = self._tls.records(self.client.sent[before:])
            reply = b""
            while len(reply) < len(msg):
                chunk = self.client.recv(65536)
                if not chunk:
                    break
                reply += chunk
            sizes = ", ".join(str(r.length) for r in recs)
            # Data: the first bytes only (as the trace keeps them): a huge message must not bloat the page
            sent, echo = repr(Data(msg)), repr(Data(reply))
            self.steps.append(f"send {sent}: {len(recs)} application_data record(s) of {sizes} bytes "
                              f"on the wire; echo {echo}")
            self.status.value += f"<br>sent {_html.escape(sent)}, echo {_html.escape(echo)}"
            return reply
        return self._act("send", go)

    def close_client(self):
        """Send close_notify and close the TCP connection."""
        return self._act("close client", self._close_client)

    def server_errors(self) -> list:
        """The server's explained failures (e.g. the alert a rejecting client sent)."""
        return [] if self.server is None else [f"{side}: {exp.title} [{exp.error}]"
                                               for side, exp in self.server.errors]
