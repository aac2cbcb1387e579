"""A client that runs on its own in a thread, for servers the learner builds cell by cell."""
from __future__ import annotations

import os
import selectors
import socket
import threading

from . import runtime
from .config import SocketConfig
from .errors import ConfigError, Explanation, explain, explained_as, not_stopped
from .servers import _number
from .trace import Trace, TracedSocket, as_trace
from .runtime import Thread

_BYTES = (bytes, bytearray, memoryview)
# wait()'s default: called once the learner's server has answered, it needs seconds, and a silent
# server must not hold the cell for the client's whole (reading-pace) timeout.
WAIT = 10.0
_WHY = ("The client sends each message of the list in turn (str is encoded as UTF-8) and waits at "
        "most timeout seconds for each call, so a silent server never blocks it forever.")


def _messages(messages) -> list:
    """``messages`` as a list of bytes; a ConfigError for a single message or a non-message."""
    if isinstance(messages, (str,) + _BYTES):
        raise ConfigError(Explanation(
            "messages must be a list of messages",
            f"messages={messages!r} is one {type(messages).__name__}, not a list of them: it would "
            f"be sent one {'character' if isinstance(messages, str) else 'byte'} at a time.",
            _WHY, f"Put it in a list: [{messages!r}]."))
    try:
        items = list(messages)
    except TypeError:
        raise ConfigError(Explanation(
            "messages must be a list of messages", f"messages={messages!r} is not a list.", _WHY,
            "Pass a list of bytes, e.g. [b\"hello\", b\"bye\"].")) from None
    out = []
    for i, m in enumerate(items):
        if isinstance(m, str):
            out.append(m.encode())
        elif isinstance(m, _BYTES):
            out.append(bytes(m))
        else:
            raise ConfigError(Explanation(
                "A message must be bytes or str",
                f"messages[{i}]={m!r} is of type {type(m).__name__}.", _WHY,
                "Send bytes such as b\"hello\" (or a str, sent as UTF-8)."))
    return out


class BackgroundClient:
    """Connect to ``address``, send each message, read each reply, close: all in a thread.

    The learner's own server (built in the following cells) sees a real peer. Every call has
    ``timeout``, 300 s by default: the learner writes the server's answer a few cells later.
    ``stop()`` wakes a blocked call by shutting the socket down. ``done`` is an Event;
    ``replies`` and ``error`` (an Explanation) say how it went.
    """

    def __init__(self, address, messages=(b"hello",), *, family="AF_INET", type="SOCK_STREAM",
                 trace: Trace | None = None, side: str = "client", timeout: float = 300.0,
                 name: str | None = None, read_replies: bool = True):
        cfg = SocketConfig(family=family, type=type).validate()
        # Checked before any socket or thread exists: a bad argument leaves nothing behind.
        self.messages = _messages(messages)
        _number("timeout", timeout, integer=False, low=1e-3, high=3600, why=_WHY,
                fix="Use a number of seconds such as 5.")
        self.config, self.address = cfg, address
        self.trace = as_trace(trace, "BackgroundClient(trace=)", optional=True)
        self.side, self.timeout, self.read_replies = side, timeout, read_replies
        self.replies: list = []
        self.error = None
        self.done = threading.Event()
        self.sock: TracedSocket | None = None
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()  # stop() writes here to end a wait at once
        self.key = name if name is not None else runtime.caller_key(2)
        runtime.register(self.key, self, explicit=name is not None)
        self._thread = Thread(target=self._run, name=f"socklab-{side}")
        self._thread.start()

    def _run(self):
        c = self.config
        own_path = None
        try:
            with self._lock:
                self.sock = TracedSocket.create(c.af, c.kind, trace=self.trace, side=self.side, owner=self)
            self.sock.settimeout(self.timeout)
            # An AF_UNIX datagram client binds a path so that replies can come back, and connects
            # so that a wait for room in a full receiver sleeps (unconnected, it spins on Linux).
            unix_dgram = c.family == "AF_UNIX" and not c.stream
            if unix_dgram:
                own_path = runtime.private_path("client")
                self.sock.bind(own_path)
            if c.stream or unix_dgram:
                self.sock.connect(self.address)
            for msg in self.messages:
                if c.stream:
                    self.sock.sendall(msg)
                elif unix_dgram:
                    self.sock.send(msg)
                else:
                    self.sock.sendto(msg, self.address)
                if not self.read_replies:
                    continue
                if not self._wait_readable():
                    return  # stopped
                self.replies.append(self.sock.recv(65536) if c.stream else self.sock.recvfrom(65536)[0])
        except Exception as exc:  # kept for the learner: shown by wait() / the panel
            self.error = explain(exc, self.address)
        finally:
            with self._lock:  # stop() sends its wake-up under this lock: never to a closed pair
                if self.sock is not None:
                    self.sock.close()
                if own_path is not None and os.path.exists(own_path):
                    os.unlink(own_path)
                self._wake_r.close()  # finished: a client left unstopped holds no fds
                self._wake_w.close()
                self.done.set()
            runtime.unregister(self.key, self)  # finished: the registry must not keep it (and its trace)

    def _wait_readable(self) -> bool:
        """Wait for a reply or for stop(); a silent peer still ends in a timeout (recv raises)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            ready = {key.fileobj for key, _ in sel.select(self.timeout)}
        if self._wake_r in ready:
            self.trace.note(self.side, "stopped while waiting for a reply")
            return False
        if not ready:
            # The timeout has been waited already: the recv that follows (traced, so the learner
            # sees it time out) must not wait it a second time.
            self.sock.sock.settimeout(1e-9)
        return True
    def wait(self, timeout: float | None = None) -> list:
        """Wait until the client has finished (at most ``timeout`` s, default 10 s); return the
        replies (raises TimeoutError if not done)."""
        waited = min(self.timeout, WAIT) if timeout is None else timeout
        if not self.done.wait(waited):
            raise explained_as(TimeoutError("the background client is still waiting: is your server "
                                            "accepting and replying?"), Explanation(
                "Still waiting",
                f"After {waited:g} s the background client has not finished: it still waits to "
                "connect, or for a reply to one of its messages.",
                "The client runs on its own in a thread and waits for the server you are building: "
                "until that server accepts and answers every message, the client cannot finish.",
                "Run the cells that accept the connection, recv() the message and send() the reply, "
                "then wait() again; stop() ends the client at once."))
        return self.replies

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the client if it waits for a reply, join its thread, release its sockets."""
        with self._lock:
            if not self.done.is_set():
                self._wake_w.send(b"x")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise not_stopped(RuntimeError(f"background client did not stop within {timeout} s "
                                           "(blocked in connect or send; it ends at its own timeout)"),
                              repr(self), timeout, "it is blocked in connect() or send(), which "
                              f"end at the client's own timeout ({self.timeout:g} s).")
        self._wake_r.close()
        self._wake_w.close()
        runtime.unregister(self.key, self)
