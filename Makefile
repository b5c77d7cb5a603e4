# `make run`: set up .venv and run the default experiment with its report.  `make test`: set up, lint and run
# every test (the CI command).  `make test-fast`: the unit tests only, for the edit loop (docs/testing.md).
# `make lint`: ruff's checks and format check.
# `make gpu-check`: the CUDA paths in one go on a GPU machine, no Snakemake or network (docs/gpu-check.md);
# `make gpu-wheels`: into .whl/, the pinned wheels that travel there with it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test test-fast test-requirements lint clean gpu-check gpu-wheels

$(BIN)/snakemake: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/snakemake

# The workflow profile named as a file: Snakemake would take a folder `default` in the working directory for it
# (docs/configuration.md#the-workflow-profile).
PROFILE := --workflow-profile profiles/default/config.yaml

run: setup
	$(BIN)/snakemake --cores $(CORES) $(PROFILE)
	$(BIN)/snakemake --report report.html $(PROFILE)

# Python for ruff: the library, scripts, tests and benchmarks (the Snakefile and workflow/rules/*.smk are not Python)
LINT_PATHS := src scripts tests benchmarks
# The fast tier: no Snakemake runs, no builds of the paper's models, no other slow test
FAST := not slow and not workflow and not paper_models and not large_model

# The reference implementations the tests compare the similarity measures with (test-only)
test-requirements: setup
	$(BIN)/pip install --quiet -r requirements-test.txt

test: setup lint test-requirements
	$(BIN)/python -m pytest -q

test-fast: setup test-requirements
	$(BIN)/python -m pytest -q -m "$(FAST)"

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

gpu-check:
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) benchmarks/gpu_check.py --device cuda

# timm decides the check's networks; the GPU machine's image has every other package the check imports
GPU_WHEELS := $(shell grep -oE '^timm==[^ ]+' requirements.txt)

gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $(GPU_WHEELS)
	du -sh .whl

clean:
	rm -rf results logs .snakemake report.html
