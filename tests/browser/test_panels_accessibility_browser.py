"""Every other panel as a keyboard and screen-reader user meets it, in a real JupyterLab (headless
Chromium): the checks test_accessibility_browser.py makes on the LabPanel, for each lesson panel.

Per panel, in a small notebook written for the case (one cell that makes the panel):

(a) every control (button, checkbox, drop-down, text and number box, tab) has a role and an
    accessible name of at least one word, as Playwright's accessibility snapshot (what get_by_role
    matches) computes it, and Chromium's own accessibility tree (what a screen reader is given,
    read over the DevTools protocol) has the same controls with the same names. ipywidgets' IntProgress gets no role at all: its unseen twin
    (``progress_twin`` in base.py) is the progressbar a screen reader finds, and after the press it
    must hold the bar's final value;
(b) Tab, from the panel's first control, reaches every enabled button of the panel, and Enter
    presses the panel's main button;
(c) the answer that press shows comes in a live region (role=status), and every view whose text
    the press changed is one, except the views that are not meant to be read aloud on every
    redraw (tables, diagrams, gauges, logs: see ``Panel._view`` in socklab/widgets/base.py);
(e) where the panel's views are behind tabs, Tab from the last button reaches the tab bar, and
    the arrow keys and Enter switch the view;
(d) socklab's text reaches WCAG AA contrast on what the browser draws, in JupyterLab's light theme
    and in its dark theme.
"""
from __future__ import annotations

import json
import re

import pytest

from live_expect import expect
from test_accessibility_browser import low_contrast, use_theme
from test_jupyterlab import TEST_DIR_IN_LAB, open_and_run, top

ANSWER_TIMEOUT = 60_000  # ms: a panel's run in a background thread (backlog, ping) on a loaded CI

# name -> (module, constructor arguments, main button's accessible name, its answer in a live region)
PANELS = {
    "StepPanel": ("steps", "", re.compile(r"^Server step 1/6"), re.compile(r"socket\(")),
    "BindExplorer": ("addresses", "", "Try bind", re.compile(r"worked: bound to")),
    "BacklogPanel": ("backlog", "backlog=0, clients=2, connect_timeout=0.5", "Run",
                     re.compile(r"finished")),
    "ExchangePanel": ("exchange", "", "Connect", re.compile(r"connected\.")),
    "FramingPanel": ("framing", "", "Start server", re.compile(r"server listening on")),
    "NaglePanel": ("framing", "rounds=2, size=10", "Run", re.compile(r"^two writes, Nagle on: ")),
    "ManyClientsPanel": ("manyclients", "clients=2, style='threads', service_ms=1", "Run",
                         re.compile(r"finished: 1 style")),
    "ErrorExplorer": ("errorlab", "", "Run", re.compile(r"after [\d.]+ ms")),
    "HTTPPanel": ("http", "", "Send request", re.compile(r"last answer: 200 OK")),
    "TLSPanel": ("tls", "", "Start TLS server", re.compile(r"TLS server listening on")),
    "PingPanel": ("icmp", "host='127.0.0.1', count=1", "Ping",
                  re.compile(r"127\.0\.0\.1: 1 of 1 replies|CAP_NET_RAW")),
}

# The panels with a progress bar, and its value once the press's run is done.
PROGRESS = {"NaglePanel": "2", "ManyClientsPanel": "2"}

# Roles a learner operates or moves between, each of which must carry a name.
CONTROL_ROLES = ("button", "checkbox", "combobox", "listbox", "textbox", "spinbutton", "slider",
                 "switch", "radio", "tab", "progressbar", "searchbox")
NAME = re.compile(r"[A-Za-z]{2,}")  # as tests/test_accessibility.py: '(s)' names nothing
# Views that are deliberately not live regions (base.py: read aloud on every redraw, they would
# drown the answer): tables, diagrams, gauges, the kernel state, logs, wire bytes, code.
NOT_LIVE = ("socklab-progressbar", "socklab-state", "socklab-code", "socklab-steps", "socklab-diagram", "socklab-gauge", "socklab-plot", "socklab-results",
            "socklab-log", "socklab-wire", "socklab-records", "socklab-nagle-table", "socklab-held",
            "socklab-privilege")


# socklab's text: its styled boxes, and the HTML views' own lines (status, alert) that inherit
# JupyterLab's colours
SOCKLAB_TEXT = ".socklab-box, .widget-html-content"


def write_notebook(lab, name: str) -> str:
    """A one-cell notebook that shows ``name``'s panel in the lab's root; its path there."""
    module, args, _, _ = PANELS[name]
    source = f"from socklab.widgets.{module} import {name}\np = {name}({args})\np"
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"}, "language_info": {"name": "python"}},
          "cells": [{"cell_type": "code", "id": "panel", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": source}]}
    path = f"{TEST_DIR_IN_LAB}/a11y_{name}.ipynb"
    (lab.server.root / path).write_text(json.dumps(nb))
    return path


# '- checkbox "TCP_NODELAY" [checked]', '- spinbutton "rounds": "2"', and YAML-quoted when the name
# holds a colon: '- \'button "Server step 1/6: socket()"\''; a control without a name: '- checkbox'.
_SNAPSHOT_LINE = re.compile(r'^\s*- \'?(?P<role>[a-z]+)(?: "(?P<name>(?:[^"\\]|\\.)*)")?')


def controls(panel) -> list:
    """(role, accessible name) of every control in the panel, from its accessibility snapshot."""
    found = []
    for line in panel.aria_snapshot().splitlines():
        m = _SNAPSHOT_LINE.match(line)
        if m and m.group("role") in CONTROL_ROLES:
            found.append((m.group("role"), m.group("name") or ""))
    return found


def chromium_controls(page, panel) -> list:
    """(role, accessible name) of every control in the panel, from Chromium's accessibility tree
    (DevTools protocol), not from Playwright's own calculation."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Accessibility.enable")
        marker = "data-socklab-ax-root"
        panel.evaluate(f"p => p.setAttribute('{marker}', '')")
        root = cdp.send("Runtime.evaluate", {"expression": f"document.querySelector('[{marker}]')"})
        found = []
        for role in CONTROL_ROLES:
            nodes = cdp.send("Accessibility.queryAXTree", {"objectId": root["result"]["objectId"],
                                                           "role": role})["nodes"]
            found += [(role, n.get("name", {}).get("value", "")) for n in nodes if not n.get("ignored")]
        panel.evaluate(f"p => p.removeAttribute('{marker}')")
        return found
    finally:
        cdp.detach()


# For each output view of the panel (an ipywidgets HTML widget): its CSS classes, its text, and
# whether that text sits inside an ARIA live region.
_VIEWS_JS = """
(panel) => [...panel.querySelectorAll('.widget-html')].map(v => ({
  classes: [...v.classList].filter(c => c.startsWith('socklab-')).join(' ') || '(no socklab class)',
  text: v.innerText.trim(),
  live: !!v.querySelector('[aria-live]') || !!v.closest('[aria-live]'),
}))
"""

# The text of the focused element if it is a button inside ``panel``, '' for another element in
# it, null once focus has left the panel.
_FOCUSED_JS = """
(panel) => { const e = document.activeElement;
  if (!e || !panel.contains(e)) return null;
  return e.tagName === 'BUTTON' ? e.textContent.trim() : ''; }
"""


@pytest.mark.parametrize("name", list(PANELS))
def test_panel_is_named_keyboard_operable_live_and_readable(lab, name):
    open_and_run(lab, write_notebook(lab, name))
    page = lab.page
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .socklab-panel, "
                         ".jp-NotebookPanel:not(.lm-mod-hidden) .socklab-step-panel").first
    expect(panel).to_be_visible()
    top(panel)
    _, _, main, answer = PANELS[name]

    # (a) every control has a role and a name that says what it is
    found = controls(panel)
    assert found, "no controls found in the panel"
    nameless = [(role, label) for role, label in found if not NAME.search(label)]
    assert not nameless, f"{name}: controls without an accessible name: {nameless} (all: {found})"
    # ... and the same names in Chromium's own accessibility tree, what a screen reader is given
    chromium = chromium_controls(page, panel)
    assert sorted(chromium) == sorted(found), f"{name}: Chromium's tree {chromium} != snapshot {found}"

    # (b) Tab from the first control reaches every enabled button; Enter presses the main one
    buttons = [b.strip() for b in panel.locator("button:enabled").all_inner_texts()]
    main_re = main if isinstance(main, re.Pattern) else re.compile(f"^{re.escape(main)}$")
    before = {v["classes"]: v["text"] for v in panel.evaluate(_VIEWS_JS)}
    panel.locator("input, select, textarea, button").first.focus()
    reached, pressed = [], False
    for _ in range(40):
        focused = panel.evaluate(_FOCUSED_JS)
        if focused is None:
            break
        if focused:
            reached.append(focused)
        if focused and not pressed and main_re.search(focused):
            page.keyboard.press("Enter")
            pressed = True
        page.keyboard.press("Tab")
    assert pressed, f"{name}: Tab never reached the main button {main!r}; reached {reached}"
    missing = [b for b in buttons if b not in reached]
    assert not missing, f"{name}: buttons Tab does not reach: {missing} (reached {reached})"

    # (c) the answer comes in a live region; every view the press changed is live (or a table,
    # diagram, log ... that is not meant to be read aloud)
    expect(panel.get_by_role("status").filter(has_text=answer).first).to_be_visible(
        timeout=ANSWER_TIMEOUT)
    after = panel.evaluate(_VIEWS_JS)
    silent = [v["classes"] + ": " + v["text"][:60] for v in after
              if v["text"] and v["text"] != before.get(v["classes"]) and not v["live"]
              and not any(c in v["classes"].split() for c in NOT_LIVE)]
    assert not silent, f"{name}: views changed by the press that no screen reader announces: {silent}"
    if name in PROGRESS:  # the bar's twin: a progressbar with the run's last value
        bar = panel.get_by_role("progressbar")
        expect(bar).to_have_count(1)
        expect(bar).to_have_attribute("aria-valuenow", PROGRESS[name])
        expect(bar).to_have_attribute("aria-valuemax", PROGRESS[name])

    # (e) the views' tab bar, where the panel has one (Panel._tabs): Tab from the last button
    # reaches it, the arrow keys move between the tabs and Enter shows one
    tabs = panel.get_by_role("tab")
    if tabs.count() > 1:
        first, second = (tabs.nth(i).inner_text().strip() for i in (0, 1))
        panel.locator("button:enabled").last.focus()
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.getAttribute('role')") == "tab":
                break
        focused = page.evaluate("() => document.activeElement.textContent.trim()")
        assert focused == first, f"{name}: Tab after the buttons reached {focused!r}, not the tab bar"
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        expect(panel.get_by_role("tab", name=second, exact=True)).to_have_attribute(
            "aria-selected", "true")
        panel.get_by_role("tab", name=first, exact=True).click()

    # (d) contrast AA, light theme then dark
    n, low = low_contrast(panel, SOCKLAB_TEXT)
    assert n >= 2 and not low, (name, "light", n, low)
    use_theme(page, "JupyterLab Dark", light=False)
    try:
        n_dark, low = low_contrast(panel, SOCKLAB_TEXT)
        assert not low, (name, "dark", low)
        assert n_dark == n, (name, "the dark theme measured other elements", n, n_dark)
    finally:
        use_theme(page, "JupyterLab Light", light=True)
