# posrecon — the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
BIN    := $(VENV)/bin

.PHONY: install demo test test-fast test-broker chaos soak bench lint typecheck clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	@touch $@

## the live pipeline on a local broker with simulated traffic, printing what it found
demo: install
	$(BIN)/posrecon demo

## test tools outside the venv: promtool (Debian package prometheus) for the alert-rule tests in tests/unit/deploy
.PHONY: tools
tools: install
	@if command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing promtool (Debian package prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else \
	  echo "promtool not found: install it with 'sudo apt-get update && sudo apt-get install -y prometheus' (Debian/Ubuntu)"; \
	  echo "or put a promtool binary on PATH; tests/unit/deploy needs it (make test fails without it)"; \
	fi

## unit, property, integration (real broker) and deploy tests; the chaos suite runs with `make chaos` (not yet
## stable on a loaded 2-core box); exit 5 (no tests) is an error
test: install tools
	POSRECON_REQUIRE_BROKER=1 $(PY) -m pytest -q -m "not soak"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treating as failure"; exit 1; fi; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not broker and not chaos and not soak and not slow"

chaos: install
	POSRECON_REQUIRE_BROKER=1 $(PY) -m pytest -q tests/chaos -m "chaos and not soak"

soak: install
	POSRECON_REQUIRE_BROKER=1 POSRECON_SOAK=1 $(PY) -m pytest -q -s tests/chaos -m soak

bench: install
	$(PY) bench/run.py

lint: install
	$(BIN)/ruff check streams tests bench
	$(BIN)/ruff format --check streams tests bench

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
