# Two commands do all the set-up on a fresh machine with Python >= 3.11 and make:
#   make demo   - create/refresh the virtualenv, run the embedded demo
#   make test   - create/refresh the virtualenv, run the whole test suite
#                 (mypy --strict and ruff included: tests/unit/test_typecheck.py, test_lint.py)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp is older than pyproject.toml when dependencies or packages changed,
# and missing when the venv is new or broken: either way, (re)install.
STAMP := $(VENV)/.fedgate-installed
# The extras installed: `make test EXTRAS=dev,spark` adds PySpark (the Spark source's tests then run, not skip).
EXTRAS ?= dev
EXTRAS_FILE := $(VENV)/.fedgate-extras

BENCH_STAMP := $(VENV)/.fedgate-bench-installed
PEERS := .bench-peers

.PHONY: demo test bench protos typecheck lint clean venv screenshots FORCE

# Rewritten only when EXTRAS differs from what was installed, so that the stamp is remade then.
$(EXTRAS_FILE): FORCE
	@if [ -d $(VENV) ] && [ "$$(cat $@ 2>/dev/null)" != "$(EXTRAS)" ]; then echo "$(EXTRAS)" > $@; fi

$(STAMP): pyproject.toml $(EXTRAS_FILE)
	@if ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
		rm -rf $(VENV); \
		$(PYTHON) -c 'import sys; sys.exit("fedgate needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None' && \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23" "setuptools>=77" wheel
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@echo "$(EXTRAS)" > $(EXTRAS_FILE)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedgate demo

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file's tests in one process (their module
# fixtures are shared); TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The peers' side-by-side benchmark: 10k and 100k rows per side, about 3.5 minutes on 2 cores
# (BENCH_ARGS="--size 1000000" adds a million, about 10 minutes; docs/performance.md). Results in bench/results/latest/.
# Spark mode, the same matches with the departments' rows read through Spark against CSV (needs Java 17):
#   make bench EXTRAS=dev,spark BENCH_ARGS="--spark --sizes 1000000,10000000"   (about an hour; bench/results/spark/)
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS),bench]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --target $(PEERS) openmined-psi==2.0.6
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The console's browser tests, saving each main page's screenshot into docs/console/ (needs Debian's chromium).
screenshots: $(STAMP)
	FEDGATE_SCREENSHOTS=docs/console $(BIN)/python -m pytest tests/e2e/test_console_browser.py -q

# mypy --strict over the whole fedgate package (every subpackage).
typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

lint: $(STAMP)
	$(BIN)/python -m ruff check .

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) $(PEERS) fedgate-demo build *.egg-info .pytest_cache
