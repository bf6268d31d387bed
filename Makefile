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

test: $(STAMP_TEST)
	$(BIN)/pytest -q

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
