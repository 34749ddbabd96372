#!/usr/bin/env bash
# Install what the test suite needs: Debian's dig, Unbound, Knot, BIND and dnsperf,
# and a virtualenv (.venv) with the project and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v unbound >/dev/null || need+=(unbound)
command -v knotd >/dev/null || need+=(knot)
# named and tsig-keygen: the BIND secondary of tests/integration/test_secondaries.py
PATH="$PATH:/usr/sbin" command -v named >/dev/null || need+=(bind9)
command -v dnsperf >/dev/null || need+=(dnsperf)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
