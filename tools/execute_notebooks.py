"""Execute notebooks in place with a real kernel so their stored outputs are fresh.

Usage: python tools/execute_notebooks.py [notebooks/NN-name.ipynb ...]   (default: all)
Stores widget state, sets the kernelspec, and refuses to save a notebook whose run raised
outside cells tagged raises-exception / marked NBVAL_RAISES_EXCEPTION.
"""
from __future__ import annotations

import pathlib
import re
import sys

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
RAISES = re.compile(r"^\s*#\s*NBVAL_RAISES_EXCEPTION\s*$", re.M)  # nbval wants the marker alone on its line
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata.setdefault("language_info", {"name": "python"})
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                            allow_errors=True, resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for i, cell in enumerate(nb.cells):
        failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if failed and not RAISES.search(cell.source):
            raise SystemExit(f"{path.name}: cell {i} raised but is not marked NBVAL_RAISES_EXCEPTION; "
                             "not saved")
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None) if not _has_widgets(nb) else None
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"executed {path.name}")


def _has_widgets(nb) -> bool:
    return any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


if __name__ == "__main__":
    paths = [pathlib.Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for p in paths:
        execute(p)
