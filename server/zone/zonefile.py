"""RFC 1035 zone-file text of the zone store, as the server serves it (export-zone)."""

from __future__ import annotations

import ipaddress
import struct

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from . import names, wire
from .changes import body_records
from .store import Zone, ZoneStore


def _rdata_text(rtype: int, rdata: bytes) -> str:
    if rtype in (wire.A, wire.AAAA):
        return str(ipaddress.ip_address(rdata))
    if rtype in (wire.PTR, wire.NS):
        return names.to_text(rdata)
    if rtype == wire.SOA:
        mname_end = names.labels_end(rdata, 0)
        rname_end = names.labels_end(rdata, mname_end)
        numbers = struct.unpack("!IIIII", rdata[rname_end:])
        return " ".join([names.to_text(rdata[:mname_end]), names.to_text(rdata[mname_end:rname_end]), *map(str, numbers)])
    # Any other type (SRV, TXT, MX, CAA, CNAME, ... from the records file): dnspython's presentation form.
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rtype), rdata, 0, len(rdata)).to_text()


def type_text(rtype: int) -> str:
    """A record type as zone files write it (A, CAA, TYPE65280)."""
    return wire.TYPE_NAMES.get(rtype) or dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rtype))


def zone_text(store: ZoneStore, zone: Zone) -> str:
    """One zone: SOA first, then every name in DNS order with its records."""
    lines = [f"$ORIGIN {zone.name}", f"; serial {zone.serial}"]
    owned = [(name, node) for name, node in store.nodes.items() if node.zone is zone and node]
    owned.sort(key=lambda item: (item[0] != zone.apex, _canonical(item[0])))
    for name, node in owned:
        for rtype in sorted(node.types(), key=lambda t: (t != wire.SOA, t)):
            for record in body_records(name, store.body(name, rtype)):
                lines.append(f"{names.to_text(name)}\t{record.ttl}\tIN\t{type_text(rtype)}\t{_rdata_text(rtype, record.rdata)}")
    return "\n".join(lines) + "\n"


def _canonical(name: bytes) -> list[bytes]:
    labels = []
    while name[0]:
        labels.append(name[1 : 1 + name[0]])
        name = name[1 + name[0] :]
    return labels[::-1]


def zone_file_name(zone: Zone) -> str:
    return zone.name.rstrip(".") + ".zone"
