# One command to set up and run circleback, one to test it. Everything lives in ./.venv.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/circleback $(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed

## make run: install, write a starter plan if there is none, run one cycle (writes the feed), show the agenda
run: $(VENV)/.installed
	@$(BIN)/circleback plan check >/dev/null 2>&1 || [ -e "$$($(BIN)/python -c 'from daemon.config import default_plan_path as p; print(p())')" ] || $(BIN)/circleback init
	$(BIN)/circleback sync
	$(BIN)/circleback agenda --days 28

## make test: ruff, mypy, then the whole test suite (PostgreSQL on 127.0.0.1:5432 is started if needed)
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(VENV)/.installed
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
