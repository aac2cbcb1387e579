"""Exercises with automatic, specific feedback: the learner writes real socket code in a cell, and
``check("05.1", recv_exactly)`` runs it against real peers (chunked, slow, closing early, several
at once) under a hard time limit, and says what went wrong. ``hint("05.1")`` reveals the next hint.

The checking core (``core``, ``peers``, ``nbNN``) is plain Python; results display as text and
HTML in Jupyter (``socklab.render.exercises``). Reference solutions are not part of this package:
they live in the instructor notebooks and in the project's tests.
"""
from __future__ import annotations

from .core import (CaseResult, CheckInterrupted, Exercise, Result, run_check,  # noqa: F401
                   stuck_threads)
from .registry import EXERCISES, get, by_notebook  # noqa: F401
from .api import check, grade, hint, hints_shown, reset_hints  # noqa: F401

__all__ = ["check", "grade", "hint", "hints_shown", "reset_hints", "get", "by_notebook", "EXERCISES",
           "Exercise", "Result", "CaseResult", "CheckInterrupted", "run_check", "stuck_threads"]
