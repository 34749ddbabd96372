#!/bin/sh
# kdc-0: send the whole database to the replica every PROPAGATE_SECONDS (default 60).
# kprop authenticates as host/$KDC_NAME to host/$REPLICA_NAME: both identity names.
set -u
data=${KDC_DATA:-/var/lib/krb5kdc}
while :; do
    if ! { kdb5_util dump "$data/replica_datatrans" \
        && kprop -P 754 -f "$data/replica_datatrans" -s "$data/kprop.keytab" "$REPLICA_NAME"; }; then
        echo "propagation to $REPLICA_NAME failed; retrying" >&2
    fi
    sleep "${PROPAGATE_SECONDS:-60}"
done
