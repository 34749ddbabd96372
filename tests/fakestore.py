"""A small zone store with exactly the interface the transfer engine reads (server/transfer/source.py),
plus an ordinary answer function built with dnspython, for the transfer tests.

Swapping in the real store is one line: RR and ZoneChange come from server.zone.store
once it has them.
"""

from __future__ import annotations

import operator
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from server.transfer.serial import replace_soa_serial
from server.zone import names, wire


class RR(NamedTuple):
    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes


class ZoneChange(NamedTuple):
    apex: bytes
    old_serial: int
    new_serial: int
    removed: tuple[RR, ...] | None
    added: tuple[RR, ...] | None


SOA_TTL = 5


class FakeZone:
    def __init__(self, name: str, serial: int, ns_name: str):
        self.apex = names.to_wire(name)
        self.name = names.to_text(self.apex)
        self.serial = serial
        ns = names.to_wire(ns_name)
        self.soa_rdata = wire.soa_rdata(ns, b"\x0ahostmaster" + self.apex, serial, 3600, 600, 86400, SOA_TTL)
        self.records: dict[RR, None] = {}  # an ordered set

    @property
    def soa(self) -> RR:
        return RR(self.apex, wire.SOA, SOA_TTL, replace_soa_serial(self.soa_rdata, self.serial))


class FakeSnapshot:
    def __init__(self, zone: FakeZone):
        self.serial = zone.serial
        self.soa = zone.soa
        self._records = tuple(zone.records)
        self._iterator = iter(self._records)

    def records(self) -> Iterator[RR]:
        return self._iterator

    @property
    def taken(self) -> int:
        """Records handed out so far (tests check that a transfer reads lazily)."""
        return len(self._records) - operator.length_hint(self._iterator)


class FakeStore:
    def __init__(self):
        self.zones: dict[bytes, FakeZone] = {}
        self.listeners: list[Callable[[list[ZoneChange]], None]] = []
        self.snapshots: list[FakeSnapshot] = []
        self.synced = True  # as the real store's: False until every source synced, busy while a change is written in steps
        self.busy = False

    def add_zone(self, name: str, serial: int = 1000, ns_name: str = "ns.pods.example.internal", records: Iterable[RR] = ()) -> FakeZone:
        zone = self.zones[names.to_wire(name)] = FakeZone(name, serial, ns_name)
        zone.records[ns_record(zone.apex, ns_name)] = None
        for record in records:
            zone.records[record] = None
        return zone

    def add_listener(self, callback: Callable[[list[ZoneChange]], None]) -> None:
        self.listeners.append(callback)

    def snapshot(self, apex: bytes) -> FakeSnapshot:
        snapshot = FakeSnapshot(self.zones[apex])
        self.snapshots.append(snapshot)
        return snapshot

    def commit(
        self, apex: bytes, removed: Iterable[RR] = (), added: Iterable[RR] = (), untracked: bool = False, step: int = 1
    ) -> ZoneChange:
        """Apply one change to one zone, move its serial, tell the listeners."""
        zone = self.zones[apex]
        removed, added = tuple(removed), tuple(added)
        for record in removed:
            del zone.records[record]
        for record in added:
            zone.records[record] = None
        old = zone.serial
        zone.serial = (zone.serial + step) & 0xFFFFFFFF
        change = ZoneChange(apex, old, zone.serial, None if untracked else removed, None if untracked else added)
        for listener in self.listeners:
            listener([change])
        return change

    def zone_of(self, name: bytes) -> FakeZone | None:
        while True:
            zone = self.zones.get(name)
            if zone is not None or not name[0]:
                return zone
            name = names.parent(name)

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        """An authoritative answer from the zones, built with dnspython (slow, fine for tests)."""
        try:
            request = dns.message.from_wire(query)
        except Exception:
            return None
        if request.flags & dns.flags.QR or len(request.question) != 1:
            return None
        question = request.question[0]
        response = dns.message.make_response(request)
        response.flags &= ~dns.flags.RA
        qname = names.to_wire(question.name.to_text())
        zone = self.zone_of(qname)
        if zone is None or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        records = [zone.soa] if qname == zone.apex else []
        records += [r for r in zone.records if r.owner == qname]
        matching = [r for r in records if question.rdtype in (r.rtype, dns.rdatatype.ANY)]
        for record in matching:
            response.find_rrset(response.answer, question.name, dns.rdataclass.IN, record.rtype, create=True).add(
                to_rdata(record), record.ttl
            )
        if not matching:
            exists = records or any(names.is_subdomain(r.owner, qname) for r in zone.records)
            if not exists:
                response.set_rcode(dns.rcode.NXDOMAIN)
            soa = zone.soa
            apex = dns.name.from_wire(zone.apex, 0)[0]
            response.find_rrset(response.authority, apex, dns.rdataclass.IN, dns.rdatatype.SOA, create=True).add(to_rdata(soa), soa.ttl)
        return response.to_wire(max_size=65535 if tcp else max(512, request.payload))


def to_rdata(record: RR) -> dns.rdata.Rdata:
    return dns.rdata.from_wire(dns.rdataclass.IN, record.rtype, record.rdata, 0, len(record.rdata))


def ns_record(apex: bytes, ns_name: str, ttl: int = 30) -> RR:
    return RR(apex, wire.NS, ttl, names.to_wire(ns_name))


def a_record(name: str, ip: str, ttl: int = 30) -> RR:
    family, rtype = (socket.AF_INET6, wire.AAAA) if ":" in ip else (socket.AF_INET, wire.A)
    return RR(names.to_wire(name), rtype, ttl, socket.inet_pton(family, ip))


def ptr_record(ip: str, target: str, ttl: int = 30) -> RR:
    return RR(names.reverse_name(ip), wire.PTR, ttl, names.to_wire(target))


FORWARD = "pods.example.internal"
REVERSE = "244.10.in-addr.arpa"
NS_NAME = f"ns.{FORWARD}"
NS_IP = "10.255.0.53"  # outside the reverse zone: no pod can have it


def pod_zones(store: FakeStore, pods: int, serial: int = 1000, ttl: int = 30) -> tuple[FakeZone, FakeZone]:
    """A forward and a reverse zone of `pods` identities, the in-zone NS with its address."""
    forward = store.add_zone(FORWARD, serial, NS_NAME)
    reverse = store.add_zone(REVERSE, serial, NS_NAME)
    forward.records[a_record(NS_NAME, NS_IP, ttl)] = None
    for i in range(pods):
        name, ip = pod_identity(i)
        forward.records[a_record(name, ip, ttl)] = None
        reverse.records[ptr_record(ip, name, ttl)] = None
    return forward, reverse


def pod_identity(i: int) -> tuple[str, str]:
    """The i-th pod's name and IP (10.244.0.0/16 has room for 65k; beyond, names repeat IPs mod 65024)."""
    slot = i % 65024
    return f"app-{i}.set-{i % 300}.ns-{i % 25}.{FORWARD}", f"10.244.{slot // 254}.{slot % 254 + 1}"
