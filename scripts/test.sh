#!/usr/bin/env bash
# Set everything up (venv, Debian kamailio) and run the whole suite: ruff, mypy, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k codec).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
bash scripts/ensure-kamailio.sh || exit 1

status=0
echo "== ruff check";  .venv/bin/ruff check src tests bench fuzz || status=1
echo "== ruff format"; .venv/bin/ruff format --check src tests bench fuzz || status=1
echo "== mypy";        .venv/bin/mypy || status=1
echo "== pytest"
.venv/bin/python -m pytest "$@"
rc=$?
# 5 = no test collected: a failure for us
[[ $rc -eq 0 ]] || status=1
exit $status
