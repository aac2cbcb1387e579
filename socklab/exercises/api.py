"""The notebook-facing calls: ``check``, ``grade`` (for autograders) and ``hint``.

Plain Python: the objects returned display themselves as text and HTML in Jupyter
(``_repr_mimebundle_``), so nothing here imports IPython. Hint progress is kept per process,
i.e. per kernel: a restarted kernel starts again at hint 1.
"""
from __future__ import annotations

import threading

from .core import CheckInterrupted, Result, run_check
from .registry import get

_lock = threading.Lock()
_shown: dict = {}      # exercise id -> hints revealed so far
_last: dict = {}       # exercise id -> (solution objects, Result) of the latest check


def check(exercise_id, *solution) -> Result:
    """Run exercise ``exercise_id``'s check on your solution (your function(s)); returns the result,
    which shows what passed and, for what did not, why. Never raises for what your code does; an
    interrupt stops the check (after closing what it opened) with CheckInterrupted, a
    KeyboardInterrupt."""
    ex = get(exercise_id)
    with _lock:
        last = _last.get(ex.id)
    if last is not None and len(last[0]) == len(solution) and \
            all(a is b for a, b in zip(last[0], solution)):
        return last[1]  # the same function objects were just checked (e.g. by grade())
    try:
        res = run_check(ex, *solution)
    except CheckInterrupted as stopped:
        # Raised afresh here: the traceback in the cell ends at this call, not in the checker.
        raise CheckInterrupted(*stopped.args) from None
    with _lock:
        _last[ex.id] = (tuple(solution), res)
    return res


def grade(exercise_id, *solution) -> Result:
    """Like ``check`` but raises AssertionError (with the feedback) unless every case passed: for
    autograders (nbgrader runs it in the hidden tests of the check cell)."""
    res = check(exercise_id, *solution)
    if not res.passed:
        raise AssertionError(res.text())
    return res


class Hint:
    """One revealed hint (text and HTML)."""

    def __init__(self, exercise_id: str, title: str, number: int, total: int, text: str):
        self.exercise_id, self.title, self.number, self.total, self.hint = \
            exercise_id, title, number, total, text

    @property
    def last(self) -> bool:
        return self.number >= self.total

    def text(self) -> str:
        more = ("That was the last hint: compare with the plain code in the notebook, or ask."
                if self.last else "Run this cell again for the next hint.")
        return f"💡 Hint {self.number} of {self.total} for {self.exercise_id} {self.title}: " \
               f"{self.hint}\n   ({more})"

    __str__ = __repr__ = text

    def _repr_mimebundle_(self, include=None, exclude=None):
        from ..render.exercises import hint_html
        return {"text/plain": self.text(), "text/html": hint_html(self)}


def hint(exercise_id) -> Hint:
    """Reveal the next hint of an exercise (the last one again once all are shown)."""
    ex = get(exercise_id)
    with _lock:
        n = min(_shown.get(ex.id, 0) + 1, len(ex.hints))
        _shown[ex.id] = n
    return Hint(ex.id, ex.title, n, len(ex.hints), ex.hints[n - 1])


def hints_shown(exercise_id) -> int:
    with _lock:
        return _shown.get(get(exercise_id).id, 0)


def reset_hints(exercise_id=None) -> None:
    """Start the hints again at 1 (for one exercise, or all)."""
    with _lock:
        if exercise_id is None:
            _shown.clear()
        else:
            _shown.pop(get(exercise_id).id, None)
