# samt: reproducible SAMT experiments. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(or $(SAMT_DATA_ROOT),data)
export SAMT_DATA_ROOT := $(DATA_ROOT)

.PHONY: help install data test test-data test-slow lint run bench bench-runner table-mnist table-cifar \
	table-regression ablations transfer ablation-features ablation-groups report clean
JOBS ?= 2

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## virtualenv + editable install with dev extras + the default dataset (MNIST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/samt-data mnist --root $(DATA_ROOT)

data:  ## prepare MNIST and Fashion-MNIST under $(DATA_ROOT) (no-op when present)
	$(BIN)/samt-data mnist fashion_mnist --root $(DATA_ROOT)

test:  ## fast offline test suite
	$(BIN)/python -m pytest

test-data:  ## every test that reads real datasets from $(DATA_ROOT), slow runs included
	$(BIN)/python -m pytest -m real_data

test-slow:  ## long end-to-end runs on the real data
	$(BIN)/python -m pytest -m slow

lint:  ## ruff
	$(BIN)/ruff check samt tests scripts

run:  ## the paper's headline run (MNIST, MLP-400)
	$(BIN)/samt-run

table-mnist:  ## paper table: MNIST + Fashion-MNIST, MLP-400 (grid, seeds, report -> results/)
	$(BIN)/python scripts/reproduce.py mnist_mlp --jobs $(JOBS)

table-cifar:  ## paper claim: CIFAR-10/100 CNN (needs the CIFAR files / internet)
	$(BIN)/python scripts/reproduce.py cifar_cnn --jobs $(JOBS)

table-regression:  ## paper claim: the 9 UCI regression sets (RMSE)
	$(BIN)/python scripts/reproduce.py regression --jobs $(JOBS)

ablations:  ## step types S/E/R/C and the combine ablation on Fashion-MNIST
	$(BIN)/python scripts/reproduce.py step_types --jobs $(JOBS)
	$(BIN)/python scripts/reproduce.py ablation_combine --jobs $(JOBS)

transfer:  ## eta-model transfer: SAMT-E on MNIST from Fashion-MNIST eta models vs fresh
	$(BIN)/python scripts/reproduce.py transfer --jobs $(JOBS)

ablation-features:  ## SAMT-E with each of the five gradient features removed (Fashion-MNIST)
	$(BIN)/python scripts/reproduce.py features --jobs $(JOBS)

ablation-groups:  ## SAMT-E blocks of 1, 2 or all layers on a 4-hidden-layer MLP (Fashion-MNIST)
	$(BIN)/python scripts/reproduce.py grouped_blocks --jobs $(JOBS)

report:  ## re-aggregate every reproduced table from its runs/ folder into results/
	for d in runs/*/final; do n=$$(basename $$(dirname $$d)); \
	  $(BIN)/samt-report $$d --out results/$$n --columns per-row; done

bench:  ## per-iteration cost of SAMT vs Adam/SGD (ratios vs targets, CSV, depth plot with "before")
	$(BIN)/python scripts/bench.py --out bench --before results/bench/before/bench.csv

bench-runner:  ## runner epoch vs a bare loop (Adam, MNIST MLP-400)
	$(BIN)/python scripts/bench_runner.py

clean:  ## remove run outputs and caches (keeps results/ and data)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
