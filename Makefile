# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean web

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a loose spec would pull GBs of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	# pyradiomics ships no wheel and must build against the installed numpy.
	$(BIN)/pip install -q numpy==2.4.6 versioneer
	$(BIN)/pip install -q --no-build-isolation pyradiomics==3.0.1
	$(BIN)/pip install -q -r requirements.txt
	# trame-slicer's layered displayable managers: the wheel pins slicer-core 5.11 but works over our 5.13.
	$(BIN)/pip install -q --no-deps slicer-layer-dm==2.0.0
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/osteoai demo --out osteoai-demo

# The review app and upload page on the demo result (a scene is needed: screened again with --scene if absent).
web: setup
	test -f osteoai-demo/scene.mrml || $(BIN)/osteoai demo --out osteoai-demo --scene
	$(BIN)/osteoai web --data osteoai-demo --demo-reviewer

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q Testing/Python

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python Testing/benchmarks/run_all.py

clean:
	rm -rf $(VENV) osteoai-demo .pytest_cache
