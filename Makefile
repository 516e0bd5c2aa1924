# The two commands of the README: `make demo` and `make test`. Everything they
# need is installed by `make setup`: redis-server and chromium (for the browser
# tests) from Debian when missing, and a virtualenv in .venv with callhub and
# its dev tools.

VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test lint bench-ingest bench-read-api bench-fanout bench-capacity nchan bench-worker bench-cluster \
	bench-forward bench-export test-compose

setup: system $(VENV)/.installed

system:
	@command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && \
	  command -v chromium >/dev/null && command -v chromedriver >/dev/null && \
	  command -v nginx >/dev/null && command -v docker-compose >/dev/null && \
	  command -v dockerd >/dev/null && command -v debootstrap >/dev/null && \
	  command -v iptables >/dev/null || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
	    -y -qq --no-install-recommends redis-server redis-tools chromium chromium-driver \
	    nginx docker-compose docker.io debootstrap iptables; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# The demo needs only the virtualenv: its Redis is embedded (fakeredis).
# `make demo PORT=9090` serves on another port.
demo: $(VENV)/.installed
	$(VENV)/bin/callhub demo $(if $(PORT),--port $(PORT))

# The whole suite: everything but compose in one pytest run, then compose (its
# tests print their timings as they go).
test: setup
	$(VENV)/bin/pytest -m 'not compose'
	$(VENV)/bin/pytest -s -m compose tests/e2e

# docker compose up for real (single Redis and the cluster file), on a Docker
# engine the tests start and stop themselves (root; docs/deployment.md).
test-compose: setup
	$(VENV)/bin/pytest -s -m compose tests/e2e

lint: setup
	$(VENV)/bin/ruff check callhub hub workers tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench-ingest: setup
	$(VENV)/bin/python -m bench.ingest

# The cost of Redis Cluster mode: ingest (and the durability option), then
# fan-out, each against a single node in the same run.
bench-cluster: setup
	$(VENV)/bin/python -m bench.cluster_cost
	$(VENV)/bin/python -m bench.fanout --cluster --no-idle

bench-worker: setup
	$(VENV)/bin/python -m bench.worker

# Webhook delivery: callhub forward (1 and 2 processes) beside a naive SSE-to-POST
# script, to a local receiver; BENCH_ARGS=--quick for a short run.
bench-forward: setup
	$(VENV)/bin/python -m bench.forward $(BENCH_ARGS)

# callhub export of ended calls (with summaries, then transcripts too) beside a
# one-request-at-a-time httpx loop, against one callhub serve.
bench-export: setup
	$(VENV)/bin/python -m bench.export $(BENCH_ARGS)

.PHONY: bench-client
bench-client: setup
	$(VENV)/bin/python -m bench.client

bench-read-api: setup
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	$(VENV)/bin/python -m bench.read_api

nchan: setup
	@command -v nginx >/dev/null && [ -e /usr/share/nginx/modules-available/mod-nchan.conf ] \
	  || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
	    -y -qq nginx libnginx-mod-nchan; }

bench-fanout: nchan
	$(VENV)/bin/python -m bench.fanout

# The capacity mode: the most subscribers callhub and nchan keep up with at 200 events/s.
bench-capacity: nchan
	$(VENV)/bin/python -m bench.fanout_capacity
