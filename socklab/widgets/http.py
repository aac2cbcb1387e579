"""The HTTP panel: a socklab HTTP/1.1 server in the background and a client you fire requests from.

Pick a method, a path and a body, press Send request, and watch the socket calls live; the wire tab
shows the full request and response bytes with their line ends. ``transcript()`` and ``wire()`` are
the text forms for static views.
"""
from __future__ import annotations

import html as _html

import ipywidgets as W

from ..http import Handler, request, show_bytes
from ..notebook import Rich, show
from ..render.html import CSS, colour
from ..servers import Server
from ..trace import Trace
from .base import (Choice, ServerPanel, bad_setting, check_choice, check_data, check_text, last_n,
                   shown)

METHODS = ("GET", "HEAD", "POST", "DELETE")


def check_path(path) -> str:
    """``path`` if the panel can put it in a request line ('' means '/'); else a ConfigError."""
    path = check_text("path", path, example="/echo") or "/"
    # the request line is 'METHOD path HTTP/1.1': a space or line end would end the path early and
    # let the rest pose as the version or a header; a non-ASCII character has no single byte
    if not path.startswith("/") or not all("!" <= c <= "~" for c in path):
        raise bad_setting(f"path={shown(path)} is not a path this panel can put in a request line.",
                          "Start the path with '/' and leave out spaces; write other characters "
                          "percent-encoded, e.g. '/echo' or '/caf%C3%A9'.",
                          "The request line is 'METHOD path HTTP/1.1', split at spaces and ended by "
                          "CRLF; a path is printable ASCII from '/' on (RFC 9112).")
    return path


class HTTPPanel(ServerPanel):
    """Start server, Send request, Stop server; methods ``start_server()``,
    ``send_request(method, path, body)`` and ``stop_server()`` do the same from code. A method
    returns its result, or None after a failure, which the alert box explains (the exception is in
    ``last``).

    The server omits the Date header so a recorded transcript is the same on every run.
    Re-running the cell that made the panel stops the old panel's server.
    """

    def __init__(self, method: str = "GET", path: str = "/", body: str | bytes = "",
                 name: str | None = None):
        check_choice("method", method, METHODS)
        path, body = check_path(path), check_text("body", body)
        self.trace = Trace()
        self.server: Server | None = None
        self.handler: Handler | None = None
        self.last = None  # the last Response (or the exception a button caught)
        self.method = Choice("method", options=METHODS, value=method, description="method")
        self.path = W.Text(value=path, description="path")
        self.body = W.Text(value=body, description="body", placeholder="(for POST)")
        self.buttons = self._buttons((("Start server", self.start_server, "success"),
                                 ("Send request", self.send_request, "info"),
                                 ("Stop server", self.stop_server, "danger")))
        self._status_alert_log("<i>no server yet</i>")
        self.wire_view = self._view("socklab-wire")
        tabs = self._tabs(((self.events, "socket calls (live)"), (self.wire_view, "bytes on the wire")))
        super().__init__([W.HBox([self.method, self.path]), self.body, W.HBox(list(self.buttons.values())),
                          self.status, self.alert, tabs])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    # ---- static forms
    def _plain_text(self) -> str:
        return ("socklab HTTP panel: interactive in JupyterLab; the transcript below "
                              "shows a run.")

    def transcript(self) -> Rich:
        """Every socket call, grouped by side (stable although server threads and client race)."""
        return show(self.trace, order="side")

    def wire(self, last: int | None = None) -> Rich:
        """The full bytes of each request and response the server handled (the ``last`` n only:
        0 shows none; a negative n is refused with a ConfigError)."""
        exchanges = last_n(self.handler.exchanges if self.handler is not None else [], last,
                           "exchanges")
        if last == 0:
            return Rich("(no requests shown: last=0)")
        if not exchanges:
            return Rich("(no requests yet)")
        parts, html = [], []
        for ex in exchanges:
            req, resp = show_bytes(ex.request), show_bytes(ex.response)
            parts.append(f"--- {ex.summary()}\n>>> request\n{req}\n<<< response\n{resp}")
            html.append(f"<div><b>{_html.escape(ex.summary())}</b></div>"
                        f"<pre style='margin:2px 0'>{_html.escape(req)}</pre>"
                        f"<pre style='margin:2px 0 8px 0;color:{colour('info')}'>{_html.escape(resp)}</pre>")
        return Rich("\n".join(parts), f'{CSS}<div class="socklab-box">{"".join(html)}</div>')

    # ---- plumbing
    def _redraw(self):
        self.wire_view.value = self.wire(last=3).html or ""

    # ---- buttons
    def start_server(self):
        """Start (or restart) the HTTP server on 127.0.0.1, port 0."""
        def go():
            self._stop_server()
            self.handler = Handler(date=False)
            self.server = Server(handler=self.handler, trace=self.trace, name=f"{self.key}/server").start()
            host, port = self.server.address[:2]
            self.status.value = f"server <b>listening</b> on <code>http://{host}:{port}/</code>"
            return self.server
        return self._act("start server", go)

    def send_request(self, method: str | None = None, path: str | None = None,
                     body: str | bytes | None = None):
        """One request on a new connection (Connection: close); returns the parsed Response, or
        None after a failure (explained in the alert box). An argument left out (None) comes from
        its control; one given is checked as the constructor checks it (ConfigError, nothing
        sent). ``body``: a str (sent as UTF-8) or bytes."""
        if method is not None:
            check_choice("method", method, METHODS)
        if path is not None:
            path = check_path(path)
        if body is not None:
            body = check_data("body", body)

        def go():
            if self.server is None or not self.server.running:
                self.start_server()
            m = self.method.value if method is None else method
            p = check_path(self.path.value) if path is None else path  # the box: explained in the alert
            b = self.body.value.encode("utf-8") if body is None else body
            headers = {"Content-Type": "text/plain; charset=utf-8"} if b or m == "POST" else {}
            resp = request(self.server.address, m, p, headers, b if (b or m == "POST") else b"",
                           trace=self.trace, side=self.trace.new_side("client"))
            self.server.wait_idle()  # the server has finished with this connection: stable traces
            self.status.value = (f"server listening; last answer: <b>{resp.status} "
                                 f"{_html.escape(resp.reason)}</b>, {len(resp.body)} bytes of body")
            return resp
        return self._act("send request", go)

    def run_demo(self) -> Rich:
        """Start, GET /, POST /echo, GET /missing, stop; return the transcript."""
        self.start_server()
        self.send_request("GET", "/")
        self.send_request("POST", "/echo", "hello")
        self.send_request("GET", "/missing")
        self.stop_server()
        return self.transcript()
