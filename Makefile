# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-http notebooks clean

# (Re)install when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/credit-rating rate --year 2024
	$(BIN)/credit-rating serve --local

lint: $(STAMP)
	$(BIN)/ruff check scoring service tests benchmarks
	$(BIN)/ruff format --check scoring service tests benchmarks
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest

# Every notebook executed in this environment's own Jupyter kernel (no other kernelspec) and
# rendered to HTML for reading, in build/notebooks/ (git-ignored). `make test` runs them too.
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to html --execute --output-dir build/notebooks \
	  --KernelSpecManager.kernel_dirs='[]' notebooks/*.ipynb

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.cli_scale
	$(BIN)/python -m benchmarks.calibrate
	$(MAKE) bench-http

# The HTTP load test uses wrk (installed from the system packages when possible; without it,
# benchmarks.http_load falls back to its own asyncio load generator and says so).
bench-http: $(STAMP)
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-cache policy wrk | grep -q 'Candidate: [0-9]' || apt-get update -qq; \
	    apt-get install -y -qq wrk >/dev/null || echo "wrk could not be installed"; \
	  else echo "wrk not installed (apt-get install wrk): using the asyncio load generator"; fi; }
	$(BIN)/python -m benchmarks.http_load
	$(BIN)/python -m benchmarks.service_scale

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
