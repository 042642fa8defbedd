# privtune: `make demo` runs the pipeline on the embedded default, `make test` runs every test tier.
# Both install what they need (cached virtualenv, Kafka jars, buf, PostgreSQL) on first use.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-contract test-integration venv proto proto-check proto-release kafka postgres tools bench-bus bench-curation bench-pii bench-scheduler bench-train bench-recorder clean

venv:
	@scripts/ensure_venv.sh

demo: venv
	$(PY) -m privtune.demo var/demo

kafka:
	@scripts/fetch_kafka.sh >/dev/null

postgres:
	@scripts/infra.sh postgres-install

tools:
	@scripts/go_tool.sh buf >/dev/null
	@scripts/go_tool.sh grpcurl >/dev/null

proto: venv
	scripts/gen_proto.sh

proto-check: venv tools
	scripts/gen_proto.sh --check
	scripts/proto_breaking.sh

# Freeze the current protos as the release that `buf breaking` checks against.
proto-release: tools
	@test -n "$(VERSION)" || (echo "usage: make proto-release VERSION=x.y.z" >&2; exit 2)
	cd proto && $$(../scripts/go_tool.sh buf) build -o release/v$(VERSION).json

test: venv kafka postgres tools proto-check
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-contract: venv kafka postgres
	$(PY) -m pytest -m contract $(PYTEST_ARGS)

test-integration: venv kafka postgres tools
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

bench-bus: venv kafka
	$(PY) benchmarks/bus.py

bench-curation: venv
	$(PY) benchmarks/curation.py

bench-scheduler: venv postgres
	$(PY) benchmarks/scheduler.py

bench-train: venv
	$(PY) benchmarks/train.py

bench-pii: venv
	$(PY) benchmarks/pii_eval.py

bench-recorder: venv
	$(PY) benchmarks/report_recorder.py

clean:
	rm -rf var .pytest_cache
