#!/usr/bin/env bash
# Install the Debian packages the tests use when they are missing and we are root: kamailio
# (Kamailio 5.6.3 + kamcmd 1.5, the reference peers of the interop tests) and openssl (the
# throwaway CA of the TLS tests). Never starts the system service.
set -euo pipefail
missing=()
{ command -v kamailio >/dev/null 2>&1 || [[ -x /usr/sbin/kamailio ]]; } || missing+=(kamailio)
{ command -v kamcmd >/dev/null 2>&1 || [[ -x /usr/sbin/kamcmd ]]; } || missing+=(kamailio)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-kamailio: ${missing[*]} missing and not root: the tests that need them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# the package may start a system-wide instance; our tests start their own
if command -v systemctl >/dev/null 2>&1; then systemctl stop kamailio >/dev/null 2>&1 || true; fi
