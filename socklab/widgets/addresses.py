"""The bind explorer: pick a family, host (or path) and port, try ``bind()`` for real, see the answer.

Every try creates a real socket, sets the chosen options, calls ``bind()`` (and ``listen()`` if asked)
and either keeps the socket (so the next try can collide with it) or closes it at once. What the OS
said is shown live and explained; ``transcript()`` is the text form for static views.
Binding to all interfaces needs the "allow all interfaces" box ticked, as ``SocketConfig`` requires.
"""
from __future__ import annotations

import html as _html
import os
import socket
from dataclasses import dataclass

import ipywidgets as W

from .. import runtime
from ..config import ALL_INTERFACES, SocketConfig
from ..errors import ConfigError, Explanation, explain
from ..notebook import Rich, show
from ..render.html import colour, explanation_html, warnings_html
from ..trace import Trace, TracedSocket
from .base import (Choice, Panel, check_choice, check_range, check_text, family_name, kept, type_name,
                   with_dropped)

FAMILIES = ("AF_INET", "AF_INET6") + (("AF_UNIX",) if hasattr(socket, "AF_UNIX") else ())
TYPES = ("SOCK_STREAM", "SOCK_DGRAM")
HOSTS = {
    "AF_INET": ("127.0.0.1", "0.0.0.0", "", "localhost", "203.0.113.5", "::1"),
    "AF_INET6": ("::1", "::", "::ffff:127.0.0.1", "localhost", "127.0.0.1"),
    "AF_UNIX": (),
}
DEFAULT_HOST = {"AF_INET": "127.0.0.1", "AF_INET6": "::1", "AF_UNIX": ""}
V6ONLY = ("default", "0 (dual stack)", "1 (IPv6 only)")


@dataclass
class Attempt:
    """One try: what was asked, and what the OS answered."""

    side: str
    family: str
    type: str
    address: object            # as passed to bind()
    bound: object = None       # getsockname() after a successful bind
    error: BaseException | None = None
    explanation: Explanation | None = None
    kept: bool = False
    warnings: tuple = ()

    @property
    def ok(self) -> bool:
        return self.error is None and self.explanation is None

    def text(self) -> str:
        where = _show(self.address)
        if self.ok:
            return f"{self.side}: bind({where}) -> bound to {_show(self.bound)}" + \
                (" (kept)" if self.kept else " (closed)")
        title = self.explanation.title if self.explanation else type(self.error).__name__
        return f"{self.side}: bind({where}) -> {title}"


def _show(addr) -> str:
    """An address as shown to learners: socklab's private directory becomes '<rundir>'."""
    if isinstance(addr, str):
        return repr(runtime.display_path(addr))
    return repr(addr)


class BindExplorer(Panel):
    """Try ``bind()`` with the family, type, host/path, port and options picked in the controls.

    Buttons: Try bind, Release kept sockets. ``try_bind(**changes)`` sets controls (family, type,
    host, port, reuse, v6only, listen, keep, all_interfaces) and tries, so a cell or a test can drive
    the panel; ``release()`` closes what was kept and removes socket files the panel created.
    Re-running the cell that made the panel releases everything the old panel held.
    """

    _side_width = 6

    def __init__(self, family="AF_INET", type="SOCK_STREAM", host=None, port=0,
                 name: str | None = None):
        family = check_choice("family", family, FAMILIES, normalise=family_name)
        type = check_choice("type", type, TYPES, normalise=type_name)
        if host is not None:
            host = check_text("host", host, example="127.0.0.1")
        check_range("port", port, -2 ** 31, 2 ** 31 - 1)  # wide: trying a port out of range is a lesson
        self.trace = Trace(coalesce=False)
        self.attempts: list = kept()  # the latest KEPT tries
        self.kept: list = []        # TracedSockets still bound
        self._files: list = []      # AF_UNIX files our binds created
        self.family = Choice("family", options=FAMILIES, value=family, description="family")
        self.type = Choice("type", options=TYPES, value=type, description="type")
        self.host = W.Combobox(options=list(HOSTS[family]), value=DEFAULT_HOST[family],
                               description="host", ensure_option=False)
        self.port = W.IntText(value=port, description="port")
        auto = dict(layout=W.Layout(width="auto"))
        self.reuse = W.Checkbox(value=False, description="SO_REUSEADDR", indent=False, **auto)
        self.v6only = Choice("v6only", options=V6ONLY, value="default", description="IPV6_V6ONLY",
                                 style={"description_width": "initial"})
        self.listen = W.Checkbox(value=False, description="listen() after bind", indent=False, **auto)
        self.keep = W.Checkbox(value=True, description="keep it bound", indent=False, **auto)
        self.all_interfaces = W.Checkbox(value=False, description="allow all interfaces", indent=False,
                                         **auto)
        self.try_button = W.Button(description="Try bind", button_style="success", **auto)
        self.release_button = W.Button(description="Release kept sockets", button_style="warning", **auto)
        self.try_button.add_class("socklab-try-bind")
        self.release_button.add_class("socklab-release")
        self.try_button.on_click(lambda _b: self.try_bind())
        self.release_button.on_click(lambda _b: self.release())
        self.result = self._view("socklab-result", "<i>nothing tried yet</i>", live=True)
        self.held = self._view("socklab-held")
        self.events = self._event_log("220px")
        self.family.observe(self._family_changed, names="value")
        if host is not None:
            self.host.value = host
        self._family_changed(None, reset=False)
        super().__init__([
            W.HBox([self.family, self.type]), W.HBox([self.host, self.port]),
            W.HBox([self.reuse, self.listen, self.keep, self.all_interfaces],
                   layout=W.Layout(grid_gap="16px")), self.v6only,
            W.HBox([self.try_button, self.release_button]), self.result, self.held, self.events])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    # ---- static form
    def _plain_text(self) -> str:
        return "socklab bind explorer: interactive in JupyterLab; the transcript below shows a run."

    def transcript(self) -> Rich:
        """Every socket call the panel made, in order (one thread: the order is stable)."""
        return show(self.trace)

    def summary(self) -> str:
        """One line per try: the address and what bind() answered."""
        return "\n".join(with_dropped(self.attempts, "tries", [a.text() for a in self.attempts])) \
            or "(nothing tried yet)"

    # ---- controls
    def _family_changed(self, change=None, reset=True):
        fam = self.family.value
        unix = fam == "AF_UNIX"
        self.host.description = "path" if unix else "host"
        self.host.placeholder = "(private temporary path)" if unix else DEFAULT_HOST[fam]
        self.host.options = list(HOSTS[fam])
        self.port.disabled = unix
        self.v6only.disabled = fam != "AF_INET6"
        self.all_interfaces.disabled = unix
        if reset:
            self.host.value = DEFAULT_HOST[fam]

    def _address(self):
        text = self.host.value
        if self.family.value == "AF_UNIX":
            return text if text.strip() else runtime.private_path("bind")
        return (text.strip(), self.port.value)

    def _safety(self, address):
        """socklab's rule: all interfaces only when asked for. Returns (Explanation or None, warnings)."""
        fam = self.family.value
        if fam == "AF_UNIX":
            return None, ()
        host, port = address
        try:
            cfg = SocketConfig(family=fam, type=self.type.value, host=host, port=0,
                               allow_all_interfaces=self.all_interfaces.value).validate()
        except ConfigError as exc:
            if host in ALL_INTERFACES:
                return exc.explanation, ()
            return None, ()  # anything else: let the OS answer
        warnings = list(cfg.warnings)
        if isinstance(port, int) and port:
            warnings.append(f"fixed port {port}: while a socket of the same protocol holds this address "
                            "and port, another bind() usually fails with EADDRINUSE (SO_REUSEADDR or "
                            "SO_REUSEPORT can allow sharing; TCP and UDP ports are separate); port 0 lets "
                            "the OS pick a free one.")
        return None, tuple(warnings)

    # ---- buttons
    def try_bind(self, **changes) -> Attempt:
        """Set any controls given (family first), then try bind() for real; return the Attempt."""
        if "family" in changes:
            self.family.value = check_choice("family", changes.pop("family"), FAMILIES,
                                             normalise=family_name)
        if "type" in changes:
            changes["type"] = check_choice("type", changes["type"], TYPES, normalise=type_name)
        for k, v in changes.items():
            widget = getattr(self, k, None)
            if not isinstance(widget, W.ValueWidget):
                raise TypeError(f"try_bind() has no control {k!r}")
            widget.value = v
        fam, typ = self.family.value, self.type.value
        side = self.trace.new_side("try")
        side = side if side != "try" else "try1"
        address = self._address()
        att = Attempt(side, fam, typ, address)
        self.attempts.append(att)
        blocked, att.warnings = self._safety(address)
        if blocked is not None:
            att.explanation = blocked
            self.trace.note(side, f"not tried: {blocked.title} (tick 'allow all interfaces')")
            self._show_result(att)
            return att
        s = None
        try:
            s = TracedSocket.create(getattr(socket, fam), getattr(socket, typ), trace=self.trace, side=side)
            if self.reuse.value:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == "AF_INET6" and self.v6only.value != "default":
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(self.v6only.value[0]))
            s.bind(address)
            if fam == "AF_UNIX" and isinstance(address, str) and not address.startswith("\0"):
                self._files.append(address)
            att.bound = s.getsockname()
            self.trace.note(side, f"bound to {_show(att.bound)}")
            if self.listen.value and typ == "SOCK_STREAM":
                s.listen()
        except Exception as exc:
            att.error = exc
            att.explanation = explain(exc, address, "bind")
            self.trace.note(side, f"explained: {att.explanation.title}")
        if s is not None:
            if att.ok and self.keep.value:
                att.kept = True
                self.kept.append(s)
            else:
                s.close()
        self._show_result(att)
        return att

    def release(self) -> int:
        """Close every kept socket and remove the socket files the panel created; return how many closed."""
        n = len(self.kept)
        for s in self.kept:
            s.close()
        self.kept.clear()
        for path in self._files:
            if os.path.exists(path):
                os.unlink(path)
                self.trace.note("panel", f"removed socket file {runtime.display_path(path)}")
        self._files.clear()
        self._show_held()
        return n

    def stop(self):
        """Release everything (called when the cell that made the panel is re-run)."""
        self.release()
        runtime.unregister(self.key, self)

    # ---- views
    def _show_result(self, att: Attempt):
        e = _html.escape
        if att.ok:
            body = (f'<div class="socklab-box" style="border-left:4px solid {colour("ok")};padding:6px 10px">'
                    f"<b>{e(att.side)}</b>: <code>bind({e(_show(att.address))})</code> worked: bound to "
                    f"<code>{e(_show(att.bound))}</code>{' and kept' if att.kept else ', then closed'}.</div>")
            body += warnings_html(att.warnings)
        else:
            body = f"<div><b>{e(att.side)}</b>: <code>bind({e(_show(att.address))})</code></div>" + \
                explanation_html(att.explanation)
        self.result.value = body
        self._show_held()

    def _show_held(self):
        if not self.kept:
            self.held.value = "<i>no sockets kept</i>"
            return
        rows = "".join(f"<li><code>{_html.escape(s.side)}</code> bound to "
                       f"<code>{_html.escape(_show(s.getsockname()))}</code></li>" for s in self.kept)
        self.held.value = f'<div class="socklab-box"><b>Kept (still bound):</b><ul>{rows}</ul></div>'
