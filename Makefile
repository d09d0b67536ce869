# AgriTrace developer entry points. `make run` and `make test` work as the first command on a
# fresh machine: both depend on `install`, which is cheap when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTO_SRC := $(shell find protos -name '*.proto')
GEN := libs/generated
STAMP := $(VENV)/.installed

.PHONY: install proto run test test-unit test-integration lint bench load helm-validate \
	monitoring-validate clean

install: $(STAMP) $(GEN)/.stamp

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(MAKE) --no-print-directory proto
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Generated code lives in one package (libs/generated/agritrace/...), never copied per service.
# google/type/*.proto (Date) come with googleapis-common-protos; evaluated when used, i.e.
# once the venv exists.
GOOGLEAPIS_PROTOS = $(shell $(PY) -c 'import google.type.date_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parents[2])')

proto: $(GEN)/.stamp

$(GEN)/.stamp: $(PROTO_SRC)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I protos -I $(GOOGLEAPIS_PROTOS) --python_out=$(GEN) --pyi_out=$(GEN) \
		--grpc_python_out=$(GEN) $(PROTO_SRC)
	find $(GEN)/agritrace -type d -exec touch {}/__init__.py \;
	touch $(GEN)/agritrace/py.typed $(GEN)/.stamp

# All-in-one platform: every service on one gRPC address, SQLite under var/, in-process events.
# `make run PROVINCES="37 11"`: also, per province, a simulated provincial platform and its
# bridge, all supervised by libs/agritrace_platform/provinces.py.
run: install
ifeq ($(strip $(PROVINCES)),)
	$(PY) -m agritrace_platform
else
	$(PY) -m agritrace_platform.provinces $(PROVINCES)
endif

# The whole test suite: unit tests, then integration tests against real processes.
test: install
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not integration"

test-integration: install
	$(PY) -m pytest -q -m integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy libs/agritrace_kernel libs/agritrace_cli libs/agritrace_platform libs/agritrace_testing \
		services/registry/agritrace_registry services/sso/agritrace_sso services/coding/agritrace_coding \
		services/flow/agritrace_flow services/query/agritrace_query \
		services/province-bridge/agritrace_bridge benchmarks

bench: install
	$(PY) -m benchmarks.run

# The stress test (locust over gRPC): `make load LOAD_ARGS="--users 200 --duration 300"`; see
# python -m benchmarks.load --help. locust brings gevent, which patches the standard library:
# it gets a venv of its own.
LOAD_VENV := .venv-load
LOAD_STAMP := $(LOAD_VENV)/.installed

$(LOAD_STAMP): benchmarks/load/requirements.txt
	test -x $(LOAD_VENV)/bin/python || $(PYTHON) -m venv $(LOAD_VENV)
	$(LOAD_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(LOAD_VENV)/bin/python -m pip install --quiet -r benchmarks/load/requirements.txt
	touch $(LOAD_STAMP)

load: install $(LOAD_STAMP)
	$(PY) -m benchmarks.load --locust $(LOAD_VENV)/bin/locust $(LOAD_ARGS)

helm-validate:
	bash deploy/helm/validate.sh

# Alert rules, their promtool tests, Alertmanager routing, dashboard queries, and the rules in
# a real Prometheus scraping a real all-in-one platform (Prometheus, promtool and amtool from
# Debian's packages; the Python parts and the platform on the venv).
monitoring-validate: install
	bash deploy/monitoring/validate.sh

clean:
	rm -rf $(VENV) $(LOAD_VENV) $(GEN) var
