"""The committed notebooks as files: nbval markers it recognises, clean stored outputs, and the
parts every lesson has. (Running them is nbval's job, and test_rerun.py's.)"""
from __future__ import annotations

import json
import pathlib
import re

import pytest
from nbval.plugin import comment_markers

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_nbval_marker_is_one_nbval_recognises(path):
    """nbval takes a marker only as a whole comment line (`# NBVAL_IGNORE_OUTPUT`): with anything
    after it on the line, the cell is compared strictly, and fails on another machine or user."""
    for cell in cells(path):
        for line in source(cell).splitlines():
            if "NBVAL_" in line:
                comment = line.strip()
                assert comment.startswith("#") and comment.lstrip("#").strip() in comment_markers, \
                    f"{cell.get('id')}: {line!r}: put the reason on the next line"


# What a stored output must not show: this machine's paths (they differ for every reader).
MACHINE_PATHS = re.compile(r"/tmp/socklab-|/tmp/tmp|/home/|/root/|/work/|site-packages")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_stored_outputs_have_no_machine_paths_and_no_unplanned_tracebacks(path):
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            text = json.dumps(out)
            found = MACHINE_PATHS.search(text)
            assert found is None, f"{cell.get('id')}: {text[max(0, found.start() - 60):found.end() + 40]}"
            if out["output_type"] == "error":
                assert "NBVAL_RAISES_EXCEPTION" in source(cell), \
                    f"{cell.get('id')}: a stored traceback in a cell not meant to raise"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_lesson_has_a_summary_and_exercises(path):
    headings = [line for c in cells(path) if c["cell_type"] == "markdown"
                for line in source(c).splitlines() if line.startswith("#")]
    assert any("What you learned" in h for h in headings), headings
    assert any("Exercise" in h for h in headings), headings


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_a_cell_meant_to_raise_does_not_stop_run_all(path):
    """A cell that fails on purpose has both marks: the NBVAL_RAISES_EXCEPTION comment (what nbval
    and this project look for) and the cell tag 'raises-exception': JupyterLab's Run All stops at
    the first error unless the cell has that tag (it then sends stop_on_error=False), so a
    learner's Run All ended at such a cell and left the rest of the lesson unrun."""
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        marked = "NBVAL_RAISES_EXCEPTION" in source(cell)
        tagged = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        failed = any(o["output_type"] == "error" for o in cell.get("outputs", []))
        assert marked == tagged == failed, (
            f"{cell.get('id')}: marked {marked}, tagged {tagged}, stored error {failed}: a cell that "
            "fails on purpose has the NBVAL_RAISES_EXCEPTION comment, the 'raises-exception' tag "
            "and its error stored; any other cell has none of them")
