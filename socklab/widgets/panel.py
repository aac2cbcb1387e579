"""ipywidgets panels on top of the engine and the renderers.

Live output from server threads goes through widget state and ``Output.append_stdout`` only
(never print() from a thread: it lands in whichever cell runs at that moment). Every panel has a
text form for static views: ``panel.transcript()``.
"""
from __future__ import annotations

import html as _html
import time

import ipywidgets as W

from ..codegen import client_code, server_code
from ..config import FAMILIES, TYPES, SocketConfig
from ..notebook import Rich, show
from ..kstate import demo_state
from ..render.diagram import diagram_html
from ..render.html import code_html, explanation_html, warnings_html
from ..render.state import state_html
from ..servers import Client, Server
from ..trace import Data, Trace
from .base import (Choice, ServerPanel, bad_setting, check_choice, check_data, check_range,
                   check_text, family_name, type_name)

_REFRESH = 0.1  # seconds between live HTML redraws while events stream in


VIEWS = ("log", "diagram", "state", "code")


def _check_views(views) -> tuple:
    """``views`` as a tuple of names from VIEWS; else a ConfigError naming them."""
    given = views
    if isinstance(views, str):
        views = (views,)
    try:
        views = tuple(views)
    except TypeError:
        views = None
    if views is None or not all(isinstance(v, str) and v in VIEWS for v in views):
        listed = ", ".join(repr(v) for v in VIEWS)
        raise bad_setting(f"views={given!r:.60} is not a list of view names ({listed}).",
                          "Pass e.g. views=('log', 'diagram'), or leave it out for all four.",
                          "views names the tabs the panel shows under its controls.")
    return views


class LabPanel(ServerPanel):
    """Pick family, type, address and backlog; start a real server and a real client; watch.

    Buttons: Start server, Connect, Send, Close client, Stop server. Each button has a method of
    the same name (``start_server()``, ...) so a cell or a test can drive the panel too.
    Re-running the cell that made a panel stops what the old panel started.
    """

    def __init__(self, family="AF_INET", type="SOCK_STREAM", backlog=5, message="hello",
                 name: str | None = None, views=VIEWS):
        family = check_choice("family", family, FAMILIES, normalise=family_name)
        type = check_choice("type", type, TYPES, normalise=type_name)
        check_range("backlog", backlog, -10, 100000)
        message = check_text("message", message)
        views = _check_views(views)
        self.trace = Trace()
        self.server: Server | None = None
        self.client: Client | None = None
        self.views = views
        self._last_draw = 0.0
        self.family = Choice("family", options=FAMILIES, value=family, description="family")
        self.type = Choice("type", options=TYPES, value=type, description="type")
        self.host = W.Text(value="", placeholder="127.0.0.1 (loopback)", description="host")
        self.port = W.BoundedIntText(value=0, min=0, max=65535, description="port")
        self.backlog = W.BoundedIntText(value=backlog, min=-10, max=100000, description="backlog")
        self.all_interfaces = W.Checkbox(value=False, description="allow all interfaces",
                                         indent=False)
        self.message = W.Text(value=message, description="message")
        self.buttons = self._buttons((("Start server", self.start_server, "success"),
                                 ("Connect", self.connect, "info"), ("Send", self.send_message, "info"),
                                 ("Close client", self.close_client, ""),
                                 ("Stop server", self.stop_server, "danger")))
        self._status_alert_log("<i>no server yet</i>", "260px")
        self.diagram_view = self._view("socklab-diagram")
        self.state_view = self._view("socklab-state")
        self.code_view = self._view("socklab-code")
        self.family.observe(self._family_changed, names="value")
        self._family_changed()
        tab = self._tabs([(widget, title) for view, widget, title in (
            ("log", self.events, "events (live)"), ("diagram", self.diagram_view, "sequence"),
            ("state", self.state_view, "kernel state"), ("code", self.code_view, "plain Python"))
            if view in views])
        super().__init__([
            W.HBox([self.family, self.type]), W.HBox([self.host, self.port]),
            W.HBox([self.backlog, self.all_interfaces]), self.message,
            W.HBox(list(self.buttons.values())), self.status, self.alert, tab])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    # ---- text form for GitHub / nbviewer / nbval
    def _plain_text(self) -> str:
        return (f"socklab panel ({self.family.value}, {self.type.value}): interactive in "
                              "JupyterLab; the transcript below shows a run.")

    def transcript(self, order: str = "side") -> Rich:
        """What the panel's sockets did, as text and HTML (default: grouped by side, stable)."""
        return show(self.trace, order=order)

    # ---- controls
    def _family_changed(self, change=None):
        fam = self.family.value
        if fam == "AF_UNIX":
            self.host.description, self.host.placeholder = "path", "(private temporary path)"
            self.port.disabled = True
        else:
            self.host.description = "host"
            self.host.placeholder = "127.0.0.1 (loopback)" if fam == "AF_INET" else "::1 (loopback)"
            self.port.disabled = False
        self.host.value = ""

    def config(self) -> SocketConfig:
        """The configuration the controls describe, validated (raises ConfigError)."""
        text = self.host.value.strip()
        if self.family.value == "AF_UNIX":
            cfg = SocketConfig(family="AF_UNIX", type=self.type.value, path=text or None,
                               backlog=self.backlog.value)
        else:
            cfg = SocketConfig(family=self.family.value, type=self.type.value, host=text or None,
                               port=self.port.value, backlog=self.backlog.value,
                               allow_all_interfaces=self.all_interfaces.value)
        return cfg.validate()

    # ---- live views
    def _on_event(self, ev):
        self._log(f"{ev.at * 1000:9.3f} ms  {self._event_line(ev)}")
        now = time.monotonic()
        if now - self._last_draw >= _REFRESH:
            self.refresh()

    def refresh(self):
        """Redraw the diagram and kernel-state views now."""
        self._last_draw = time.monotonic()
        if "diagram" in self.views:
            self.diagram_view.value = diagram_html(self.trace)
        if "state" in self.views and self.server is not None and self.server.address is not None:
            self.state_view.value = state_html(demo_state(self.server))

    def _act(self, what, fn):
        """Run one button's work; show an explanation instead of raising."""
        srv = self.server  # a running server's warnings (e.g. all interfaces) stay visible
        self.alert.value = warnings_html(srv.warnings) if srv is not None and srv.running else ""
        try:
            result = fn()
        except Exception as exc:
            exp = self._alert_error(exc, what)
            self._log(f"!! {what}: {exp.title}\n")
            result = None
        self._report_server_errors()
        self.refresh()
        return result

    def _report_server_errors(self):
        srv = self.server
        if srv is not None and srv.errors:
            side, exp = srv.errors[-1]
            self.alert.value = f"<div><b>{_html.escape(side)}</b></div>" + explanation_html(exp)

    # ---- buttons
    def start_server(self):
        def go():
            self.stop_server()
            cfg = self.config()
            self.server = Server(cfg, trace=self.trace, name=f"{self.key}/server").start()
            if cfg.warnings:
                self.alert.value = warnings_html(cfg.warnings)
            self.status.value = (f"server <b>listening</b> on <code>{_html.escape(repr(self.server.address))}"
                                 f"</code>" if cfg.stream else
                                 f"server <b>bound</b> to <code>{_html.escape(repr(self.server.address))}</code>")
            self.code_view.value = code_html(server_code(cfg), "server") + code_html(client_code(cfg), "client")
            return self.server
        return self._act("start server", go)

    def connect(self):
        def go():
            self.close_client()
            if self.server is not None and self.server.running:
                client = Client(self.server, name=f"{self.key}/client")
            else:  # no server of ours: try the address in the controls, for real
                cfg = self.config()
                client = Client(cfg.address, cfg, trace=self.trace, name=f"{self.key}/client")
            try:
                if client.config.stream:
                    client.connect()
                else:
                    client.open()
            except Exception:
                client.close()  # a client that failed to connect is not kept: Send must not use it
                raise
            self.client = client
            self.status.value += "<br>client <b>connected</b>" if self.client.config.stream else \
                "<br>client socket <b>ready</b> (UDP has no connection)"
            return self.client
        return self._act("connect", go)

    def send_message(self, message: str | bytes | None = None):
        if message is not None and not isinstance(message, str):
            message = check_data("message", message)  # bytes pass; anything else: ConfigError
        # (a str is encoded in go(), as a traced call: text UTF-8 cannot encode shows in the trace)

        def go():
            if self.client is None:
                self.connect()
            if self.client is None:
                return None
            msg = self.message.value if message is None else message
            sent = msg if isinstance(msg, bytes) else self.client._call("encode", msg.encode, "utf-8")
            reply = self.client.request(sent)
            # the first bytes only (as the trace keeps them): a huge message must not bloat the page
            self.status.value += f"<br>sent {_html.escape(repr(Data(sent)))}, reply " \
                                 f"{_html.escape(repr(Data(reply)))}"
            return reply
        return self._act("send", go)

    def close_client(self):
        return self._act("close", super()._close_client)

    def _close_client(self):
        # Stop server closes the client as this button does: through _act, so a failing close is
        # explained and the server still stops, and server errors the close brings are reported.
        self.close_client()

    def stop(self):
        """Stop the client and the server (called when the cell is re-run)."""
        self.stop_server()

    def run_demo(self, message: str | None = None) -> Rich:
        """Click through Start server, Connect, Send, Close client, Stop server; return the transcript."""
        self.start_server()
        self.connect()
        self.send_message(message)
        self.close_client()
        self.stop_server()
        return self.transcript()
