# Two entry points for a fresh machine with only Python and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: demo test install
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/parity demo

test: $(STAMP)
	$(BIN)/python -m pytest
