# intelmq-crossborder: the two commands of the README, plus helpers.
# Each target prepares its own environment (scripts/ensure-env.sh): a local venv
# with the package, the intelmq user when run as root, Redis on 127.0.0.1:6379.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test env bench clean

env:
	@VENV=$(VENV) ENSURE_RABBITMQ=$(ENSURE_RABBITMQ) bash scripts/ensure-env.sh

demo: env
	$(PY) -m intelmq_crossborder.cli demo

test: ENSURE_RABBITMQ = 1
test: env
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
