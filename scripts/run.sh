#!/usr/bin/env bash
# The main job: set up, start binrpcd on its default control socket, query it with the
# binrpc client (default queries, or the binrpc command line given as arguments), stop it.
#   bash scripts/run.sh                 # core.version, ls, core.uptime, ps
#   bash scripts/run.sh core.echo a 1   # any binrpc command line
# Fails (binrpcd's error, its exit status) when binrpcd cannot start, e.g. when another
# server already listens on the default socket; the queries go only to the socket this
# binrpcd bound ($BINRPC_SOCKET chooses it, as for binrpcd itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# binrpcd prints "listening on ADDRESS" once it listens, or exits with an error: read its
# stdout until one or the other (no polling, no guessing which server answers)
exec 3< <(exec .venv/bin/binrpcd)
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT

line=
if ! IFS= read -r line <&3 || [[ $line != "listening on "* ]]; then
  status=0
  wait $pid || status=$?
  trap - EXIT
  echo "run: binrpcd did not start (exit status $status)" >&2
  exit $((status ? status : 1))
fi
address=${line#listening on }

if [[ $# -gt 0 ]]; then
  .venv/bin/binrpc -s "$address" "$@"
else
  for cmd in core.version ls core.uptime ps; do
    echo "\$ binrpc $cmd"
    .venv/bin/binrpc -s "$address" $cmd
  done
fi
