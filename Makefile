# Two commands do everything on a fresh machine:
#   make demo   create .venv, install mixkit, run the demo (no download)
#   make test   create .venv, install everything, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml plugins/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all]" -e ./plugins
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mixkit demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mixkit plugins benchmarks tests examples

bench: $(STAMP)
	$(BIN)/python -m benchmarks speed

clean:
	rm -rf $(VENV) demo_out .pytest_cache
