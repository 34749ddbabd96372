#!/bin/sh
# kdc-0, before its KDC starts: on the first start, create the realm's database and
# the host principals of both KDCs, and kdc-0's own keytab (for kprop). Later starts
# find the database and change nothing.
set -eu
data=${KDC_DATA:-/var/lib/krb5kdc}
if [ -e "$data/principal" ]; then
    echo "the realm's database exists"
    exit 0
fi
kdb5_util -P "$MASTER_PASSWORD" create -s
kadmin.local -q "addprinc -randkey host/$KDC_NAME"
kadmin.local -q "addprinc -randkey host/$REPLICA_NAME"
kadmin.local -q "ktadd -k $data/kprop.keytab host/$KDC_NAME"
echo "created the realm with host/$KDC_NAME and host/$REPLICA_NAME"
