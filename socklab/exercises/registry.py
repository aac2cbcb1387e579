"""Every exercise of the series, by id ('05.1')."""
from __future__ import annotations

import importlib

from .core import Exercise

MODULES = ("nb02", "nb03", "nb04", "nb05", "nb06", "nb07", "nb08", "nb09", "nb10", "nb11", "nb12",
           "nb13")


def _load() -> dict:
    out = {}
    for m in MODULES:
        mod = importlib.import_module(f"{__package__}.{m}")
        for ex in mod.EXERCISES:
            if ex.id in out:
                raise ValueError(f"exercise id {ex.id} defined twice")
            out[ex.id] = ex
    return out


EXERCISES: dict = _load()


def get(exercise_id) -> Exercise:
    """The exercise with this id ('05.1'); a KeyError that lists the ids otherwise."""
    key = str(exercise_id).strip()
    if key not in EXERCISES:
        raise KeyError(f"no exercise {exercise_id!r}; there are: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[key]


def by_notebook(nn: str) -> list:
    """The exercises of notebook ``nn`` ('05'), in order."""
    return [ex for ex in EXERCISES.values() if ex.notebook == f"{int(nn):02d}"]
