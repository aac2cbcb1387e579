"""The panel as a keyboard and screen-reader user meets it, in a real JupyterLab (headless Chromium).

Every control of the LabPanel is found by its role and accessible name (what a screen reader
announces), the buttons are reached with Tab and pressed with the keyboard, the status line is a
live region, and the text of socklab's views reaches WCAG AA contrast on what the browser really
draws behind it, in JupyterLab's light theme and after switching to its dark theme.
"""
from __future__ import annotations

import re

from live_expect import expect
from test_jupyterlab import TEST_DIR_IN_LAB, lab_panel, open_and_run

AA = 4.5
BUTTONS = ("Start server", "Connect", "Send", "Close client", "Stop server")


# For each element inside one that matches ``selector`` (by default a .socklab-box; SVG images
# aside: their colours are checked in tests/test_accessibility.py) that has text of its own: its
# computed colour, blended over the backgrounds the browser paints behind it, and the contrast
# ratio of the two.
_CONTRAST_JS = """
(root, selector) => {
  const rgba = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3]));
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255];
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  const out = [];
  for (const box of root.querySelectorAll(selector)) {
    if (!box.offsetParent) continue;  // on a hidden tab
    for (const el of [box, ...box.querySelectorAll('*')]) {
      if (el.closest('svg') || el.closest('.socklab-sr')) continue;
      const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
      if (!own) continue;
      const bg = background(el);
      const fg = over(rgba(getComputedStyle(el).color), bg);
      out.push({text: own.slice(0, 40), ratio: ratio(fg, bg), fg: fg.map(Math.round), bg: bg.map(Math.round)});
    }
  }
  return out;
}
"""


def low_contrast(panel, selector: str = ".socklab-box") -> tuple:
    """(how many text elements inside ``selector`` were measured, those below AA)."""
    found = panel.evaluate(_CONTRAST_JS, selector)
    return len(found), [f for f in found if f["ratio"] < AA]


def use_theme(page, name: str, light: bool):
    """Switch JupyterLab's theme from the command palette, as a keyboard user would."""
    page.keyboard.press("Control+Shift+C")
    box = page.locator(".lm-CommandPalette-input")
    expect(box).to_be_focused()
    box.fill(name)
    page.locator(".lm-CommandPalette-item", has_text=re.compile(f"^Use Theme: {re.escape(name)}$")).first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true" if light else "false")


def test_panel_controls_are_named_reached_by_tab_and_readable_in_both_themes(lab):
    open_and_run(lab, f"{TEST_DIR_IN_LAB}/panel.ipynb")
    page = lab.page
    panel = lab_panel(page)

    # every control, found as a screen reader finds it: by role and accessible name
    for role, name in (("combobox", "family"), ("combobox", "type"), ("textbox", "host"),
                       ("spinbutton", "port"), ("spinbutton", "backlog"), ("textbox", "message"),
                       ("checkbox", "allow all interfaces"),
                       *(("button", b) for b in BUTTONS),
                       *(("tab", t) for t in ("events (live)", "sequence", "kernel state", "plain Python"))):
        expect(panel.get_by_role(role, name=name, exact=True)).to_have_count(1)

    # keyboard only: Tab from the first control reaches every button, in order, and Enter presses it
    panel.get_by_role("combobox", name="family", exact=True).focus()
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.tagName === 'BUTTON' ? "
                                "document.activeElement.textContent.trim() : null")
        if focused in BUTTONS:
            reached.append(focused)
        if focused == BUTTONS[0]:
            page.keyboard.press("Enter")               # Start server, from the keyboard
        if focused == BUTTONS[-1]:
            break
    assert reached == list(BUTTONS), reached
    # ... and on from the last button to the views' tab bar: arrow keys move between the tabs, Enter
    # shows one (the event log, diagram, kernel state and code are behind them)
    tabs = ("events (live)", "sequence", "kernel state", "plain Python")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.getAttribute('role')") == "tab":
            break
    focused_tab = page.evaluate("() => document.activeElement.textContent.trim()")
    assert focused_tab == tabs[0], f"Tab after the buttons reached {focused_tab!r}, not the tab bar"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(panel.get_by_role("tab", name=tabs[1], exact=True)).to_have_attribute("aria-selected", "true")
    panel.get_by_role("tab", name=tabs[0], exact=True).click()
    status = panel.locator(".socklab-status").get_by_role("status")  # the status line: a live region
    expect(status).to_contain_text("server listening on")
    panel.get_by_role("button", name="Connect", exact=True).press("Enter")
    expect(status).to_contain_text("client connected")

    # contrast of what the browser draws, light theme then dark: kernel state, code, an explanation
    def check_views():
        for tab in ("kernel state", "plain Python"):
            panel.get_by_role("tab", name=tab, exact=True).click()
            n, low = low_contrast(panel)
            assert n >= 2 and not low, (tab, low)

    check_views()
    panel.get_by_role("button", name="Stop server", exact=True).press("Enter")
    panel.get_by_role("button", name="Connect", exact=True).press("Enter")  # nothing listens: explained
    alert = panel.locator(".socklab-alert").get_by_role("status")
    expect(alert).to_contain_text("Error: ")
    # the transcript as a notebook output (each side's colour, the refused connect marked '!!')
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    cells = notebook.locator(".jp-CodeCell")
    new = cells.nth(cells.count())
    cells.last.locator(".cm-content").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")                           # a new cell below, from the keyboard
    page.keyboard.press("Enter")
    page.keyboard.insert_text("p.transcript()")
    page.keyboard.press("Shift+Enter")
    expect(new.locator(".jp-OutputArea-output")).to_contain_text("!! ConnectionRefusedError")
    n, low = low_contrast(notebook)
    assert n > 20 and not low, low

    use_theme(page, "JupyterLab Dark", light=False)
    panel.get_by_role("button", name="Start server", exact=True).press("Enter")
    expect(status).to_contain_text("server listening on")
    panel.get_by_role("button", name="Connect", exact=True).press("Enter")
    check_views()
    panel.get_by_role("button", name="Stop server", exact=True).press("Enter")
    panel.get_by_role("button", name="Connect", exact=True).press("Enter")
    expect(alert).to_contain_text("Error: ")
    n, low = low_contrast(notebook)                    # the panel's views and the transcript
    assert n > 20 and not low, low
    lab.screenshot()
    use_theme(page, "JupyterLab Light", light=True)
