# deeptalk-ser: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

# made by a finished install; a newer requirements.txt or pyproject.toml re-runs it
STAMP := $(VENV)/.installed

.PHONY: help install test test-all test-fast benchmarks clean emodb

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create $(VENV), install pinned requirements (CPU torch 2.13.0), resemblyzer weights and the package

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# resemblyzer only ships the GE2E weights we load; --no-deps keeps it from pulling another torch
	$(PY) -m pip install -q --no-deps resemblyzer==0.1.4
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP) ## install what is missing, then run the default test suite (everything not marked slow; about 12 min on 2 cores)
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) ## install what is missing, then run every test, slow ones included
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest $(PYTEST_ARGS)

emodb: $(STAMP) ## install what is missing, then the main job: 4-class SER on EmoDB, GE2E embeddings, RBF SVM, leave-one-speaker-out
	$(PY) evaluate.py

benchmarks: $(STAMP) ## run the benchmarks, writing benchmarks/results/*.json
	$(PY) benchmarks/prepare_speed.py
	$(PY) benchmarks/extract_speed.py
	$(PY) benchmarks/extract_ddp_scaling.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/store_scale.py

clean: ## remove caches and run outputs (never the shipped checkpoint)
	rm -rf cache outputs multirun .pytest_cache
