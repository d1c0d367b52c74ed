# The few commands people type. `make demo` and `make test` each do their own set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch decides torchvision: this pair installs from the local disk on CPU machines here and is a CUDA build
# that also runs on GPUs (see README, "Which torch"). `make setup TORCH_PINS=` installs none (bring your own torch).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
PAPER ?= medvlm_r1
PROFILE ?= full
PYTEST_ARGS ?=

.PHONY: setup test demo reproduce-table1 lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(strip $(TORCH_PINS)),$(PIP) install -q $(TORCH_PINS))
	$(PIP) install -q -e ".[dev,metrics]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m medvlm_trl.cli demo

reproduce-table1: setup
	$(PY) -m medvlm_trl.cli reproduce-table1 --paper $(PAPER) --profile $(PROFILE)

lint: setup
	$(PY) -m ruff check medvlm_trl tests bench examples
	$(PY) -m ruff format --check medvlm_trl tests bench examples

clean:
	rm -rf $(VENV) runs .pytest_cache
