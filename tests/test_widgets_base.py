"""What every panel shares (socklab/widgets/base.py)."""
from __future__ import annotations

import threading

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
    return sum(o["text"].count("\n") for o in panel.events.outputs)


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
