# `make run`: set up .venv and run the default experiment with its report.  `make test`: set up and test.
# `make gpu-check`: the CUDA paths in one go on a GPU machine, no Snakemake or network (docs/gpu-check.md);
# `make gpu-wheels`: into .whl/, the pinned wheels that travel there with it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test clean gpu-check gpu-wheels

$(BIN)/snakemake: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/snakemake

run: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report report.html

test: setup
	$(BIN)/python -m pytest -q

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
