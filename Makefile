# Two commands do all the set-up on a fresh machine:
#   make lab    install into .venv (first time only) and open JupyterLab on the notebooks
#   make test   install into .venv (first time only), plus the system tools the tests use, and run every test
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# Each kernel imports socklab; cached bytecode saves it ~45 ms per start. An editable install does
# not compile, and where PYTHONDONTWRITEBYTECODE is set the cache is never written on import.
# compileall only rewrites what changed.
COMPILE = $(BIN)/python -m compileall -q socklab >/dev/null

.PHONY: lab test bench student instructor exercises clean

$(BIN)/.socklab-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# As root (a container, a CI machine) JupyterLab refuses to start without --allow-root.
# LAB_ARGS: more options, e.g. LAB_ARGS="--no-browser --ServerApp.port=8899".
lab: $(BIN)/.socklab-installed
	$(COMPILE)
	$(BIN)/jupyter lab notebooks $$(test "$$(id -u)" = 0 && echo --allow-root) $(LAB_ARGS)

test: $(BIN)/.socklab-installed
	bash tools/system-deps.sh
	$(COMPILE)
	$(BIN)/python -m pytest

# Classroom (docs/classroom.md): OUT=dir to choose where the copies go.
student: $(BIN)/.socklab-installed
	$(BIN)/python tools/classroom.py student $(or $(OUT),build/student)

instructor: $(BIN)/.socklab-installed
	$(BIN)/python tools/classroom.py instructor $(or $(OUT),build/instructor)

# Insert every exercise's cells into its notebook (idempotent) and re-execute the notebooks changed.
exercises: $(BIN)/.socklab-installed
	$(BIN)/python tools/classroom.py insert-exercises --execute

bench: $(BIN)/.socklab-installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV)
