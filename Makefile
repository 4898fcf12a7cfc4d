# Two commands a newcomer needs (see README.md):
#   make run    set up a virtualenv and run taskforce on the bundled example
#   make test   set up a virtualenv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROLES ?= frontend

.PHONY: run test lint typecheck venv clean

$(BIN)/.installed: pyproject.toml setup.py src/taskforce/_syscalls.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,fleet]'
	touch $@

venv: $(BIN)/.installed

run: venv
	PATH="$(abspath $(BIN)):$$PATH" examples/run $(ROLES)

lint: venv
	$(BIN)/ruff check src tests tools examples/bin/procsim
	$(BIN)/ruff format --check src tests tools
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

test: lint typecheck
	bash tests/setup.sh
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .pytest_cache .ruff_cache

# Benchmarks against the peers (installs them when missing; see bench/README.md).
# `make bench BENCH_ARGS=--quick` for a smoke run; `BENCH_ARGS="--only taskforce,s6"` etc.
.PHONY: bench bench-scale
bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# 10,000 tasks (1,000 for peers that cannot go further): writes bench/results/scale.md.
bench-scale: venv
	$(BIN)/python bench/run.py --scale $(BENCH_ARGS)

# Soak test (long, not in CI): 30 minutes of task kills, config rewrites and roles flips
# against 200 tasks; writes soak-report.json and .md. `make soak SOAK_ARGS="--duration 180"`
.PHONY: soak
soak: venv
	$(BIN)/python tests/soak/soak.py $(SOAK_ARGS)
