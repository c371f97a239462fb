# kvmigrate.v2v — the interface: make setup | demo | test | lint | bench
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PYTEST_ARGS ?=
# Two workers: the machine has two cores and each TCG guest or appliance keeps one busy.
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-unit test-unit-pythons test-integration test-e2e lint bench guests clean

setup:
	@scripts/setup.sh

demo: setup
	ansible-playbook playbooks/demo.yml

# The unit tests under Python 3.9 and 3.12 first (about a minute), then everything under 3.11.
test: setup
	@scripts/unit-pythons.sh
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist load $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# The modules' other Pythons: 3.9 (the floor) and 3.12, each in a virtualenv under .build/.
test-unit-pythons: setup
	@scripts/unit-pythons.sh $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-e2e: setup
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

guests: setup
	$(PY) -m tests.guests build-all

lint: setup
	@scripts/lint.sh

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf .collections .build .pytest_cache .ruff_cache
