"""socklab: real sockets, recorded and explained, for teaching socket programming in Jupyter.

Layers, bottom up: plain socket logic (config, trace, servers, errors, codegen, runtime,
envcheck) knows nothing of Jupyter; ``socklab.render`` turns it into text and HTML;
``socklab.widgets`` builds ipywidgets panels on top (imported only when used).
"""
from .config import SocketConfig
from .errors import ConfigError, Explanation, SocklabError, explain, explained
from .trace import Event, Trace, TracedSocket
from .servers import Background, Client, Server, echo, echo_datagram, ping, socket_ as socket
from .codegen import client_code, server_code
from .runtime import running, stop_all
from .render.text import side_by_side, transcript
from .render.diagram import diagram_html, diagram_svg, diagram_text
from .render.state import queue_gauge_html, queue_gauge_text, state_html, state_text
from .kstate import demo_state, listener_state, sockets_on_ports
from .backlog import run_backlog_experiment

__version__ = "0.1.0"


def __getattr__(name):
    """``socklab.notebook``, ``socklab.widgets`` and ``socklab.exercises`` load on first use, so
    plain-Python users never import Jupyter."""
    if name in ("notebook", "widgets", "exercises"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'socklab' has no attribute {name!r}")

__all__ = [
    "SocketConfig", "ConfigError", "Explanation", "SocklabError", "explain", "explained",
    "Event", "Trace", "TracedSocket", "Background", "Client", "Server", "echo", "echo_datagram",
    "ping", "socket", "client_code", "server_code", "running", "stop_all", "side_by_side",
    "transcript", "diagram_html", "diagram_svg", "diagram_text", "queue_gauge_html",
    "queue_gauge_text", "state_html", "state_text", "demo_state", "listener_state",
    "sockets_on_ports", "run_backlog_experiment", "__version__",
]
