# Two commands on a fresh machine, as root:  make scenario   and   make test
# Each first runs tools/setup.sh (packages, venv, dockerd, images; fast when done).
SCENARIO ?= roaming
PYTEST_ARGS ?=
VENV := .venv/bin

.PHONY: setup images scenario test test-unit test-slow bench clean

setup:
	@tools/setup.sh

images: setup

scenario: setup
	$(VENV)/testbed scenario $(SCENARIO)

# Unit tests (no Docker), integration tests with real labs, and the scenarios marked for CI.
test: setup
	$(VENV)/pytest -m "not slow" $(PYTEST_ARGS)

# The long scenario runs that CI leaves out.
test-slow: setup
	$(VENV)/pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(VENV)/testbed bench

clean:
	@[ -x $(VENV)/testbed ] && $(VENV)/testbed clean || true
