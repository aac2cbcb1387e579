"""Every lesson notebook run whole in a real JupyterLab (headless Chromium), and the panels that no
other browser test clicks, clicked once each.

For each notebooks/NN-*.ipynb: Clear Outputs, Run All Cells (from the menus, as a learner does),
wait until the kernel is idle and no cell is queued, then check in the page that

(a) no cell shows a traceback or stderr, except the cells whose committed output is an error, and
    those show that error;
(b) every widget output is a rendered view: as many views as the notebook, saved from the page
    after the run, has application/vnd.jupyter.widget-view+json outputs (and as many as the
    committed notebook), none reading "Error displaying widget" or stuck at "Loading widget...";
(c) the page raised no JavaScript exception and logged no console error.

Then, where the notebook shows a panel that no other browser test drives (03 BindExplorer,
06 FramingPanel and NaglePanel, 09 ManyClientsPanel, 10 ErrorExplorer, 11 HTTPPanel, 12 TLSPanel,
13 PingPanel), a learner uses it once: picks or types a setting, clicks its main button, and the
answer must show up in the page.

Run All Cells must run every cell: JupyterLab stops at an error unless the cell is tagged
'raises-exception' (test_notebook_hygiene.py checks that every cell meant to raise has the tag).
"""
from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

from live_expect import expect
from test_jupyterlab import area, choose, click, show_tab, top, type_into

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT = 180_000   # ms for all cells of one notebook (a whole test took 6-10 s here; CI is loaded)
RENDER_TIMEOUT = 30_000  # ms for widget views to replace their "Loading widget..." placeholder
PANEL_TIMEOUT = 30_000   # ms for a panel's run in a background thread (many clients, ping)

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
KERNEL_STATUS = '#jp-main-statusbar .jp-StatusBar-TextItem[title^="Change kernel"]'

# True once the kernel is idle, no cell waits in the queue ('[*]') and the code cell at index
# ``first`` (one this run must execute) shows an execution count: the last condition keeps a wait
# that starts before JupyterLab has queued the cells from returning at once.
_SETTLED_JS = """
(first) => {
  const kernel = document.querySelector('%s');
  if (!kernel || !/\\| Idle$/.test(kernel.textContent)) return false;
  const panel = document.querySelector('%s');
  const indicator = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!indicator || indicator.dataset.status !== 'idle') return false;
  const prompts = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(
    c => c.querySelector('.jp-InputArea-prompt')?.textContent || '');
  return /\\d/.test(prompts[first] || '') && !prompts.some(p => p.includes('*'));
}
""" % (KERNEL_STATUS.replace("'", "\\'"), PANEL)

# What the page shows for each code cell, in notebook order. A cell's own outputs are the
# children of its output area; outputs nested deeper belong to Output widgets inside a panel (its
# event log). JupyterLab renders both error outputs and stderr streams with the stderr mime type.
# Every renderer of these notebooks but the widget one (a lumino Panel holding the view) puts a
# data-mime-type on its node: an output without one is a widget output.
_CELLS_JS = """
(panel) => [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => {
  const own = [...cell.querySelectorAll(
    '.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
  return {
    prompt: cell.querySelector('.jp-InputArea-prompt')?.textContent || '',
    empty: (cell.querySelector('.cm-content')?.textContent || '').trim() === '',
    stderr: [...cell.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(o => o.innerText),
    widgets: own.filter(o => !o.dataset.mimeType).map(o => ({
      rendered: !!o.querySelector(':scope > .jupyter-widgets'),
      text: o.innerText.slice(0, 300)})),
  };
})
"""

# No widget output still shows the renderer's placeholder (its text until the view is made).
_WIDGETS_SETTLED_JS = """
() => [...document.querySelectorAll(
  '%s .jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output:not([data-mime-type])')]
  .every(o => !o.textContent.startsWith('Loading widget'))
""" % PANEL


# ---------------------------------------------------------------- the committed notebooks

def code_cells(nb: dict) -> list:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def widget_outputs(cell: dict) -> int:
    return sum(WIDGET_MIME in o.get("data", {}) for o in cell.get("outputs", []))


def meant_to_raise(nb: dict) -> dict:
    """{code cell index: exception name} for the cells whose committed output is an error."""
    return {i: o["ename"] for i, c in enumerate(code_cells(nb))
            for o in c.get("outputs", []) if o["output_type"] == "error"}


# ---------------------------------------------------------------- running a notebook in the page

def wait_for(lab, js: str, arg, timeout: int, what: str):
    """Wait until ``js(arg)`` is true in the page; else fail saying ``what`` did not happen, with the
    stderr shown in the page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # importable once conftest ran
    try:
        lab.page.wait_for_function(js, arg=arg, timeout=timeout, polling=250)
    except PlaywrightTimeout as exc:
        raise AssertionError(f"{what} within {timeout / 1000:g} s; stderr on the page: "
                             f"{lab.errors()}") from exc


def wait_settled(lab, first: int):
    wait_for(lab, _SETTLED_JS, first, RUN_TIMEOUT, "the cells did not finish")


def page_cells(lab) -> list:
    return lab.page.locator(PANEL).evaluate(_CELLS_JS)


def unrun(cells: list) -> list:
    return [i for i, c in enumerate(cells) if not c["empty"] and not re.search(r"\d", c["prompt"])]


def run_every_cell(lab) -> None:
    """Clear the outputs and Run All Cells from the menus; every cell must run."""
    page = lab.page
    lab.menu("Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{PANEL} .jp-InputArea-prompt')]"
        ".every(p => !/\\d/.test(p.textContent))")
    first = unrun(page_cells(lab))[0]  # before the run: fast cells may be done before we look
    lab.menu("Run", "Run All Cells")
    wait_settled(lab, first)
    todo = unrun(page_cells(lab))
    assert not todo, (f"Run All Cells stopped before code cell {todo[0]}: a cell above it raised "
                      f"(untagged?); stderr on the page: {lab.errors()}")


def saved_notebook(lab, path: str) -> dict:
    """Save the notebook from JupyterLab (File menu) and read back what it wrote: the outputs as
    the page's notebook model holds them after the run."""
    tab = lab.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    dirty = re.compile(r"\bjp-mod-dirty\b")
    expect(tab).to_have_class(dirty)   # the run changed it: once clean again, the save is done
    lab.menu("File", "Save Notebook")
    expect(tab).not_to_have_class(dirty)
    model = lab.server.api("GET", f"/api/contents/{urllib.parse.quote(path)}?content=1")
    return model["content"]


def js_errors(lab) -> list:
    """Uncaught exceptions and console errors of the page so far. None is filtered out: none
    occurred in the runs this test was written from."""
    return lab.pageerrors + lab.console


# ---------------------------------------------------------------- the test

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_whole_in_jupyterlab(lab, path):
    """Run All Cells, then (a) errors only where meant, (b) every widget rendered, (c) no JS error;
    then a learner's click on the notebook's panel where no other browser test drives it."""
    lab.pageerrors = []
    lab.page.on("pageerror", lambda exc: lab.pageerrors.append(f"pageerror: {exc}"))
    committed = json.loads(path.read_text())
    raisers = meant_to_raise(committed)
    lab.open(path.name)
    run_every_cell(lab)
    wait_for(lab, _WIDGETS_SETTLED_JS, None, RENDER_TIMEOUT, "a widget output still says 'Loading widget...'")
    cells = page_cells(lab)
    assert len(cells) == len(code_cells(committed)), "the page and the .ipynb differ in code cells"

    # (a) errors only where the notebook means one, and there the error it means
    unexpected = {i: c["stderr"] for i, c in enumerate(cells) if c["stderr"] and i not in raisers}
    assert not unexpected, f"cells show errors or stderr: {unexpected}"
    for i, ename in raisers.items():
        assert any(ename in text for text in cells[i]["stderr"]), \
            f"cell {i} is meant to raise {ename}; the page shows {cells[i]['stderr']}"

    # (b) every widget output rendered, as many as the notebook model holds
    saved = code_cells(saved_notebook(lab, path.name))
    assert len(saved) == len(cells), "the saved notebook and the page differ in code cells"
    for i, (cell, saved_cell, committed_cell) in enumerate(zip(cells, saved, code_cells(committed))):
        views = cell["widgets"]
        assert len(views) == widget_outputs(saved_cell) == widget_outputs(committed_cell), (
            f"cell {i}: {len(views)} widget outputs in the page, {widget_outputs(saved_cell)} in the "
            f"saved notebook, {widget_outputs(committed_cell)} committed: {views}")
        assert all(v["rendered"] for v in views), f"cell {i}: a widget did not render: {views}"
    assert lab.page.get_by_text(re.compile("Error displaying widget|Loading widget")).count() == 0

    # (c) no JavaScript errors
    assert not js_errors(lab), js_errors(lab)

    learner = LEARNERS.get(path.name[:2])
    if learner is not None:
        learner(lab.page)
        assert not js_errors(lab), js_errors(lab)


# ---------------------------------------------------------------- a learner at each panel

def panel_with(page, css: str):
    """The first socklab panel holding an element that matches ``css``, scrolled into view."""
    panel = page.locator(".socklab-panel", has=page.locator(css)).first
    expect(panel).to_be_visible()
    top(panel)
    return panel


def bind_explorer_collides(page):
    """03: keep a socket bound on a port the OS picks, then try that same port: in use."""
    panel = panel_with(page, "button.socklab-try-bind")
    result, held = area(panel, "result"), area(panel, "held")
    type_into(panel, "host", "127.0.0.1")   # the notebook's last try left '::1' in the box
    type_into(panel, "port", 0)
    panel.get_by_role("checkbox", name="keep it bound", exact=True).check()
    click(panel, "socklab-try-bind")
    expect(result).to_contain_text(re.compile(r"worked: bound to \('127\.0\.0\.1', \d+\) and kept"))
    port = re.search(r"bound to \('127\.0\.0\.1', (\d+)\)", result.inner_text()).group(1)
    expect(held).to_contain_text(f"('127.0.0.1', {port})")
    type_into(panel, "port", port)
    click(panel, "socklab-try-bind")
    expect(result).to_contain_text("Address already in use")
    expect(result).to_contain_text(f"bind(('127.0.0.1', {port}))")
    expect(area(panel, "log")).to_contain_text(f"bind(('127.0.0.1', {port}))  !! OSError: [Errno 98]")
    click(panel, "socklab-release")
    expect(held).to_contain_text("no sockets kept")


def framing_and_nagle(page):
    """06: two length-prefixed messages in one sendall() come out as two messages; then the Nagle
    panel times a setting the notebook did not, which joins its table."""
    panel = panel_with(page, ".socklab-framing-result")
    choose(panel, "framing", "length prefix '!I'")
    choose(panel, "client", "all messages in one sendall()")
    type_into(panel, "messages", "hi, there")
    click(panel, "socklab-send")                    # starts the server the notebook stopped
    expect(area(panel, "status")).to_contain_text("server listening on")
    result = area(panel, "framing-result")
    # the server reads late (the default): one recv() gets all bytes, the decoder splits them
    expect(result.locator("ol").first.locator("li")).to_have_text(
        [r"b'\x00\x00\x00\x02hi\x00\x00\x00\x05there'"])
    expect(result.locator("ol").nth(1).locator("li")).to_have_text(["b'hi'", "b'there'"])
    expect(area(panel, "log")).to_contain_text("message b'there'")
    expect(area(panel, "alert")).to_have_text("")

    nagle = panel_with(page, "button.socklab-compare")
    type_into(nagle, "rounds", 3)
    nagle.get_by_role("checkbox", name="header and body in two writes", exact=True).uncheck()
    nagle.get_by_role("checkbox", name="TCP_NODELAY", exact=True).check()
    click(nagle, "socklab-run")
    expect(area(nagle, "nagle-table")).to_contain_text("one write, TCP_NODELAY")
    # fast or slow is a timing: the words are checked by nbval on the notebook's own run
    expect(area(nagle, "nagle-verdict")).to_contain_text(re.compile(r"one write, TCP_NODELAY: (fast|slow)"))
    expect(area(nagle, "alert")).to_have_text("")


def many_clients_threads(page):
    """09: Clear, then 8 clients against the thread-per-client server."""
    panel = panel_with(page, "button.socklab-clear")
    status, table = area(panel, "status"), area(panel, "results")
    click(panel, "socklab-clear")
    expect(status).to_contain_text("ready")
    expect(table).to_have_text("")
    choose(panel, "style", "threads")
    type_into(panel, "clients", 8)
    click(panel, "socklab-run")                     # returns at once: the run is a background thread
    expect(status).to_contain_text("finished: 1 style(s), 8 clients each", timeout=PANEL_TIMEOUT)
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tbody tr")).to_contain_text(re.compile(r"threads\s*8\s*8/8"))
    expect(area(panel, "alert")).to_have_text("")


def error_explorer_would_block(page):
    """10: a scenario the notebook did not run: recv() on a non-blocking socket with nothing to read."""
    panel = panel_with(page, "button.socklab-run")
    choose(panel, "scenario", "recv() non-blocking, no data -> BlockingIOError")
    click(panel, "socklab-run")
    expect(area(panel, "status")).to_contain_text(
        re.compile(r"BlockingIOError \(errno 11, EAGAIN\) after [\d.]+ ms; every socket is closed again"))
    expect(area(panel, "alert")).to_contain_text("Error: Would block")
    expect(area(panel, "log")).to_contain_text("recv(100)")


def http_post_echo(page):
    """11: POST a body to /echo (the notebook stopped the server: Send request starts one)."""
    panel = panel_with(page, "button.socklab-send-request")
    choose(panel, "method", "POST")
    type_into(panel, "path", "/echo")
    type_into(panel, "body", "hi from the browser")
    click(panel, "socklab-send-request")
    expect(area(panel, "status")).to_contain_text("last answer: 200 OK, 19 bytes of body")
    expect(area(panel, "log")).to_contain_text(re.compile(r"client\d*\s+sendall\(b'POST /echo HTTP/1\.1"))
    show_tab(panel, "bytes on the wire")
    wire = area(panel, "wire")
    expect(wire).to_be_visible()
    expect(wire).to_contain_text("POST /echo HTTP/1.1")
    expect(wire).to_contain_text("HTTP/1.1 200 OK")
    expect(wire).to_contain_text("hi from the browser")
    expect(area(panel, "alert")).to_have_text("")


def tls_wrong_name_then_echo(page):
    """12: Connect expecting example.org (refused, explained), then localhost: Send echoes."""
    panel = panel_with(page, "button.socklab-start-tls-server")
    status, alert = area(panel, "status"), area(panel, "alert")
    choose(panel, "server_hostname", "example.org")
    click(panel, "socklab-connect")
    expect(alert).to_contain_text("The certificate is not valid for that host name")
    choose(panel, "server_hostname", "localhost")
    type_into(panel, "message", "hi over TLS")
    click(panel, "socklab-send")                    # connects first: no client since the failure
    expect(alert).to_have_text("")
    expect(status).to_contain_text("connected: TLSv1.3")
    expect(status).to_contain_text("echo b'hi over TLS'")
    show_tab(panel, "TLS records")
    expect(area(panel, "records")).to_contain_text("application_data")


def ping_loopback(page):
    """13: four echo requests to 127.0.0.1; without CAP_NET_RAW the panel explains instead."""
    panel = panel_with(page, "button.socklab-ping")
    choose(panel, "host", "127.0.0.1")
    type_into(panel, "count", 4)
    allowed = "raw sockets: allowed" in area(panel, "privilege").inner_text()
    click(panel, "socklab-ping")
    if allowed:
        expect(area(panel, "status")).to_contain_text("127.0.0.1: 4 of 4 replies", timeout=PANEL_TIMEOUT)
        expect(area(panel, "alert")).to_have_text("")
    else:
        expect(area(panel, "alert")).to_contain_text("CAP_NET_RAW")


LEARNERS = {"03": bind_explorer_collides, "06": framing_and_nagle, "09": many_clients_threads,
            "10": error_explorer_would_block, "11": http_post_echo, "12": tls_wrong_name_then_echo,
            "13": ping_loopback}
