"""Every public function, class and method of socklab, called with odd values one argument at a time.

What a learner may type by mistake: None, a negative number, a huge one, a str, bytes that are not
UTF-8, NaN, infinity, an empty list or dict, a plain object, a bool, a too-short or too-long
address. Each call must return, or raise an *explained* error (one with an ``.explanation``); never
hang (15 s) and never leak (leakcheck). The callables are found by looking at the package, so a new
one is covered as soon as it exists. Real sockets: servers started with an odd value are stopped.
"""
from __future__ import annotations

import importlib
import inspect
import threading

import pytest

import socklab
from socklab import concurrency, notebook

ODD = [None, -1, 0, 2 ** 70, "x", "", b"\xff\xfe", float("nan"), float("inf"), [], {}, object(), True,
       3.5, ("127.0.0.1",), ("::1", 0, 0, 0, 9)]
HANG = 15.0
# Plausible values for the other, required, arguments of a call.
REQUIRED = {"address": ("127.0.0.1", 1), "target": ("127.0.0.1", 1), "clients": 1, "style": "threads",
            "fn": print, "measurement": None, "measurements": [], "rows": [], "events": [], "data": b"hi"}
PANELS = {"panel": "LabPanel", "steps": "StepPanel", "backlog": "BacklogPanel", "exchange": "ExchangePanel",
          "framing": "FramingPanel", "manyclients": "ManyClientsPanel", "errorlab": "ErrorExplorer",
          "http": "HTTPPanel", "addresses": "BindExplorer", "icmp": "PingPanel", "tls": "TLSPanel"}
NOT_FOR_LEARNERS = {"stop", "close", "server_close", "start", "connect", "open", "shutdown",
                    "handle", "on_connection"}  # lifecycle (called last), and a server's own hooks


# Not called by learners with their own values: exception classes, the wrapper a socklab.socket()
# returns, server handlers (the server calls them), and stop_all (it takes no arguments).
SKIPPED = {"ConfigError", "SocklabError", "TracedSocket", "echo", "echo_datagram", "stop_all",
           "explain", "explained"}
# Where a default makes a call long (compare(): 20 clients x 4 styles), the odd value is tried on
# a small run; the parameter under test still gets the odd value.
SMALL = {"concurrency.compare": {"clients": 1, "styles": ["threads"]}}


def _functions() -> dict:
    found = {name: getattr(socklab, name) for name in socklab.__all__
             if callable(getattr(socklab, name)) and name not in SKIPPED}
    for name in ("measure", "make_server", "run_clients", "latency_chart", "table", "compare"):
        found[f"concurrency.{name}"] = getattr(concurrency, name)
    for name, f in vars(notebook).items():
        if callable(f) and not name.startswith("_") and getattr(f, "__module__", "") == "socklab.notebook":
            found[f"notebook.{name}"] = f
    for module, cls in PANELS.items():
        found[f"widgets.{cls}"] = getattr(importlib.import_module(f"socklab.widgets.{module}"), cls)
    return found


def _stop(obj) -> None:
    if inspect.isclass(obj):
        return
    for name in ("stop", "close"):
        if callable(getattr(obj, name, None)):
            getattr(obj, name)()
            return


def _call(f, kw) -> str:
    """'' if ``f(**kw)`` returned or raised an explained error; else what went wrong."""
    out: dict = {}

    def go():
        try:
            _stop(f(**kw))
        except BaseException as exc:  # judged below: an explained error is a right answer
            out["error"] = exc
    t = threading.Thread(target=go, daemon=True, name="fuzz-call")
    t.start()
    t.join(HANG)
    if t.is_alive():
        return f"did not return within {HANG:g} s"
    e = out.get("error")
    if e is None or getattr(e, "explanation", None) is not None:
        return ""
    return f"{type(e).__name__}: {e}"


def _fuzz(f, small=None) -> list:
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    except (TypeError, ValueError):
        return []
    problems = []
    for p in params:
        for value in ODD:
            kw = {k: v for k, v in (small or {}).items() if k != p.name}
            kw[p.name] = value
            for q in params:
                if q is not p and q.default is q.empty and q.name not in kw:
                    kw[q.name] = REQUIRED.get(q.name, 1)
            wrong = _call(f, kw)
            if wrong:
                problems.append(f"{p.name}={value!r:.30}: {wrong}")
    return problems


FUNCTIONS = _functions()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_odd_arguments_are_explained(name, leakcheck):
    problems = _fuzz(FUNCTIONS[name], SMALL.get(name))
    socklab.stop_all()
    assert not problems, f"{name}: " + "\n".join(problems)


def _live_objects():
    yield "Server", lambda: socklab.Server(name="fz-srv").start()
    yield "Client", lambda: socklab.Client(socklab.Server(name="fz-srv2").start(), name="fz-cl").connect()
    yield "StyleServer", lambda: concurrency.make_server("threads", name="fz-style").start()
    for module, cls in PANELS.items():
        yield cls, (lambda m=module, c=cls: getattr(importlib.import_module(f"socklab.widgets.{m}"), c)(
            name=f"fz-{m}"))


@pytest.mark.parametrize("label,make", list(_live_objects()), ids=[x[0] for x in _live_objects()])
def test_odd_arguments_to_methods_are_explained(label, make, leakcheck):
    obj = make()
    problems = []
    try:
        names = {n for k in type(obj).__mro__ if k.__module__.startswith("socklab")
                 for n, f in vars(k).items() if inspect.isfunction(f)}
        for n in sorted(names - NOT_FOR_LEARNERS):
            if not n.startswith("_"):
                problems += [f"{n}({p})" for p in _fuzz(getattr(obj, n))]
    finally:
        _stop(obj)
        socklab.stop_all()
    assert not problems, f"{label}: " + "\n".join(problems)
