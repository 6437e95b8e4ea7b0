# Two commands set everything up on a fresh machine (see README.md):
#   make demo   install into .venv and draw every figure at demo scale (offline, CPU)
#   make test   install into .venv and run the test suite (make test-fast: no Snakemake runs)
#   make report results/report.html of the run (after make demo); make readme-status
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# torch/torchvision versions that install offline on the development machines;
# any version admitted by pyproject.toml works.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

# The config the results in results/ were made with (make report).
REPORT_CONFIG ?= config/demo.yaml
# Extra snakemake options for demo/report, e.g. SNAKEMAKE_ARGS=-n for a dry run.
SNAKEMAKE_ARGS ?=

.PHONY: install demo laptop test test-fast report readme-status results-page clean-demo

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN) || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Targets come first: --configfile takes every word up to the next option.
demo: install
	$(BIN)/snakemake all_figures --profile profiles/local --configfile config/demo.yaml $(SNAKEMAKE_ARGS)

# Real MNIST and CIFAR-10 on this machine's CPU (under 2 hours on 2 idle cores; torchvision
# downloads the datasets into data/ once): docs/results/laptop/README.md.
laptop: install
	$(BIN)/snakemake all_figures --profile profiles/local --configfile config/laptop.yaml $(SNAKEMAKE_ARGS)

# The HTML report of the run (figures with captions, claims table, config, runtimes):
# finishes the workflow for REPORT_CONFIG, then renders results/report.html.
report: install
	$(BIN)/snakemake all_figures report_pages --profile profiles/local --configfile $(REPORT_CONFIG) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake all_figures report_pages --profile profiles/local --configfile $(REPORT_CONFIG) \
		--report results/report.html

# The reproduction status, regenerated from the run in results/: the whole claims table in
# docs/status.md and its summary in README.md (from claims.md), the results in docs/beyond.md
# (from claims.csv).
readme-status: install
	$(BIN)/python -m singledir.figures.readme_status results/claims.md docs/status.md README.md
	$(BIN)/python -m singledir.stats.beyond_claims results/claims.csv docs/beyond.md

# A recorded run's page (after make laptop): claims table, figure thumbnails (poppler's
# pdftoppm) and job times under RESULTS_PAGE, and the README's real-data status block.
RESULTS_PAGE ?= docs/results/laptop
results-page: install
	$(BIN)/python -m singledir.figures.results_page results $(RESULTS_PAGE) --readme README.md

# Two pytest-xdist workers: the suite is mostly single-threaded Snakemake and Python
# start-up (tests/conftest.py keeps each test file on one worker). TEST_WORKERS=0: one process.
# --no-loadscope-reorder: the workers take the files in tests/conftest.py's order, longest
# first (xdist's default hands out the files with the most tests first, which left long
# files of few tests to the end, one worker idle). --durations=25: the slowest tests in the log.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder
test: install
	$(BIN)/python -m pytest -q $(XDIST) --durations=25

# Everything that needs no Snakemake run (tests not marked slow; tests/conftest.py fails an
# unmarked test that runs Snakemake): the library's tests, stage by stage, in minutes.
test-fast: install
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

clean-demo:
	rm -rf results/* .snakemake && touch results/.gitkeep
