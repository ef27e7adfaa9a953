# intelmq-crossborder: the two commands of the README, plus helpers.
# Each target prepares its own environment (scripts/ensure-env.sh): a local venv
# with the package, the intelmq user when run as root, Redis on 127.0.0.1:6379.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-fuzz lint env bench check-security clean

env:
	@VENV=$(VENV) ENSURE_RABBITMQ=$(ENSURE_RABBITMQ) bash scripts/ensure-env.sh

demo: env
	$(PY) -m intelmq_crossborder.cli demo

test: ENSURE_RABBITMQ = 1
test: env
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast lane while you work (under 5 minutes on 2 cores): no real bot processes (integration), no
# long runs (slow), and the fuzz and hostile-input suites (fuzz) at smoke size: the same derandomized
# cases, the first FAST_FUZZ_EXAMPLES / FAST_HOSTILE_EXAMPLES of them. See docs/testing.md.
FAST_FUZZ_EXAMPLES ?= 200
FAST_HOSTILE_EXAMPLES ?= 20
test-fast: env
	XB_FUZZ_EXAMPLES=$(FAST_FUZZ_EXAMPLES) XB_HOSTILE_EXAMPLES=$(FAST_HOSTILE_EXAMPLES) \
		$(PY) -m pytest -q -m "not integration and not slow" $(PYTEST_ARGS)

# Only the fuzz and hostile-input suites, at full size (XB_FUZZ_EXAMPLES=100000 for a longer run).
test-fuzz: env
	$(PY) -m pytest -q -m fuzz $(PYTEST_ARGS)

# ruff with the rules of pyproject.toml ([tool.ruff]); CI runs it after the tests.
lint: env
	$(PY) -m ruff check .

# bandit against the justified baseline (security/bandit-baseline.json) + pip-audit; see docs/security.md.
# XB_REQUIRE_AUDIT=1 makes an unreachable vulnerability service a failure (CI with network).
check-security: env
	$(PY) scripts/check_security.py

# Every benchmarks/bench_*.py (--quick with BENCH_ARGS=--quick) plus the end-to-end consortium run;
# writes docs/performance.md (see benchmarks/run_all.py).
BENCH_ARGS ?=
bench: env
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
