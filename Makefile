# The two set-up commands (README): `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo installs only what it runs (the server); the tests add PostgreSQL, NATS and the
# test toolchain on top of the same virtualenv.
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# pytest-xdist workers: three on two cores, because much of the suite waits (on the processes,
# browsers and timers it starts) rather than computes. On 2 cores, 2 workers kept the CPU 124%
# busy (16 min 50 s); 3 kept it 149% busy (14 min 16 s). Tests bind their own ports.
WORKERS ?= 3

.PHONY: demo demo-venv test venv clean bench lint

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[server]"
	touch $@

$(TEST_STAMP): $(DEMO_STAMP)
	$(BIN)/pip install --quiet -e ".[server,postgres,nats,test]"
	touch $@

venv: $(TEST_STAMP)

demo-venv: $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/paygate demo

# ruff over the Python the repo ships and tests; mypy --strict on the SDK (it ships py.typed),
# and a pass over the server and the hosted checkout, strict on the payment core (processing,
# intents, refunds and the payment store: per-module settings in pyproject.toml).
lint: $(TEST_STAMP)
	$(BIN)/ruff check sdk server checkout tests
	$(BIN)/mypy --strict sdk/paygate
	$(BIN)/mypy server/paygate_server checkout/paygate_checkout
	$(BIN)/ruff check examples
	cd examples/storefront && MYPYPATH=../../sdk:../../server $(abspath $(BIN))/mypy --strict --explicit-package-bases --follow-imports=silent storefront

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) $(PYTEST_ARGS)

bench: $(DEMO_STAMP)
	$(BIN)/paygate bench

clean:
	rm -rf $(VENV) paygate-data .pytest_cache .mypy_cache .ruff_cache
