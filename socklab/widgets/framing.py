"""Panels for message framing on a byte stream: what the server's recv() calls see, and what the
write-write-read pattern costs with Nagle's algorithm.

``FramingPanel``: pick a framing (none, delimiter, length prefix), a list of messages and how the
client writes them; a real server reads them with that framing and shows each ``recv()`` chunk and
each message it decoded. ``NaglePanel``: time request/reply round trips on real loopback TCP with
TCP_NODELAY on or off, the request written in one or two pieces. Live output goes through widget
state and ``Output.append_stdout`` only; ``transcript()`` is the text form for static views.
"""
from __future__ import annotations

import html as _html
import socket
import threading

import ipywidgets as W

from .. import framing
from ..notebook import Rich, show
from ..render.html import CSS, colour, table_html
from ..servers import Client, Server
from ..trace import Trace
from .base import (Choice, Panel, ServerPanel, bad_setting, check_bool, check_choice, check_data,
                   check_range, check_text, progress_twin, shown)

FRAMINGS = (("none: each recv() is a 'message'", "none"), ("delimiter b'\\n'", "delimiter"),
            ("length prefix '!I'", "prefix"))
WRITES = (("one sendall() per message", "each"), ("all messages in one sendall()", "one"))
WAIT = 5.0  # seconds any step may take
# What one Send may carry, so that drawing it stays well inside WAIT (the server draws every recv()
# chunk and message it gets; 2 MB took over 5 s). Bytes on the wire: at most framing.MAX_LINE (64 KiB),
# the longest line socklab's line decoder accepts; and at most MAX_RECVS recv() calls at the recv size.
MAX_BYTES = framing.MAX_LINE
MAX_RECVS = 1000
_OVERHEAD = {"none": 0, "delimiter": len(b"\n"), "prefix": framing.HEADER.size}  # bytes per message
ROUNDS_RANGE = (1, 50)  # Nagle panel: round trips per case (each may take 40 ms with Nagle on)


def _frame(kind: str, message: bytes) -> bytes:
    if kind == "delimiter":
        return framing.encode_line(message)
    if kind == "prefix":
        return framing.encode_message(message)
    return message


def _decoder(kind: str):
    if kind == "delimiter":
        return framing.LineDecoder()
    if kind == "prefix":
        return framing.PrefixDecoder()
    return None


class FramingPanel(ServerPanel):
    """A real TCP server that reads with the framing picked; a client that sends the messages.

    Buttons: Start server, Send, Stop server (methods ``start_server()``, ``send_message()``,
    ``stop_server()``). Each Send opens a new connection, writes the messages, half-closes and waits
    for the server to finish. With "server reads late" ticked (the default) the server starts reading
    only after the client has written everything, as a busy server would: the result is then the
    same on every run. Untick it to watch the chunking change from run to run.
    ``last`` holds the latest result: ``{"chunks": [...], "messages": [...], "error": ...}``.
    """

    def __init__(self, framing_kind: str = "none", messages: str = "hello, world, !",
                 writes: str = "each", bufsize: int = 1024, read_late: bool = True,
                 name: str | None = None):
        check_choice("framing_kind", framing_kind, FRAMINGS)
        check_choice("writes", writes, WRITES)
        check_range("bufsize", bufsize, 1, 65536)
        messages = check_text("messages", messages, example="hello, world, !")
        check_bool("read_late", read_late)
        self.trace = Trace()
        self.server: Server | None = None
        self.last: dict | None = None
        self._sent = threading.Event()
        self.framing = Choice("framing", options=FRAMINGS, value=framing_kind, description="framing")
        self.messages = W.Text(value=messages, description="messages",
                               placeholder="comma-separated, e.g. hello, world")
        self.writes = Choice("writes", options=WRITES, value=writes, description="client")
        self.bufsize = W.BoundedIntText(value=bufsize, min=1, max=65536, description="recv size")
        self.read_late = W.Checkbox(value=read_late, description="server reads late", indent=False)
        self.buttons = self._buttons((("Start server", self.start_server, "success"),
                                 ("Send", self.send_message, "info"), ("Stop server", self.stop_server, "danger")))
        self._status_alert_log("<i>no server yet</i>", "220px")
        self.result = self._view("socklab-framing-result")
        super().__init__([W.HBox([self.framing, self.writes]), self.messages,
                          W.HBox([self.bufsize, self.read_late]),
                          W.HBox(list(self.buttons.values())), self.status, self.alert, self.result,
                          self.events])
        self.add_class("socklab-panel")
        self.trace.subscribe(self._on_event)
        self._register(name)

    def _plain_text(self) -> str:
        return "socklab framing panel: interactive in JupyterLab; the transcript below shows a run."

    # ---- live views
    def _act(self, what, fn):
        self.alert.value = ""
        try:
            return fn()
        except Exception as exc:
            self._alert_error(exc, what)
            return None

    # ---- the server's side
    def _handler(self, conn, server):
        kind, bufsize, late, sent = self.framing.value, self.bufsize.value, self.read_late.value, self._sent
        decoder = _decoder(kind)
        result = {"framing": kind, "chunks": [], "messages": [], "error": None}
        try:
            if late and not sent.wait(WAIT):
                raise TimeoutError("the client did not finish sending")
            while True:
                data = conn.recv(bufsize)
                if not data:
                    break
                result["chunks"].append(data)
                new = decoder.feed(data) if decoder is not None else [data]
                for m in new:
                    self.trace.note(conn.side, f"message {m!r}")
                result["messages"] += new
            if decoder is not None:
                decoder.eof()
        except (framing.FramingError, framing.IncompleteMessage) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            self.trace.note(conn.side, result["error"])
        finally:
            self.last = result

    # ---- buttons
    def start_server(self):
        def go():
            self.stop_server()
            self.server = Server(handler=self._handler, trace=self.trace, name=f"{self.key}/server").start()
            self.status.value = f"server <b>listening</b> on <code>{_html.escape(repr(self.server.address))}</code>"
            return self.server
        return self._act("start server", go)

    def message_list(self) -> list:
        """The messages box as a list of bytes: comma-separated, each stripped, UTF-8."""
        return [m.strip().encode("utf-8") for m in self.messages.value.split(",") if m.strip()]

    def send_message(self, messages=None):
        """Connect, write the messages as picked, half-close, wait until the server has read it all;
        return the result (see ``last``), or None after a failure (explained in the alert box).

        ``messages``: a list of str (sent as UTF-8) or bytes; one str or bytes is one message;
        default: the messages box. One Send carries at most MAX_BYTES (64 KiB) in at most MAX_RECVS
        recv() calls of the recv size: more raises ConfigError (from the box: in the alert), and
        nothing is sent."""
        if messages is not None:
            messages = _message_list(messages)
            self._check_load(messages)

        def go():
            msgs = messages
            if msgs is None:
                msgs = self.message_list()
                self._check_load(msgs)  # before anything starts, as for an argument
            if self.server is None or not self.server.running:
                self.start_server()
            kind = self.framing.value
            wire = [_frame(kind, m) for m in msgs]
            self._sent = threading.Event()
            self.last = None
            client = Client(self.server, name=f"{self.key}/client", timeout=WAIT)
            try:
                client.connect()
                if self.writes.value == "one":
                    client.sendall(b"".join(wire))
                else:
                    for w in wire:
                        client.sendall(w)
                client.shutdown(socket.SHUT_WR)  # "no more messages": the server's recv() returns b''
                self._sent.set()
                client.recv()  # b'' once the server has read everything and closed
            finally:
                self._sent.set()
                client.close()
            self.server.wait_idle(WAIT)
            self._show_result()
            return self.last
        return self._act("send", go)

    def _check_load(self, msgs) -> None:
        """ConfigError if ``msgs`` (bytes) are more than one Send may carry (MAX_BYTES, MAX_RECVS)."""
        size = sum(len(m) for m in msgs) + len(msgs) * _OVERHEAD[self.framing.value]
        bufsize = self.bufsize.value
        recvs = -(-size // bufsize)
        why = ("The server draws every recv() chunk and every message it decodes, in the event log and "
               f"the result, and the Send waits at most {WAIT:g} s for that: a few short messages show "
               "framing as well as megabytes would.")
        if size > MAX_BYTES:
            raise bad_setting(f"these {len(msgs)} message(s) make {size} bytes on the wire; one Send "
                              f"carries at most {MAX_BYTES} bytes ({MAX_BYTES // 1024} KiB).",
                              "Send shorter or fewer messages, e.g. ['hello', 'world'].", why)
        if recvs > MAX_RECVS:
            raise bad_setting(f"at recv size {bufsize}, the server would call recv() {recvs} times for "
                              f"these {size} bytes; one Send shows at most {MAX_RECVS} recv() calls.",
                              f"Raise the recv size to at least {-(-size // MAX_RECVS)}, or send fewer "
                              "bytes.", why)

    def stop(self):
        """Stop the server (called when the cell that made the panel is re-run)."""
        self.stop_server()

    # ---- results
    def summary(self) -> str:
        """The latest result as text: recv() calls, chunks and messages decoded (stable when read late)."""
        r = self.last
        if r is None:
            return "(nothing sent yet)"
        lines = [f"framing: {r['framing']}",
                 f"server recv() calls with data: {len(r['chunks'])}"]
        lines += [f"  chunk {i}: {c!r}" for i, c in enumerate(r["chunks"], 1)]
        lines.append(f"messages the server decoded: {len(r['messages'])}")
        lines += [f"  {m!r}" for m in r["messages"]]
        if r["error"]:
            lines.append(f"error: {r['error']}")
        return "\n".join(lines)

    def _show_result(self):
        r = self.last
        if r is None:
            return
        e = _html.escape
        chunks = "".join(f"<li><code>{e(repr(c))}</code></li>" for c in r["chunks"])
        msgs = "".join(f"<li><code>{e(repr(m))}</code></li>" for m in r["messages"])
        err = f'<div class="socklab-bad">error: {e(r["error"])}</div>' if r["error"] else ""
        self.result.value = (f'{CSS}<div class="socklab-box"><b>server recv() chunks</b><ol>{chunks}</ol>'
                             f"<b>messages decoded</b><ol>{msgs}</ol>{err}</div>")

    def transcript(self, order: str = "side") -> Rich:
        """Every socket call of the panel, grouped by side (stable for stored outputs)."""
        return show(self.trace, order=order)


def _message_list(messages) -> list:
    """``messages`` (a list or tuple of str and bytes, or one str or bytes) as a list of bytes;
    else a ConfigError."""
    if isinstance(messages, (str, bytes, bytearray, memoryview)):
        return [check_data("messages", messages)]
    if not isinstance(messages, (list, tuple)):
        raise bad_setting(f"messages must be a list of str or bytes, got {type(messages).__name__} "
                          f"{shown(messages)}.", "Pass e.g. messages=['hello', 'world'] (or b'hello' for "
                          "one message).", "Each item is one message the client writes.")
    return [check_data(f"messages[{i}]", m) for i, m in enumerate(messages)]


class NaglePanel(Panel):
    """Time request/reply round trips on loopback TCP: Nagle on or off, one write or two.

    Buttons: Run (the settings picked) and Compare (all three: two writes with Nagle, two writes
    with TCP_NODELAY, one write with Nagle); methods ``run()`` and ``compare()``. Each run makes
    its own connection to a private echo server and stops it afterwards.
    """

    CASES = (("two writes, Nagle on", dict(split=True, nodelay=False)),
             ("two writes, TCP_NODELAY", dict(split=True, nodelay=True)),
             ("one write, Nagle on", dict(split=False, nodelay=False)))

    def __init__(self, rounds: int = 20, nodelay: bool = False, split: bool = True, size: int = 100,
                 name: str | None = None):
        check_range("rounds", rounds, *ROUNDS_RANGE)
        check_range("size", size, 1, 60000)
        check_bool("nodelay", nodelay)
        check_bool("split", split)
        self.results: dict = {}
        self.rounds = W.BoundedIntText(value=rounds, min=ROUNDS_RANGE[0], max=ROUNDS_RANGE[1],
                                       description="rounds")  # a slider's handle would have no name
        self.size = W.BoundedIntText(value=size, min=1, max=60000, description="body bytes")
        self.nodelay = W.Checkbox(value=nodelay, description="TCP_NODELAY", indent=False)
        self.split = W.Checkbox(value=split, description="header and body in two writes", indent=False)
        self.buttons = self._buttons((("Run", self.run, "info"), ("Compare", self.compare, "success")))
        self.progress = W.IntProgress(value=0, min=0, max=rounds, description="round",
                                      style={"description_width": "initial"})  # a whole setting's name
        self.table = self._view("socklab-nagle-table")
        self.verdict_view = self._view("socklab-nagle-verdict", live=True)
        self.alert = self._view("socklab-alert", live=True)
        super().__init__([W.HBox([self.rounds, self.size]), W.HBox([self.nodelay, self.split]),
                          W.HBox(list(self.buttons.values())), self.progress,
                          progress_twin(self.progress, "rounds timed"), self.alert, self.table,
                          self.verdict_view])
        self.add_class("socklab-panel")
        self._register(name)

    def _plain_text(self) -> str:
        return "socklab Nagle panel: interactive in JupyterLab; the summary below shows a run."

    def label(self) -> str:
        return f"{'two writes' if self.split.value else 'one write'}, " \
               f"{'TCP_NODELAY' if self.nodelay.value else 'Nagle on'}"

    def _measure(self, label, split, nodelay):
        self.progress.max = self.rounds.value
        self.progress.value = 0
        self.progress.description = label
        times = framing.round_trips(rounds=self.rounds.value, split=split, nodelay=nodelay,
                                    size=self.size.value, timeout=WAIT,
                                    progress=lambda i, t: setattr(self.progress, "value", i))
        self.results[label] = times
        self._draw()
        return times

    def run(self):
        """Measure the settings picked in the controls; returns the round-trip times (seconds)."""
        self.alert.value = ""
        try:
            return self._measure(self.label(), self.split.value, self.nodelay.value)
        except Exception as exc:
            self._alert_error(exc)
            return None

    def compare(self) -> dict:
        """Measure all three cases; returns {case: times}."""
        self.alert.value = ""
        self.results = {}
        try:
            for label, kw in self.CASES:
                self._measure(label, **kw)
        except Exception as exc:
            self._alert_error(exc)
        return dict(self.results)

    def _draw(self):
        if not self.results:
            return
        best = min(framing.median(t) for t in self.results.values())
        rows = []
        for label, times in self.results.items():
            m = framing.median(times)
            width = max(1, min(300, int(300 * m / max(framing.median(t) for t in self.results.values()))))
            rows.append(f"<tr><td>{_html.escape(label)}</td><td>{framing.fmt_time(m)}</td>"
                        f"<td>{framing.fmt_time(sum(times))}</td>"
                        f'<td><div aria-hidden="true" style="background:{colour("info")};height:10px;'
                        f'width:{width}px"></div></td></tr>')  # the bar repeats the median: hidden
        head = ("case", "median round trip", "all rounds", "median, to scale")
        self.table.value = f'{CSS}<div class="socklab-box">{table_html("round trips", head, rows)}</div>'
        self.verdict_view.value = "<br>".join(_html.escape(line) for line in self.verdicts(best))

    def verdicts(self, best: float | None = None) -> list:
        """One line per case, compared with the fastest: stable words, no raw times."""
        if not self.results:
            return []
        if len(self.results) == 1:  # its own baseline: 'fast' would say nothing true
            return [f"{label}: measured alone: press Compare (or Run another setting) to compare it"
                    for label in self.results]
        if best is None:
            best = min(framing.median(t) for t in self.results.values())
        return [f"{label}: {ratio_words(framing.median(times), best)}" for label, times in self.results.items()]

    def summary(self) -> str:
        """Text form: the verdicts, then each case's median (durations, masked by nbval's sanitizer)."""
        if not self.results:
            return "(nothing measured yet)"
        lines = self.verdicts()
        lines += [f"  {label}: median {framing.fmt_time(framing.median(t))} over {len(t)} rounds"
                  for label, t in self.results.items()]
        return "\n".join(lines)

    def transcript(self) -> Rich:
        text = self.summary()
        return Rich(text, f'{CSS}<div class="socklab-box"><pre>{_html.escape(text)}</pre></div>')

    def stop(self):
        """Nothing keeps running between measurements; here for the re-run registry."""


def ratio_words(value: float, best: float) -> str:
    """Stable words for a median compared with the fastest case's median: the lesson is the
    10x-and-more gap of the Nagle trap, not the noise between fast cases."""
    ratio = value / best if best > 0 else float("inf")
    if ratio > 10:
        return "slow: more than 10x slower than the fastest case"
    return "fast: within 10x of the fastest case"
