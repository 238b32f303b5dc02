# crashfleet — the two commands the README promises, and their parts.
#   make test   set up if needed, then ruff, mypy, the layering contracts and pytest (the suite starts its own services)
#   make demo   the embedded pipeline on the committed real sample dumps; /metrics stays up

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export CRASHFLEET_CACHE ?= $(HOME)/.cache/crashfleet

.PHONY: setup test lint typecheck layers pytest lock demo clean

setup: $(STAMP)

# Re-install whenever the lock file or the project metadata changes.
$(STAMP): requirements.lock requirements-build.lock pyproject.toml scripts/setup-system.sh Makefile
	bash scripts/setup-system.sh
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "crashfleet needs Python 3.11 or newer"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# Build tools first (python-lzo ships only an sdist), then everything without build isolation
	# so that every package, build tools included, is the locked, hash-checked version.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-build.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-build-isolation -r requirements.lock
	# editable_mode=compat: a plain path in a .pth file. The default import-hook finder costs
	# every crashfleet command about 10 ms of start-up (it imports pathlib and importlib.util).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	  --config-settings editable_mode=compat -e .
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

# The layering contracts of pyproject.toml [tool.importlinter] (docs/architecture.md).
layers: setup
	$(BIN)/lint-imports --no-cache

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest $(PYTEST_ARGS)

# Regenerate requirements.lock from pyproject.toml (hashes for every wheel).
lock: setup
	$(BIN)/uv pip compile scripts/build-requirements.in --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements-build.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

-include mk/*.mk
