#!/usr/bin/env bash
# Print the path of the buf binary, building it once from the Go module proxy into the cache.
set -euo pipefail
version=1.50.0
dir=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}/tools/buf-$version
if [ ! -x "$dir/buf" ]; then
  echo "privtune: building buf $version with 'go install' (first run only)" >&2
  GOBIN="$dir" GOFLAGS=-mod=mod go install "github.com/bufbuild/buf/cmd/buf@v$version" >&2
fi
echo "$dir/buf"
