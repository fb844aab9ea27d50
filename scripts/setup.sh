#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) with the package and its dev tools.
# Used by run.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "setup: no python3 found" >&2; exit 1; }
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || {
  echo "setup: Python >= 3.11 is required" >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian's python3 has venv/ensurepip in a separate package
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      rm -rf .venv
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      echo "setup: '$PY -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
  | grep -v -e '^WARNING: Location' -e 'is ignored: it is neither' || true
.venv/bin/python -c 'import binrpc' # fail loudly if the install did not work
# byte-compile once: with PYTHONDONTWRITEBYTECODE set, every `binrpc` call would otherwise
# recompile its modules (a one-shot call's start-up budget is a few milliseconds)
.venv/bin/python -m compileall -q src >/dev/null
