# Two commands on a fresh machine: `make demo` and `make test`. Both build the
# virtual environment first (pip only, no other step).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# No wheel cache: the CUDA torch stack is ~3 GB of wheels on top of ~5 GB
# installed, and CI disks have run out.
PIP_FLAGS ?= -q --progress-bar off --no-cache-dir
CUDA ?= 0
PYTEST_ARGS ?=

CONSTRAINTS := requirements/constraints.txt
SETUP_DEPS := requirements/base.txt requirements/dev.txt \
	requirements/torch.txt requirements/openmmlab.txt requirements/cuda.txt $(CONSTRAINTS) \
	pyproject.toml
STAMP := $(VENV)/.stamp
TEST_STAMP := $(VENV)/.test-stamp
CUDA_STAMP := $(VENV)/.cuda-stamp

.PHONY: setup demo test test-fast test-gpu test-real-data lint format lock clean help

help:
	@echo "make setup   create $(VENV) (CUDA=1 adds CuPy for the CUDA kernels)"
	@echo "make demo    train and test the demo model on synthetic data (CPU)"
	@echo "make test    the full CPU test suite"
	@echo "make test-fast / test-gpu / test-real-data / lint / format / lock / clean"

setup: $(STAMP) $(if $(filter 1,$(CUDA)),$(CUDA_STAMP),)

$(STAMP): $(SETUP_DEPS)
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"error: Python >= 3.11 is required, $(PYTHON) is {v.major}.{v.minor}; run make PYTHON=python3.11 ...")'
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "error: $(PYTHON) has no venv/ensurepip module: install python3-venv (e.g. apt-get install python3-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -c 'import os, shutil, sys; free = shutil.disk_usage(os.path.dirname(os.path.abspath("$(VENV)"))).free / 2**30; sys.exit(0 if free >= 6 else f"error: make setup needs about 6 GiB free for $(VENV) (torch and its CUDA libraries, 5 GiB installed); {free:.1f} GiB is free here")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -r requirements/base.txt -r requirements/dev.txt
	$(PIP) install $(PIP_FLAGS) --no-deps -c $(CONSTRAINTS) -r requirements/torch.txt -r requirements/openmmlab.txt
	$(PY) -m shared.utils.env_check
	@touch $(STAMP)

# CUDA=1: CuPy for the shared/ops kernels (its own stamp, so it is added to
# an existing environment).
$(CUDA_STAMP): $(STAMP) requirements/cuda.txt
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -r requirements/cuda.txt
	@touch $(CUDA_STAMP)

$(TEST_STAMP): $(STAMP) requirements/test.txt
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -r requirements/test.txt
	$(PY) -m shared.utils.env_check
	@touch $(TEST_STAMP)

demo: $(STAMP)
	PYTHON=$(PY) bash tools/demo.sh

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-gpu: $(TEST_STAMP)
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

# Facts of the real data sets (counts, boxes); DATA_ROOT=/datasets to point.
test-real-data: $(TEST_STAMP)
	$(PY) -m pytest -m real_data $(PYTEST_ARGS)

lint: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pre-commit run --all-files

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Re-resolve every requirement without the lock in a scratch venv and write a
# new lock. Commit it only together with a green `make test`.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) -r requirements/base.txt -r requirements/dev.txt -r requirements/test.txt -r requirements/cuda.txt
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) --no-deps -r requirements/torch.txt -r requirements/openmmlab.txt
	{ sed -n '1,2p' $(CONSTRAINTS); .lock-venv/bin/python -m pip freeze --all | grep -v -E '^(pip|wheel)=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf work_dirs data/synthetic_imagefolder .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
