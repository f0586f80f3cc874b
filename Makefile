# posrecon — the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
BIN    := $(VENV)/bin

NATIVE := .native/posrecon/engine/_native.json
.PHONY: install native codecs demo test test-fast test-broker chaos soak bench lint typecheck clean

install: $(VENV)/.installed $(NATIVE)

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77'
	$(PIP) install -q -e '.[dev]'
	@touch $@

## the engine compiled with mypyc into .native/ (posrecon/native.py: used while it matches the sources; about
## 30 s; rebuilt when an engine source changes). Without a C compiler the engine runs from source, and says so.
native: $(NATIVE)
$(NATIVE): $(VENV)/.installed setup.py streams/posrecon/native.py streams/posrecon/config.py \
           $(wildcard streams/posrecon/engine/*.py)
	@mkdir -p build && echo "compiling the engine with mypyc (about 30 s; log: build/native.log)"
	@$(PY) setup.py -q native >build/native.log 2>&1 || { tail -20 build/native.log; exit 1; }
	@grep -h "^warning: " build/native.log || true
	@$(PY) -c "import posrecon.engine as e; print('engine:', e.BUILD.describe())"

## the Avro codecs of schemas/*.avsc, generated into the engine package (compiled with it); run after editing a
## schema (tests/unit/serde/test_generated_codecs.py fails until then), then `make native`
codecs: $(VENV)/.installed
	$(PY) -m posrecon.serde.compiled > streams/posrecon/engine/avro_codecs.py

## the live pipeline on a local broker with simulated traffic, printing what it found
demo: install
	$(BIN)/posrecon demo

## test tools outside the venv (Debian packages; the Python ones, kubernetes-validate and podman-compose, are in
## the dev extra): prometheus + promtool (rule tests, the Prometheus E2E), prometheus-alertmanager + amtool
## (the Alertmanager E2E), iproute2 (`ip netns`: the namespace smoke test, run as root), openssl (TLS test
## certificates), chromium (the console's browser E2E, driven by playwright with executable_path; never
## `playwright install`), postgresql (the ledger sink's tests start a server of their own from
## /usr/lib/postgresql/*/bin, off PATH: probed there). Installs only what is missing: quick when all is there.
TOOL_PACKAGES := promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
                 prometheus-alertmanager:prometheus-alertmanager ip:iproute2 openssl:openssl \
                 chromium:chromium
.PHONY: tools
tools: install
	@missing=""; for pair in $(TOOL_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | xargs); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing test tools (Debian packages): $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "missing test tools; install the Debian packages: sudo apt-get install -y $$missing"; \
	  echo "make test fails without them (deploy rules, Prometheus/Alertmanager E2E, namespace smoke test, ledger sink)"; \
	fi

## unit, property, integration (real broker) and deploy tests; the chaos suite runs with `make chaos` (not yet
## stable on a loaded 2-core box); exit 5 (no tests) is an error
test: install tools
	POSRECON_REQUIRE_BROKER=1 POSRECON_ENGINE=compiled $(PY) -m pytest -q -m "not soak"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treating as failure"; exit 1; fi; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not broker and not chaos and not soak and not slow"

chaos: install
	POSRECON_REQUIRE_BROKER=1 $(PY) -m pytest -q tests/chaos -m "chaos and not soak"

soak: install
	POSRECON_REQUIRE_BROKER=1 POSRECON_SOAK=1 $(PY) -m pytest -q -s tests/chaos -m soak

## the benchmark also runs the faust-streaming passthrough and profiles with py-spy: the `bench` extra
$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,bench]'
	@touch $@

## and the Quix Streams peer (bench/quix_join.py), in a venv of its own: quixstreams pins an older confluent-kafka
$(VENV)-quix/.installed:
	$(PYTHON) -m venv $(VENV)-quix
	$(VENV)-quix/bin/pip install -q --upgrade pip
	$(VENV)-quix/bin/pip install -q quixstreams==3.28.1 'fastavro>=1.9,<2'
	@touch $@

bench: $(NATIVE) $(VENV)/.installed-bench $(VENV)-quix/.installed
	POSRECON_ENGINE=compiled $(PY) bench/run.py --quix-python $(VENV)-quix/bin/python  # a stale build fails, not runs slow

lint: install
	$(BIN)/ruff check streams tests bench
	$(BIN)/ruff format --check streams tests bench

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .native build .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
