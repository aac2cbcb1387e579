"""``Recent``: a list that keeps only its newest items, for what a long session keeps adding to
(a server's errors, a panel's runs). A classroom kernel stays open all day: nothing may grow for ever."""
from __future__ import annotations

import threading


class Recent(list):
    """A list that keeps its newest ``keep`` items: appending past that drops the oldest, and
    ``dropped`` counts the items dropped so far (``total``: all ever appended). Otherwise a list
    (index, slice, len, ==, repr). ``append`` is thread-safe: server threads append to it."""

    def __init__(self, keep: int, items=()):
        super().__init__()
        self.keep, self.dropped = keep, 0
        self._lock = threading.Lock()
        for item in items:
            self.append(item)

    def append(self, item) -> None:
        with self._lock:
            super().append(item)
            if len(self) > self.keep:
                over = len(self) - self.keep
                del self[:over]
                self.dropped += over

    def extend(self, items) -> None:
        for item in items:
            self.append(item)

    @property
    def total(self) -> int:
        """How many items were ever appended (kept and dropped)."""
        return self.dropped + len(self)

    def since(self, total: int) -> list:
        """The items appended after the first ``total`` (a ``total`` read earlier), those still kept."""
        with self._lock:
            return list(self[max(0, total - self.dropped):])

    def dropped_note(self, what: str) -> str:
        """'(3 earlier runs not kept: the latest 50 are)', or '' when nothing was dropped."""
        if not self.dropped:
            return ""
        return f"({self.dropped} earlier {what} not kept: the latest {self.keep} are)"


__all__ = ["Recent"]
