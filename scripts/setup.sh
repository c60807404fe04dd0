#!/usr/bin/env bash
# Set up a development/run environment in .venv: system build deps (py-libp2p compiles
# fastecdsa, which needs gcc and GMP headers), then the project with its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/gmp.h ] || [ -e "/usr/include/$(uname -m)-linux-gnu/gmp.h" ] || need+=(libgmp-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" python3-dev
  else
    echo "setup: please install these system packages first: ${need[*]} python3-dev" >&2
    exit 1
  fi
fi

# tmux is only for the test that runs `sovereign tui` in a real terminal (skipped without it).
if ! command -v tmux >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux || echo "setup: could not install tmux; its test will be skipped" >&2
  else
    echo "setup: tmux is not installed; the terminal test of the TUI will be skipped" >&2
  fi
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python >= 3.11 is required, this is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# The js-libp2p peer of tests/integration/test_js_interop.py, pinned by its package-lock.json and
# installed into tests/integration/js/node_modules (git-ignored); without node/npm that test skips.
js=tests/integration/js
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if ! (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    rm -rf "$js/node_modules"
    echo "setup: npm ci in $js failed; the js-libp2p interop test will be skipped" >&2
  fi
else
  echo "setup: node/npm not found; the js-libp2p interop test will be skipped (it needs Node.js >= 20)" >&2
fi
echo "setup: ready (.venv/bin/sovereign)" >&2
