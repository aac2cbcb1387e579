"""Reference solutions of the exercises, one file per exercise (``ex_05_1.py`` for 05.1).

Each file is exactly the learner cell of the instructor notebook, with nbgrader's
``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers: ``tools/classroom.py insert-exercises``
puts it into the notebook, and tests/test_exercises.py runs it against the checks. These files are
not part of the installed package (students never get them).
"""
from __future__ import annotations

import pathlib

HERE = pathlib.Path(__file__).resolve().parent

# What the notebook defines before the exercise and the solution relies on.
PRELUDES = {
    "08.1": '''
import errno, os, socket, stat

def remove_stale(path):
    """Remove `path` if it is a socket file nobody listens on. Returns True if it removed it."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise FileExistsError(errno.EEXIST, "not a socket file, leaving it alone", path)
    except FileNotFoundError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)             # nobody there: safe to remove
            return True
    raise OSError(errno.EADDRINUSE, "a server is listening there", path)
''',
}


def path_of(exercise_id: str) -> pathlib.Path:
    return HERE / f"ex_{exercise_id.replace('.', '_')}.py"


def source(exercise_id: str) -> str:
    """The learner cell of the instructor version (with the solution markers)."""
    return path_of(exercise_id).read_text()


def load(exercise_id: str, src: str | None = None, names=None) -> dict:
    """Run the cell (after its notebook's prelude) in a fresh namespace; return the namespace."""
    import linecache
    ns: dict = {"__name__": f"exercise_{exercise_id.replace('.', '_')}"}
    exec(compile(PRELUDES.get(exercise_id, ""), f"<prelude {exercise_id}>", "exec"), ns)
    if src is None:
        filename, src = str(path_of(exercise_id)), source(exercise_id)
    else:  # like IPython does for a cell: its lines can be shown in tracebacks and feedback
        filename = f"<cell {exercise_id} {abs(hash(src)):x}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), ns)
    return ns
