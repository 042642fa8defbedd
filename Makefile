# privtune: `make demo` runs the pipeline on the embedded default, `make test` runs every test tier.
# Both install what they need (cached virtualenv, Kafka jars, buf, PostgreSQL) on first use.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-contract test-integration venv proto proto-check proto-lint proto-release api-docs client-go client-java kafka postgres tools bench-bus bench-curation bench-pii bench-scheduler bench-train bench-recorder bench-auth bench-audit rsyslog clean

venv:
	@scripts/ensure_venv.sh

demo: venv
	$(PY) -m privtune.demo var/demo

kafka:
	@scripts/fetch_kafka.sh >/dev/null

postgres:
	@scripts/infra.sh postgres-install

# rsyslog with TLS and RELP (Debian packages): the SIEM export tests deliver to it
rsyslog:
	@scripts/infra.sh rsyslog-install >/dev/null

tools:
	@scripts/go_tool.sh buf >/dev/null
	@scripts/go_tool.sh grpcurl >/dev/null
	@scripts/go_tool.sh protoc-gen-go >/dev/null
	@scripts/go_tool.sh protoc-gen-go-grpc >/dev/null

# Everything generated from proto/: the Python package, the Go client package, the API reference.
proto: venv tools
	scripts/gen_proto.sh
	scripts/gen_go_client.sh
	$(PY) scripts/gen_api_docs.py

# buf lint at STANDARD (proto/buf.yaml), generated code and docs up to date, no breaking change
# against the last release.
proto-check: venv tools proto-lint
	scripts/gen_proto.sh --check
	scripts/gen_go_client.sh --check
	$(PY) scripts/gen_api_docs.py --check
	scripts/proto_breaking.sh

proto-lint: tools
	cd proto && $$(../scripts/go_tool.sh buf) lint
	@echo "buf lint: clean"

api-docs: venv
	$(PY) scripts/gen_api_docs.py

# The Go client module (clients/go) and its example programs, built into build/go.
client-go: tools
	scripts/gen_go_client.sh --check
	cd clients/go && GOFLAGS=-buildvcs=false go build -o ../../build/go/ ./cmd/...

# The Java client artifact (dev.privtune:privtune-api) and its example, built by Maven in clients/java.
client-java:
	@scripts/build_java_client.sh >/dev/null

# Freeze the current protos as the release that `buf breaking` checks against.
proto-release: tools
	@test -n "$(VERSION)" || (echo "usage: make proto-release VERSION=x.y.z" >&2; exit 2)
	cd proto && $$(../scripts/go_tool.sh buf) build -o release/v$(VERSION).json

test: venv kafka postgres rsyslog tools proto-check
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

bench-auth: venv
	$(PY) benchmarks/auth.py --calls 1000 --clients 1,8 --rounds 2

bench-audit: venv kafka
	$(PY) benchmarks/audit.py --events 20000 --rounds 3

clean:
	rm -rf var .pytest_cache

# vLLM's CPU build for the serving pools, in its own cached venv (~/.cache/privtune/vllm-venv-<hash>)
.PHONY: vllm-env
vllm-env:
	@scripts/vllm_env.sh
