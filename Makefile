# The project's contract: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test lint bench clean

install: $(STAMP) browser

# The OCPay pay page's browser test drives Debian's Chromium through its chromedriver: installed
# here when missing (as root, like CI). Without them that test fails in CI and skips elsewhere.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver (the pay page's browser test) from Debian's packages"; \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } \
	  || echo "warning: could not install chromium; the browser test needs it"; }

# Re-install only when the project's metadata changed: `make install` is idempotent.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

demo: $(STAMP)  # the demo needs no browser: only the tests install one
	$(BIN)/python -m oneclickdz demo

# Two workers per core (pytest-xdist): each worker starts its own services and databases, and
# the tests mostly wait on them (fulfilment delays, retries, process starts), so two per core
# keep the cores busy: on 2 cores, 730 s against 862 s with one per core (measured).
# `make test PYTEST_ARGS="-n 0"` runs the tests one after another. (The count is worked out by
# make, so that the recipe runs without a shell: the CLI's completion tests detect their shell.)
TEST_WORKERS := $(shell echo $$(( $$(nproc) * 2 )))
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install
	@command -v wrk >/dev/null || { echo "installing wrk (HTTP load generator) from Debian's packages"; apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
