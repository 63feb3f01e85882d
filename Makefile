# The README's two set-up commands: `make demo` and `make test`. Both create .venv if missing,
# install what they need once (a stamp file per extra, redone when pyproject.toml changes) and
# are quick when everything is installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch: machines without an NVIDIA driver get the CPU build 2.13.0; machines with one get the
# default (CUDA) build. Override with any pip requirement, e.g. make test TORCH="torch==2.14.1".
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
DATA ?= data

.PHONY: demo test test-slow bench bench-quick lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	@touch $@

$(VENV)/.installed-%: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e ".[$*]"
	@touch $@

$(VENV)/.installed-base: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	@touch $@

# The main job on the embedded default: `tripletlit fit` on the `small` synthetic preset
# (4 EvalRS folds: word2vec init, 2 epochs, prediction, all metrics) into runs/demo.
demo: $(VENV)/.installed-base
	$(BIN)/tripletlit fit --out runs/demo --force

# The default test suite (fast; slow tests are deselected in pyproject.toml).
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# Slow tests: full-scale data, real servers.
test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m slow

# Benchmarks print side-by-side ratios; figures and how they were measured: benchmarks/README.md
bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_evaluation.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_quality.py

# A smoke run of every benchmark on small inputs (< 2 min in all; the figures that answer the
# targets come from `make bench`): tiny/small presets, one run each.
bench-quick: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/bench_data.py --quick --preset tiny --repeat 1
	$(BIN)/python benchmarks/bench_evaluation.py --quick --users 2000 --tracks 20000 --rows 100000 --slice 200 --repeat 1
	$(BIN)/python benchmarks/bench_training.py --quick --preset small --batches 600 --repeat 1 --ref-batches 20 \
		--ref-warmup 5 --ref-repeat 1 --bpr-iterations 1 --bpr-repeat 1 --max-wait 0
	$(BIN)/python benchmarks/bench_fit.py --quick --folds 1
	$(BIN)/python benchmarks/bench_quality.py --quick --folds 1

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check tripletlit tests benchmarks

clean:
	rm -rf $(VENV) $(DATA) runs .pytest_cache
