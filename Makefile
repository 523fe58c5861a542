# make run: the daemon and the API on defaults.  make test: lint, then the whole suite.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run fleet test lint reliability install clean bench

$(BIN)/reev-ingestd: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/reev-ingestd

# ruff and mypy, as configured in pyproject.toml ([tool.ruff], [tool.mypy]); a finding fails `make test`.
lint: install
	$(BIN)/ruff check
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long versions of the reliability scenarios (many more kills, bigger files); see docs/reliability.md.
reliability: install
	REEV_RELIABILITY_LONG=1 $(BIN)/python -m pytest tests/reliability -m reliability $(PYTEST_ARGS)

# Both programs on their defaults (or REEV_* settings); Ctrl-C (or either one exiting) stops
# both. The exit status is the first one to exit's: non-zero when either fails to start.
run: install
	@trap 'kill $$daemon $$api 2>/dev/null' INT TERM; \
	echo "reev-ingest: starting the daemon and the API (Ctrl-C stops both)"; \
	$(BIN)/reev-ingestd & daemon=$$!; \
	$(BIN)/reev-api & api=$$!; \
	wait -n; status=$$?; kill $$daemon $$api 2>/dev/null; wait; exit $$status

# The scale-out on one machine (scripts/fleet.py, docs/fleet.md): a throwaway PostgreSQL, three
# daemons on three sources' folders and one API on port 3001; Ctrl-C stops them all and deletes
# the throwaway data. FLEET_ARGS: e.g. --port 3002 --sessions 50 --every 2.
fleet: install
	$(BIN)/python scripts/fleet.py $(FLEET_ARGS)

# Benchmarks (perf/bench.py): BENCH_SIZE=small (about 5 minutes) or large (the real one, long).
# Prints one Markdown table, records the run in perf/runs/$(BENCH_SIZE).json and rewrites
# perf/RESULTS.md and docs/performance.md's results from the last run of each size; generated data goes
# to perf/data/.
BENCH_SIZE ?= small
$(VENV)/.bench-installed: pyproject.toml $(BIN)/reev-ingestd
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null && test -x /usr/bin/time || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk time)
	BENCH_SIZE=$(BENCH_SIZE) $(BIN)/python perf/bench.py

clean:
	rm -rf $(VENV) state .pytest_cache
