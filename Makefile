# The two commands of the README, and what they need. Everything is installed into .venv
# beside this file; Debian packages the tests need are installed with apt-get when missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := redis-server iproute2

.PHONY: demo test oslo-functional system-deps clean

## make demo: a local cluster from seeds/demo.json, then a host and a registry killed.
demo: $(VENV)/.installed
	$(BIN)/rpcmm demo --seed seeds/demo.json

## make test: the whole test suite (unit, functional, real processes, contract, faults, oslo
## driver), then oslo.messaging's own functional suite against the zmq driver.
test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)
	$(MAKE) --no-print-directory oslo-functional

## make oslo-functional: oslo.messaging's functional suite, with registries in the URL and with
## plain zmq:// (the embedded registry, on the fixed loopback port 7710).
oslo-functional: $(VENV)/.installed
	PYTHON=$(abspath $(BIN))/python tests/oslo/run_functional.sh
	PYTHON=$(abspath $(BIN))/python tests/oslo/run_functional.sh --embedded

$(VENV)/.installed: setup.cfg requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info
