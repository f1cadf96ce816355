# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench format clean

# The distribution is jobkit-queue (PyPI's "jobkit" is another project); it was called
# jobkit here before, so an older .venv loses that install and one distribution provides
# the package.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip uninstall --quiet --yes jobkit 2>/dev/null || true
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check jobkit tests benchmarks examples
	$(BIN)/ruff format --check jobkit tests benchmarks examples
	$(BIN)/mypy jobkit

format: $(STAMP)
	$(BIN)/ruff format jobkit tests benchmarks examples
	$(BIN)/ruff check --fix jobkit tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis examples/demo.sqlite*
