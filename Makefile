# Two commands set everything up on a fresh machine (see README.md):
#   make demo   install into .venv and draw every figure at demo scale (offline, CPU)
#   make test   install into .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# torch/torchvision versions that install offline on the development machines;
# any version admitted by pyproject.toml works.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test report clean-demo

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN) || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --profile profiles/local --configfile config/demo.yaml all_figures

test: install
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf results/* .snakemake && touch results/.gitkeep
