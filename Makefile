# Every target sets itself up: a fresh machine needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test proto bench lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[server,test]'
	touch $(STAMP)

install: $(STAMP)

## Start the registry on the embedded default (SQLite + CA in ./.mesh, 127.0.0.1:8443).
run: $(STAMP)
	$(VENV)/bin/mesh serve

## Install into .venv and run every test.
test: $(STAMP)
	$(PY) -m pytest

## Regenerate the Python code for proto/ into the committed tree.
proto: $(STAMP)
	$(PY) -m mesh._internal.protogen

## Run every benchmark under bench/ and write bench/results.json.
bench: $(STAMP)
	$(PY) bench/run_all.py

## Build the native registration load generator (bench/loadgen; installs its Debian packages).
.PHONY: loadgen
loadgen:
	bash bench/loadgen/build.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check mesh trust registry tests bench examples
	$(VENV)/bin/mypy --strict mesh trust

clean:
	rm -rf $(VENV) .mesh .pytest_cache .mypy_cache .ruff_cache
