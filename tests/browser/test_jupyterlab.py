"""A learner's clicks in a real JupyterLab (headless Chromium), checked in the page.

Each test opens a notebook in JupyterLab, clears it and runs all cells from the menus, waits for
the kernel's idle signal, picks options in the widgets, clicks the panel's buttons, and asserts
that the live output (status, event log, sequence diagram, kernel-state view) shows up in the page.
The server side of each exchange is written by socklab's background threads, so a passing test
shows thread-driven widget updates reaching the browser. A screenshot of every test's page is
saved to tests/artifacts/ (see conftest.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from live_expect import expect

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "panel.png"
TEST_DIR_IN_LAB = "_browser_tests"  # where conftest.py copies tests/browser/notebooks/


# ---------------------------------------------------------------- driving an ipywidgets panel

def control(panel, label: str):
    """The ipywidgets control whose description is ``label`` (e.g. 'family', 'backlog')."""
    return panel.locator(".widget-inline-hbox", has=panel.page.locator(
        "label.widget-label", has_text=re.compile(f"^{re.escape(label)}$"))).first


def choose(panel, label: str, value: str):
    control(panel, label).locator("select").select_option(value)


def type_into(panel, label: str, value):
    box = control(panel, label).locator("input").first
    box.fill(str(value))
    box.press("Tab")  # the change event: ipywidgets syncs number boxes on change


def click(panel, css_class: str):
    button = panel.locator(f"button.{css_class}")
    expect(button).to_be_enabled()
    button.click()


def area(panel, name: str):
    """One of the panel's output widgets: status, alert, log, diagram, state, code (its CSS class
    socklab-<name> is on the widget's own node; the diagram's SVG inside carries it too)."""
    return panel.locator(f".jupyter-widgets.socklab-{name}")


def show_tab(panel, title: str):
    panel.locator(".lm-TabBar-tab", has_text=title).click()


def log_line(side: str, call: str, after: str | None = None) -> re.Pattern:
    """A line of a panel's event log, e.g. log_line('server/conn', "recv(65536)  -> b'hi'").

    Sides are numbered when a panel's trace already has a run (a notebook's own demo): 'client'
    matches client, client2, ...; 'server/conn' matches server/conn1, server/conn2, ...
    With ``after``, the line must come somewhere after that text (e.g. this run's listen(3))."""
    side_re = re.escape(side) + (r"\d+" if side.endswith("/conn") else r"\d*" if side == "client" else "")
    line = r"\b" + side_re + r"\s+" + r"\s+".join(re.escape(w) for w in call.split())
    return re.compile((re.escape(after) + r"[\s\S]*" if after else "") + line)


def drive_lab_panel(panel, *, message: str, family: str = "AF_INET", type: str = "SOCK_STREAM",
                    backlog: int = 3):
    """Pick family/type/backlog/message, click Start server, Connect, Send; check what each click shows.

    The server's half of every exchange (accept, recv, sendall / recvfrom, sendto) is logged by the
    server's own threads: seeing it in the page proves thread-driven updates reach the browser."""
    host = {"AF_INET": "127.0.0.1", "AF_INET6": "::1", "AF_UNIX": "<rundir>/"}[family]
    stream = type == "SOCK_STREAM"
    choose(panel, "family", family)
    choose(panel, "type", type)
    type_into(panel, "backlog", backlog)
    type_into(panel, "message", message)
    status, log, alert = (area(panel, n) for n in ("status", "log", "alert"))

    click(panel, "socklab-start-server")
    expect(status).to_contain_text("server listening on" if stream else "server bound to")
    expect(log).to_contain_text(log_line("server", f"socket({family}, {type})"))
    expect(log).to_contain_text(log_line("server", f"bind(('{host}', 0))" if family != "AF_UNIX"
                                         else f"bind('{host}"))
    if stream:
        expect(log).to_contain_text(log_line("server", f"listen({backlog})"))
    expect(alert).to_have_text("")

    click(panel, "socklab-connect")
    expect(status).to_contain_text("client connected" if stream else "client socket ready")
    if stream:
        expect(log).to_contain_text(log_line("client", "connect(" + ("'" if family == "AF_UNIX" else "('")
                                             + host, after=f"listen({backlog})"))
        expect(log).to_contain_text(log_line("server", "accept()  -> (<server/conn",
                                             after=f"listen({backlog})"))

    click(panel, "socklab-send")
    echoed = repr(message.encode())
    expect(status).to_contain_text(f"sent {echoed}, reply {echoed}")
    if stream:
        expect(log).to_contain_text(log_line("client", f"sendall({echoed})"))
        expect(log).to_contain_text(log_line("server/conn", f"recv(65536)  -> {echoed}"))
        expect(log).to_contain_text(log_line("server/conn", f"sendall({echoed})"))
        expect(log).to_contain_text(log_line("client", f"recv(65536)  -> {echoed}"))
    else:
        expect(log).to_contain_text(log_line("client", f"sendto({echoed},"))
        expect(log).to_contain_text(log_line("server", f"recvfrom(65536)  -> ({echoed},"))
        expect(log).to_contain_text(log_line("server", f"sendto({echoed},"))
        expect(log).to_contain_text(log_line("client", f"recvfrom(65536)  -> ({echoed},"))
    expect(alert).to_have_text("")


def check_views(panel, *, stream: bool = True, backlog: int | None = None):
    """The sequence-diagram and kernel-state tabs show this run (then back to the live events)."""
    show_tab(panel, "sequence")
    diagram = area(panel, "diagram")
    expect(diagram).to_be_visible()
    expect(diagram).to_contain_text(re.compile("sequence diagram: client.*, server"
                                               + ("/conn" if stream else "")))
    show_tab(panel, "kernel state")
    state = area(panel, "state")
    expect(state).to_be_visible()
    if stream:
        expect(state).to_contain_text("LISTEN")
        expect(state).to_contain_text(re.compile("ESTABLISHED|CONNECTED"))
    else:
        expect(state).to_contain_text("UNCONN")
    if backlog is not None:
        expect(state).to_contain_text(f"backlog {backlog}")
    show_tab(panel, "events (live)")


def top(locator):
    """Scroll the notebook so this element starts at the top of the view (for the screenshot)."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")


def lesson(number: str) -> str:
    """The path (relative to the lab root) of notebooks/NN-*.ipynb, or skip: not written yet."""
    found = sorted(NOTEBOOKS.glob(f"{number}-*.ipynb"))
    if not found:
        pytest.skip(f"notebook {number} not written yet")
    return found[0].name


def open_and_run(lab, path: str):
    lab.open(path)
    lab.run_all()
    errors = lab.errors()
    assert not errors, f"{path}: cells raised in JupyterLab:\n" + "\n".join(errors)


def lab_panel(page):
    """The first LabPanel on the page (it has the Start server button)."""
    panel = page.locator(".socklab-panel", has=page.locator("button.socklab-start-server")).first
    expect(panel).to_be_visible()
    return panel


# ---------------------------------------------------------------- (a) the panel, clicked

def test_panel_ipv6_stream_then_udp(lab):
    """AF_INET6 + SOCK_STREAM with backlog 3, then SOCK_DGRAM: pick, Start server, Connect, Send."""
    open_and_run(lab, f"{TEST_DIR_IN_LAB}/panel.ipynb")
    panel = lab_panel(lab.page)
    drive_lab_panel(panel, message="hello from the browser", family="AF_INET6", backlog=3)
    check_views(panel, backlog=3)
    top(panel)
    lab.screenshot()
    # The README's picture: the page down to the panel's bottom edge.
    box = panel.bounding_box()
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    lab.page.screenshot(path=str(DOCS_SCREENSHOT), clip={
        "x": 0, "y": 0, "width": lab.page.viewport_size["width"], "height": box["y"] + box["height"] + 16})

    # Same panel, now UDP: Start server replaces the TCP server; the datagram path of every button.
    drive_lab_panel(panel, message="one datagram", family="AF_INET", type="SOCK_DGRAM")
    check_views(panel, stream=False)
    click(panel, "socklab-close-client")
    click(panel, "socklab-stop-server")
    expect(area(panel, "status")).to_contain_text("server stopped")
    expect(area(panel, "log")).to_contain_text(log_line("server", "close()"))


# ---------------------------------------------------------------- (b) an error, explained in the panel

def test_port_in_use_is_explained_in_the_panel(lab):
    open_and_run(lab, f"{TEST_DIR_IN_LAB}/port_in_use.ipynb")
    page = lab.page
    printed = page.locator(".jp-OutputArea-output", has_text="BLOCKED PORT").first
    expect(printed).to_be_visible()
    port = int(re.search(r"BLOCKED PORT (\d+)", printed.inner_text()).group(1))
    panel = lab_panel(page)
    type_into(panel, "port", port)
    click(panel, "socklab-start-server")
    alert = area(panel, "alert")
    expect(alert).to_contain_text("Address already in use")
    expect(alert).to_contain_text(str(port))
    expect(area(panel, "log")).to_contain_text("!! start server: Address already in use")
    expect(area(panel, "status")).to_contain_text("no server yet")
    top(panel)


# ---------------------------------------------------------------- (c) the lessons, as a learner runs them

def test_notebook_02_step_panel(lab):
    open_and_run(lab, lesson("02"))
    panel = lab.page.locator(".socklab-step-panel").first
    expect(panel).to_be_visible()
    drive_step_panel(panel)
    top(panel)


def drive_step_panel(panel):
    """Reset, pick SOCK_STREAM and backlog 2, then click the server's and the client's next-step
    buttons through a whole exchange. accept() and recv() wait in the panel's threads: their
    results (button labels, kernel state, log) reach the page from those threads."""
    server, client = panel.locator("button.socklab-server-step"), panel.locator("button.socklab-client-step")
    click(panel, "socklab-reset")
    choose(panel, "type", "SOCK_STREAM")
    type_into(panel, "backlog", 2)
    type_into(panel, "message", "step by step")
    echoed = repr(b"step by step")
    for n, step in enumerate(("socket", "bind", "listen"), 1):
        expect(server).to_have_text(f"Server step {n}/6: {step}()")
        server.click()
    state = area(panel, "state")
    expect(state).to_contain_text("LISTEN")
    expect(state).to_contain_text("backlog 2")
    expect(server).to_have_text("Server step 4/6: accept()")
    server.click()                                   # accept() now waits in a thread
    expect(server).to_have_text("Server: waiting in accept() ...")
    expect(server).to_be_disabled()
    expect(client).to_have_text("Client step 1/5: socket()")
    client.click()
    expect(client).to_have_text("Client step 2/5: connect()")
    client.click()                                   # the server's thread returns from accept()
    expect(server).to_have_text("Server step 5/6: exchange()")
    expect(state).to_contain_text("ESTABLISHED")
    server.click()                                   # recv() waits in a thread
    expect(server).to_have_text("Server: waiting in exchange() ...")
    client.click()                                   # send: the thread receives and echoes
    expect(server).to_have_text("Server step 6/6: close()")
    client.click()                                   # recv the echo
    expect(client).to_have_text("Client step 5/5: close()")
    show_tab(panel, "steps so far")
    expect(panel).to_contain_text(f"reply = {echoed}")
    show_tab(panel, "events (live)")
    log = area(panel, "log")
    expect(log).to_contain_text(log_line("server", "accept()  -> (<server/conn"))
    expect(log).to_contain_text(log_line("server/conn", f"recv(1024)  -> {echoed}"))
    expect(log).to_contain_text(log_line("server/conn", f"sendall({echoed})"))
    expect(area(panel, "alert")).to_have_text("")


def set_number(panel, name: str, value: str):
    """Type into a number box found as a screen reader finds it (role and accessible name)."""
    box = panel.get_by_role("spinbutton", name=name, exact=True)
    box.fill(value)
    box.press("Tab")  # the change event: ipywidgets syncs number boxes on change
    expect(box).to_have_value(value)


def test_notebook_04_backlog_panel(lab):
    open_and_run(lab, lesson("04"))
    page = lab.page
    panel = page.locator(".socklab-panel", has=page.locator("button.socklab-run-backlog")).first
    expect(panel).to_be_visible()
    set_number(panel, "backlog", "1")
    set_number(panel, "clients", "4")
    set_number(panel, "timeout (s)", "2")
    accepts = panel.get_by_role("checkbox", name="server accepts after", exact=True)
    accepts.uncheck()                                # the server never accept()s
    expect(panel.get_by_role("spinbutton", name="delay (s)", exact=True)).to_be_disabled()
    status = area(panel, "status")
    click(panel, "socklab-run-backlog")              # returns at once: the run is a background thread
    expect(status).to_contain_text("running")        # live, from the panel's thread
    expect(area(panel, "state")).to_contain_text("LISTEN")
    # Linux queues backlog + 1 connections; the other clients' SYNs are dropped: connect() times out
    expect(status).to_contain_text("finished: listen(1), 4 clients: 2 waited in the queue, 2 timed out.",
                                   timeout=30_000)
    expect(area(panel, "results")).to_contain_text("timed out")
    expect(area(panel, "alert")).to_have_text("")
    top(panel)


def test_notebook_05_exchange_panel(lab):
    open_and_run(lab, lesson("05"))
    page = lab.page
    panel = page.locator(".socklab-panel", has=page.locator("button.socklab-client-send")).first
    expect(panel).to_be_visible()
    status, log, alert = (area(panel, n) for n in ("status", "log", "alert"))
    click(panel, "socklab-connect")
    expect(status).to_contain_text("connected. Arrived, not yet read: at the server 0 bytes")
    type_into(panel, "message", "one")
    click(panel, "socklab-client-send")
    type_into(panel, "message", "two")
    click(panel, "socklab-client-send")            # two sends ...
    expect(status).to_contain_text("at the server 6 bytes")
    click(panel, "socklab-server-recv")            # ... one recv gets both: a stream has no messages
    expect(log).to_contain_text(log_line("server", "recv(1024)  -> b'onetwo'"))
    click(panel, "socklab-client-shutdown")
    click(panel, "socklab-server-recv")
    expect(log).to_contain_text(log_line("server", "recv(1024)  -> b''", after="b'onetwo'"))
    click(panel, "socklab-server-recv")             # a recv after the end returns b'' again, at once
    click(panel, "socklab-client-recv")             # nothing to read: times out, explained
    expect(alert).to_contain_text(re.compile("time", re.I))
    top(panel)
    lab.screenshot()
    click(panel, "socklab-close-both")
    expect(status).to_contain_text("not connected")



# ---------------------------------------------------------------- (c) editing and re-running a cell

def test_an_edited_cell_run_again_stops_its_old_server(lab):
    """JupyterLab sends each cell's id with its code: a cell edited (new lines, new source) and run
    again is still the same cell, so its last run's server stops and only the new one runs."""
    open_and_run(lab, f"{TEST_DIR_IN_LAB}/rerun_edit.ipynb")
    page = lab.page
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    expect(cells.nth(2).locator(".jp-OutputArea")).to_contain_text("running: [True]")
    editor = cells.nth(1).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("# edited: one more line above, so every line number moves\n")
    page.keyboard.press("Shift+Enter")               # run the edited cell; the next one is selected
    expect(cells.nth(1).locator(".jp-OutputArea")).to_contain_text("started 2")
    page.keyboard.press("Shift+Enter")               # run the check cell
    expect(cells.nth(2).locator(".jp-OutputArea")).to_contain_text("running: [False, True]")
    assert not lab.errors()
