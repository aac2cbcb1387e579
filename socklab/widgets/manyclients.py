"""A panel that races the four server styles of ``socklab.concurrency`` with N concurrent clients.

Pick N, the simulated work per request and a style (or all four); Run measures on real sockets in
a background thread while a progress bar counts the clients answered (widget traits set from the
client threads); Stop ends a run at once (it stops the server). ``transcript()`` is the text form.
"""
from __future__ import annotations

import html as _html
import threading

import ipywidgets as W

from .. import concurrency
from ..concurrency import STYLES
from ..notebook import Rich
from ..render.html import CSS, colour, explanation_html, table_html
from .base import (Choice, BackgroundPanel, check_choice, check_range, kept, progress_twin,
                   with_dropped)

ALL = "all four"


RUNS_KEPT = 50  # measurements kept (and shown in the table)


class ManyClientsPanel(BackgroundPanel):
    """Buttons: Run, Stop, Clear; each has a method of the same name (``run()``, ``stop()``,
    ``clear()``) so a cell or a test can drive the panel too. Re-running the cell that made the
    panel stops its run."""

    def __init__(self, clients: int = 10, style: str = ALL, service_ms: int = 20,
                 name: str | None = None):
        check_choice("style", style, (ALL,) + STYLES)
        check_range("clients", clients, 1, 50)
        check_range("service_ms", service_ms, 1, 100)
        self.measurements: list = kept(RUNS_KEPT)  # the table shows them all: the latest only
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._server = None
        self._cancel = threading.Event()
        self._done = 0
        # Number boxes, not sliders: an ipywidgets slider's handle has no accessible name.
        self.clients = W.BoundedIntText(value=clients, min=1, max=50, description="clients")
        self.style = Choice("style", options=(ALL,) + STYLES, value=style, description="style")
        self.service = W.BoundedIntText(value=service_ms, min=1, max=100, description="work (ms)")
        self.buttons = self._buttons((("Run", self._click_run, "success"), ("Stop", self.stop, "danger"),
                                      ("Clear", self.clear, "")))
        self.progress = W.IntProgress(value=0, min=0, max=clients, description="answered")
        self.progress.add_class("socklab-progress")
        self._status_alert_log("<i>ready: pick N and a style, then Run</i>", log_height=None)
        self.table = self._view("socklab-results")
        super().__init__([W.HBox([self.clients, self.service]), self.style,
                          W.HBox(list(self.buttons.values())), self.progress,
                          progress_twin(self.progress, "clients answered"), self.status,
                          self.alert, self.table])
        self.add_class("socklab-panel")
        self._register(name)

    # ---- text form for GitHub / nbviewer / nbval
    def _plain_text(self) -> str:
        return ("socklab many-clients panel: interactive in JupyterLab; "
                              "the transcript below shows a run.")

    def transcript(self) -> Rich:
        """The results so far, one line per run (times in ms; nbval masks them)."""
        if not self.measurements:
            text = "(no runs yet)"
        else:
            text = "\n".join(with_dropped(self.measurements, "runs", [m.row() for m in self.measurements]))
        return Rich(text, self._table_html(bars=False))

    # ---- buttons
    def _click_run(self):
        if not self._refuse_if_busy("A run is in progress: wait for it or press Stop."):
            self.run(wait=False)

    def run(self, style: str | None = None, clients: int | None = None, service_ms: int | None = None,
            wait: bool = True):
        """Measure ``style`` (default: the dropdown; 'all four' runs each in turn) with ``clients``
        concurrent clients. With ``wait`` (the default from code) returns the new measurements.
        An unknown ``style`` or an out-of-range setting raises ConfigError; nothing runs."""
        if style is not None:
            check_choice("style", style, (ALL,) + STYLES)
        if clients is not None:  # checked like the constructor's: a number box would clamp silently
            check_range("clients", clients, 1, 50)
        if service_ms is not None:
            check_range("service_ms", service_ms, 1, 100)
        self.stop()
        if style is not None:
            self.style.value = style
        if clients is not None:
            self.clients.value = clients
        if service_ms is not None:
            self.service.value = service_ms
        styles = STYLES if self.style.value == ALL else (self.style.value,)
        n, service = self.clients.value, self.service.value / 1000
        self._cancel.clear()
        self.alert.value = ""
        before = self.measurements.total  # a Recent: indexes shift as old runs are dropped
        self._run_worker(self._work, (styles, n, service), "socklab-manyclients", wait,
                         concurrency.client_timeout(n, service) * len(styles) + 10)
        if not wait:
            return None
        return self.measurements.since(before)

    def stop(self):
        """Stop a run now (its server stops; waiting clients get an error and finish)."""
        self._cancel.set()
        with self._lock:
            srv = self._server
        if srv is not None:
            srv.stop()
        self._wait_for_worker(concurrency.DEFAULT_TIMEOUT)

    def clear(self):
        """Forget the results shown."""
        self.measurements = kept(RUNS_KEPT)
        self.table.value = ""
        self.progress.value = 0
        self.status.value = "<i>ready</i>"

    # ---- the run, in a background thread; the view changes only through widget traits
    def _work(self, styles, n, service):
        try:
            for style in styles:
                if self._cancel.is_set():
                    break
                with self._lock:
                    self._done = 0
                self.progress.max = n
                self.progress.value = 0
                self.progress.bar_style = ""
                self.progress.description = style
                self.status.value = f"<b>{style}</b>: {n} clients running..."
                m = concurrency.measure(style, n, service, on_done=self._tick, on_server=self._serving)
                with self._lock:
                    self._server = None
                m.stopped = self._cancel.is_set()
                if m.problem is not None and not m.stopped:  # e.g. out of descriptors: say why
                    self.alert.value = explanation_html(m.problem)
                self.measurements.append(m)
                self.table.value = self._table_html()
            if self._cancel.is_set():
                self.status.value = "<b>stopped</b>"
            else:
                self.status.value = f"<b>finished</b>: {len(styles)} style(s), {n} clients each"
        except Exception as exc:
            self._alert_error(exc)
            self.status.value = "<b>failed</b>"
        finally:
            with self._lock:
                self._server = None

    def _serving(self, srv):
        with self._lock:
            self._server = srv
        if self._cancel.is_set():  # Stop was pressed while the server was starting
            srv.stop()

    def _tick(self, result):
        with self._lock:
            self._done += 1
            done = self._done
        if result.ok:
            self.progress.value = done
        else:
            self.progress.bar_style = "warning"
        self.status.value = f"<b>{self.progress.description}</b>: {done}/{self.progress.max} clients done"

    def _table_html(self, bars: bool = True) -> str:
        """The results as an HTML table; ``bars`` adds a bar per run (live view only: its width
        varies from run to run, so the stored transcript leaves it out)."""
        if not self.measurements:
            return ""
        longest = max(m.total for m in self.measurements) or 1
        rows = []
        for m in self.measurements:
            width = max(1, round(200 * m.total / longest))
            rows.append(
                f"<tr><td><b>{_html.escape(m.style)}</b></td><td>{m.clients}</td>"
                f"<td>{m.answered}/{m.clients}</td><td>{m.total * 1000:.1f} ms</td>"
                f"<td>{concurrency.ms(m.mean)}</td><td>{concurrency.ms(m.max)}</td>"
                f"<td>{'overlapped' if m.overlapped else 'one at a time'}"
                f"{' (stopped early)' if m.stopped else ''}</td>"
                + (f'<td><div aria-hidden="true" style="background:{colour("info")};height:10px;'
                   f'width:{width}px"></div></td>' if bars else "") + "</tr>")  # the bar repeats 'total'
        head = ["style", "clients", "answered", "total", "mean latency", "max latency", "requests"] + \
            (["total time"] if bars else [])
        return f'{CSS}<div class="socklab-box">{table_html("runs", head, rows)}</div>'
