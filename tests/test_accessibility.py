"""Accessibility of every panel and rendered view, on real objects and real sockets.

* every control a learner can operate has a name (its ipywidgets ``description``, which the browser
  ties to the input; a button may be named by its ``tooltip``), every tab a title, and no control
  is a slider (ipywidgets gives a slider's handle no accessible name);
* what a click answers (status line, alert box, result) is an ARIA live region in the browser;
* state is never shown by colour alone: an error says "!!", "✗" or "error", a warning "Warning";
* tables have column headers (<th scope>) and a name; SVG images have role="img", <title>, <desc>;
* text colours reach WCAG AA (4.5:1) on what they are drawn on, in the light and the dark theme,
  and the CSS takes JupyterLab's theme variables, each with a fallback.

Plus: ``transcript_html(order='side')`` groups in one pass, with the old (sorting) order.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import socket
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

pytest.importorskip("ipywidgets")

import ipywidgets as W  # noqa: E402

import socklab  # noqa: E402
import socklab.widgets  # noqa: E402
from socklab.errors import explain  # noqa: E402
from socklab.exercises import core  # noqa: E402
from socklab.exercises.core import Fail  # noqa: E402
from socklab.render import exercises as ex_render  # noqa: E402
from socklab.render import html as render_html  # noqa: E402
from socklab.render import state as render_state  # noqa: E402
from socklab.render.diagram import diagram_html, diagram_svg  # noqa: E402
from socklab.render.html import explanation_html, transcript_html, warnings_html  # noqa: E402
from socklab.trace import Trace, TracedSocket  # noqa: E402
from socklab.widgets.base import BackgroundPanel, Panel, ServerPanel  # noqa: E402

AA = 4.5                      # WCAG 2.x level AA, normal text
SVG_NS = "{http://www.w3.org/2000/svg}"
DARK_SELECTOR = '[data-jp-theme-light="false"] .socklab-box'


# ---------------------------------------------------------------- colour arithmetic (WCAG 2.x)

def rgb(colour: str) -> tuple:
    """'#1a7f37' or '#fff' -> (r, g, b) in 0..255."""
    h = colour.strip().lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    assert re.fullmatch(r"[0-9a-fA-F]{6}", h), f"not a hex colour: {colour!r}"
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def luminance(colour: str) -> float:
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_contrast_arithmetic_matches_known_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic near miss


_VAR = re.compile(r"var\(\s*(--[\w-]+)\s*(?:,\s*([^()]*?))?\s*\)")


def fallback(value: str) -> str:
    """The colour a CSS value shows where no variable is defined: 'var(--x,#fff)' -> '#fff'."""
    m = _VAR.fullmatch(value.strip())
    return fallback(m.group(2)) if m and m.group(2) else value.strip()


# ---------------------------------------------------------------- CSS: theme variables and contrast

def css_rules(css: str) -> list:
    """[(selector, {property: value})] of a <style> block (flat CSS, no @-rules)."""
    body = re.sub(r"</?style>", "", css)
    rules = []
    for selector, decls in re.findall(r"([^{}]+)\{([^{}]*)\}", body):
        props = {}
        for d in decls.split(";"):
            if ":" in d:
                k, v = d.split(":", 1)
                props[k.strip()] = v.strip()
        rules.append((selector.strip(), props))
    return rules


def palette_of(css: str) -> dict:
    """{'light': {role: colour}, 'dark': {...}} from the custom properties the CSS defines."""
    rules = dict(css_rules(css))
    assert ".socklab-box" in rules, "no .socklab-box rule"
    assert DARK_SELECTOR in rules, f"no dark-theme rule ({DARK_SELECTOR})"
    light = {k[len("--socklab-"):]: fallback(v) for k, v in rules[".socklab-box"].items()
             if k.startswith("--socklab-")}
    dark = dict(light)
    dark.update({k[len("--socklab-"):]: fallback(v) for k, v in rules[DARK_SELECTOR].items()
                 if k.startswith("--socklab-")})
    return {"light": light, "dark": dark}


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_colour_reaches_aa_on_every_background_of_its_theme(theme):
    colours = palette_of(render_html.CSS)[theme]
    texts = {k: v for k, v in colours.items() if not k.endswith("bg")}
    backgrounds = {k: v for k, v in colours.items() if k.endswith("bg")}
    assert {"ink", "bad", "ok"} <= set(texts) and {"bg", "err-bg", "warn-bg"} <= set(backgrounds)
    low = [f"{t} {fg} on {b} {bg}: {contrast(fg, bg):.2f}" for t, fg in texts.items()
           for b, bg in backgrounds.items() if contrast(fg, bg) < AA]
    assert not low, f"{theme} theme below {AA}:1: {low}"


def test_the_page_background_and_ink_are_jupyterlabs_theme_variables():
    rules = dict(css_rules(render_html.CSS))
    for sel in (".socklab-box", DARK_SELECTOR):
        assert rules[sel]["--socklab-bg"].startswith("var(--jp-layout-color0,"), sel
        assert rules[sel]["--socklab-ink"].startswith("var(--jp-content-font-color1,"), sel
    assert rules[".socklab-box"]["color"] == "var(--socklab-ink)"
    assert rules[".socklab-box"]["background"] == "var(--socklab-bg)"


@pytest.mark.parametrize("css", [render_html.CSS, ex_render.EX_CSS], ids=["CSS", "EX_CSS"])
def test_css_colours_come_from_variables(css):
    """Outside the palette's own definitions no rule names a fixed colour: every colour is a
    variable (so the dark theme can change it), and JupyterLab's variables have fallbacks."""
    defined = set(palette_of(render_html.CSS)["light"])
    problems = []
    for selector, props in css_rules(css):
        for k, v in props.items():
            if k.startswith("--socklab-"):
                continue
            if re.search(r"#[0-9a-fA-F]{3,6}\b|rgb\(", v) and "var(" not in v:
                problems.append(f"{selector} {k}: fixed colour {v}")
            for name, fb in _VAR.findall(v):
                if name.startswith("--socklab-"):
                    if name[len("--socklab-"):] not in defined:
                        problems.append(f"{selector} {k}: {name} is not defined")
                elif not fb:
                    problems.append(f"{selector} {k}: {name} without a fallback")
    assert not problems, problems


# ---------------------------------------------------------------- HTML: a small DOM and its checks

VOID = {"br", "hr", "img", "input", "meta", "link", "col", "wbr", "area", "source"}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, dict(attrs), parent, [], []

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def classes(self) -> set:
        return set((self.attrs.get("class") or "").split())

    def ancestors(self):
        n = self.parent
        while n is not None:
            yield n
            n = n.parent


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {})
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        self.cur.parts.append(node)
        if tag == "style":
            self.in_style = True
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        self.cur.parts.append(node)

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        if not self.in_style:
            self.cur.parts.append(data)


def dom(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    b.close()
    return b.root


def _style(node) -> dict:
    out = {}
    for d in (node.attrs.get("style") or "").split(";"):
        if ":" in d:
            k, v = d.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


STATUS_WORD = re.compile(r"!!|✗|\berror\b", re.I)


def html_problems(html: str) -> list:
    """Everything in ``html`` that this module's rules refuse, as readable lines."""
    root = dom(html)
    problems = []
    for n in root.iter():
        cls = n.classes()
        text = " ".join(n.text().split())
        if n.tag == "table":
            label = (n.attrs.get("aria-label") or "").strip()
            if not label and not any(c.tag == "caption" and c.text().strip() for c in n.children):
                problems.append("table without aria-label or caption")
            heads = [c for c in n.iter() if c.tag == "th"]
            if not heads:
                problems.append("table without header cells")
            for th in heads:
                if th.attrs.get("scope") not in ("col", "row", "colgroup", "rowgroup"):
                    problems.append(f"<th>{th.text()}</th> without scope")
                if not th.text().strip():
                    problems.append("empty header cell")
        if "socklab-bad" in cls and not STATUS_WORD.search(text):
            problems.append(f"error shown by colour alone: {text[:80]!r}")
        if "socklab-err" in cls and "Error" not in text:
            problems.append(f"error box without the word Error: {text[:80]!r}")
        if "socklab-warn" in cls and "Warning" not in text:
            problems.append(f"warning box without the word Warning: {text[:80]!r}")
        if n.tag == "svg":
            problems += svg_problems(n)
        style = _style(n)
        if "color" in style and not any(a.tag == "svg" for a in n.ancestors()):
            problems += _inline_colour_problems(n, style)
    return problems


def _inline_colour_problems(n, style) -> list:
    value = style["color"]
    m = _VAR.fullmatch(value)
    if m:  # a palette variable: its fallback (the light colour) must read on the light background
        role = m.group(1)[len("--socklab-"):]
        light = palette_of(render_html.CSS)["light"]
        if not m.group(1).startswith("--socklab-") or role not in light:
            return [f"inline colour {value} is not a palette variable"]
        if fallback(value) != light[role]:
            return [f"inline colour {value}: fallback is not the palette's {light[role]}"]
        return []
    # a fixed colour only on a card that fixes its own background too (the SVG boxes)
    card = next((a for a in [n, *n.ancestors()] if "background" in _style(a)), None)
    if card is None or not _style(card)["background"].startswith("#"):
        return [f"fixed inline colour {value} on a background that follows the theme"]
    ratio = contrast(value, _style(card)["background"])
    return [] if ratio >= AA else [f"inline colour {value} on {_style(card)['background']}: {ratio:.2f}"]


def svg_problems(svg: Node) -> list:
    problems = []
    if svg.attrs.get("role") != "img":
        problems.append("svg without role=img")
    kids = [c.tag for c in svg.children]
    title = next((c for c in svg.children if c.tag == "title"), None)
    if not kids or kids[0] != "title" or not title.text().strip():
        problems.append("svg without a <title> first")
    desc = next((c for c in svg.children if c.tag == "desc"), None)
    if (desc is None or not desc.text().strip()) and not svg.attrs.get("aria-label"):
        problems.append("svg without <desc> or aria-label")
    back = next((c for c in svg.children if c.tag == "rect"), None)
    bg = back.attrs.get("fill") if back is not None else None
    if bg != "#ffffff":
        problems.append(f"svg without its own white background (first rect fill {bg})")
        return problems
    for t in svg.iter():
        fill = t.attrs.get("fill")
        if t.tag == "text" and fill and contrast(fill, bg) < AA:
            problems.append(f"svg text {t.text()[:30]!r} fill {fill}: {contrast(fill, bg):.2f}")
    return problems


def test_the_checks_refuse_what_they_should():
    """The rules above catch the faults they are for (so a pass means something)."""
    bad = ('<table><tr><th>a</th></tr></table><span class="socklab-bad">boom</span>'
           '<div class="socklab-box socklab-err">x</div><svg><rect fill="#ffffff"/></svg>'
           '<td style="color:#bf8700">SYN-SENT</td>'
           '<div style="background:#fff"><svg role="img"><title>t</title><desc>d</desc>'
           '<rect fill="#ffffff"/><text fill="#8c959f">grey</text></svg></div>')
    found = "\n".join(html_problems(bad))
    for what in ("without aria-label", "without scope", "colour alone", "word Error",
                 "role=img", "<title>", "<desc>", "fixed inline colour", "fill #8c959f"):
        assert what in found, (what, found)


# ---------------------------------------------------------------- widgets: names and live regions

INTERACTIVE_SKIP = (W.HTML, W.HTMLMath, W.Label, W.IntProgress, W.FloatProgress, W.Valid)
NAME = re.compile(r"[A-Za-z]{2,}")  # '(s)' names nothing: a screen reader says "s"
# Measured in JupyterLab: the handle (role=slider) gets no aria-label; the description's <label> is
# tied to nothing, so a screen reader says only "slider, 3".
NAMELESS_IN_BROWSER = (W.IntSlider, W.FloatSlider, W.FloatLogSlider, W.IntRangeSlider,
                       W.FloatRangeSlider, W.SelectionSlider, W.SelectionRangeSlider)


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def interactive(w) -> bool:
    return isinstance(w, (W.Button, W.ToggleButton)) or (
        isinstance(w, W.ValueWidget) and not isinstance(w, INTERACTIVE_SKIP))


def name_problems(panel) -> list:
    problems = []
    for w in walk(panel):
        if isinstance(w, W.Tab):
            titles = list(w.titles)
            if len(titles) != len(w.children) or not all(t and NAME.search(t) for t in titles):
                problems.append(f"Tab titles {titles}")
        if not interactive(w):
            continue
        if isinstance(w, NAMELESS_IN_BROWSER):
            problems.append(f"{type(w).__name__} {w.description!r}: a slider's handle has no "
                            "accessible name; use a Bounded*Text box")
        # A tooltip is the title of the widget's outer box: it names a button, not an input.
        name = w.description + (" " + (w.tooltip or "") if isinstance(w, W.Button) else "")
        if not NAME.search(name):
            problems.append(f"{type(w).__name__} named {name!r}")
        if isinstance(w, W.Button) and not w.description.strip() and not w.tooltip:
            problems.append(f"icon-only button {w.icon!r}")
    return problems


LIVE_VIEWS = {"socklab-status", "socklab-alert", "socklab-result", "socklab-nagle-verdict"}


def browser_value(view, value: str) -> str:
    """What the browser gets for ``view.value = value`` (the trait's serializer), without setting it."""
    to_json = view.trait_metadata("value", "to_json") or view._trait_to_json
    return to_json(value, view)


def live_problems(panel) -> list:
    views = [w for w in walk(panel) if isinstance(w, W.HTML) and set(w._dom_classes) & LIVE_VIEWS]
    if not views:
        return ["no status, alert or result view"]
    problems = []
    for v in views:
        sent = browser_value(v, "<b>probe</b>")
        region = dom(sent).children[0] if dom(sent).children else None
        if region is None or region.attrs.get("aria-live") != "polite" or "probe" not in region.text():
            problems.append(f"{v._dom_classes}: not a polite live region: {sent!r}")
        if browser_value(v, "") != "":
            problems.append(f"{v._dom_classes}: an empty view is not empty in the browser")
    return problems


def html_views(panel) -> list:
    return [(w._dom_classes, w.value) for w in walk(panel) if isinstance(w, W.HTML) and w.value]


def test_the_name_check_refuses_sliders_and_tooltip_only_names():
    box = W.VBox([W.IntSlider(description="backlog"), W.BoundedIntText(tooltip="port number"),
                  W.BoundedFloatText(description="(s)"), W.Button(tooltip="stop the server"),
                  W.BoundedIntText(description="clients")])
    found = "\n".join(name_problems(box))
    assert "IntSlider 'backlog': a slider's handle has no accessible name" in found, found
    assert "BoundedIntText named ''" in found and "BoundedFloatText named '(s)'" in found, found
    assert "Button" not in found and "clients" not in found, found


# ---- every panel class, made and driven on real sockets

def drive_lab(p):
    p.connect()                                  # no server: refused, explained in the alert
    assert "socklab-err" in p.alert.value
    p.run_demo("accessible")


def drive_bind(p):
    first = p.try_bind()
    p.try_bind(port=first.bound[1])              # the kept socket holds it: explained
    assert "socklab-err" in p.result.value
    p.try_bind(port=0, host="0.0.0.0")           # all interfaces, not allowed: explained
    p.release()


def drive_exchange(p):
    p.connect()
    p.client_send("hi")
    p.server_recv()
    p.client_recv()                              # nothing to read: TimeoutError, explained
    assert "socklab-err" in p.alert.value
    p.close_both()


def drive_framing(p):
    p.send_message()
    p.last = dict(p.last, error="IncompleteMessage: the stream ended inside a message")
    p._show_result()                             # how a decoding failure is shown


def drive_steps(p):
    p.client_step()                              # socket()
    p.client_step()                              # connect() before the server has an address
    assert "socklab-warn" in p.alert.value
    p.run_demo()


def drive_tls(p):
    pytest.importorskip("trustme")
    p.start_server()
    p.connect()
    p.send_message("hi")
    p.trust.value = False
    p.connect()                                  # the client does not trust the CA: explained
    p.close_client()
    p.stop_server()


PANELS = {  # class name -> (make, drive)
    "LabPanel": (lambda m: m.LabPanel(name="a11y-lab"), drive_lab),
    "BindExplorer": (lambda m: m.BindExplorer(name="a11y-bind"), drive_bind),
    "BacklogPanel": (lambda m: m.BacklogPanel(backlog=0, clients=2, connect_timeout=0.3,
                                              name="a11y-backlog"), lambda p: p.run()),
    "ErrorExplorer": (lambda m: m.ErrorExplorer(name="a11y-errors"), lambda p: p.run("refused")),
    "ExchangePanel": (lambda m: m.ExchangePanel(name="a11y-exchange"), drive_exchange),
    "FramingPanel": (lambda m: m.FramingPanel(framing_kind="prefix", name="a11y-framing"),
                     drive_framing),
    "NaglePanel": (lambda m: m.NaglePanel(rounds=2, size=10, name="a11y-nagle"), lambda p: p.run()),
    "HTTPPanel": (lambda m: m.HTTPPanel(name="a11y-http"), lambda p: p.run_demo()),
    "PingPanel": (lambda m: m.PingPanel(count=1, name="a11y-ping"), lambda p: p.ping()),
    "ManyClientsPanel": (lambda m: m.ManyClientsPanel(clients=2, style="threads", service_ms=1,
                                                      name="a11y-many"), lambda p: p.run()),
    "StepPanel": (lambda m: m.StepPanel(name="a11y-steps"), drive_steps),
    "TLSPanel": (lambda m: m.TLSPanel(name="a11y-tls"), drive_tls),
}


def panel_classes() -> dict:
    """Every Panel subclass defined in socklab/widgets, by name, with its module."""
    found = {}
    for info in pkgutil.iter_modules(socklab.widgets.__path__):
        mod = importlib.import_module(f"socklab.widgets.{info.name}")
        for obj in vars(mod).values():
            if inspect.isclass(obj) and issubclass(obj, Panel) and obj.__module__ == mod.__name__ \
                    and obj not in (Panel, ServerPanel, BackgroundPanel):
                found[obj.__name__] = mod
    return found


def make(name):
    return PANELS[name][0](panel_classes()[name])


def test_every_panel_class_is_checked_here():
    assert set(panel_classes()) == set(PANELS)


@pytest.mark.parametrize("name", sorted(PANELS))
def test_every_control_has_a_name_and_every_answer_is_announced(name):
    p = make(name)
    try:
        assert name_problems(p) == []
        assert live_problems(p) == []
    finally:
        p.stop()


@pytest.mark.parametrize("name", sorted(PANELS))
def test_views_after_a_real_run_are_accessible(name, leakcheck):
    p = make(name)
    try:
        PANELS[name][1](p)
        views = html_views(p)
        assert views, "the run showed nothing"
        transcript = p.transcript() if hasattr(p, "transcript") else None
        if transcript is not None and transcript.html:
            views.append(("transcript()", transcript.html))
        problems = [f"{where}: {what}" for where, html in views for what in html_problems(html)]
        assert problems == []
        assert name_problems(p) == []            # labels that change during a run stay names
    finally:
        p.stop()


# ---------------------------------------------------------------- the render views on their own

def refused(trace: Trace, side: str = "client") -> None:
    """A real connect() to a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        c = TracedSocket.create(trace=trace, side=side)
        with pytest.raises(ConnectionRefusedError):
            c.connect(("127.0.0.1", port))
        c.close()


def conversation(trace: Trace, clients: int = 2) -> None:
    """A TCP exchange in one thread: a server, ``clients`` clients, their server connections."""
    srv = TracedSocket.create(trace=trace, side="server")
    srv.bind(("127.0.0.1", 0))
    srv.listen(clients)
    ends = []
    for _ in range(clients):
        c = TracedSocket.create(trace=trace, side=trace.new_side("client"))
        c.settimeout(5)
        c.connect(srv.getsockname())
        conn, _ = srv.accept()
        ends.append((c, conn))
    for c, conn in ends:  # interleaved: the sides' calls alternate in time
        c.sendall(b"hello")
        conn.recv(100)
        trace.note(conn.side, "echo")
        conn.sendall(b"HELLO")
        c.recv(100)
    for c, conn in ends:
        c.close()
        conn.close()
    srv.close()


@pytest.mark.parametrize("times", [True, False])
def test_transcript_table_is_named_has_headers_and_words_for_errors(leakcheck, times):
    t = Trace()
    conversation(t)
    refused(t, "late")
    page = transcript_html(t, times=times)
    assert html_problems(page) == []
    table = next(n for n in dom(page).iter() if n.tag == "table")
    cols = [th.text() for th in table.iter() if th.tag == "th"]
    assert cols == (["time"] if times else []) + ["side", "call", "result"]
    bad = [n for n in table.iter() if "socklab-bad" in n.classes()]
    assert len(bad) == 1 and "!! ConnectionRefusedError" in bad[0].text()
    short = transcript_html(t, times=times, last=3)
    first = next(n for n in dom(short).iter() if n.tag == "td")
    assert "earlier events" in first.text() and first.attrs["colspan"] == str(len(cols))
    empty = next(n for n in dom(transcript_html(Trace(), times=times)).iter() if n.tag == "td")
    assert empty.attrs.get("colspan") == str(len(cols))


def test_sequence_diagram_is_an_image_described_in_words(leakcheck):
    t = Trace()
    conversation(t, clients=1)
    t.note("client", "done")
    refused(t, "late")
    svg = diagram_svg(t)
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root[0].tag == f"{SVG_NS}title" and root[0].text.startswith("sequence diagram: ")
    desc = root.find(f"{SVG_NS}desc").text
    assert "client to server: connect" in desc
    assert "server/conn1 receives from client: recv 5 B b'hello'" in desc
    assert "client note: done" in desc
    assert "error: ConnectionRefusedError" in desc
    assert "──" not in desc and "▶" not in desc      # no drawing characters for a screen reader
    assert html_problems(diagram_html(t)) == []
    assert html_problems(diagram_html(Trace())) == []


def test_kernel_state_table_names_each_state_beside_its_colour(leakcheck):
    from socklab.widgets.steps import kernel_state
    srv = socket.socket()
    cli = socket.socket()
    conn = None
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        page = kernel_state(srv, conn, cli).html
    finally:
        for s in (conn, cli, srv):
            if s is not None:
                s.close()
    assert html_problems(page) == []
    coloured = [n for n in dom(page).iter() if n.tag == "td" and "color" in _style(n)]
    assert {n.text() for n in coloured} >= {"LISTEN", "ESTABLISHED"}


@pytest.mark.parametrize("state", sorted(set(render_state.NOTES) | {"LISTEN", "ESTABLISHED",
                                                                      "CONNECTED", "UNCONN"}))
def test_every_kernel_state_colour_reaches_aa(state):
    value = render_state._state_colour(state)
    if value is None:
        return  # drawn in the text's own colour
    assert _VAR.fullmatch(value), f"{state}: {value} does not follow the theme"
    for theme in ("light", "dark"):
        colours = palette_of(render_html.CSS)[theme]
        fg = colours[_VAR.fullmatch(value).group(1)[len("--socklab-"):]]
        assert contrast(fg, colours["bg"]) >= AA, (state, theme, fg)


def exercise_results():
    ex = core.Exercise("99.9", "demo", "task (exercise 99.9)", ["h1"], ("f",), [
        core.Case("good", lambda ctx, f: None),
        core.Case("bad", lambda ctx, f: (_ for _ in ()).throw(Fail("first line", "`code` here"))),
    ])
    failed = socklab.exercises.run_check(ex, lambda: None)
    passed = socklab.exercises.run_check(ex, lambda: None, only={0})
    not_run = core.Result("99.9", "demo", "failed", cases=[
        core.CaseResult("good", "passed"), core.CaseResult("slow", "failed", ["did not return"]),
        core.CaseResult("later", "not run")])
    attempted = socklab.exercises.run_check(ex, None)
    return {"passed": passed, "failed": failed, "not run": not_run, "not attempted": attempted}


def test_exercise_results_say_their_status_in_words():
    results = exercise_results()
    words = {"passed": "passed", "failed": "not yet", "not run": "not yet",
             "not attempted": "not attempted"}
    for kind, res in results.items():
        page = ex_render.result_html(res)
        assert html_problems(page) == [], kind
        box = next(n for n in dom(page).iter() if "socklab-ex" in n.classes())
        assert words[kind] in box.text(), (kind, box.text())
        for li in (n for n in box.iter() if n.tag == "li"):
            mark = li.children[0]
            assert mark.attrs.get("role") == "img" and mark.attrs.get("aria-label") in (
                "passed:", "failed:", "not run:"), li.text()
    assert "not run" in ex_render.result_html(results["not run"])


def test_error_and_warning_boxes_say_what_they_are(leakcheck):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with socket.socket() as s, pytest.raises(ConnectionRefusedError) as err:
            s.connect(("127.0.0.1", port))
    page = explanation_html(explain(err.value, ("127.0.0.1", port), "connect"))
    assert html_problems(page) == []
    assert "Error: " in dom(page).text()
    warn = warnings_html(["binding to all interfaces"])
    assert html_problems(warn) == [] and "Warning" in dom(warn).text()


# ---------------------------------------------------------------- transcript_html(order='side'): one pass

def old_side_order(events) -> list:
    """The order the old transcript_html gave (a stable sort on each side's first appearance)."""
    sides = list(dict.fromkeys(e.side for e in events))
    return sorted(events, key=lambda e: sides.index(e.side))


def old_side_colour(side, sides) -> str:
    """The old side_colour, verbatim."""
    base = side.split("/")[0]
    order = [s for s in sides if "/" not in s] or sides
    i = order.index(base) if base in order else sides.index(side)
    return render_html.SIDE_COLOURS[i % len(render_html.SIDE_COLOURS)]


def mixed_trace() -> Trace:
    """Real sockets (a server, two clients, their connections, a refused connect), notes, and
    hundreds of sides whose events interleave with them."""
    t = Trace(coalesce=False)
    conversation(t)
    refused(t, "late")
    for i in range(300):
        t.note(f"worker{i % 150}", f"step {i}")
        if i % 7 == 0:
            t.note(f"orphan{i}/conn1", "a connection whose server side never called")
    conversation(t, clients=1)
    return t


@pytest.mark.parametrize("times", [True, False])
@pytest.mark.parametrize("last", [None, 40])
def test_side_order_is_the_old_order(leakcheck, times, last):
    t = mixed_trace()
    events = list(t)
    assert len({e.side for e in events}) > 150
    # the whole page, against the same events put in the old order beforehand
    assert transcript_html(t, times=times, last=last, order="side") == \
        transcript_html(old_side_order(events), times=times, last=last, order="time")
    # and each side keeps the colour the old side_colour gave it
    sides = list(dict.fromkeys(e.side for e in events))
    page = dom(transcript_html(t, times=times, last=None, order="side"))
    seen = 0
    for td in (n for n in page.iter() if n.tag == "td" and "color" in _style(n)):
        side = td.text()
        assert fallback(_style(td)["color"]) == old_side_colour(side, sides), side
        seen += 1
    assert seen == len(events)


def test_environment_report_is_a_named_table_in_words():
    """The environment check of notebook 00: a yes/no word beside each mark (was marks only, no
    headers, no name)."""
    from socklab.notebook import environment
    page = environment()._repr_mimebundle_()["text/html"]
    assert html_problems(page) == []
    cells = [n.text().strip() for n in dom(page).iter() if n.tag == "td"]
    assert cells[0].endswith(("yes", "no")) and len(cells) % 3 == 0
