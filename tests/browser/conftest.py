"""A real JupyterLab, driven by a real browser (Playwright's sync API and Debian's chromium).

Session fixtures:

* ``lab_server``: ``jupyter lab`` on 127.0.0.1, a free port and a random token, serving a temporary
  copy of ``notebooks/`` (plus this folder's test notebooks under ``_browser_tests/``), with a
  temporary config/data/runtime/settings/workspaces directory whose settings turn off what would
  cover the page or block clicks (the news toast, update checks) and cell windowing (so every cell
  is in the DOM). Ready when its log prints the URL it serves; stopped (kernels too) at the end.
* ``browser``: headless Debian chromium with a fresh profile (``launch_persistent_context``).

Per test, ``lab`` gives a ``Lab`` helper with its own page and its own JupyterLab workspace; at the
end of the test it saves a screenshot to ``tests/artifacts/<test>.png`` (pass or fail), closes the
page and shuts the test's kernels down.

The browser is Debian's ``chromium`` (Playwright's own browser download does not work here). When it
is missing and we are root with apt-get, it is installed; when Playwright is missing it is
pip-installed. Only where neither can be had do the tests skip, saying why.
"""
from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
TEST_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
ARTIFACTS = ROOT / "tests" / "artifacts"
TEST_DIR_IN_LAB = "_browser_tests"

START_DEADLINE = 90.0        # s for `jupyter lab` to print its URL (measured 3.5-5 s)
STOP_DEADLINE = 20.0
UI_TIMEOUT = 60_000          # ms for JupyterLab to open a notebook / start a kernel
RUN_TIMEOUT = 120_000        # ms for "Run All Cells" of a lesson notebook
LIVE_TIMEOUT = 20_000        # ms for a click to show its live result

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# The test notebooks are opened by JupyterLab, not collected by nbval.
collect_ignore_glob = ["notebooks/*"]

# Settings (JupyterLab's user settings directory) that keep the page clean and clickable.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
        {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings":
        {"autosave": False},
}


# ---------------------------------------------------------------- finding what we need

def _run_quiet(args, timeout):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 1, "", str(exc))


def find_chromium() -> tuple[str | None, str]:
    """(path, '') or (None, why not)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path, ""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return None, ("Debian's chromium is not installed and cannot be installed here (needs root and "
                      "apt-get: `apt-get install chromium`, or run `make test` as root)")
    r = _run_quiet(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], 900)
    if r.returncode != 0:  # maybe no package lists yet
        _run_quiet(["apt-get", "update", "-qq"], 600)
        r = _run_quiet(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], 900)
    path = shutil.which("chromium")
    if path:
        return path, ""
    return None, f"`apt-get install chromium` failed: {(r.stderr or r.stdout).strip()[-400:]}"


def import_playwright():
    try:
        from playwright.sync_api import sync_playwright
        return sync_playwright, ""
    except ImportError:
        pass
    r = _run_quiet([sys.executable, "-m", "pip", "install", "--quiet", "playwright"], 600)
    try:
        from playwright.sync_api import sync_playwright
        return sync_playwright, ""
    except ImportError:
        return None, ("the Playwright Python package is missing and `pip install playwright` failed: "
                      f"{(r.stderr or r.stdout).strip()[-400:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the JupyterLab server

class LabServer:
    """One ``jupyter lab`` process and where it serves."""

    def __init__(self, proc, url, token, root, log_path, lines):
        self.proc, self.url, self.token, self.root, self.log_path = proc, url, token, Path(root), log_path
        self._lines = lines

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self):
        """Shut down every session's kernel (the next test starts from a clean server)."""
        for s in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{s['id']}")
        for k in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{k['id']}")

    def log_tail(self, n: int = 40) -> str:
        return "".join(self._lines[-n:])


# Front-end extensions that other packages in the environment may add (a grader's sidebar and
# toolbar, "open in Notebook 7"): not socklab's, so kept out of the page and the screenshots.
DISABLED_LAB_EXTENSIONS = ("@jupyter/nbgrader", "@jupyter-notebook/lab-extension")


def _write_settings(settings_dir: Path, config_dir: Path):
    for rel, value in LAB_SETTINGS.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value, indent=2))
    page_config = config_dir / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps({"disabledExtensions": {n: True for n in DISABLED_LAB_EXTENSIONS}}))


def _stop_process_tree(proc: subprocess.Popen):
    """SIGTERM jupyter (it shuts its kernels down), then kill whatever of its tree is left."""
    import psutil
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:  # jupyter already exited: its children cannot be found through it
        tree = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_DEADLINE)
    _, alive = psutil.wait_procs(tree, timeout=0)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:  # it exited between the check and the kill
            continue
    _, alive = psutil.wait_procs(alive, timeout=STOP_DEADLINE)
    if alive:
        raise RuntimeError(f"processes left behind by jupyter lab survived SIGKILL: {alive}")


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.skip(f"no `jupyter` next to {sys.executable}: install the test extra "
                    "(pip install -e '.[test]')")
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(TEST_NOTEBOOKS, root / TEST_DIR_IN_LAB)
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir()
    _write_settings(dirs["settings"], dirs["config"])
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("JUPYTER_TOKEN", None)
    token = secrets.token_hex(24)
    port = free_port()
    args = [str(jupyter), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
            "--ServerApp.open_browser=False", "--LabApp.news_url=None",
            "--ServerApp.port_retries=0", "--ServerApp.terminals_enabled=False"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):  # screenshots of an earlier run would mislead
        stale.unlink()
    log_path = ARTIFACTS / "jupyterlab.log"
    lines: list = []
    ready: queue.Queue = queue.Queue()
    proc = subprocess.Popen(args, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    # the line that prints where it serves (the token is shown as '...' when it was given to it)
    url_re = re.compile(r"\] (http://127\.0\.0\.1:\d+)/lab\?token=")

    def pump():
        with open(log_path, "w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                m = url_re.search(line)
                if m:
                    ready.put(m.group(1))
        ready.put(None)  # the process ended (its output closed)

    reader = threading.Thread(target=pump, daemon=True, name="jupyterlab-log")
    reader.start()
    try:
        try:
            url = ready.get(timeout=START_DEADLINE)
        except queue.Empty:
            url = None
        if url is None:
            pytest.fail(f"jupyter lab did not print its URL within {START_DEADLINE:g} s "
                        f"(exit code {proc.poll()}); log tail:\n{''.join(lines[-40:])}")
        yield LabServer(proc, url, token, root, log_path, lines)
    finally:
        _stop_process_tree(proc)
        reader.join(STOP_DEADLINE)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_playwright, why = import_playwright()
    if sync_playwright is None:
        pytest.skip(why)
    chromium, why = find_chromium()
    if chromium is None:
        pytest.skip(why)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1050}, device_scale_factor=1)
        try:
            yield ctx
        finally:
            ctx.close()


# ---------------------------------------------------------------- per-test helper

KERNEL_STATUS = '#jp-main-statusbar .jp-StatusBar-TextItem[title^="Change kernel"]'

_CELLS_DONE_JS = """
() => {
  const kernel = document.querySelector('%s');
  if (!kernel || !/\\| Idle$/.test(kernel.textContent)) return false;
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!indicator || indicator.dataset.status !== 'idle') return false;
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const run = cells.filter(c => (c.querySelector('.cm-content')?.textContent || '').trim() !== '');
  const prompt = c => c.querySelector('.jp-InputArea-prompt')?.textContent || '';
  return run.length > 0 && run.every(c => /\\[\\d+\\]/.test(prompt(c)));
}
""" % KERNEL_STATUS.replace("'", "\\'")


class Lab:
    """One browser page on the test's own JupyterLab workspace."""

    def __init__(self, server: LabServer, page, name: str):
        self.server, self.page, self.name = server, page, name

    def url(self, path: str) -> str:
        return f"{self.server.url}/lab/workspaces/{self.name}/tree/{path}?token={self.server.token}"

    def open(self, path: str):
        """Open a notebook (path relative to the lab root) and wait until its kernel is idle."""
        from playwright.sync_api import expect
        page = self.page
        page.goto(self.url(path), timeout=UI_TIMEOUT)
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        expect(panel).to_be_visible(timeout=UI_TIMEOUT)
        # The toolbar's execution indicator says data-status="idle" already before the kernel has
        # started (measured: idle -> initializing -> connecting -> busy -> idle), so wait for the
        # status bar's kernel item to read "<kernel name> | Idle" (connected and idle) as well.
        expect(page.locator(KERNEL_STATUS)).to_have_text(re.compile(r"^Python 3.* \| Idle$"),
                                                         timeout=UI_TIMEOUT)
        expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=UI_TIMEOUT)
        dialogs = page.locator(".jp-Dialog")
        assert dialogs.count() == 0, f"a dialog blocks the page: {dialogs.first.inner_text()}"
        # Fold the file browser away: more room for the notebook (and cleaner screenshots).
        current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()
            expect(page.locator("#jp-left-stack")).to_be_hidden()
        return panel

    def menu(self, menu: str, item: str):
        """Click a main-menu entry by its label, e.g. ('Run', 'Run All Cells')."""
        page = self.page
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        page.locator(".lm-Menu .lm-Menu-item", has=page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))).first.click()

    def run_all(self, timeout: int = RUN_TIMEOUT):
        """Clear all outputs, Run All Cells (both from the menus, as a learner would), and wait until
        every non-empty code cell has an execution count and the kernel is idle."""
        self.menu("Edit", "Clear Outputs of All Cells")
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt')]"
            ".every(p => !/\\d/.test(p.textContent))", timeout=LIVE_TIMEOUT)
        self.menu("Run", "Run All Cells")
        try:
            self.page.wait_for_function(_CELLS_DONE_JS, timeout=timeout)
        except Exception as exc:
            raise AssertionError(f"Run All Cells did not finish within {timeout / 1000:g} s; errors on the "
                                 f"page: {self.errors()}") from exc

    def errors(self) -> list:
        """Tracebacks shown in the notebook."""
        return [t[-600:] for t in self.page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
            if "Traceback" in t or "Error" in t]

    def screenshot(self, name: str | None = None) -> Path:
        """Save the page as tests/artifacts/<name>.png (default: the test's name; then the automatic
        screenshot at the end of a passing test does not replace it)."""
        if name is None:
            self.saved = True
        path = ARTIFACTS / f"{name or self.name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def lab(request, browser, lab_server):  # browser first: no JupyterLab is started only to skip
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    page = browser.new_page()
    page.set_default_timeout(LIVE_TIMEOUT)
    console: list = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    helper = Lab(lab_server, page, name)
    helper.console = console
    helper.saved = False
    try:
        yield helper
    finally:
        report = getattr(request.node, "rep_call", None)
        passed = report is not None and report.passed
        try:
            if page.url != "about:blank" and not (passed and helper.saved):
                helper.screenshot()  # the page as the test left it (pass or fail)
        except Exception as exc:  # a crashed page: the test's own failure says more
            print(f"screenshot of {name} failed: {exc}")
        page.close()
        lab_server.shutdown_kernels()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the ``lab`` fixture screenshots failures)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
