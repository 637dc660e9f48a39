# zerolog: the two set-up commands are `make run` (main job) and `make test` (tests). Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
# dvc.yaml runs `python ...`: put the venv first on PATH so every stage uses the project's interpreter.
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install pipeline run test test-all lint compare gate gate-full baseline-update ui ui-check bench bench-detect bench-train bench-embed parse-accuracy ablation ablation-smoke clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# One pip call resolves everything (logparser3 pins regex==2022.3.2; torch==2.13.0 is the CPU build on disk), at
	# the versions of constraints.txt: a fresh clone gets the packages that made the committed outputs.
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	# LogLead (rows loglead_rarity, loglead_ngram): its own requirement regex>=2024.5.15 clashes with logparser3's
	# regex==2022.3.2, so without its dependencies; the two detectors used import only numpy. Where this fails the
	# baselines stage writes not_available with the reason (src/zerolog/evaluation/loglead_peer.py).
	$(BIN)/python -m pip install --quiet --no-deps 'loglead==2.0.0' || echo "loglead not installed: rows loglead_* will be not_available"
	touch $(STAMP)

install: $(STAMP)

## dvc.yaml from the stage table (src/zerolog/stages.py) and params.yaml: after adding a system, dataset or pair.
pipeline: install
	$(BIN)/python -m zerolog.pipeline_file

## Main job: the whole pipeline on the bundled real data (offline).
run: pipeline
	$(BIN)/dvc repro

## Tests (fast + integration; `make test-all` adds the slow ones), one pytest worker per core (TEST_WORKERS=1: in
## turn). --dist loadscope keeps each module's tests on one worker, so a module fixture (a stage run) runs once.
TEST_WORKERS ?= auto
test: install
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadscope

test-all: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

## Lint and types (the CI runs them): ruff check (style, imports, bugbear), ruff format --check, mypy on src/zerolog.
lint: install
	$(BIN)/ruff check src tests pipeline bench
	$(BIN)/ruff format --check src tests pipeline bench
	$(BIN)/mypy

## DVC experiments side by side on the headline F1 (make compare COMPARE_ARGS="--metric roc_auc --methods pca_mixture").
compare: install
	$(BIN)/python -m zerolog.compare $(COMPARE_ARGS)

## CI quality gate: quick profile on the bundled data against its committed baseline.
gate: install
	$(BIN)/python -m zerolog.evaluation.gate check --profile quick

## Full-run gate: the default pipeline's metrics against the full baseline.
gate-full: install
	$(BIN)/python -m zerolog.evaluation.gate check --profile full

## Deliberately re-record the baselines from the current metrics (commit the result).
baseline-update: install
	$(BIN)/python -m zerolog.evaluation.gate update --profile quick
	$(BIN)/python -m zerolog.evaluation.gate update --profile full

## Browse runs: the MLflow UI over the project's store (make ui PORT=5001 for another port); first prints the address
## that opens the zerolog experiment on its runs table, with the headline-metric columns.
PORT ?= 5000
ui: install
	$(BIN)/python -m zerolog.tracking --server http://127.0.0.1:$(PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --host 127.0.0.1 --port $(PORT)

## Check the MLflow UI a new user opens (after `make run`): a real `mlflow ui` on a free port, the experiment's type and
## the runs' f1 / roc_auc / datasets read over its REST API; with a headless Chromium on PATH, reports/mlflow-ui.png.
ui-check: install
	$(BIN)/python -m zerolog.ui_check

## Grouping accuracy of the parse stage's output against loghub's templates of the 2k samples (after `make run`).
parse-accuracy: install
	$(BIN)/python -m zerolog.data.accuracy

## Throughput / memory benchmark of the full-size path (options: make bench BENCH_ARGS="--lines 4000000 --repeats 3").
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## zerolog detect on the full-size generated HDFS log: lines/s and peak RSS (bench/detect_results.md; options: BENCH_DETECT_ARGS="--lines 2000000").
bench-detect: install
	$(BIN)/python bench/detect.py $(BENCH_DETECT_ARGS)

## The train stage's hot path: old (BENCH_TRAIN_ARGS="--base REV") vs this checkout, steps/s, ratio, equality of
## the outputs and the profile split (bench/train_results.md; needs the tensors stage's data/tensors).
bench-train: install
	$(BIN)/python bench/train.py $(BENCH_TRAIN_ARGS)

## Sentence embedding of the bundled templates, one at a time vs embed_texts_sentence: templates/s, ratio, equality
## (bench/embed_results.md; options: BENCH_EMBED_ARGS="--repeats 5 --threads 1 2").
bench-embed: install
	$(BIN)/python bench/embed.py $(BENCH_EMBED_ARGS)

## Ablation of zerolog_adapt on every pair x params seeds (after the tensors stage; hours on 2 cores, not in `make run`):
## reports/ablation.md + metrics/ablation.json; arm runs cached in data/ablation/ (a rerun trains only what changed).
## A small run: make ablation ABLATION_ARGS="--pairs bgl-openstack --seeds 42" (one pair, one seed, the real settings;
## the report then says PARTIAL RUN and names what ran). ablation-smoke: the same pair and seed with 1 epoch of 2 steps,
## validation tables printed, nothing written but the cache (checks the machinery in minutes, measures nothing).
ABLATION_ARGS ?=
ablation: install
	$(BIN)/python -m zerolog.ablation $(ABLATION_ARGS)

ablation-smoke: install
	$(BIN)/python -m zerolog.ablation --pairs bgl-openstack --seeds 42 --split val \
		--set train.epochs=1 train.max_steps_per_epoch=2

clean:
	rm -rf data/raw data/parsed data/sessions data/features data/tensors data/scores models
