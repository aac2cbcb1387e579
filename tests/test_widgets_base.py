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
