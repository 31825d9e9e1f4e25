# gream-verl: `make quickstart` runs the main job, `make test` runs the tests (both set up .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= default
PYTEST_ARGS ?=

.PHONY: setup test test-all test-fast quickstart lint bench clean

setup:
	bash scripts/setup_env.sh $(VENV)

test: setup
	$(PY) -m pytest -q -m "not ablation" $(PYTEST_ARGS) tests

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

quickstart: setup
	$(VENV)/bin/gream quickstart --config gream_verl/configs/quickstart.yaml --preset $(PRESET)

bench: setup
	$(PY) scripts/bench/srpo_bench.py
	$(PY) scripts/bench/index_bench.py --max-items 10000
	$(PY) scripts/bench/decode_bench.py

lint: setup
	$(VENV)/bin/ruff check gream_verl tests scripts

clean:
	rm -rf runs/
