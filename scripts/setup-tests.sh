#!/usr/bin/env bash
# Install what the test suite needs: Debian's dig, Unbound, Knot, BIND (named and
# the zone checkers), dnsperf, Prometheus (prometheus and promtool, for the
# dashboard and alert tests), MIT Kerberos (a KDC and its clients, for
# deploy/examples/kerberos), gcc (the mmsghdr layout test), and a virtualenv (.venv) with the project and its
# test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v unbound >/dev/null || need+=(unbound)
command -v knotd >/dev/null || need+=(knot)
# named and tsig-keygen: the BIND secondary of tests/integration/test_secondaries.py
PATH="$PATH:/usr/sbin" command -v named >/dev/null || need+=(bind9)
command -v dnsperf >/dev/null || need+=(dnsperf)
# Zone checkers the exports must pass: BIND's named-checkzone and Knot's kzonecheck.
PATH="$PATH:/usr/sbin" command -v named-checkzone >/dev/null || need+=(bind9-utils)
command -v kzonecheck >/dev/null || need+=(knot-dnssecutils)
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
# The KDC's programs live in /usr/sbin, outside a normal user's PATH.
[ -x /usr/sbin/krb5kdc ] && [ -x /usr/sbin/kdb5_util ] || need+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || need+=(krb5-admin-server)
{ command -v kinit && command -v kvno && command -v klist; } >/dev/null || need+=(krb5-user)
# gcc and the C library's headers: tests/unit/test_mmsg.py holds the ctypes structures to the C compiler's layout.
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/include/x86_64-linux-gnu/sys/socket.h ] || [ -e /usr/include/aarch64-linux-gnu/sys/socket.h ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# The runtime dependencies at the versions the image ships (constraints.txt), the test tools at their newest.
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
