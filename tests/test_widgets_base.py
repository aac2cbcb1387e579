"""What every panel shares (socklab/widgets/base.py)."""
from __future__ import annotations

import threading

import pytest

from socklab.widgets import LabPanel


def test_event_log_keeps_every_line_when_threads_log_at_once(leakcheck):
    """Server threads and the kernel's thread report to one panel's log at the same moment: no line
    is lost (Output.append_stdout alone is a read and a write, and loses lines under threads).

    The events go through the panel's own trace listener; real socket calls report too rarely at the
    same instant to show the race reliably, so each thread records notes in a tight loop."""
    p = LabPanel(name="t-base-log")
    before = _lines(p)
    start = threading.Barrier(6)

    def report(k):
        start.wait(5)
        for i in range(300):
            p.trace.note(f"thread{k}", f"note {i}")
    threads = [threading.Thread(target=report, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    logged = _lines(p) - before
    p.stop()
    assert not any(t.is_alive() for t in threads)
    assert logged == 6 * 300


def _lines(panel) -> int:
    """Lines logged: those shown, and those the log's note says it no longer shows."""
    n = 0
    for o in panel.events.outputs:
        text = o["text"]
        if text.startswith("… "):
            note, text = text.split("\n", 1)
            n += int(note.split()[1])
        n += text.count("\n")
    return n


def _panel_classes():
    import importlib
    import pkgutil

    import socklab.widgets as pkg
    from socklab.widgets.base import Panel
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"socklab.widgets.{mod.name}")
    found, todo = set(), [Panel]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return sorted((c for c in found if c.__module__.startswith("socklab.widgets.")),
                  key=lambda c: c.__name__)


def test_every_panel_marks_its_status_and_alert_views(leakcheck):
    """The browser tests and learners' own CSS find a panel's status line and its explanations by
    class: every panel that has them marks them the same way."""
    concrete = [c for c in _panel_classes() if c.__name__ not in ("ServerPanel", "BackgroundPanel")]
    assert len(concrete) >= 10, [c.__name__ for c in concrete]
    for cls in concrete:
        p = cls(name=f"t-css-{cls.__name__}")
        try:
            # (BindExplorer shows every outcome, errors too, in its result view: it has no alert)
            if hasattr(p, "alert"):
                assert "socklab-alert" in p.alert._dom_classes, cls.__name__
            if hasattr(p, "status"):
                assert "socklab-status" in p.status._dom_classes, cls.__name__
            if hasattr(p, "events"):
                assert "socklab-log" in p.events._dom_classes, cls.__name__
        finally:
            p.stop()


# ---- settings: a wrong type is told apart from a number out of range, and explained

def test_check_range_tells_a_wrong_type_from_a_number_out_of_range():
    """count='3' used to be called 'outside this panel's range 1..10': it is a str, not a number."""
    from socklab import ConfigError
    from socklab.widgets.base import check_range
    cases = [("3", (int,), "count must be a whole number (int), got str '3'", "Pass count=3, without quotes"),
             (2.5, (int,), "count must be a whole number (int), got float 2.5", "from 1 to 10"),
             (True, (int,), "count must be a whole number (int), got bool True", "from 1 to 10"),
             ("2.5", (int, float), "count must be a number (int or float), got str '2.5'", "count=2.5,"),
             ("99", (int,), "got str '99'", "from 1 to 10")]  # no 'count=99' fix: out of range too
    for value, kinds, what, fix in cases:
        with pytest.raises(ConfigError) as err:
            check_range("count", value, 1, 10, kinds)
        exp = err.value.explanation
        assert what in exp.what and "1..10" in exp.what and fix in exp.fix, (value, exp.text())
    with pytest.raises(ConfigError) as err:
        check_range("count", 11, 1, 10)
    assert err.value.explanation.what == "count=11 is outside this panel's range 1..10."
    assert check_range("count", 10, 1, 10) == 10


@pytest.mark.parametrize("make,words", [
    (lambda w: w.PingPanel(count="3", name="t-type"), "count must be a whole number (int), got str '3'"),
    (lambda w: w.ExchangePanel(bufsize="64", name="t-type"), "bufsize must be a whole number (int), got str"),
    (lambda w: w.FramingPanel(bufsize=1.5, name="t-type"), "bufsize must be a whole number (int), got float"),
    (lambda w: w.NaglePanel(rounds="5", name="t-type"), "rounds must be a whole number (int), got str"),
    (lambda w: w.LabPanel(backlog="5", name="t-type"), "backlog must be a whole number (int), got str"),
    (lambda w: w.ManyClientsPanel(clients=2.9, name="t-type"),
     "clients must be a whole number (int), got float"),
], ids=["ping", "exchange", "framing", "nagle", "lab", "manyclients"])
def test_every_panel_says_a_number_of_the_wrong_type_is_one(make, words):
    from socklab import ConfigError
    w = _widgets()
    with pytest.raises(ConfigError) as err:
        make(w)
    assert words in err.value.explanation.what


def _widgets():
    """The panel classes by name, from their modules."""
    import types
    return types.SimpleNamespace(**{c.__name__: c for c in _panel_classes()})


# ---- a drop-down list set from code to a value it does not offer

@pytest.mark.parametrize("make,control,choices", [
    (lambda w: w.HTTPPanel(name="t-choice"), "method", "'GET', 'HEAD', 'POST', 'DELETE'"),
    (lambda w: w.TLSPanel(name="t-choice"), "version", "'TLS 1.3', 'TLS 1.2'"),
    (lambda w: w.PingPanel(name="t-choice"), "host", "'127.0.0.1', '::1'"),
    (lambda w: w.ExchangePanel(name="t-choice"), "call", "'send', 'sendall'"),
    (lambda w: w.FramingPanel(name="t-choice"), "framing", "'none', 'delimiter', 'prefix'"),
    (lambda w: w.FramingPanel(name="t-choice"), "writes", "'each', 'one'"),
    (lambda w: w.LabPanel(name="t-choice"), "family", "'AF_INET', 'AF_INET6', 'AF_UNIX'"),
    (lambda w: w.LabPanel(name="t-choice"), "type", "'SOCK_STREAM', 'SOCK_DGRAM'"),
    (lambda w: w.StepPanel(name="t-choice"), "type", "'SOCK_STREAM', 'SOCK_DGRAM'"),
    (lambda w: w.BindExplorer(name="t-choice"), "family", "'AF_INET', 'AF_INET6'"),
    (lambda w: w.BacklogPanel(name="t-choice"), "family", "'AF_INET'"),
    (lambda w: w.ManyClientsPanel(name="t-choice"), "style", "'iterative'"),
], ids=["http-method", "tls-version", "ping-host", "exchange-call", "framing-kind", "framing-writes",
        "lab-family", "lab-type", "steps-type", "bind-family", "backlog-family", "manyclients-style"])
def test_a_choice_set_from_code_is_explained_and_not_taken(make, control, choices):
    """ipywidgets' own refusal is a TraitError 'Invalid selection: value not found' (a traceback
    wall); the panels' lists explain, naming the choices, and still raise a TraitError."""
    import traitlets

    from socklab import ConfigError
    p = make(_widgets())
    try:
        box = getattr(p, control)
        before = box.value
        with pytest.raises(ConfigError) as err:
            box.value = "nope"
        assert isinstance(err.value, traitlets.TraitError)
        text = err.value.explanation.text()
        assert "'nope' is not one of this panel's choices" in text and choices in text, text
        assert box.value == before
        box.index = len(box.options) - 1  # the browser picks by index: still works
        assert box.value != before
    finally:
        p.stop()


# ---- the event log

def test_the_event_log_is_one_growing_stream(leakcheck):
    """Output.append_stdout adds one output per line, and ipywidgets validates all of them again on
    every line: 3000 lines took 10 s, so a FramingPanel drawing 1000 recv() calls ran past its 5 s
    wait. The log keeps one stdout stream that grows, and reads the same."""
    p = LabPanel(name="t-base-stream")
    for i in range(300):
        p._log(f"line {i}\n")
    assert len(p.events.outputs) == 1
    assert p.events.outputs[0]["text"] == "".join(f"line {i}\n" for i in range(300))
    assert p.events.outputs[0]["output_type"] == "stream" and p.events.outputs[0]["name"] == "stdout"
    for i in range(300, 3000):
        p._log(f"line {i}\n")
    p.stop()
    assert len(p.events.outputs) == 1


def test_the_event_log_keeps_its_latest_lines(leakcheck):
    """Every line sends the whole stream to the browser: a server left running would send more with
    each line, for ever. The log keeps the last LOG_LINES, and says how many went."""
    p = LabPanel(name="t-base-capped")
    n = p.LOG_LINES
    for i in range(n + 1000):
        p._log(f"line {i}\n")
    p._log("two\nlines\n")
    p.stop()
    lines = p.events.outputs[0]["text"].splitlines()
    assert lines[0] == "… 1002 earlier lines are not shown here"
    assert lines[1:] == [f"line {i}" for i in range(1002, n + 1000)] + ["two", "lines"]


def test_a_huge_wrong_argument_gives_a_short_explanation():
    """The value is shown shortened: a megabyte of it must not fill the explanation."""
    from socklab import ConfigError
    w = _widgets()
    for make in (lambda: w.TLSPanel(message=[0] * 1_000_000, name="t-huge"),
                 lambda: w.HTTPPanel(path="/" + "x y" * 1_000_000, name="t-huge"),
                 lambda: w.PingPanel(count="9" * 1_000_000, name="t-huge")):
        with pytest.raises(ConfigError) as err:
            make()
        assert len(err.value.explanation.text()) < 1000 and "..." in err.value.explanation.what
