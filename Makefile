# `make train` and `make test` set everything up in .venv on first use.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

.PHONY: setup train test clean bench-setup bench

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned, so nothing pulls a CUDA build
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e '.[test]'
	# norse declares torchvision (which drags in a CUDA torch): without its dependencies,
	# then the ones it really uses
	$(PIP) install -q -c constraints.txt --no-deps norse
	$(PIP) install -q -c constraints.txt nir nirtorch h5py
	touch $@

setup: $(VENV)/.installed

train: setup
	$(VENV)/bin/lifnet train $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest -q $(ARGS)

# Benchmarks against snnTorch and Norse (not part of CI).
bench-setup: setup
	$(PIP) install -q -c constraints.txt -e '.[test,bench]'
	# norse declares torchvision (which pulls a CUDA torch): install it without dependencies
	$(PIP) install -q -c constraints.txt --no-deps norse

bench: bench-setup
	$(VENV)/bin/python benchmarks/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) runs
