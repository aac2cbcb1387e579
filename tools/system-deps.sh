#!/usr/bin/env bash
# Install the Debian tools the tests drive as real peers and browser (chromium, nc, socat, ss).
# Needs root (as in CI); elsewhere it says what is missing and the tests that need it skip with that reason.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v socat >/dev/null || need+=(socat)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "system-deps: not installed (need root and apt-get): ${need[*]}; the tests that use them will skip."
fi
