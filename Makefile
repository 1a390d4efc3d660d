# Two commands on a fresh machine with Python >= 3.10:  make train   and   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned for this environment; pip takes the CPU wheel where one is on local disk.
TORCH ?= torch==2.13.0

.PHONY: train test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,onnx]"
	touch $@

train: $(VENV)/.installed  ## train the lesson's recipe on CIFAR-10 (downloads it if missing)
	$(PY) -m alexnet_cifar train $(ARGS)

# One pytest worker per core (pytest-xdist); a module's tests stay on one worker, sharing its fixtures;
# the modules go out slowest first (tests/module_seconds.json; tests/conftest.py orders them).
test: $(VENV)/.installed  ## run the test suite (real-data checks too when CIFAR10_ROOT is set)
	$(PY) -m pytest -q -n auto --dist loadscope --no-loadscope-reorder $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
