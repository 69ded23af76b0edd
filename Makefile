# Two commands do everything on a fresh machine:
#   make demo   create .venv, install mixkit, run the demo (no download)
#   make test   create .venv, install everything, run the test suite
# One distribution: `pip install -e ".[all]"` brings mixkit and its first-party plugins.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# the plugins were once a second distribution (mixkit-plugins): drop it from old venvs
	$(BIN)/python -m pip uninstall --quiet --yes mixkit-plugins 2>/dev/null || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
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
