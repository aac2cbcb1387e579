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

__version__ = "0.1.0"

__all__ = [
    "SocketConfig", "ConfigError", "Explanation", "SocklabError", "explain", "explained",
    "Event", "Trace", "TracedSocket", "Background", "Client", "Server", "echo", "echo_datagram",
    "ping", "socket", "client_code", "server_code", "running", "stop_all", "side_by_side",
    "transcript", "__version__",
]
