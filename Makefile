# Hoichan developer entry points. Everything runs from the project's own .venv, created on first use.
# Installs are redone only when pyproject.toml is newer than the stamp file (or the venv is new).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run.stamp
STAMP_TEST := $(VENV)/.installed-test.stamp

.PHONY: run test bench install install-test

run: $(STAMP_RUN)
	$(BIN)/hoichan serve --config config.yaml

# Two workers for most of the suite (it waits on processes and links more than it computes), then the tests that
# measure media at the issues' bounds on their own, so a busy neighbour cannot skew their figures.
test: $(STAMP_TEST)
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not solo"
	$(BIN)/pytest -q -m solo

bench: $(STAMP_TEST)
	$(BIN)/python bench/relay.py

install: $(STAMP_RUN)

install-test: $(STAMP_TEST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

# The test extra is a superset of the runtime install, so it satisfies `run` too.
$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@ $(STAMP_RUN)
