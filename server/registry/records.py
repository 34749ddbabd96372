"""The records file as the registry uses it: addresses and PTRs join the hosts entries, every other type
is served as written, where no pod's name stands.

- A and AAAA records act as hosts lines (`IP name`): forward-confirmed like
  them, with a PTR when the name is the address's first static one.
- A PTR record adds its target to the address's PTR candidates, after the
  hosts lines'; a target inside a forward zone is used only while that
  name's static addresses hold the address.
- Any other type (CNAME, SRV, TXT, MX, CAA, ...) is written at its name,
  unless a pod identity, a set or a pod's SRV owns the name; a CNAME also
  not beside static addresses (RFC 1034 §3.6.2).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..model import StaticEntry, StaticRecord
from ..zone import names, wire
from .claims import Dirty
from .statics import StaticTable

if TYPE_CHECKING:
    from .ownership import Registry

log = logging.getLogger("pod_identity_dns.registry")

RRsets = dict[int, tuple[int, list[bytes]]]  # rtype -> (TTL, rdatas)


class RecordsTable:
    """One load of the records file, split as above."""

    def __init__(self) -> None:
        self.rrsets: dict[bytes, RRsets] = {}  # name -> its RRsets of the other types
        self.static = StaticTable()  # addresses and PTR candidates
        self.lines: dict[tuple[bytes, int], int] = {}  # (name, rtype) -> the line it came from

    @classmethod
    def build(cls, records: Iterable[StaticRecord], in_zone: Callable[[bytes], bool], reserved: Callable[[bytes], bool]) -> RecordsTable:
        table = cls()
        add_entry = table.static.builder(in_zone, reserved)
        outside = 0
        ptr_records: list[tuple[str, bytes]] = []
        for record in records:
            try:
                name = names.to_wire(record.name)
            except ValueError as exc:
                log.warning("records file line %d: %s: ignored", record.line, exc)
                continue
            if not in_zone(name):
                if outside < 20:
                    log.warning("records file line %d: %s is outside every served zone: ignored", record.line, record.name)
                outside += 1
                continue
            if reserved(name):
                log.warning("records file line %d: %s is the server's own name server name: ignored", record.line, record.name)
                continue
            if record.rtype in (wire.A, wire.AAAA):
                add_entry(StaticEntry(str(ipaddress.ip_address(record.rdata)), (record.name,), record.line))
                continue
            if record.rtype == wire.PTR and (ip := _address_of(record.name)) is not None:
                ptr_records.append((ip, record.rdata.lower()))
                continue
            ttl, rdatas = table.rrsets.setdefault(name, {}).get(record.rtype, (record.ttl, []))
            if record.rtype == wire.CNAME and rdatas and record.rdata not in rdatas:
                first = table.lines[(name, wire.CNAME)]
                log.warning(
                    "records file line %d: a second CNAME at %s (the first is on line %d): ignored", record.line, record.name, first
                )
                continue
            if record.rdata not in rdatas:
                rdatas.append(record.rdata)
            table.rrsets[name][record.rtype] = (min(ttl, record.ttl), rdatas)  # one TTL per RRset (RFC 2181 §5.2)
            table.lines.setdefault((name, record.rtype), record.line)
        if outside > 20:
            log.warning("and %d more records outside every served zone", outside - 20)
        # After the names that hold an address: a PTR record names the address only when no such name may.
        for ip, target in ptr_records:
            candidates = table.static.ptr_names.setdefault(ip, [])
            if target not in candidates:
                candidates.append(target)
        table.static.finish()
        return table

    def changed_names(self, old: RecordsTable) -> set[bytes]:
        """Names whose other-type RRsets differ between `old` and this table."""
        return {name for name in old.rrsets.keys() | self.rrsets.keys() if old.rrsets.get(name) != self.rrsets.get(name)}


def _address_of(reverse: str) -> str | None:
    """The address a reverse name (d.c.b.a.in-addr.arpa, 32 nibbles of ip6.arpa) stands for, else None."""
    labels = reverse.split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34 and all(len(n) == 1 for n in labels[:32]):
            nibbles = "".join(reversed(labels[:32]))
            return ipaddress.IPv6Address(int(nibbles, 16)).compressed
    except ValueError:
        return None
    return None


def merged(hosts: StaticTable, records: StaticTable) -> StaticTable:
    """The hosts entries with the records file's added after them (the hosts table itself when there are none)."""
    if not records.addresses and not records.ptr_names:
        return hosts
    table = StaticTable()
    table.addresses = {name: list(ips) for name, ips in hosts.addresses.items()}
    table.ptr_names = {ip: list(candidates) for ip, candidates in hosts.ptr_names.items()}
    table.names_of_ip = {ip: list(held) for ip, held in hosts.names_of_ip.items()}
    for name, ips in records.addresses.items():
        for ip in ips:
            held = table.addresses.setdefault(name, [])
            if ip not in held:
                held.append(ip)
                table.names_of_ip.setdefault(ip, []).append(name)
    for ip, candidates in records.ptr_names.items():
        into = table.ptr_names.setdefault(ip, [])
        into.extend(c for c in candidates if c not in into)
    return table


def encode(rtype: int, ttl: int, rdatas: list[bytes]) -> bytes:
    return b"".join(wire.rr(wire.QNAME_POINTER, rtype, ttl, rdata) for rdata in rdatas)


def write_records(registry: Registry, name: bytes) -> None:
    """The records file's RRsets at `name`, unless a pod identity, a set or a pod's SRV holds the name;
    a CNAME also not beside static addresses."""
    wanted = registry._records.rrsets.get(name, {})
    held = name in registry._names or name in registry._sets or registry._srv.is_srv_name(name)
    beside_static = not held and wire.CNAME in wanted and name in registry._static.addresses
    blocked = held or beside_static
    if blocked and wanted and name not in registry._records_blocked:  # told once, until it is served again
        if beside_static:
            log.warning("records file: the CNAME at %s stands beside a hosts entry's addresses: not served", names.to_text(name))
        elif name not in registry._names:  # a pod's name: the conflict book has told it already
            log.warning("records file: %s belongs to a pod's set or SRV records: its records there are not served", names.to_text(name))
    if blocked and wanted:
        registry._records_blocked.add(name)
    else:
        registry._records_blocked.discard(name)
    serve = {} if blocked else wanted
    for rtype in registry._records_written.pop(name, ()):
        if rtype not in serve:
            registry.store.set_rrset_body(name, rtype, b"", 0)
    for rtype, (ttl, rdatas) in serve.items():
        registry.store.set_rrset_body(name, rtype, encode(rtype, ttl, rdatas), len(rdatas))
    if serve:
        registry._records_written[name] = tuple(serve)


def replace_records(registry: Registry, records: Iterable[StaticRecord]) -> None:
    """The complete set of static records (the records file)."""
    table = RecordsTable.build(records, lambda name: registry.store.zone_for(name) is not None, registry.store.is_reserved)
    dirty = Dirty()
    old_static, old_records = registry._static, registry._records
    registry._records = table
    registry._static = merged(registry._hosts_static, table.static)
    dirty.names, dirty.ips = registry._static.changed_against(old_static)
    dirty.names |= table.changed_names(old_records)
    registry._version = max(registry._versions.values(), default=None)
    registry._flush(dirty)
