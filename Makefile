# Set-up and checks. `make test` works on a fresh machine: it creates .venv, installs the
# package with every extra, installs Debian's redis-server and nginx when missing (as root),
# lints, and runs pytest (whose session fixture starts a throw-away Redis on a free port, and
# whose rehearsal test runs nginx in front of two servers).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependencies change.
INSTALLED := $(VENV)/.installed

.PHONY: test run rehearse lint format proto install redis-server nginx clean

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

# make rehearse: deploy/docker-compose.yml's topology (Redis, two server replicas, nginx) as
# local processes, without Docker: load through the balancer while a replica is restarted,
# killed, and a new model promoted; prints a report and its checks.
REHEARSE_SECONDS ?= 20
rehearse: install
	$(BIN)/python deploy/rehearse.py --seconds $(REHEARSE_SECONDS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(INSTALLED)
	$(BIN)/python proto/generate.py

install: $(INSTALLED) redis-server nginx

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,server,trainer]'
	touch $@

# Debian packages whose programs the tests run; each package is named as its program, which
# Debian puts in /usr/sbin (nginx), off a user's PATH, or /usr/bin.
redis-server nginx:
	@command -v $@ >/dev/null || [ -x /usr/sbin/$@ ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $@; \
	  else \
	    echo "$@ is missing: run 'sudo apt-get install $@', then make test" >&2; \
	    exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
