#!/bin/sh
# kdc-1: serve once the first copy of the database has come from kdc-0 (kpropd, in
# the pod's other container, receives and loads it).
set -eu
data=${KDC_DATA:-/var/lib/krb5kdc}
until [ -e "$data/principal" ]; do
    echo "waiting for the first database copy from kdc-0"
    sleep 5
done
exec krb5kdc -n
