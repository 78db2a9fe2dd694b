# One command to set up and run circleback, one to test it. Everything lives in ./.venv.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test bench clean chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## make run: install, write the starter plan and config where missing, run one cycle (writes the feed),
## show the agenda for the next four weeks
run: $(VENV)/.installed
	@$(BIN)/circleback init
	$(BIN)/circleback sync
	$(BIN)/circleback agenda --days 28

## make chromium: Debian's headless browser, which tests/test_report_browser.py opens the audit report in
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q --no-install-recommends chromium; \
	  else \
	    echo "error: /usr/bin/chromium is missing and only root can install it: run" \
	      "'sudo apt-get install --no-install-recommends chromium', then 'make test' again" >&2; \
	    exit 1; \
	  fi; \
	fi

## make test: ruff, mypy, then the whole test suite (PostgreSQL on 127.0.0.1:5432 is started if needed;
## Chromium is installed if missing)
test: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto

bench: $(VENV)/.installed-dev
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
