"""The zone store: every served name with its records already encoded for replies.

The registry writes RRsets here, one name at a time; the answer functions only
read. A name exists when it has records, is a zone apex, or has names below it
(an empty non-terminal), so NXDOMAIN and NODATA fall out of one dictionary.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from . import names, wire

SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 86400
ZONE_CACHE_LIMIT = 20000


@dataclass(frozen=True)
class ZoneSettings:
    forward_zones: tuple[str, ...]
    reverse_cidrs: tuple[str, ...] = ()
    ttl: int = 30
    negative_ttl: int = 5
    ns_name: str | None = None


class Zone:
    """One apex: its SOA (re-encoded when the serial moves) and NS."""

    __slots__ = ("apex", "dirty", "hostmaster", "negative_ttl", "network", "ns_name", "serial", "soa_rdata", "soa_rr")

    def __init__(self, apex: bytes, network, ns_name: bytes, negative_ttl: int, serial: int):
        self.apex = apex
        self.network = network
        self.ns_name = ns_name
        self.hostmaster = b"\x0ahostmaster" + names.parent(ns_name)
        self.negative_ttl = negative_ttl
        self.dirty = False
        self.set_serial(serial)

    def set_serial(self, serial: int) -> None:
        self.serial = serial & 0xFFFFFFFF
        self.soa_rdata = wire.soa_rdata(self.ns_name, self.hostmaster, self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.negative_ttl)
        # The SOA's own TTL is the negative TTL: caches (CoreDNS's among them) use it.
        self.soa_rr = wire.rr(self.apex, wire.SOA, self.negative_ttl, self.soa_rdata)

    @property
    def name(self) -> str:
        return names.to_text(self.apex)


class Node(dict):
    """A name that exists. The dict maps qtype+qclass wire bytes to the ready answer:
    (reply_headers variants, answer section bytes). Empty for empty non-terminals.

    Being the dict itself, rather than holding one, saves an object per name:
    at 100k pods that is megabytes.
    """

    __slots__ = ("below", "zone")

    def __init__(self, zone: Zone):
        super().__init__()
        self.zone = zone
        self.below = 0  # existing names one label below this one

    def types(self) -> list[int]:
        """The record types present (ANY excluded), in type order."""
        return sorted(int.from_bytes(key[:2], "big") for key in self if key != ANY_KEY)


class Leaf(tuple):
    """A name with one RRset and no names below it, which is almost every name:
    (qtype+qclass key, reply_headers variants, answer section bytes, zone).

    72 bytes where a Node with its answer tuple is ~300: at 100k pods (200k
    names) that is ~45 MiB. Reads like a Node; the store turns one into the
    other as a name gains or loses RRsets or names below it.
    """

    __slots__ = ()

    below = 0

    @property
    def zone(self) -> Zone:
        return self[3]

    def get(self, key: bytes, default=None):
        return (self[1], self[2]) if key == self[0] or key == ANY_KEY else default

    def __contains__(self, key: object) -> bool:
        return key == self[0] or key == ANY_KEY

    def items(self) -> list[tuple[bytes, tuple]]:
        answer = (self[1], self[2])
        return [(self[0], answer), (ANY_KEY, answer)]

    def types(self) -> list[int]:
        return [int.from_bytes(self[0][:2], "big")]


def _type_key(rtype: int) -> bytes:
    return rtype.to_bytes(2, "big") + b"\x00\x01"


ANY_KEY = _type_key(wire.ANY)
# One shared key object per type: a fresh bytes key in every node would cost ~70 bytes a name.
_TYPE_KEYS = {t: _type_key(t) for t in (wire.A, wire.NS, wire.SOA, wire.PTR, wire.TXT, wire.AAAA, wire.ANY)}
_PTR_KEY = _TYPE_KEYS[wire.PTR]
_A_KEY = _TYPE_KEYS[wire.A]
_ONE_RECORD = wire.reply_headers(wire.NOERROR, True, 1, 0)


@dataclass
class ZoneStore:
    settings: ZoneSettings
    nodes: dict[bytes, Node | Leaf] = field(default_factory=dict)
    zones: dict[bytes, Zone] = field(default_factory=dict)
    synced: bool = True
    zone_cache: dict[bytes, Zone | None] = field(default_factory=dict)
    # CHAOS-class TXT names (version.bind, id.server, hostname.bind) -> text
    chaos_txt: dict[bytes, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self._a_prefix = wire.rr(wire.QNAME_POINTER, wire.A, s.ttl, bytes(4))[:-4]
        self._aaaa_prefix = wire.rr(wire.QNAME_POINTER, wire.AAAA, s.ttl, bytes(16))[:-16]
        self._ptr_head = wire.rr(wire.QNAME_POINTER, wire.PTR, s.ttl, b"")[:-2]  # without RDLENGTH
        serial = int(time.time())
        first_forward = names.to_wire(s.forward_zones[0]) if s.forward_zones else None
        for text in s.forward_zones:
            apex = names.to_wire(text)
            ns = names.to_wire(s.ns_name) if s.ns_name else b"\x02ns" + apex
            self._add_zone(Zone(apex, None, ns, s.negative_ttl, serial))
        for cidr in s.reverse_cidrs:
            for apex, network in names.reverse_zones(cidr):
                if apex in self.zones:
                    continue
                if s.ns_name:
                    ns = names.to_wire(s.ns_name)
                else:
                    ns = b"\x02ns" + (first_forward or apex)
                self._add_zone(Zone(apex, network, ns, s.negative_ttl, serial))

    def _add_zone(self, zone: Zone) -> None:
        self.zones[zone.apex] = zone
        node = Node(zone)
        self.nodes[zone.apex] = node
        self._write(node, _TYPE_KEYS[wire.NS], wire.encode_rrset(wire.NS, self.settings.ttl, [zone.ns_name]), 1)
        self._write(node, _TYPE_KEYS[wire.SOA], wire.encode_rrset(wire.SOA, zone.negative_ttl, [zone.soa_rdata]), 1)

    # -- reading -------------------------------------------------------

    def zone_for(self, name: bytes) -> Zone | None:
        """The closest enclosing zone of a (valid, lower-cased) wire name.

        Walks the names that exist rather than the apexes: the nearest existing
        one (often the name itself or its parent) knows its zone, and every apex
        exists, so none can lie between.
        """
        nodes = self.nodes
        while True:
            node = nodes.get(name)
            if node is not None:
                return node[3] if type(node) is Leaf else node.zone
            if not name[0]:
                return None
            name = name[1 + name[0] :]

    def cached_zone_for(self, name: bytes) -> Zone | None:
        """zone_for with a bounded memo: names that do not exist repeat in floods."""
        cache = self.zone_cache
        try:
            return cache[name]
        except KeyError:
            pass
        zone = self.zone_for(name)
        if len(cache) >= ZONE_CACHE_LIMIT:
            del cache[next(iter(cache))]
        cache[name] = zone
        return zone

    def rrset(self, name: bytes, rtype: int) -> list[bytes]:
        """The rdata of one RRset, read back from its encoded answer."""
        return wire.split_rrset(self.body(name, rtype))

    # -- writing -------------------------------------------------------

    def set_rrset(self, name: bytes, rtype: int, rdatas: list[bytes]) -> bool:
        """Replace one RRset (empty list deletes it). Returns False if nothing changed.

        Names outside every zone are refused with ValueError; callers filter first.
        """
        body = self._encode(name, rtype, rdatas) if rdatas else b""
        return self.set_rrset_body(name, rtype, body, len(rdatas))

    def set_rrset_body(self, name: bytes, rtype: int, body: bytes, count: int) -> bool:
        """set_rrset for records already encoded (as `body(...)` returns them): joins of
        other names' bodies make a set's RRset without encoding anything again."""
        node = self.nodes.get(name)
        key = _TYPE_KEYS.get(rtype) or _type_key(rtype)
        if node is None:
            if not body:
                return False
            if not self._add_leaf(name, key, wire.reply_headers(wire.NOERROR, True, count, 0), body):
                raise ValueError(f"{names.to_text(name)} is outside every zone")
            return True
        if type(node) is Leaf:
            if key == node[0]:
                if body == node[2]:
                    return False
                node[3].dirty = True
                if body:
                    self.nodes[name] = Leaf((key, wire.reply_headers(wire.NOERROR, True, count, 0), body, node[3]))
                else:
                    self._remove(name, node.zone)
                return True
            if not body:
                return False
            node = self._expand(name, node)
        if not self._write(node, key, body, count):
            return False
        node.zone.dirty = True
        if not node.below and name != node.zone.apex:
            if not node:
                self._remove(name, node.zone)
            elif len(node) == 2:
                self._compact(name, node)
        return True

    def set_addresses(self, name: bytes, a_body: bytes, a_count: int, aaaa_body: bytes, aaaa_count: int) -> None:
        """Set both address RRsets of a name (as encode_addresses gives them)."""
        node = self.nodes.get(name)
        self.set_rrset_body(name, wire.A, a_body, a_count)
        if aaaa_body or not (node is None or (type(node) is Leaf and node[0] == _A_KEY)):
            # Not when IPv4-only and the name had nothing but A: no AAAA to write or clear.
            self.set_rrset_body(name, wire.AAAA, aaaa_body, aaaa_count)

    def set_ptr(self, name: bytes, target: bytes | None) -> int:
        """Give a reverse name one PTR to `target`, or none; the change in the number of
        names with a PTR (-1, 0 or 1). Names outside every zone get none."""
        node = self.nodes.get(name)
        if node is None:
            if target is None:
                return 0
            return int(self._add_leaf(name, _PTR_KEY, _ONE_RECORD, self._ptr_prefix(target) + target))
        body = self._ptr_prefix(target) + target if target is not None else b""
        had = (node[0] == _PTR_KEY) if type(node) is Leaf else _PTR_KEY in node
        self.set_rrset_body(name, wire.PTR, body, 1)
        return (target is not None) - had

    def _ptr_prefix(self, target: bytes) -> bytes:
        return self._ptr_head + len(target).to_bytes(2, "big")

    def body(self, name: bytes, rtype: int) -> bytes:
        """The encoded RRset of one name and type (owner: pointer to the question), or b""."""
        node = self.nodes.get(name)
        if node is None:
            return b""
        key = _TYPE_KEYS.get(rtype) or _type_key(rtype)
        if type(node) is Leaf:
            return node[2] if key == node[0] else b""
        found = node.get(key)
        return found[1] if found else b""

    def encode(self, rtype: int, rdatas: list[bytes]) -> bytes:
        """An answer RRset (not SOA) as set_rrset_body takes it; b"" for none."""
        return wire.encode_rrset(rtype, self.settings.ttl, rdatas) if rdatas else b""

    def encode_addresses(self, ips: tuple[str, ...]) -> tuple[bytes, int, bytes, int]:
        """The A and AAAA RRsets of textual addresses, with their record counts."""
        if len(ips) == 1 and ":" not in ips[0]:  # the common case, without the loops
            return self._a_prefix + socket.inet_pton(socket.AF_INET, ips[0]), 1, b"", 0
        v4 = [self._a_prefix + socket.inet_pton(socket.AF_INET, ip) for ip in ips if ":" not in ip]
        v6 = [self._aaaa_prefix + socket.inet_pton(socket.AF_INET6, ip) for ip in ips if ":" in ip]
        return b"".join(v4), len(v4), b"".join(v6), len(v6)

    def _encode(self, name: bytes, rtype: int, rdatas: list[bytes]) -> bytes:
        ttl = self.settings.ttl
        if rtype == wire.SOA:
            ttl = self.zone_for(name).negative_ttl
        return wire.encode_rrset(rtype, ttl, rdatas)

    def commit(self) -> list[Zone]:
        """Advance the serial of every zone changed since the last commit."""
        changed = [z for z in self.zones.values() if z.dirty]
        now = int(time.time())
        for zone in changed:
            zone.dirty = False
            zone.set_serial(max(zone.serial + 1, now))
            self._write(self.nodes[zone.apex], _TYPE_KEYS[wire.SOA], wire.encode_rrset(wire.SOA, zone.negative_ttl, [zone.soa_rdata]), 1)
        return changed

    def _write(self, node: Node, key: bytes, body: bytes, count: int) -> bool:
        """Store one encoded RRset in the node (and its ANY answer); False if it was already so."""
        old = node.get(key)
        if body:
            if old is not None and old[1] == body:
                return False
            node[key] = (wire.reply_headers(wire.NOERROR, True, count, 0), body)
        elif old is None:
            return False
        else:
            del node[key]
        if len(node) == 1 + (ANY_KEY in node) and key in node:
            node[ANY_KEY] = node[key]  # the one RRset is also the ANY answer: shared, not copied
        else:
            self._write_any(node)
        return True

    def _write_any(self, node: Node) -> None:
        keys = [key for key in node if key != ANY_KEY]
        if len(keys) == 1:
            node[ANY_KEY] = node[keys[0]]  # shared, not copied
        elif not keys:
            node.pop(ANY_KEY, None)
        else:
            parts = [node[key] for key in sorted(keys)]
            count = sum(int.from_bytes(headers[0][4:6], "big") for headers, _ in parts)  # their ANCOUNTs
            node[ANY_KEY] = (wire.reply_headers(wire.NOERROR, True, count, 0), b"".join(body for _, body in parts))

    # -- the shape of the tree: Leaf where it can be, Node where it must --

    def _expand(self, name: bytes, leaf: Leaf) -> Node:
        """The Node of a leaf that gains a second RRset or a name below it."""
        node = self.nodes[name] = Node(leaf[3])
        node[leaf[0]] = node[ANY_KEY] = (leaf[1], leaf[2])
        return node

    def _compact(self, name: bytes, node: Node) -> None:
        """A Node left with one RRset and nothing below becomes a Leaf again."""
        key = next(k for k in node if k != ANY_KEY)
        headers, body = node[key]
        self.nodes[name] = Leaf((key, headers, body, node.zone))

    def _add_leaf(self, name: bytes, key: bytes, headers: tuple, body: bytes) -> bool:
        """Add a name that does not exist as a Leaf, with the empty non-terminals
        between it and the nearest name that does; False if it is outside every zone.

        One walk up finds both the zone (the nearest existing name knows it) and
        where the new empty non-terminals end.
        """
        nodes = self.nodes
        missing = []
        above_name = name
        while True:
            if not above_name[0]:
                return False
            above_name = above_name[1 + above_name[0] :]
            above = nodes.get(above_name)
            if above is not None:
                break
            missing.append(above_name)
        if type(above) is Leaf:
            above = self._expand(above_name, above)
        above.below += 1
        zone = above.zone
        for ent_name in missing:
            ent = nodes[ent_name] = Node(zone)
            ent.below = 1
        nodes[name] = Leaf((key, headers, body, zone))
        zone.dirty = True
        return True

    def _remove(self, name: bytes, zone: Zone) -> None:
        """Delete a name, and the empty non-terminals it leaves above it."""
        apex = zone.apex
        while True:
            del self.nodes[name]
            name = names.parent(name)
            above = self.nodes[name]
            above.below -= 1
            if above.below or name == apex:
                return
            if above:
                if len(above) == 2:
                    self._compact(name, above)
                return
