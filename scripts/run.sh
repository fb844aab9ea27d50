#!/usr/bin/env bash
# The main job: set up, start binrpcd on its default control socket, query it with the
# binrpc client (default queries, or the binrpc command line given as arguments), stop it.
#   bash scripts/run.sh                 # core.version, ls, core.uptime, ps
#   bash scripts/run.sh core.echo a 1   # any binrpc command line
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

.venv/bin/binrpcd &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT

# wait (at most 10 s) until the server answers on its default socket
for _ in $(seq 100); do
  if .venv/bin/binrpc core.version >/dev/null 2>&1; then break; fi
  kill -0 $pid 2>/dev/null || { echo "run: binrpcd exited early" >&2; exit 1; }
  sleep 0.1
done

if [[ $# -gt 0 ]]; then
  .venv/bin/binrpc "$@"
else
  for cmd in core.version ls core.uptime ps; do
    echo "\$ binrpc $cmd"
    .venv/bin/binrpc $cmd
  done
fi
