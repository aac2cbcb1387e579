"""Where the notebook suite's time goes: each notebook's cells, timed inside the kernel.

    python benchmarks/notebook_cells.py [--top 25] [NN ...]

Runs the notebooks (all, or those numbered NN) with nbclient, which records when the kernel
started and finished each cell, and prints each notebook's total cell time and the slowest cells.
This is the lessons' own time: `run.py`'s nbval row adds a kernel start per notebook (the floor)
and nbval's cost per cell (its `pass` row) to it. Nothing is written back to the notebooks.
"""
from __future__ import annotations

import argparse
import pathlib
import time
from datetime import datetime

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _seconds(meta) -> float | None:
    try:
        start = datetime.fromisoformat(meta["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(meta["shell.execute_reply"].replace("Z", "+00:00"))
    except KeyError:
        return None
    return (end - start).total_seconds()


def time_cells(path: pathlib.Path):
    """(wall seconds, [(cell seconds, cell index, first line)]) for one notebook."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, allow_errors=True, record_timing=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - t0
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        took = _seconds(cell.metadata.get("execution", {}))
        if took is not None:
            first = next((ln for ln in cell.source.splitlines() if not ln.startswith("#")), "")
            cells.append((took, i, first[:70]))
    return wall, cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    ap.add_argument("--top", type=int, default=25, help="how many of the slowest cells to list")
    a = ap.parse_args()
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    if a.numbers:
        paths = [p for p in paths if p.name[:2] in {f"{int(n):02d}" for n in a.numbers}]
    every = []
    print(f"{'notebook':<34} {'cells':>5} {'in cells':>9} {'wall':>6}")
    for p in paths:
        wall, cells = time_cells(p)
        every += [(took, p.name[:2], i, first) for took, i, first in cells]
        print(f"{p.name:<34} {len(cells):>5} {sum(c[0] for c in cells):>8.2f}s {wall:>5.2f}s")
    total = sum(c[0] for c in every)
    print(f"{'all':<34} {len(every):>5} {total:>8.2f}s")
    print(f"\nthe {a.top} slowest cells ({sum(c[0] for c in sorted(every, reverse=True)[:a.top]):.2f} s "
          f"of {total:.2f} s):")
    for took, nn, i, first in sorted(every, reverse=True)[:a.top]:
        print(f"  {took:6.3f}s  {nn}[{i}]  {first}")


if __name__ == "__main__":
    main()
