"""ManyClientsPanel driven from plain Python: real sockets, widget values, transcript, prompt stop."""
from __future__ import annotations

import signal
import threading
import time

import pytest

pytest.importorskip("ipywidgets")

import socklab  # noqa: E402
from socklab import runtime  # noqa: E402
from socklab.concurrency import STYLES  # noqa: E402
from socklab.widgets.manyclients import ALL, ManyClientsPanel  # noqa: E402


def test_run_one_style_updates_progress_table_and_transcript(leakcheck):
    panel = ManyClientsPanel(clients=5, style="threads", service_ms=5, name="t-mc1")
    ms = panel.run()
    assert [m.style for m in ms] == ["threads"]
    assert ms[0].answered == 5
    assert panel.progress.value == 5 and panel.progress.max == 5
    assert panel.progress.description == "threads"
    # ipywidgets' bar has no role: its unseen twin tells a screen reader the same
    twin = next(w for w in panel.children if "socklab-progressbar" in w._dom_classes)
    assert 'role="progressbar" aria-label="clients answered: threads"' in twin.value
    assert 'aria-valuemax="5" aria-valuenow="5"' in twin.value and ">5 of 5</div>" in twin.value
    assert "finished" in panel.status.value
    assert "<td><b>threads</b></td>" in panel.table.value
    text = panel.transcript().text
    assert text.startswith("threads    clients=5  answered=5/5  total ")
    assert "overlapped requests" in text and "stopped early" not in text
    body = panel.transcript().html.split("</style>")[-1]  # the table, after the shared CSS
    assert "width:" not in body  # the stored form has no run-dependent bars
    assert not panel.busy
    panel.stop()


def test_run_all_four_in_turn(leakcheck):
    panel = ManyClientsPanel(clients=4, service_ms=5, name="t-mc2")
    assert panel.style.value == ALL
    ms = panel.run()
    assert [m.style for m in ms] == list(STYLES)
    assert all(m.answered == 4 for m in ms)
    lines = panel.transcript().text.splitlines()
    assert [ln.split()[0] for ln in lines] == list(STYLES)
    assert lines[0].endswith("one request at a time")
    panel.stop()


def test_arguments_set_the_controls(leakcheck):
    panel = ManyClientsPanel(name="t-mc3")
    panel.run(style="asyncio", clients=3, service_ms=2)
    assert (panel.style.value, panel.clients.value, panel.service.value) == ("asyncio", 3, 2)
    assert panel.measurements[-1].service_time == 0.002
    panel.stop()


def test_stop_ends_a_long_run_promptly(leakcheck):
    panel = ManyClientsPanel(clients=50, style="iterative", service_ms=100, name="t-mc4")
    two_answered = threading.Event()
    panel.progress.observe(lambda change: change["new"] >= 2 and two_answered.set(), names="value")
    panel.run(wait=False)  # 50 x 100 ms = 5 s if left alone
    assert two_answered.wait(5), panel.status.value
    assert panel.busy
    t0 = time.perf_counter()
    panel.stop()
    assert time.perf_counter() - t0 < 2
    assert not panel.busy
    assert "stopped" in panel.status.value
    m = panel.measurements[-1]
    assert 2 <= m.answered < 50
    assert m.stopped and m.row().endswith("(stopped early)")
    assert "(stopped early)" in panel.table.value


def test_run_button_while_busy_shows_a_note(leakcheck):
    panel = ManyClientsPanel(clients=20, style="iterative", service_ms=50, name="t-mc5")
    panel.buttons["Run"].click()
    assert panel.busy
    panel.buttons["Run"].click()
    assert "in progress" in panel.alert.value
    panel.buttons["Stop"].click()
    assert not panel.busy


def test_clear_and_empty_transcript():
    panel = ManyClientsPanel(name="t-mc6")
    assert panel.transcript().text == "(no runs yet)"
    panel.measurements.append(object())
    panel.clear()
    assert panel.measurements == [] and panel.table.value == ""


def test_rerunning_the_cell_stops_the_old_panel(leakcheck):
    old = ManyClientsPanel(clients=50, style="iterative", service_ms=100, name="t-mc7")
    old.run(wait=False)
    new = ManyClientsPanel(name="t-mc7")  # same name: as when a cell is re-run
    assert not old.busy
    assert old not in runtime.running() and new in runtime.running()
    new.stop()


def test_text_form_of_the_widget():
    panel = ManyClientsPanel(name="t-mc8")
    data = panel._repr_mimebundle_()
    assert data["text/plain"].startswith("socklab many-clients panel")
    assert "application/vnd.jupyter.widget-view+json" in data


def test_an_unknown_style_is_explained_with_the_choices():
    with pytest.raises(socklab.ConfigError) as err:
        ManyClientsPanel(style="thread", name="t-mc-style")
    assert all(repr(s) in err.value.explanation.text() for s in (ALL,) + STYLES)
    p = ManyClientsPanel(name="t-mc-style")
    with pytest.raises(socklab.ConfigError):
        p.run(style="thread")
    assert p.style.value == ALL and p.measurements == [] and not p.busy
    p.stop()


@pytest.mark.parametrize("kwargs", [dict(clients=0), dict(service_ms=1000)])
def test_manyclientspanel_refuses_numbers_outside_its_controls(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        ManyClientsPanel(name="t-range", **kwargs)
    assert "outside this panel's range" in err.value.explanation.what


@pytest.mark.parametrize("kwargs", [dict(clients=500), dict(clients=2.9), dict(clients=True),
                                    dict(service_ms=0.5), dict(service_ms=101)])
def test_run_refuses_what_its_boxes_would_clamp_or_cast(kwargs, leakcheck):
    p = ManyClientsPanel(clients=3, service_ms=5, name="t-mc-run-range")
    try:
        with pytest.raises(socklab.ConfigError) as err:
            p.run(**kwargs)
        assert "outside this panel's range" in err.value.explanation.what
        assert (p.clients.value, p.service.value) == (3, 5) and p.measurements == [] and not p.busy
    finally:
        p.stop()


class _InterruptedAtStart(ManyClientsPanel):
    """Its run interrupts the main thread first thing: while that thread may still be inside
    Thread.start(), before it waits for the run. (A stop button pressed at that moment.)"""

    def _work(self, *args):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        super()._work(*args)


def test_an_interrupt_while_the_run_is_being_started_stops_it_too(leakcheck):
    panel = _InterruptedAtStart(clients=50, style="all four", service_ms=100, name="t-mc-interrupt-start")
    with pytest.raises(KeyboardInterrupt):
        panel.run()  # all four styles, 50 clients each: many seconds unless interrupted
    assert not panel.busy and len(panel.measurements) <= 1


def test_an_interrupt_while_run_waits_stops_the_run_too(leakcheck, interrupt_when):
    """Jupyter's stop button raises KeyboardInterrupt in the main thread, here while run() waits."""
    panel = ManyClientsPanel(clients=50, style="all four", service_ms=100, name="t-mc-interrupt")
    two_answered = threading.Event()
    panel.progress.observe(lambda change: change["new"] >= 2 and two_answered.set(), names="value")
    with interrupt_when(two_answered), pytest.raises(KeyboardInterrupt):
        panel.run()  # all four styles, 50 clients each: many seconds unless interrupted
    assert not panel.busy  # the run ended with the wait, not seconds later in the background
    assert len(panel.measurements) == 1 and panel.measurements[0].stopped, (panel.status.value, panel.alert.value)
