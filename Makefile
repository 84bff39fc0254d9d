# Two entry points: `make demo` (the main job end to end) and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICK ?= 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install protos demo test lint format clean bench chart

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip check
	@touch $(STAMP)

install: $(STAMP) protos

protos: $(STAMP)
	@$(PY) -m mofi.protogen >/dev/null && echo "protos: generated mofi/v1 from protos/"

demo: install
	$(VENV)/bin/mofi demo $(if $(filter 1,$(QUICK)),--quick,)

test: lint
	$(PY) -m pytest -q

# Ruff (lint and format check) over the tree, mypy over the core package; settings in pyproject.toml.
# `make format` applies ruff's fixes and formatting.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate the chart's settings block (values.yaml) and values.schema.json from mofi/settings.py.
chart: $(STAMP)
	$(PY) charts/generate_settings.py

# `make bench B=ner_grpc [ARGS="--option value"]` runs benchmarks/ner_grpc.py; results are in BENCHMARKS.md.
bench: install
	$(PY) benchmarks/$(B).py $(ARGS)

clean:
	rm -rf .mofi .pytest_cache mofi/v1/*_pb2*.py mofi/v1/*_pb2*.pyi
