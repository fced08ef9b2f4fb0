# The two commands of the README: `make run` and `make test`.
# Everything else here is how they install what they need into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# `make run PORT=8001` or `PORT=8001 make run`.
PORT ?= 8000

.PHONY: run test install install-dev clean

run: $(VENV)/.installed-run
	PORT=$(PORT) bin/run

test: $(VENV)/.installed-dev
	bin/test $(PYTEST_ARGS)

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) var staticfiles
