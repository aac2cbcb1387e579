"""Classroom workflow: student and instructor versions of the series, and exercise cells.

Usage:
  python tools/classroom.py student OUTDIR       notebooks without solutions and without outputs
  python tools/classroom.py instructor OUTDIR    notebooks as committed: solutions and outputs
  python tools/classroom.py insert-exercises [NN ...] [--execute]
                                                 put each exercise's cells into its notebook
                                                 (idempotent; default: every notebook that exists)
  python tools/classroom.py status               which notebooks have which exercise cells

The committed notebooks are the instructor version: each exercise's learner cell holds the
reference solution between nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers, and its
check cell has the autograder call between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``.
The student version replaces each solution with ``# YOUR CODE HERE`` + ``raise NotImplementedError()``
and drops the hidden tests, exactly as nbgrader's ``generate_assignment`` does, so either tool can
make the student copy (see docs/classroom.md).
"""
from __future__ import annotations

import argparse
import copy
import pathlib
import shutil
import subprocess
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = ROOT / "tests" / "exercise_solutions"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")   # nbgrader's Python stub
TEXT_STUB = "YOUR ANSWER HERE"                                     # nbgrader's markdown stub
NBGRADER_SCHEMA = 3


# ---- stripping (nbgrader's ClearSolutions and ClearHiddenTests, for Python)

def strip_solutions(source: str, stub=CODE_STUB) -> str:
    """Replace every BEGIN/END SOLUTION region with the stub, indented like the BEGIN marker."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + s for s in stub]
        elif stripped == END_SOLUTION:
            if not inside:
                raise ValueError("### END SOLUTION without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without END")
    return "\n".join(out)


def strip_hidden_tests(source: str) -> str:
    """Remove every BEGIN/END HIDDEN TESTS region, markers included."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_HIDDEN:
            inside = True
        elif stripped == END_HIDDEN:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def has_markers(source: str) -> bool:
    return any(m in source for m in (BEGIN_SOLUTION, BEGIN_HIDDEN))


def student_notebook(nb):
    """A copy of ``nb`` with solutions replaced by stubs, hidden tests removed, outputs cleared."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            if BEGIN_SOLUTION in cell.source:
                cell.source = strip_solutions(cell.source)
            if BEGIN_HIDDEN in cell.source:
                cell.source = strip_hidden_tests(cell.source)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown" and BEGIN_SOLUTION in cell.source:
            cell.source = strip_solutions(cell.source, (TEXT_STUB,))
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def series(src: pathlib.Path = NOTEBOOKS) -> list:
    return sorted(src.glob("[0-9][0-9]-*.ipynb"))


def write_version(kind: str, outdir: pathlib.Path, src: pathlib.Path = NOTEBOOKS) -> list:
    """Write the student or instructor version of every notebook of the series into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in series(src):
        nb = nbformat.read(path, as_version=4)
        if kind == "student":
            nb = student_notebook(nb)
        nbformat.validate(nb)
        target = outdir / path.name
        nbformat.write(nb, target)
        written.append(target)
    for extra in ("README.md",):
        if (src / extra).exists():
            shutil.copy(src / extra, outdir / extra)
    return written


# ---- exercise cells

def _ids(exercise_id: str) -> str:
    return "ex" + exercise_id.replace(".", "-")


def solution_source(exercise_id: str) -> str:
    return (SOLUTIONS / f"ex_{exercise_id.replace('.', '_')}.py").read_text().rstrip("\n")


def check_source(ex) -> str:
    args = ", ".join(ex.names)
    return (f"{BEGIN_HIDDEN}\n"
            f'socklab.exercises.grade("{ex.id}", {args})  # autograder: fails unless every check passes\n'
            f"{END_HIDDEN}\n"
            f'socklab.exercises.check("{ex.id}", {args})')


def hint_source(ex) -> str:
    return f'socklab.exercises.hint("{ex.id}")  # run again for the next hint'


def exercise_cells(ex) -> dict:
    """The four cells of an exercise, by role: task (markdown), solution, check, hint (code)."""
    key = _ids(ex.id)
    nbg = {"schema_version": NBGRADER_SCHEMA, "task": False}
    cells = {
        "task": nbformat.v4.new_markdown_cell(ex.task, metadata={
            "nbgrader": {**nbg, "grade": False, "solution": False, "locked": True,
                         "grade_id": f"{key}-task"}}),
        "solution": nbformat.v4.new_code_cell(solution_source(ex.id), metadata={
            "tags": ["solution"],
            "nbgrader": {**nbg, "grade": False, "solution": True, "locked": False,
                         "grade_id": f"{key}-solution"}}),
        "check": nbformat.v4.new_code_cell(check_source(ex), metadata={
            "tags": ["check"],
            "nbgrader": {**nbg, "grade": True, "solution": False, "locked": True, "points": 1,
                         "grade_id": f"{key}-check"}}),
        "hint": nbformat.v4.new_code_cell(hint_source(ex), metadata={"tags": ["hint"]}),
    }
    for role, cell in cells.items():
        cell.metadata["socklab"] = {"exercise": ex.id, "role": role}
        cell["id"] = f"{key}-{role}"
    return cells


def _role(cell):
    meta = cell.get("metadata", {}).get("socklab", {})
    return meta.get("exercise"), meta.get("role")


def _update(cell, new) -> bool:
    """Make ``cell`` like ``new`` (source and metadata, keeping its id); True if it changed."""
    changed = cell.source != new.source or dict(cell.metadata) != dict(new.metadata)
    if changed:
        cell.source = new.source
        cell.metadata = copy.deepcopy(new.metadata)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return changed


def _find_anchor(nb, anchor: str):
    """Index of the notebook's own markdown cell (not an exercise's) that holds ``anchor``, or None."""
    if not anchor:
        return None
    return next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and not _role(c)[0]
                 and anchor in c.source), None)


def _cells_of(nb, exercise_id: str) -> dict:
    """Where exercise ``exercise_id``'s cells are in ``nb``: role -> index."""
    return {_role(c)[1]: i for i, c in enumerate(nb.cells) if _role(c)[0] == exercise_id}


def _is_empty_code(cell) -> bool:
    return cell.cell_type == "code" and not cell.source.strip() and not _role(cell)[0]


def _move_to_anchor(nb, have: dict, at: int, anchor: str) -> None:
    """Move an exercise's cells (indices ``have``) to the notebook's own wording of it (``anchor``,
    in cell ``at``), which they replace: from the anchor to the end of that cell, and the empty code
    cell after it. The cells move as they are (ids, metadata, outputs)."""
    where = sorted(have.values())
    moved = [nb.cells[i] for i in where]
    for i in reversed(where):
        del nb.cells[i]
    at -= sum(1 for i in where if i < at)
    cell = nb.cells[at]
    pos = cell.source.index(anchor)
    if cell.source[:pos].strip():
        cell.source = cell.source[:pos].rstrip() + "\n"     # keep what comes before the anchor
        at += 1
    else:
        del nb.cells[at]
    if at < len(nb.cells) and _is_empty_code(nb.cells[at]):
        del nb.cells[at]
    nb.cells[at:at] = moved


def insert_exercises(nb, exercises) -> list:
    """Put each exercise's cells into ``nb`` (in place); idempotent. Returns what was done.

    An exercise already in the notebook (cells tagged with its id) is updated in place; if the
    notebook also still has its own wording of that exercise (the ``anchor`` text, in a markdown cell
    that is no exercise's), the exercise's cells are first moved there and replace it. Otherwise, if
    the anchor is in a markdown cell, the exercise replaces it from there to the end of that cell,
    and an empty code cell right after it becomes the learner's cell; otherwise the four cells go at
    the end.
    """
    done = []
    for ex in exercises:
        cells = exercise_cells(ex)
        have = _cells_of(nb, ex.id)
        anchor = _find_anchor(nb, ex.anchor)
        if have:
            moved = anchor is not None
            if moved:
                _move_to_anchor(nb, have, anchor, ex.anchor)
                have = _cells_of(nb, ex.id)  # the move changed the indices
            changed = False
            last = max(have.values())
            for role in ("task", "solution", "check", "hint"):
                if role in have:
                    changed |= _update(nb.cells[have[role]], cells[role])
                else:
                    last += 1
                    nb.cells.insert(last, cells[role])
                    changed = True
            if moved:
                done.append(f"{ex.id}: moved to its exercise ({ex.anchor})")
            else:
                done.append(f"{ex.id}: {'updated' if changed else 'unchanged'}")
            continue
        if anchor is not None:
            cell = nb.cells[anchor]
            pos = cell.source.index(ex.anchor)
            if cell.source[:pos].strip():
                # The exercise is the last item of a longer cell: keep what comes before it there,
                # and give the exercise its own cell.
                cell.source = cell.source[:pos].rstrip() + "\n"
                anchor += 1
                nb.cells.insert(anchor, cells["task"])
            else:
                _update(cell, cells["task"])
            at = anchor + 1
            if at < len(nb.cells) and _is_empty_code(nb.cells[at]):
                _update(nb.cells[at], cells["solution"])
                at += 1
            else:
                nb.cells.insert(at, cells["solution"])
                at += 1
            nb.cells.insert(at, cells["check"])
            nb.cells.insert(at + 1, cells["hint"])
            done.append(f"{ex.id}: inserted at its exercise ({ex.anchor})")
        else:
            nb.cells.extend(cells[r] for r in ("task", "solution", "check", "hint"))
            done.append(f"{ex.id}: appended")
    return done


def notebook_path(nn: str, src: pathlib.Path = NOTEBOOKS):
    found = sorted(src.glob(f"{int(nn):02d}-*.ipynb"))
    return found[0] if found else None


def insert_command(numbers, execute: bool, src: pathlib.Path = NOTEBOOKS) -> int:
    sys.path.insert(0, str(ROOT))
    from socklab.exercises import EXERCISES, by_notebook
    wanted = numbers or sorted({ex.notebook for ex in EXERCISES.values()})
    touched = []
    for nn in wanted:
        path = notebook_path(nn, src)
        exs = by_notebook(nn)
        if path is None:
            print(f"{int(nn):02d}: no notebook yet; {len(exs)} exercise(s) wait for it")
            continue
        if not exs:
            print(f"{path.name}: no exercises defined")
            continue
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        for line in insert_exercises(nb, exs):
            print(f"{path.name}: {line}")
        nbformat.validate(nb)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            touched.append(path)
    if execute and touched:
        subprocess.run([sys.executable, str(ROOT / "tools" / "execute_notebooks.py"),
                        *map(str, touched)], check=True)
    elif touched:
        shown = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in touched]
        print("changed:", " ".join(p.name for p in touched),
              "\nnow run: python tools/execute_notebooks.py " + " ".join(shown))
    return 0


def status(src: pathlib.Path = NOTEBOOKS) -> int:
    sys.path.insert(0, str(ROOT))
    from socklab.exercises import EXERCISES
    for ex in EXERCISES.values():
        path = notebook_path(ex.notebook, src)
        if path is None:
            state = "notebook not written yet"
        else:
            nb = nbformat.read(path, as_version=4)
            roles = set(_cells_of(nb, ex.id))
            state = "in the notebook" if roles == {"task", "solution", "check", "hint"} else \
                ("missing: run insert-exercises" if not roles else f"incomplete: {sorted(roles)}")
        print(f"{ex.id:5} {ex.title:32} {state}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for kind in ("student", "instructor"):
        s = sub.add_parser(kind, help=f"write the {kind} version of the series")
        s.add_argument("outdir", type=pathlib.Path)
        s.add_argument("--notebooks", type=pathlib.Path, default=NOTEBOOKS)
    s = sub.add_parser("insert-exercises", help="insert exercise cells into notebooks (idempotent)")
    s.add_argument("numbers", nargs="*", help="notebook numbers, e.g. 05 06 (default: all)")
    s.add_argument("--execute", action="store_true", help="re-execute the changed notebooks")
    s.add_argument("--notebooks", type=pathlib.Path, default=NOTEBOOKS)
    s = sub.add_parser("status", help="which exercises are in which notebooks")
    s.add_argument("--notebooks", type=pathlib.Path, default=NOTEBOOKS)
    args = p.parse_args(argv)
    if args.cmd in ("student", "instructor"):
        written = write_version(args.cmd, args.outdir, args.notebooks)
        print(f"{args.cmd} version: {len(written)} notebooks in {args.outdir}")
        return 0
    if args.cmd == "insert-exercises":
        return insert_command(args.numbers, args.execute, args.notebooks)
    return status(args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
