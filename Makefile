# Every target works on a fresh machine with only python3: it builds what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Branch coverage of the package, one line per module not fully covered, and the total.
COVERAGE ?= --cov=aioqlog --cov-branch --cov-report=term:skip-covered

# The interpreters `make test-all` runs the suite on (pyenv installs, or python3.X on PATH).
PY_VERSIONS ?= 3.10 3.11 3.12 3.13

.PHONY: help test lint test-all stress soak demo docs clean bench bench-report

help:
	@echo "make test      - create $(VENV), install aioqlog with its test extras, run lint and the suite"
	@echo "                 (and report branch coverage; COVERAGE= turns it off)"
	@echo "                 (the syslog tests need rsyslogd, Debian package rsyslog; skipped without it)"
	@echo "make demo      - show the loop lag a slow handler causes, directly and behind aioqlog"
	@echo "make test-all  - run the suite on Python $(PY_VERSIONS)"
	@echo "make stress    - run the whole suite 20 times in a row (stops at the first failure)"
	@echo "make soak      - one million records through start/stop cycles (no leaked threads, fds or"
	@echo "                 memory), and 500 random lifecycle sequences against the invariants"
	@echo "make docs      - build the documentation (mkdocs build --strict)"
	@echo "make bench     - run the benchmarks beside the peers (about 10 min; QUICK=1: a smoke run)"
	@echo "make bench-report - run them, then regenerate docs/benchmarks.md, its plots and the README table"

$(BIN)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The syslog handler's tests run a real rsyslogd; without one they are skipped, not failed.
RSYSLOGD_NOTE := note: rsyslogd not found, so the syslog tests that run a real rsyslogd are \
  skipped (install the Debian/Ubuntu package rsyslog, as .ci/run does)

test: $(BIN)/.installed-test
	@command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || echo "$(RSYSLOGD_NOTE)"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest $(COVERAGE) $(PYTEST_ARGS)

lint: $(BIN)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-all:
	@set -e; for v in $(PY_VERSIONS); do \
	  py=$$(ls -d $(HOME)/.pyenv/versions/$$v.*/bin/python 2>/dev/null | head -n1 || true); \
	  [ -n "$$py" ] || py=$$(command -v python$$v || true); \
	  if [ -z "$$py" ]; then echo "Python $$v not found"; exit 1; fi; \
	  echo "=== Python $$v ($$py)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-$$v; \
	done

stress: $(BIN)/.installed-test
	@set -e; for i in $$(seq 1 20); do \
	  echo "=== run $$i/20"; \
	  $(BIN)/pytest -q $(PYTEST_ARGS); \
	done

soak: $(BIN)/.installed-test
	AIOQLOG_SOAK_RECORDS=1000000 AIOQLOG_STATEFUL_EXAMPLES=500 \
	  $(BIN)/pytest -q tests/test_leaks.py tests/test_stateful.py

demo:
	PYTHONPATH=. $(PYTHON) examples/slow_handler_demo.py

# The full run's figures are committed: docs/benchmarks.md and the README quote them.
BENCH_JSON := $(if $(QUICK),benchmarks/results-quick.json,benchmarks/results.json)

bench: $(BIN)/.installed-test
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick) --json $(BENCH_JSON)

bench-report: bench
	$(if $(QUICK),$(error bench-report renders the full run: run it without QUICK))
	$(BIN)/python -m benchmarks.report $(BENCH_JSON) --docs docs --readme README.md

$(BIN)/.installed-docs: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .venv-3.* site dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
