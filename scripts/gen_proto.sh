#!/usr/bin/env bash
# Generate Python code from proto/ into OUT (default: the repo root, i.e. privtune/v1/).
# `scripts/gen_proto.sh --check` regenerates into a temp dir and fails if the committed
# code differs (stale generated code).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
generate() {
  local out=$1
  mkdir -p "$out/privtune/v1"
  (cd "$root/proto" && "$py" -m grpc_tools.protoc -I . \
      --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" privtune/v1/*.proto)
  touch "$out/privtune/v1/__init__.py"
}
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r -x __pycache__ "$tmp/privtune/v1" "$root/privtune/v1" >/dev/null; then
    echo "generated protobuf code in privtune/v1 is stale: run 'make proto' and commit the result" >&2
    diff -r -x __pycache__ "$tmp/privtune/v1" "$root/privtune/v1" | head -20 >&2
    exit 1
  fi
  echo "generated protobuf code is up to date"
else
  rm -f "$root"/privtune/v1/*_pb2.py "$root"/privtune/v1/*_pb2.pyi "$root"/privtune/v1/*_pb2_grpc.py  # removed protos too
  generate "$root"
  echo "generated privtune/v1 from proto/"
fi
