#!/usr/bin/env bash
# Print the path of an Ory Hydra 2.3.0 binary (an OpenID Connect provider for tests),
# building it once from the Go module proxy into the cache.
#   scripts/build_hydra.sh -> ${PRIVTUNE_CACHE:-~/.cache/privtune}/hydra-2.3.0/hydra
#
# 'go install github.com/ory/hydra/v2@v2.3.0' refuses because Hydra's go.mod has replace
# directives, so we build it as a dependency of a scratch module that copies the
# module-path replaces (pop/v6 -> Ory's fork). '-tags sqlite' (cgo) makes 'dsn: memory'
# work. A cold build (modules downloaded too) took 2 min on 2 cores, peak ~0.6 GB per
# process; later calls are instant.
set -euo pipefail
module=github.com/ory/hydra/v2
version=2.3.0
dir=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}/hydra-$version
bin="$dir/hydra"

build() {
  command -v go >/dev/null || [ ! -x /usr/local/go/bin/go ] || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || {
    echo "build_hydra: go not found; Go >= 1.22 is needed (apt-get install -y golang, or put /usr/local/go/bin on PATH)" >&2
    exit 1
  }
  command -v "${CC:-cc}" >/dev/null || {
    echo "build_hydra: C compiler '${CC:-cc}' not found; Hydra's in-memory SQLite needs cgo (apt-get install -y gcc)" >&2
    exit 1
  }
  echo "privtune: building Ory Hydra $version with cgo (first run only, a few minutes)" >&2
  work=$(mktemp -d "${TMPDIR:-/tmp}/privtune-hydra-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=1
    go mod init privtune.local/hydra-build >/dev/null 2>&1
    # Copy Hydra's replaces that name another module; skip local paths ('=> ./...'),
    # which only make sense inside Hydra's own source tree.
    gomod=$(go mod download -json "$module@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    sed -n 's/^replace[[:space:]]\+\([^[:space:]]\+\)[[:space:]]*=>[[:space:]]*\([^.[:space:]][^[:space:]]*\)[[:space:]]\+\([^[:space:]]\+\)$/\1=\2@\3/p' \
      "$gomod" | while read -r rule; do go mod edit -replace "$rule"; done
    go get "$module@v$version"
    go build -tags sqlite -trimpath \
      -ldflags "-s -w -X $module/driver/config.Version=v$version" \
      -o "$bin.tmp" "$module"
  ) >"$dir/build.log" 2>&1 || {
    cat "$dir/build.log" >&2
    echo "build_hydra: building Hydra $version failed (log above, also in $dir/build.log)" >&2
    exit 1
  }
  mv "$bin.tmp" "$bin"
}

if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9  # concurrent callers wait for one build
  [ -x "$bin" ] || build
fi
echo "$bin"
