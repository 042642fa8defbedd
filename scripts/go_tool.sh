#!/usr/bin/env bash
# Print the path of a Go-built tool, building it once from the Go module proxy into the cache.
#   scripts/go_tool.sh buf | grpcurl | protoc-gen-go | protoc-gen-go-grpc
set -euo pipefail
case "${1:-}" in
  buf) module=github.com/bufbuild/buf/cmd/buf; version=1.50.0 ;;
  grpcurl) module=github.com/fullstorydev/grpcurl/cmd/grpcurl; version=1.9.3 ;;
  # protoc-gen-go matches the google.golang.org/protobuf version in clients/go/go.mod
  protoc-gen-go) module=google.golang.org/protobuf/cmd/protoc-gen-go; version=1.36.12 ;;
  protoc-gen-go-grpc) module=google.golang.org/grpc/cmd/protoc-gen-go-grpc; version=1.6.2 ;;
  *) echo "usage: $0 buf|grpcurl|protoc-gen-go|protoc-gen-go-grpc" >&2; exit 2 ;;
esac
dir=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}/tools/$1-$version
if [ ! -x "$dir/$1" ]; then
  command -v go >/dev/null || { echo "go is needed to build $1 (apt-get install -y golang)" >&2; exit 1; }
  echo "privtune: building $1 $version with 'go install' (first run only)" >&2
  GOBIN="$dir" GOFLAGS=-mod=mod go install "$module@v$version" >&2
fi
echo "$dir/$1"
