#!/usr/bin/env bash
# Install the Debian kamailio package (Kamailio 5.6.3 + kamcmd 1.5, the reference peers of the
# interop tests) when it is missing and we are root. Never starts the system service.
set -euo pipefail
if command -v kamailio >/dev/null 2>&1 || [[ -x /usr/sbin/kamailio ]]; then
  if command -v kamcmd >/dev/null 2>&1 || [[ -x /usr/sbin/kamcmd ]]; then exit 0; fi
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-kamailio: kamailio/kamcmd missing and not root: interop tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq kamailio >/dev/null
# the package may start a system-wide instance; our tests start their own
if command -v systemctl >/dev/null 2>&1; then systemctl stop kamailio >/dev/null 2>&1 || true; fi
