# samt: reproducible SAMT experiments. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(or $(SAMT_DATA_ROOT),data)
export SAMT_DATA_ROOT := $(DATA_ROOT)

.PHONY: help install data test test-data test-slow test-full lint run bench bench-resnet bench-runner table-mnist table-cnn table-protocol table-cifar table-cifar10-jpeg table-cosine \
	table-mnist-seed-mean table-regression-seed-mean table-regression table-variants table-smoke ablations transfer ablation-features ablation-groups report profiles \
	test-launchers clean
# Tables: every stage (grid, extension rounds, finals) is one Hydra multirun through LAUNCHER:
# local_parallel (joblib, JOBS runs at a time, one thread each), submitit_local, slurm, basic.
# ARGS: overrides for every run and stage, e.g. ARGS='device=cuda hydra.launcher.partition=gpu'
# (docs/tuning.md#stages-through-hydra-launchers).
JOBS ?= 2
LAUNCHER ?= local_parallel
ARGS ?=
REPRODUCE = $(BIN)/samt-reproduce --launcher $(LAUNCHER) --jobs $(JOBS)

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## virtualenv + editable install with dev extras + the default dataset (MNIST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/samt-data mnist --root $(DATA_ROOT)

data:  ## prepare MNIST and Fashion-MNIST under $(DATA_ROOT) (no-op when present)
	$(BIN)/samt-data mnist fashion_mnist --root $(DATA_ROOT)

# make test runs its tests in TEST_WORKERS processes (pytest-xdist; auto: one per CPU)
TEST_WORKERS ?= auto

test:  ## fast offline test suite (TEST_WORKERS processes at once: pytest-xdist; auto = one per CPU)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

test-data:  ## every test that reads real datasets from $(DATA_ROOT), slow runs included
	$(BIN)/python -m pytest -m real_data

test-slow:  ## long end-to-end runs (real processes, signals, launchers, real data)
	$(BIN)/python -m pytest -m slow

test-full:  ## what `make test` leaves out: every slow and every real-data test
	$(BIN)/python -m pytest -m "slow or real_data"

test-launchers:  ## the smoke table through submitit_local and joblib: same choices and tables (~3 min)
	$(BIN)/python -m pytest -m slow tests/test_reproduce_launchers.py

lint:  ## ruff
	$(BIN)/ruff check samt tests scripts hydra_plugins

run:  ## the paper's headline run (MNIST, MLP-400)
	$(BIN)/samt-run

table-smoke:  ## a 10-run table on digits to check a LAUNCHER end to end (-> outputs/smoke/)
	$(REPRODUCE) smoke --runs outputs/smoke/runs --out outputs/smoke/report $(ARGS)

table-mnist:  ## paper table: MNIST + Fashion-MNIST, MLP-400 (grid, seeds, report -> results/; LAUNCHER, JOBS, ARGS)
	$(REPRODUCE) mnist_mlp $(ARGS)

# Beyond the paper: every grid value on the 5 seeds (splits), the choice on the mean validation score
# (tuning.choice: seed_mean), then the grid's own report: sensitivity, tuning budget, self-tuning.
GRID_REPORT = --columns per-row --self-tuning --only final_val_metric,run_counts,self_tuning,all_runs,lr_sensitivity,sensitivity,tuning_budget,report
table-mnist-seed-mean:  ## MNIST + Fashion-MNIST MLP-400, choices on the 5-seed mean, and the grid report (~7.5 CPU-hours)
	$(REPRODUCE) mnist_mlp +tuning.choice=seed_mean '+tuning.margins={mnist:0.1,fashion_mnist:0.3}' \
	  --runs runs/mnist_mlp_seed_mean --out results/mnist_mlp_seed_mean $(ARGS)
	$(BIN)/samt-report runs/mnist_mlp_seed_mean/grid --out results/mnist_mlp_seed_mean/grid \
	  --margin mnist=0.1 --margin fashion_mnist=0.3 $(GRID_REPORT)

table-regression-seed-mean:  ## UCI energy, concrete, kin8nm, protein, choices on the 5-split mean, and the grid report (~4.5 CPU-hours)
	$(REPRODUCE) regression +tuning.choice=seed_mean 'tuning.datasets=[uci_energy,uci_concrete,uci_kin8nm,uci_protein]' \
	  --runs runs/regression_seed_mean --out results/regression_seed_mean $(ARGS)
	$(BIN)/samt-report $$(cut -d, -f1 results/regression_seed_mean/all_runs.csv | tail -n +2) \
	  --out results/regression_seed_mean --columns per-row --margin 2%
	$(BIN)/samt-report runs/regression_seed_mean/grid --out results/regression_seed_mean/grid \
	  --margin 2% $(GRID_REPORT)

table-cnn:  ## architecture claim offline: small CNN on MNIST + Fashion-MNIST, with and without BatchNorm
	$(REPRODUCE) cnn_small $(ARGS)

table-protocol:  ## the protocol behind 98.6 % on MNIST MLP-400 (60 epochs, dropout, schedules; ARGS="'tuning.seeds=[0]'" to prune)
	$(REPRODUCE) mnist_protocol $(ARGS)

table-cifar:  ## paper claim: CIFAR-10/100 CNN (needs the CIFAR files / internet)
	$(REPRODUCE) cifar_cnn $(ARGS)

table-cifar10-jpeg:  ## paper claim on CIFAR-10 (JPEG q75) offline: VGG-style CNN, crops and flips, 5 optimizers (~3 CPU-hours)
	$(REPRODUCE) cifar10_jpeg $(ARGS)

table-cosine:  ## beyond the paper: MNIST + Fashion-MNIST MLP-400 with every optimizer on a cosine schedule, SAMT included, chosen on the 5-seed mean (~3.5 CPU-hours)
	$(REPRODUCE) mnist_mlp_cosine $(ARGS)
	$(BIN)/samt-report runs/mnist_mlp_cosine/grid --out results/mnist_mlp_cosine/grid \
	  --margin mnist=0.1 --margin fashion_mnist=0.3 $(GRID_REPORT)

table-regression:  ## paper claim: the 9 UCI regression sets (RMSE)
	$(REPRODUCE) regression $(ARGS)

# Our variant (per-layer hypergradient SAMT, not in the paper), tuned by each table's protocol in its own runs folder, then reported
# beside the table's peers (their final runs are read from the table's runs folder, not rerun).
HD = {key: eta_max, tied: {eta0: 0.3}, grid:
# The retired meta_anchor rows of results/variants/ (samt_s_hd + meta_anchor 0.1) are reproduced by
# this target at commit fb39616d2470, the last with that option.
table-variants:  ## our variant samt_s_hd under the MNIST/Fashion-MNIST and UCI protocols, beside the peers (-> results/variants/)
	$(REPRODUCE) mnist_mlp '~tuning.optimizers' '+tuning.optimizers={samt_s_hd: $(HD) [0.0316, 0.1, 0.316, 1.0, 3.16]}}' \
	  --runs runs/variants/mnist_mlp --out runs/variants/_reports/mnist_mlp $(ARGS)
	$(REPRODUCE) regression '~tuning.optimizers' '+tuning.optimizers={samt_s_hd: $(HD) [0.00316, 0.01, 0.0316, 0.1, 0.316]}}' \
	  --runs runs/variants/regression --out runs/variants/_reports/regression $(ARGS)
	$(BIN)/samt-report runs/mnist_mlp/final runs/variants/mnist_mlp/final \
	  --columns per-row --out results/variants/mnist_mlp
	$(BIN)/samt-report runs/regression/final runs/variants/regression/final --columns per-row \
	  --out results/variants/regression
	for t in mnist_mlp regression; do \
	  cp runs/variants/_reports/$$t/tuning.md results/variants/$$t/tuning_samt_s_hd.md; done
	cp runs/variants/_reports/mnist_mlp_anchor/tuning.md \
	  results/variants/mnist_mlp/tuning_samt_s_hd_anchor.md

ablations:  ## step types S/E/R/C and the combine ablation on Fashion-MNIST
	$(REPRODUCE) step_types $(ARGS)
	$(REPRODUCE) ablation_combine $(ARGS)

transfer:  ## eta-model transfer: SAMT-E on MNIST from Fashion-MNIST eta models vs fresh
	$(REPRODUCE) transfer $(ARGS)

ablation-features:  ## SAMT-E with each of the five gradient features removed (Fashion-MNIST)
	$(REPRODUCE) features $(ARGS)

ablation-groups:  ## SAMT-E blocks of 1, 2 or all layers on a 4-hidden-layer MLP (Fashion-MNIST)
	$(REPRODUCE) grouped_blocks $(ARGS)

report:  ## re-aggregate every reproduced table from its runs/ folder into results/
	for d in runs/*/final; do n=$$(basename $$(dirname $$d)); \
	  $(BIN)/samt-report $$d --out results/$$n --columns per-row; done

profiles:  ## performance profiles across the reproduced paper tables (-> results/profiles/)
	$(BIN)/samt-report $(wildcard runs/mnist_mlp/final runs/regression/final runs/cnn_small/final) \
	  --profiles-only --columns per-row --out results/profiles

bench:  ## per-iteration cost of SAMT vs Adam/SGD (ratios vs targets, CSV, depth plot with "before"), then bench-resnet
	$(BIN)/python scripts/bench.py --out bench --before results/bench/before/bench.csv
	$(BIN)/python scripts/bench_resnet.py --out bench

bench-resnet:  ## SAMT on ResNet-20 (CIFAR input, batch 128, 1 thread): time, memory, meta share per block layout (~15 min CPU)
	$(BIN)/python scripts/bench_resnet.py --out bench

bench-runner:  ## runner epoch vs a bare loop (Adam, MNIST MLP-400)
	$(BIN)/python scripts/bench_runner.py

clean:  ## remove run outputs and caches (keeps results/ and data)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
