"""The panels' base classes: ``Panel`` (text form, buttons, status line, alert box, event log,
explained errors, the re-run registry), ``ServerPanel`` (a server and its client) and
``BackgroundPanel`` (runs in a background thread).
"""
from __future__ import annotations

import html as _html
import reprlib
import socket
import threading

import ipywidgets as W
import traitlets

from .. import runtime
from ..config import SocketConfig
from ..errors import ConfigError, Explanation, explain, explained
from ..recent import Recent
from ..render.html import explanation_html, warning_html
from ..render.text import format_call, format_result


MAX_TIMEOUT = 600.0  # s: a panel's call may wait minutes, never forever
# A panel clicked all day keeps its latest runs (outcomes, measurements, transcript lines) only.
KEPT = 200


def kept(keep: int = KEPT) -> Recent:
    """A panel's list of runs or transcript lines: its newest ``keep`` items (``dropped`` counts the rest)."""
    return Recent(keep)


def with_dropped(items, what: str, lines=None) -> list:
    """``lines`` (default: ``items`` themselves), after a line saying how many earlier ``what``
    ``items`` dropped, if it dropped any."""
    note = items.dropped_note(what) if isinstance(items, Recent) else ""
    return ([note] if note else []) + list(items if lines is None else lines)

_LIMITS = "The panel runs real sockets, so each control takes only the values it offers."

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def shown(value) -> str:
    """``repr(value)``, shortened (with '...') if long: a 2 MB argument must not fill the explanation."""
    return _short.repr(value)


# ---- settings: bad ones are refused with an explanation, before any socket exists
def bad_setting(what: str, fix: str, why: str = _LIMITS) -> ConfigError:
    """The ConfigError panels raise for a setting they cannot use."""
    return ConfigError(Explanation("Bad panel setting", what, why, fix))


def check_range(name, value, lo, hi, kinds=(int,), fix: str | None = None, why: str = _LIMITS):
    """``value`` if it is one of ``kinds`` (never a bool) within lo..hi; else a ConfigError that
    tells a wrong type (e.g. the str '3') from a number out of range."""
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind, plural = (("a whole number (int)", "whole numbers") if kinds == (int,) else
                        ("a number (int or float)", "numbers"))
        # the phrase 'outside this panel's range' stays: tests and learners search for it
        raise bad_setting(f"{name} must be {kind}, got {type(value).__name__} {shown(value)}: that is "
                          f"outside this panel's range {lo}..{hi}, which holds {plural} only.",
                          _unquoted(name, value, kinds, lo, hi) or fix or
                          f"Pass {name} as a number from {lo} to {hi}.", why)
    if not lo <= value <= hi:
        raise bad_setting(f"{name}={value!r} is outside this panel's range {lo}..{hi}.",
                          fix or f"Pass {name} as a number from {lo} to {hi}.", why)
    return value


def _unquoted(name, value, kinds, lo, hi) -> str | None:
    """For a number in range written in quotes ('3'): the fix 'Pass count=3, without quotes'."""
    if not isinstance(value, str):
        return None
    for kind in kinds:
        try:
            number = kind(value.strip())
        except ValueError:
            continue
        if lo <= number <= hi:  # also refuses 'nan'
            return f"Pass {name}={number!r}, without quotes: a number, not a str."
    return None


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False (a checkbox's two states); else a ConfigError."""
    if not isinstance(value, bool):
        raise bad_setting(f"{name} must be True or False, got {type(value).__name__} {shown(value)}.",
                          f"Pass {name}=True (ticked) or {name}=False (not ticked).",
                          f"The {name} control is a checkbox: ticked or not.")
    return value


def check_text(name: str, value, example: str = "hello") -> str:
    """The text a panel's text box shows: a str as it is, bytes decoded as UTF-8; else a ConfigError
    (whose fix suggests ``example``)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise bad_setting(f"{name}={shown(bytes(value))} is not UTF-8 text, and the {name} box "
                              "shows text.",
                              f"Pass {name} as a str (or as bytes that are UTF-8 text).",
                              "A text box holds characters; these bytes decode to none.") from None
    if not isinstance(value, str):
        raise bad_setting(f"{name} must be text (str or bytes), got {type(value).__name__} {shown(value)}.",
                          f"Pass {name} as a str, e.g. {name}={example!r}.",
                          f"The {name} control is a text box.")
    return value


def last_n(items: list, last, what: str) -> list:
    """The ``last`` n of ``items`` (all for None, none for 0: items[-0:] would be all of them); a
    negative or non-integer n is refused with a ConfigError. ``what`` names the items ('exchanges')."""
    if last is None:
        return list(items)
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise bad_setting(f"last={shown(last)} is not a number of {what} (0 or more).",
                          f"Use e.g. last=1 for the latest of the {what}, or leave last out to see "
                          "them all.",
                          f"last=n shows the n most recent {what}; a negative n (or one that is "
                          "not a whole number) counts nothing.")
    return list(items[-last:]) if last else []


def unencodable(name: str, value: str, exc: UnicodeEncodeError) -> str:
    """'message has a character UTF-8 cannot encode: '\\udcff' at position 3.'"""
    return (f"{name} has a character UTF-8 cannot encode: {value[exc.start:exc.end]!r} at position "
            f"{exc.start}.")


def check_data(name: str, value) -> bytes:
    """What a message or body argument sends: a str encoded as UTF-8, bytes (or bytearray,
    memoryview) as they are; else a ConfigError."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_setting(unencodable(name, value, exc),
                              f"Pass {name} as bytes, or as text without that character.",
                              "Sockets send bytes: the panel encodes a str as UTF-8, and UTF-8 has "
                              "no bytes for a lone surrogate (what decoding with "
                              "errors='surrogateescape' leaves for bytes that were not UTF-8).") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise bad_setting(f"{name} must be a str or bytes, got {type(value).__name__} {shown(value)}.",
                      f"Pass {name} as text ('hello', sent as UTF-8) or as bytes (b'hello').",
                      "Sockets send bytes: the panel encodes a str as UTF-8 and sends bytes as they are.")


def check_timeout(name: str, value, hi: float = MAX_TIMEOUT) -> float:
    """``value`` if it is a number of seconds in (0, hi]; else a ConfigError. None, 0 and negative
    numbers are refused: a panel's call must neither wait forever nor fail without waiting."""
    # 0 < value also refuses NaN; value <= hi refuses infinity
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= hi:
        raise bad_setting(
            f"{name}={value!r} is not a number of seconds above 0 and at most {hi:g}.",
            f"Use a positive number of seconds, e.g. {name}=5 or {name}=0.5.",
            "Every call the panel makes waits at most this long, so nothing hangs: None would "
            "wait forever, 0 would not wait at all (non-blocking), a negative number is refused "
            "by settimeout().")
    return value


def check_choice(name: str, value, options, normalise=None):
    """``value`` if it is one of ``options`` (str values, or (label, value) pairs) after ``normalise``
    (which may raise ConfigError itself); else a ConfigError listing the choices."""
    allowed = [o[1] if isinstance(o, tuple) else o for o in options]
    if normalise is not None:
        value = normalise(value)
    if isinstance(value, str) and value in allowed:  # a str only: True == 1 must not pick 1
        return value
    listed = ", ".join(repr(a) for a in allowed)
    raise bad_setting(f"{name}={shown(value)} is not one of this panel's choices.",
                      f"Use one of: {listed}.",
                      f"The {name} control is a drop-down list: {listed}.")


class SettingError(ConfigError, traitlets.TraitError):
    """A bad value set on a control from code: explained as a ConfigError, and still a TraitError,
    which ipywidgets and traitlets catch to undo a half-made change."""


class Choice(W.Dropdown):
    """A drop-down list whose ``value``, set from code to something not offered, is refused with an
    explained ``SettingError`` naming the choices (not ipywidgets' 'Invalid selection'). ``setting``:
    the name the explanation uses, e.g. 'hostname'."""

    def __init__(self, setting: str, **kwargs):
        self._setting = setting
        super().__init__(**kwargs)

    @traitlets.validate("value")
    def _validate_value(self, proposal):
        value = proposal.value
        if value is not None:  # None is ipywidgets' "nothing picked", which it sets itself
            try:
                check_choice(getattr(self, "_setting", self.description), value, self.options)
            except ConfigError as exc:
                raise SettingError(exc.explanation) from None
        return super()._validate_value(proposal)


def family_name(value) -> str:
    """A family as SocketConfig reads it ('AF_INET', 'inet', socket.AF_INET, 2) by its name,
    e.g. 'AF_INET'; ConfigError (naming the families) for anything else."""
    try:
        return socket.AddressFamily(SocketConfig(family=value).af).name
    except AttributeError:  # a family this OS lacks: left as given, so check_choice refuses it
        return value


def type_name(value) -> str:
    """A socket type as SocketConfig reads it ('SOCK_STREAM', 'stream', 1) by its name."""
    return socket.SocketKind(SocketConfig(type=value).kind).name


class Timeout:
    """A panel attribute in seconds, checked by ``check_timeout`` whenever it is set (also after
    the panel is made), so no later change can make a call wait forever."""

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj, value):
        setattr(obj, self.slot, check_timeout(self.name, value))


def _live_region(value: str, widget=None) -> str:
    """``value`` as the browser gets it: inside a polite ARIA live region, so a screen reader reads
    a new status or explanation without the learner moving there. (The HTML widget's own element
    takes no ARIA attributes from Python: the region is the first element of its content.)"""
    if not value:
        return value
    return f'<div role="status" aria-live="polite" aria-atomic="true">{value}</div>'


class LiveHTML(W.HTML):
    """An HTML view whose content is announced by screen readers when it changes. ``value`` in
    Python stays what was set; only the copy sent to the browser is wrapped (``_live_region``)."""

    value = traitlets.Unicode(help="HTML shown, announced when it changes").tag(
        sync=True, to_json=_live_region)


# Out of sight but read by screen readers (the usual "visually hidden" rules).
_UNSEEN = ("position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;"
           "clip:rect(0,0,0,0);white-space:nowrap;border:0")


def progress_twin(progress: W.IntProgress, what: str) -> W.HTML:
    """What a screen reader needs of ``progress``: ipywidgets draws its bar as plain divs, with no
    role and no value. The twin is an unseen element with role progressbar, named ``what`` and the
    bar's description (e.g. 'clients answered: threads'), its value kept in step with the bar's
    (from any thread: traits only)."""
    twin = W.HTML()
    twin.add_class("socklab-progressbar")

    def sync(_change=None):
        e, now, top = _html.escape, progress.value, progress.max
        name = f"{what}: {progress.description}" if progress.description else what
        twin.value = (f'<div role="progressbar" aria-label="{e(name, quote=True)}" '
                      f'aria-valuemin="{progress.min}" aria-valuemax="{top}" aria-valuenow="{now}" '
                      f'aria-valuetext="{now} of {top}" style="{_UNSEEN}">{now} of {top}</div>')
    progress.observe(sync, names=["value", "max", "min", "description"])
    sync()
    return twin


class Panel(W.VBox):
    """A VBox whose text/plain form says what the panel is, instead of ipywidgets' repr.

    GitHub, nbviewer and nbval see that text (and the transcript a notebook shows below the panel);
    JupyterLab shows the live widget.
    """

    _side_width = 13  # characters of the event log's side column

    # ---- widgets
    @staticmethod
    def _buttons(specs, width: str | None = None) -> dict:
        """Buttons from (label, method, style[, CSS class]) tuples, keyed by label; each calls its
        method. The CSS class (what the browser tests click) is the one given, or else
        'socklab-<label-with-dashes>', cut at '(': 'Client shutdown(SHUT_WR)' gives
        'socklab-client-shutdown'. ``width``: every button's layout width, e.g. 'auto'."""
        out = {}
        for label, fn, style, *css in specs:
            size = {} if width is None else {"layout": W.Layout(width=width)}
            b = W.Button(description=label, button_style=style, **size)
            b.add_class(css[0] if css else "socklab-" + label.lower().split("(")[0].replace(" ", "-"))
            b.on_click(lambda _b, fn=fn: fn())
            out[label] = b
        return out

    def _status_alert_log(self, status: str, log_height: str | None = "240px") -> None:
        """Make ``status`` (an HTML line, at first ``status``), ``alert`` (explanations, warnings),
        both announced to screen readers when they change, and, unless ``log_height`` is None,
        ``events``: the live event log."""
        self.status = self._view("socklab-status", status, live=True)
        self.alert = self._view("socklab-alert", live=True)
        if log_height is not None:
            self.events = self._event_log(log_height)

    @staticmethod
    def _view(css: str, value: str = "", live: bool = False) -> W.HTML:
        """An HTML view with CSS class ``css`` (how tests and the browser tests find it); ``live``:
        a ``LiveHTML``, for what a click answers (status, alert, result). Diagrams, gauges and
        tables are not live: read aloud on every redraw they would drown the answer."""
        view = (LiveHTML if live else W.HTML)(value=value)
        view.add_class(css)
        return view

    @staticmethod
    def _tabs(pages) -> W.Tab:
        """A Tab of (widget, title) pairs."""
        tab = W.Tab(children=[widget for widget, _ in pages])
        for i, (_, title) in enumerate(pages):
            tab.set_title(i, title)
        return tab

    @staticmethod
    def _event_log(height: str = "240px") -> W.Output:
        """An Output that scrolls beyond ``height``, with CSS class 'socklab-log'."""
        log = W.Output(layout=W.Layout(max_height=height, overflow="auto",
                                       border="1px solid var(--jp-border-color2,#e0e0e0)"))
        log.add_class("socklab-log")
        return log

    # ---- the event log (a trace listener)
    def _event_line(self, ev) -> str:
        res = format_result(ev)
        return f"{ev.side:<{self._side_width}} {format_call(ev)}{('  ' + res) if res else ''}\n"

    def _on_event(self, ev):
        """Trace listener. Server threads call it too: hence _log, never print()."""
        self._log(self._event_line(ev))

    _log_lock = threading.Lock()  # one for all panels: appends are short
    LOG_LINES = 500  # the event log shows the latest lines only

    def _log(self, text: str) -> None:
        """Append ``text`` to the event log's one stdout stream, which keeps its last LOG_LINES.

        Not one output per line (Output.append_stdout): setting ``outputs`` validates all of them
        again, so each line cost more as the log grew (3000 lines: 10 s), and a panel logging many
        recv() calls ran past its own timeouts. Each line sends the whole stream to the browser,
        hence the cap: a server left running would otherwise send more with every line, for ever.
        The lock: this is a read and a write, and a server thread and the kernel's thread appending
        at once would lose a line."""
        with self._log_lock:
            outs = self.events.outputs
            last = outs[-1] if outs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == "stdout":
                self.events.outputs = outs[:-1] + ({**last, "text": self._capped(last["text"] + text)},)
            else:
                self.events.append_stdout(text)

    def _capped(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        dropped = 0
        if lines and lines[0].startswith("… "):  # the note of an earlier cut
            dropped = int(lines.pop(0).split()[1])
        if len(lines) <= self.LOG_LINES:
            return text
        dropped += len(lines) - self.LOG_LINES
        return (f"… {dropped} earlier lines are not shown here\n"
                + "".join(lines[-self.LOG_LINES:]))

    # ---- errors are explained, not raised
    def _explain(self, exc: BaseException, call: str | None = None) -> Explanation:
        return explain(exc, call=call)

    def _alert_error(self, exc: BaseException, call: str | None = None) -> Explanation:
        """Show ``exc`` explained in the alert box (a learner sees no traceback); return the explanation."""
        exp = self._explain(exc, call)
        self.alert.value = explanation_html(exp)
        return exp

    def _act(self, what: str, fn):
        """Run one button's work ``fn``; keep its result, or the exception it raised, in ``last``.
        Return the result, or None after a failure: as in LabPanel, a failure is explained in the
        alert box (``_act_failed``), not raised, and not returned (a cell would show its bare repr).
        ``_redraw`` runs either way."""
        self.alert.value = ""
        failed = False
        try:
            self.last = fn()
        except Exception as exc:
            self.last, failed = exc, True
            self._act_failed(what, exc)
        self._redraw()
        return None if failed else self.last

    def _act_failed(self, what: str, exc: BaseException) -> None:
        exp = self._alert_error(exc, call=what)
        self.trace.note("panel", f"{what}: {exp.title}")

    def _redraw(self) -> None:
        """Bring the panel's views up to date after each ``_act``."""

    # ---- re-runs and static views
    def _register(self, name: str | None) -> None:
        """Put the panel in the re-run registry as ``self.key``: under ``name``, or else under the
        line of the cell that made it, so re-running that cell stops this panel."""
        # frames: caller_key, _register, the panel's __init__, then the code that made the panel
        self.key = name if name is not None else runtime.caller_key(3)
        before = [o for o in runtime.running() if isinstance(o, Panel) and o is not self]
        runtime.register(self.key, self, explicit=name is not None)
        # The panels this one replaced (stopped by register) are closed: ipywidgets keeps every
        # widget model, and the panel with it, until closed, so each re-run of the cell would
        # keep another panel (its trace, its ~60 widgets) for the rest of the session.
        still = {id(o) for o in runtime.running()}
        for old in before:
            if id(old) not in still:
                old.close_widgets()

    def close_widgets(self) -> None:
        """Close this panel's widget models (its views disappear from the page): for a panel that
        was replaced and no longer works."""
        todo, seen = [self], set()
        todo += [w for v in vars(self).values()
                 for w in (v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple))
                           else (v,)) if isinstance(w, W.Widget)]
        while todo:
            w = todo.pop()
            if id(w) in seen:
                continue
            seen.add(id(w))
            for name in w.keys:  # children, layout, style, ...: widgets of their own
                v = getattr(w, name, None)
                todo += [x for x in (v if isinstance(v, (list, tuple)) else (v,)) if isinstance(x, W.Widget)]
            w.close()
        vars(self).pop("_repr_mimebundle_", None)  # close() hid ours: a closed panel still shows its text

    def _plain_text(self) -> str:
        return "socklab panel: interactive in JupyterLab"

    def _repr_mimebundle_(self, **kwargs):
        if self.comm is None:  # closed (replaced by a re-run): no live view, the text form only
            return {"text/plain": self._plain_text()}
        data = super()._repr_mimebundle_(**kwargs)
        data = dict(data[0] if isinstance(data, tuple) else data)
        data["text/plain"] = self._plain_text()
        return data


class ServerPanel(Panel):
    """A panel that runs a socklab Server (``server``) and perhaps one client of it (``client``)."""

    client = None  # panels that open a connection per request (HTTP, framing) keep none

    def _close_client(self):
        if self.client is not None:
            self.client.close()
            self.client = None
            if self.server is not None and self.server.running:
                self.server.wait_idle()  # let the server see b'' and close its end

    def _stop_server(self):
        self._close_client()
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.status.value = "<i>server stopped</i>"

    def stop_server(self):
        """Close the client, if any, and stop the server (its connections shut down, its socket closed)."""
        return self._act("stop server", self._stop_server)

    def stop(self):
        """Called when the cell that made the panel is re-run."""
        self._stop_server()


class BackgroundPanel(Panel):
    """A panel whose runs go on in a background thread (``_worker``); that thread changes the
    view through widget traits only."""

    _worker: threading.Thread | None = None
    _worker_done: threading.Event | None = None

    @property
    def busy(self) -> bool:
        """A run is going on."""
        w = self._worker
        return w is not None and w.is_alive()

    def _refuse_if_busy(self, why: str) -> bool:
        """While a run goes on: ``why`` in the alert box, and True (the button then does nothing)."""
        if self.busy:
            self.alert.value = warning_html(_html.escape(why))
            return True
        return False

    def _run_worker(self, target, args, name: str, wait: bool, timeout: float) -> None:
        """Run ``target(*args)`` in the panel's background thread; with ``wait``, wait for it.

        An interrupt (Jupyter's stop button) anywhere in here stops the run too, instead of
        leaving it going on in the background: also one that lands while ``Thread.start()``
        still waits for the new thread, which already runs.

        It waits on an Event, not in Thread.join(): when a KeyboardInterrupt lands in join(),
        CPython 3.11 marks the thread stopped although it still runs, and every later join()
        returns at once."""
        done = threading.Event()

        def run():
            try:
                target(*args)
            finally:
                done.set()
        try:
            # This order: an interrupt between the two lines leaves a thread not yet started,
            # which stop() does not wait for (it would wait on the new done, never set).
            self._worker = runtime.Thread(target=run, name=name)
            self._worker_done = done
            try:
                self._worker.start()
            except RuntimeError as exc:  # the OS refused a thread (ulimit -u): nothing runs
                self._worker = None
                self._alert_error(exc, call="start")
                self.status.value = "<b>failed</b>"
                if wait:  # called from code: raised, explained; from a button: the alert says it
                    raise explained(exc, call="start") from None
                return
            if wait:
                done.wait(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_worker(self, timeout: float) -> None:
        w = self._worker
        # ident is None when an interrupt came before Thread.start() launched the thread: then
        # done is never set, and nothing runs to wait for.
        if w is not None and w is not threading.current_thread() and w.ident is not None:
            if self._worker_done.wait(timeout):
                w.join(timeout)  # the last lines of its thread, after done was set
