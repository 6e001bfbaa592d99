# fedge: the one entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup doctor venv demo-local bench-report test test-lab test-fast test-integration test-browser lint fmt simulate bench clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'
	@grep -hE '^## [a-z-]+: ' mk/lab.mk | sed -E 's/^## ([a-z-]+): /  \1\t/' | awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}' | sed 's/^    /  /'

setup: ## Install what a fresh machine lacks (Java, Maven, Mosquitto, Chromium, kcat, Podman), idempotent
	lab/setup-machine.sh
	lab/setup-podman.sh start

doctor: setup venv lab-image lab-deps ## Preflight: engine, systemd container, names, Java, Maven, disk, memory, ports
	$(LAB_ENV) $(PY) lab/doctor.py $(DOCTOR_ARGS)

venv: $(VENV)/.installed ## Create the virtual environment with every dev dependency

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

test: doctor ## Everything (sets the machine up first): unit, integration, browser, then Molecule
	$(PYTEST) -m "not lab" tests
	$(PYTEST) -s -m lab tests/lab

test-lab: venv ## The Molecule scenarios on the container lab (default, scale_out), with progress
	$(PYTEST) -s -m lab tests/lab

test-fast: venv ## Unit tests, the dashboard's and the report's included: seconds, no brokers
	$(PYTEST) -q -m "not integration and not browser and not lab" tests/unit tests/dashboard

test-integration: venv ## Tests against real Kafka, Mosquitto and Spark
	$(PYTEST) -m integration tests

test-browser: venv ## Dashboard tests in headless Chromium
	$(PYTEST) -m browser tests

lint: venv ## ruff, mypy, yamllint, ansible-lint
	$(VENV)/bin/ruff check fl_runtime tests lab plugins roles/common/files
	$(VENV)/bin/ruff format --check fl_runtime tests lab plugins roles/common/files
	$(VENV)/bin/mypy fl_runtime
	$(VENV)/bin/mypy --strict lab/*.py
	$(MAKE) lint-ansible

fmt: venv ## Format the Python code
	$(VENV)/bin/ruff format fl_runtime tests lab plugins roles/common/files
	$(VENV)/bin/ruff check --fix fl_runtime tests lab plugins roles/common/files

simulate: venv ## fl simulate with the default non-IID federation
	$(VENV)/bin/fl simulate --nodes 5 --rounds 20

bench: venv ## Benchmarks with same-run baselines: local SGD; alert latency on the real stack (reports/bench/)
	mkdir -p reports/bench
	$(VENV)/bin/fl bench sgd --batch-size 32 --batch-size 128
	$(VENV)/bin/fl bench detect --json > reports/bench/detect.json
	$(VENV)/bin/python -m json.tool reports/bench/detect.json

clean: ## Remove build output (keeps the venv and the artifact cache)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache reports

demo-local: venv ## No containers: federate five simulated nodes in-process, report in reports/demo-local
	rm -f reports/demo-local/aggregation.jsonl && mkdir -p reports/demo-local
	$(VENV)/bin/fl simulate --nodes 5 --rounds 20 --log reports/demo-local/aggregation.jsonl
	$(VENV)/bin/fl report --log reports/demo-local/aggregation.jsonl --out reports/demo-local

bench-report: venv ## Offline report render time for 200 rounds x 50 nodes
	$(VENV)/bin/fl report --bench --rounds 200 --nodes 50

# The Ansible side: lint, the container lab, Molecule, the demo.
include mk/lab.mk
