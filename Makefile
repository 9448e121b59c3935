# charrnn: `make train` sets everything up and trains the default model; `make test` runs the tests.
PYTHON ?= python3
# A CPU build of this torch is what CI and the README's figures used; override for a GPU build,
# e.g. `make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'`.
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
VENV ?= .venv
RUN ?= runs/alice
DATA ?= alice
TRAIN_ARGS ?=
BENCH_ARGS ?=
COMPARE_ARGS ?=
BUDGETS ?=
SPRO ?=
NANOGPT ?=
BIN := $(VENV)/bin
CHARRNN := $(BIN)/charrnn
STAMP := $(VENV)/.installed

.PHONY: install corpus train sample eval bench compare benchmark test test-fast lint docs clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev,plot,serve,export]'
	touch $@

corpus: corpora/alice.txt

corpora/alice.txt: | $(STAMP)
	$(CHARRNN) corpus alice

# Trains once into $(RUN); an interrupted run is resumed, a finished one is kept. Then samples.
train: $(RUN)/summary.json
	$(CHARRNN) sample $(RUN) --length 600 --seed 1

$(RUN)/summary.json: | $(STAMP) corpora/alice.txt
	if [ -f $(RUN)/last.pt ]; then $(CHARRNN) train --out $(RUN) --resume; \
	else $(CHARRNN) train --data $(DATA) --out $(RUN) $(TRAIN_ARGS); fi

sample: | $(STAMP)
	$(CHARRNN) sample $(RUN) --length 1000

# Plain scores of both held-out splits, then the test split with dynamic evaluation.
eval: | $(STAMP)
	$(CHARRNN) eval $(RUN) --split val
	$(CHARRNN) eval $(RUN) --split test
	$(CHARRNN) eval $(RUN) --split test --dynamic

# Training, evaluation and sampling speed of the default model against this machine's limits.
bench: | $(STAMP)
	$(CHARRNN) bench $(BENCH_ARGS)

# The notes' seven configurations, 2 minutes each on the same text, into runs/compare: a Markdown table and a plot.
# Add COMPARE_ARGS=--force to train them again, or e.g. COMPARE_ARGS='--only gru,lstm --max-time 5m'.
compare: | $(STAMP) corpora/alice.txt
	$(CHARRNN) compare --data $(DATA) --out runs/compare --plot runs/compare/validation.png $(COMPARE_ARGS)

# The side-by-side benchmark (benchmarks/README.md): nine texts at 1, 2 and 10 minutes, hours on an idle machine.
# Give the peers' checkouts with SPRO=PATH NANOGPT=PATH; without them their columns stay empty.
# BUDGETS=60,120 runs only those budgets; cells already measured on this CPU are kept.
benchmark: | $(STAMP) corpora/alice.txt
	$(BIN)/python benchmarks/suite.py $(if $(SPRO),--spro $(SPRO)) $(if $(NANOGPT),--nanogpt $(NANOGPT)) \
		$(if $(BUDGETS),--budgets $(BUDGETS))

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow'

# docs/cli.md is generated from the Typer app; tests/test_cli_docs.py fails when it is stale.
docs: $(STAMP)
	$(BIN)/python -m typer charrnn.cli utils docs --name charrnn --title "charrnn command reference" --output docs/cli.md

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check charrnn tests benchmarks
	$(BIN)/ruff format --check charrnn tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache corpora/*.txt corpora/*.ids
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
