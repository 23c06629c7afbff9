# probprune: set-up and common jobs. The CPU path pins torch via constraints-cpu.txt.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# one BLAS/OpenMP thread per process: pytest -n 2 already uses both cores
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow bench proofs figures paper clean

$(STAMP): pyproject.toml constraints-cpu.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints-cpu.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## the main job on the embedded default: per-layer budget for LeNet-300-100
run: $(STAMP)
	$(BIN)/probprune budget

## default test run (excludes @pytest.mark.slow), < 6 min on 2 cores
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m slow

proofs: $(STAMP)
	$(BIN)/python -m proofs_check

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

figures: $(STAMP)
	$(BIN)/probprune experiment run all

paper: $(STAMP)
	$(MAKE) -C paper

clean:
	rm -rf $(VENV) results *.egg-info
