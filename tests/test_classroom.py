"""Classroom workflow (tools/classroom.py): the student version has no solutions and no outputs and
still runs top to bottom (every check says 'not attempted'); the instructor version is the
committed notebooks, runs, and every check passes; exercise cells go in idempotently; and nbgrader
(generate_assignment, autograde) treats the notebooks as an assignment: it strips the same code
we do, scores the stubs 0 and the solved exercises full marks.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import classroom  # noqa: E402

import socklab.exercises as exercises  # noqa: E402
from exercise_solutions import source  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"


def exercise_notebooks() -> list:
    """Committed notebooks that hold exercise cells (the finished ones, for now)."""
    out = []
    for path in classroom.series():
        nb = nbformat.read(path, as_version=4)
        if any(classroom._role(c)[0] for c in nb.cells):
            out.append(path.name)
    return out


WITH_EXERCISES = exercise_notebooks()


def roles(nb) -> dict:
    return {classroom._role(c): c for c in nb.cells if classroom._role(c)[0]}


def execute(path: pathlib.Path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def run_all(paths) -> dict:
    """Execute notebooks, two at a time (one kernel each); {name: executed notebook}."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip((p.name for p in paths), pool.map(execute, paths)))


def errors_outside_expected(nb) -> list:
    bad = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "NBVAL_RAISES_EXCEPTION" in cell.source:
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                bad.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return bad


def output_text(cell) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                   for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "classroom.py"), "student", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def instructor_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("instructor")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "classroom.py"), "instructor", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def test_the_finished_notebooks_have_their_exercises():
    expected = {"03", "05", "06", "07", "08"}
    names = {n[:2] for n in WITH_EXERCISES}
    assert expected <= names, f"exercise cells missing in {sorted(expected - names)}"
    for name in WITH_EXERCISES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        have = roles(nb)
        for ex in exercises.by_notebook(name[:2]):
            assert {r for (i, r) in have if i == ex.id} == {"task", "solution", "check", "hint"}, ex.id
            # the learner cell holds exactly the reference solution the tests check
            assert have[(ex.id, "solution")].source == source(ex.id).rstrip("\n")


def test_committed_notebooks_show_every_check_passing():
    for name in WITH_EXERCISES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for (ex_id, role), cell in roles(nb).items():
            if role == "check":
                assert f"✅ {ex_id} " in output_text(cell), f"{name} {ex_id}: {output_text(cell)[:300]}"
            if role == "hint":
                assert output_text(cell).startswith("💡 Hint 1 of ")


def test_student_version_has_no_solutions_and_no_outputs(student_dir):
    names = sorted(p.name for p in student_dir.glob("*.ipynb"))
    assert names == [p.name for p in classroom.series()]
    for path in student_dir.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert "widgets" not in nb.metadata
        for cell in nb.cells:
            for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", ".grade("):
                assert marker not in cell.source, f"{path.name}: {marker} left in a cell"
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
    for name in WITH_EXERCISES:
        nb = nbformat.read(student_dir / name, as_version=4)
        have = roles(nb)
        for ex in exercises.by_notebook(name[:2]):
            cell = have[(ex.id, "solution")].source
            assert "# YOUR CODE HERE\n" in cell and "raise NotImplementedError()" in cell
            for name_ in ex.names:
                assert f"def {name_}(" in cell          # the stub keeps the signature
            body = solution_bodies(source(ex.id))
            assert body and not any(line in cell for line in body), f"{ex.id}: solution code left"
            assert have[(ex.id, "check")].source == f'socklab.exercises.check("{ex.id}", ' \
                                                    f'{", ".join(ex.names)})'


def solution_bodies(src: str) -> list:
    """The non-trivial lines between the solution markers."""
    out, inside = [], False
    for line in src.splitlines():
        if line.strip() == classroom.BEGIN_SOLUTION:
            inside = True
        elif line.strip() == classroom.END_SOLUTION:
            inside = False
        elif inside and len(line.strip()) > 12:
            out.append(line.strip())
    return out


def test_instructor_version_is_the_committed_series(instructor_dir):
    for path in classroom.series():
        assert json.loads((instructor_dir / path.name).read_text()) == json.loads(path.read_text())


@pytest.mark.timeout(600)
def test_student_version_runs_top_to_bottom_and_checks_say_not_attempted(student_dir):
    runs = run_all([student_dir / n for n in WITH_EXERCISES])
    for name, nb in runs.items():
        assert not errors_outside_expected(nb), f"{name}: {errors_outside_expected(nb)}"
        have = roles(nb)
        for ex in exercises.by_notebook(name[:2]):
            text = output_text(have[(ex.id, "check")])
            assert f"✏️ {ex.id} " in text and "not attempted yet" in text, f"{ex.id}: {text[:300]}"
            assert "Hint 1 of" in output_text(have[(ex.id, "hint")])


@pytest.mark.timeout(600)
def test_instructor_version_runs_and_every_check_passes(instructor_dir):
    runs = run_all([instructor_dir / n for n in WITH_EXERCISES])
    for name, nb in runs.items():
        assert not errors_outside_expected(nb), f"{name}: {errors_outside_expected(nb)}"
        for ex in exercises.by_notebook(name[:2]):
            text = output_text(roles(nb)[(ex.id, "check")])
            assert f"✅ {ex.id} " in text and "passed" in text, f"{ex.id}: {text[:500]}"


# ---- stripping, as nbgrader does it

def test_strip_solutions_keeps_indentation_and_everything_outside():
    src = ("import x\n\ndef f(a):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    return a\n"
           "    ### END SOLUTION\n\nclass C:\n    ### BEGIN SOLUTION\n    y = 1\n    ### END SOLUTION")
    assert classroom.strip_solutions(src) == (
        "import x\n\ndef f(a):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()"
        "\n\nclass C:\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    hidden = "a = 1\n### BEGIN HIDDEN TESTS\nassert a\n### END HIDDEN TESTS\nb = 2"
    assert classroom.strip_hidden_tests(hidden) == "a = 1\nb = 2"
    with pytest.raises(ValueError):
        classroom.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


# ---- inserting exercise cells

def synthetic_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# NN"), nbformat.v4.new_code_cell("import socklab"),
                nbformat.v4.new_markdown_cell("## What you learned\n\nStuff.\n\n## Exercises\n\n"
                                              "1. **Old one.** Do something."),
                nbformat.v4.new_code_cell("")]
    return nb


def test_insert_exercises_appends_then_is_idempotent():
    nb = synthetic_notebook()
    exs = [exercises.get("13.1"), exercises.get("02.1")]
    assert classroom.insert_exercises(nb, exs) == ["13.1: appended", "02.1: appended"]
    assert len(nb.cells) == 4 + 8
    nbformat.validate(nb)
    before = nbformat.writes(nb)
    assert classroom.insert_exercises(nb, exs) == ["13.1: unchanged", "02.1: unchanged"]
    assert nbformat.writes(nb) == before
    ids = [c["id"] for c in nb.cells[4:]]
    assert ids[:4] == ["ex13-1-task", "ex13-1-solution", "ex13-1-check", "ex13-1-hint"]
    meta = nb.cells[5].metadata["nbgrader"]
    assert meta["solution"] is True and meta["grade"] is False and meta["grade_id"] == "ex13-1-solution"
    check = nb.cells[6].metadata["nbgrader"]
    assert check["grade"] is True and check["points"] == 1 and check["locked"] is True


def test_insert_exercises_replaces_the_notebooks_own_exercise_in_place():
    nb = synthetic_notebook()
    ex = exercises.get("13.1")
    ex_anchor = dataclasses.replace(ex, anchor="1. **Old one.**")
    assert classroom.insert_exercises(nb, [ex_anchor]) == ["13.1: inserted at its exercise (1. **Old one.**)"]
    assert nb.cells[2].source.rstrip().endswith("## Exercises")     # the summary stays
    assert nb.cells[3].source == ex.task                             # the exercise gets its own cell
    assert nb.cells[4].metadata["socklab"]["role"] == "solution"     # the empty cell is reused
    assert [classroom._role(c)[1] for c in nb.cells[3:]] == ["task", "solution", "check", "hint"]
    # an edited learner cell is put back to the reference (and its stale output dropped)
    nb.cells[4].source = "def checksum(data):\n    return 0"
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="x")]
    assert classroom.insert_exercises(nb, [ex_anchor]) == ["13.1: updated"]
    assert nb.cells[4].source == source("13.1").rstrip("\n") and nb.cells[4].outputs == []


def test_insert_exercises_moves_an_appended_exercise_to_its_anchor():
    """An exercise appended before it had an anchor moves, cells as they are, to the notebook's own
    wording of it, which goes away (with its empty code cell); then nothing changes any more."""
    nb = synthetic_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("2. **Another.** Explore."))
    nb.cells.append(nbformat.v4.new_code_cell(""))
    ex = exercises.get("13.1")
    assert classroom.insert_exercises(nb, [ex]) == ["13.1: appended"]
    nb.cells[8].outputs = [nbformat.v4.new_output("stream", text="✅ 13.1 passed")]   # the check's
    ex_anchor = dataclasses.replace(ex, anchor="1. **Old one.**")
    assert classroom.insert_exercises(nb, [ex_anchor]) == ["13.1: moved to its exercise (1. **Old one.**)"]
    assert nb.cells[2].source.rstrip().endswith("## Exercises")     # the summary stays
    assert "Old one" not in nbformat.writes(nb)                      # the duplicate is gone
    assert [c["id"] for c in nb.cells[3:7]] == ["ex13-1-task", "ex13-1-solution", "ex13-1-check",
                                                "ex13-1-hint"]
    assert nb.cells[5].outputs and nb.cells[5].metadata["nbgrader"]["grade"] is True
    assert nb.cells[7].source == "2. **Another.** Explore." and nb.cells[8].cell_type == "code"
    assert len(nb.cells) == 9                                        # the empty cell went too
    nbformat.validate(nb)
    before = nbformat.writes(nb)
    assert classroom.insert_exercises(nb, [ex_anchor]) == ["13.1: unchanged"]
    assert nbformat.writes(nb) == before


def test_insert_command_on_a_copy_of_the_series(tmp_path):
    """The single command the lead runs once the other notebooks are written."""
    for p in classroom.series():
        shutil.copy(p, tmp_path / p.name)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "classroom.py"), "insert-exercises",
                        "--notebooks", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in WITH_EXERCISES:  # finished notebooks: already in, unchanged
        assert (tmp_path / name).read_text() == (NOTEBOOKS / name).read_text()
    for ex in exercises.EXERCISES.values():
        path = classroom.notebook_path(ex.notebook, tmp_path)
        if path is None:
            assert f"{ex.notebook}: no notebook yet" in r.stdout
            continue
        nb = nbformat.read(path, as_version=4)
        assert {r_ for (i, r_) in roles(nb) if i == ex.id} == {"task", "solution", "check", "hint"}
    r2 = subprocess.run([sys.executable, str(ROOT / "tools" / "classroom.py"), "insert-exercises",
                         "--notebooks", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert "changed:" not in r2.stdout and "inserted" not in r2.stdout and "appended" not in r2.stdout


# ---- nbgrader itself

def nbgrader_env():
    pytest.importorskip("nbgrader", reason="nbgrader is part of the test extra: pip install -e '.[test]'")
    exe = pathlib.Path(sys.executable).with_name("nbgrader")
    if not exe.exists():
        pytest.skip(f"no nbgrader next to {sys.executable}")
    env = dict(os.environ)
    env["PATH"] = f"{exe.parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `alembic` from PATH
    return exe, env


@pytest.mark.timeout(600)
def test_nbgrader_generate_assignment_and_autograde(tmp_path):
    exe, env = nbgrader_env()
    name = "05-accept-and-data.ipynb"
    course = tmp_path / "course"
    (course / "source" / "ps05").mkdir(parents=True)
    shutil.copy(NOTEBOOKS / name, course / "source" / "ps05" / name)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'socklab'\n"
        f"c.CourseDirectory.root = {str(course)!r}\n")

    def nbgrader(*args):
        r = subprocess.run([str(exe), *args], cwd=course, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    nbgrader("generate_assignment", "ps05", "--force")
    released = nbformat.read(course / "release" / "ps05" / name, as_version=4)
    ours = classroom.student_notebook(nbformat.read(NOTEBOOKS / name, as_version=4))
    r_rel, r_ours = roles(released), roles(ours)
    assert set(r_rel) == set(r_ours)
    for key, cell in r_rel.items():       # nbgrader strips exactly what classroom.py strips
        assert cell.source == r_ours[key].source, key
        assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
    assert all(not c.get("outputs") for c in released.cells if c.cell_type == "code")

    # Two submissions: the stubs as released, and the same notebook with the exercises solved.
    solved = nbformat.read(course / "release" / "ps05" / name, as_version=4)
    for cell in solved.cells:
        ex_id, role = classroom._role(cell)
        if role == "solution":
            cell.source = source(ex_id).rstrip("\n")
    for student, nb in (("stub", released), ("solved", solved)):
        (course / "submitted" / student / "ps05").mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / "ps05" / name)
    nbgrader("autograde", "ps05", "--create", "--force")

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission("ps05", s).score for s in ("stub", "solved")}
        max_score = gb.find_submission("ps05", "solved").max_score
    assert max_score == len(exercises.by_notebook("05")) == 2
    assert scores == {"stub": 0.0, "solved": 2.0}
    graded = nbformat.read(course / "autograded" / "stub" / "ps05" / name, as_version=4)
    text = output_text(roles(graded)[("05.1", "check")])
    assert "AssertionError" in json.dumps(roles(graded)[("05.1", "check")].outputs) or \
        "not attempted" in text
