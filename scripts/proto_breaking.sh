#!/usr/bin/env bash
# Fail if proto/ breaks wire or JSON compatibility with the last released schema
# (the newest proto/release/v*.json, written by `make proto-release VERSION=x.y.z`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
buf=$("$root/scripts/go_tool.sh" buf)
last=$(ls "$root"/proto/release/v*.json 2>/dev/null | sort -V | tail -n 1)
if [ -z "$last" ]; then
  echo "no released proto image in proto/release/: run 'make proto-release VERSION=0.1.0' once" >&2
  exit 1
fi
cd "$root/proto"
"$buf" breaking --against "$last"
echo "protos are compatible with $(basename "$last" .json)"
