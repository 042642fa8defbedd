#!/usr/bin/env bash
# Generate the Go client package clients/go/privtune/v1 from proto/ with buf and the pinned local
# protoc-gen-go / protoc-gen-go-grpc plugins (built by scripts/go_tool.sh; no remote plugins).
# `scripts/gen_go_client.sh --check` generates into a temp dir and fails if the committed code differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
buf=$("$root/scripts/go_tool.sh" buf)
plugins="$(dirname "$("$root/scripts/go_tool.sh" protoc-gen-go)"):$(dirname "$("$root/scripts/go_tool.sh" protoc-gen-go-grpc)")"
generated=clients/go/privtune/v1
generate() {  # generate OUT: writes OUT/clients/go/privtune/v1
  (cd "$root" && PATH="$plugins:$PATH" "$buf" generate --template proto/buf.gen.go.yaml -o "$1")
}
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r "$tmp/$generated" "$root/$generated" >/dev/null; then
    echo "generated Go client code in $generated is stale: run 'make proto' and commit the result" >&2
    diff -r "$tmp/$generated" "$root/$generated" | head -20 >&2
    exit 1
  fi
  echo "generated Go client code is up to date"
else
  rm -rf "${root:?}/$generated"  # so files of removed protos go too
  generate "$root"
  echo "generated $generated from proto/"
fi
