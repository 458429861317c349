# Set-up and checks. `make test` works on a fresh machine: it creates .venv, installs the
# package with every extra, installs Debian's redis-server when missing (as root), lints,
# and runs pytest (whose session fixture starts a throw-away Redis on a free port).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependencies change.
INSTALLED := $(VENV)/.installed

.PHONY: test run lint format proto install redis-server clean

# make run: the server on the committed default model, in-process cache only (no Redis).
PORT ?= 50051
METRICS_PORT ?= 9100
EXAMPLE = import grpc; from shared.api import pricing_pb2 as pb, pricing_pb2_grpc as api; \
  stub = api.PricingServiceStub(grpc.insecure_channel("127.0.0.1:$(PORT)")); \
  print(stub.PriceOption(pb.PriceOptionRequest(type=pb.CALL, spot=100, strike=105, tau=0.5, rate=0.03, volatility=0.25)))

test: install lint
	$(BIN)/python -m pytest

run: $(INSTALLED)
	@echo "pricing-server on 127.0.0.1:$(PORT), models/, metrics on :$(METRICS_PORT); Ctrl-C stops it."
	@echo "Example call, from another terminal in this folder:"
	@echo '  $(BIN)/python -c '"'"'$(EXAMPLE)'"'"''
	$(BIN)/pricing-server --host 127.0.0.1 --port $(PORT) --metrics-port $(METRICS_PORT) --models models

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(INSTALLED)
	$(BIN)/python proto/generate.py

install: $(INSTALLED) redis-server

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,server,trainer]'
	touch $@

redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is missing: run 'sudo apt-get install redis-server', then make test" >&2; \
	    exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
