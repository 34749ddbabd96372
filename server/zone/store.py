"""The zone store: every served name with its records already encoded for replies.

The registry writes RRsets here, one name at a time; the answer functions only
read. A name exists when it has records, is a zone apex, or has names below it
(an empty non-terminal), so NXDOMAIN and NODATA fall out of one dictionary.
Each commit moves the serial of the zones it changed and reports their
differences to listeners (the IXFR journal); `snapshot` hands out one zone's
state for an AXFR while writes go on (nodes it holds are copied, not changed).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import names, wire
from .changes import ChangeTracker, Listener, ZoneSnapshot
from .nodes import ANY_KEY, TYPE_KEYS, Leaf, Node, Zone, answer_of, key_for, type_key

ZONE_CACHE_LIMIT = 20000

_PTR_KEY = TYPE_KEYS[wire.PTR]
_A_KEY = TYPE_KEYS[wire.A]
_ONE_RECORD = wire.reply_headers(wire.NOERROR, True, 1, 0)


def serial_after(a: int, b: int) -> bool:
    """RFC 1982: whether serial `a` is greater than serial `b`."""
    return a != b and (a - b) & 0xFFFFFFFF < 0x80000000


def next_serial(zone: Zone, version: int | None, now: int) -> int:
    """A zone's next serial: the change's resourceVersion (mod 2**32) when the source gives one, so that
    replicas that applied the same events agree; else the time. Never backwards (RFC 1982): when the
    candidate is not greater than the current serial, the current one plus one."""
    candidate = (version if version is not None else now) & 0xFFFFFFFF
    if not zone.published or serial_after(candidate, zone.serial):
        return candidate
    return (zone.serial + 1) & 0xFFFFFFFF


TIME_SERIAL_PATIENCE = 2  # seconds a serial may be at or past the clock and still be waited out


def wait_for_time_serial(zones: Iterable[Zone], now: float) -> float:
    """Seconds until the clock has passed every zone's serial (0: now), for the time serials of the file
    sources: a change committed then gets the time itself, never one past it, so a restart, whose first
    serial is the time again, cannot go below a serial served before it. A serial further ahead than
    TIME_SERIAL_PATIENCE (the clock was set back) is not waited for: it counts on by one instead."""
    second = int(now)
    ahead = -1
    for zone in zones:
        if zone.published and not serial_after(second, zone.serial):
            ahead = max(ahead, (zone.serial - second) & 0xFFFFFFFF)
    if ahead < 0 or ahead > TIME_SERIAL_PATIENCE:
        return 0.0
    return ahead + 1.0 - (now - second)


@dataclass(frozen=True)
class ZoneSettings:
    forward_zones: tuple[str, ...]
    reverse_cidrs: tuple[str, ...] = ()
    ttl: int = 30
    negative_ttl: int = 5
    # NS names of every zone, the first also the SOA MNAME (default ns.<zone>; reverse zones
    # use ns.<first zone>), and the addresses of those that lie inside a served zone.
    ns_names: tuple[str, ...] = ()
    ns_addresses: tuple[str, ...] = ()


@dataclass
class ZoneStore:
    settings: ZoneSettings
    nodes: dict[bytes, Node | Leaf] = field(default_factory=dict)
    zones: dict[bytes, Zone] = field(default_factory=dict)
    synced: bool = True
    busy: bool = False  # a change is being written in steps: its serials have not moved yet
    zone_cache: dict[bytes, Zone | None] = field(default_factory=dict)
    # CHAOS-class TXT names (version.bind, id.server, hostname.bind) -> text
    chaos_txt: dict[bytes, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self._a_prefix = wire.rr(wire.QNAME_POINTER, wire.A, s.ttl, bytes(4))[:-4]
        self._aaaa_prefix = wire.rr(wire.QNAME_POINTER, wire.AAAA, s.ttl, bytes(16))[:-16]
        self._ptr_head = wire.rr(wire.QNAME_POINTER, wire.PTR, s.ttl, b"")[:-2]  # without RDLENGTH
        self._generation = 0  # bumped by each snapshot: older Nodes are copied before a write
        self.changes = ChangeTracker()
        self.reserved: frozenset[bytes] = frozenset()
        serial = int(time.time())
        chosen = tuple(names.to_wire(n) for n in s.ns_names)
        for text in s.forward_zones:
            apex = names.to_wire(text)
            self._add_zone(Zone(apex, chosen or (b"\x02ns" + apex,), s.negative_ttl, serial))
        first_forward = next(iter(self.zones), None)
        self.forward_apexes = frozenset(self.zones)
        for cidr in s.reverse_cidrs:
            for apex, _ in names.reverse_zones(cidr):
                if apex not in self.zones:
                    self._add_zone(Zone(apex, chosen or (b"\x02ns" + (first_forward or apex),), s.negative_ttl, serial))
        self._add_ns_addresses()

    def _add_zone(self, zone: Zone) -> None:
        self.zones[zone.apex] = zone
        node = Node(zone)
        self.nodes[zone.apex] = node
        ns = wire.encode_rrset(wire.NS, self.settings.ttl, list(zone.ns_names))
        self._write(node, TYPE_KEYS[wire.NS], wire.reply_headers(wire.NOERROR, True, len(zone.ns_names), 0), ns)
        self._write(node, TYPE_KEYS[wire.SOA], _ONE_RECORD, wire.encode_rrset(wire.SOA, zone.negative_ttl, [zone.soa_rdata]))

    def _add_ns_addresses(self) -> None:
        """A/AAAA for every NS name inside a served zone (secondaries reject an in-zone NS without them)."""
        in_zone = {ns for zone in self.zones.values() for ns in zone.ns_names if self.zone_for(ns) is not None}
        self.reserved = frozenset(in_zone)
        for ns in in_zone:
            self.set_addresses(ns, *self.encode_addresses(self.settings.ns_addresses))
        for zone in self.zones.values():
            zone.dirty = False

    def in_zone_ns_names(self) -> list[str]:
        """NS names that need addresses (they lie inside a served zone), as text."""
        return sorted(names.to_text(n) for n in self.reserved)

    def in_forward_zone(self, name: bytes) -> bool:
        """Whether a (valid, lower-cased) wire name lies in a served forward zone."""
        zone = self.zone_for(name)
        return zone is not None and zone.apex in self.forward_apexes

    def is_reserved(self, name: bytes) -> bool:
        """Whether a name is the server's own (an in-zone NS name): no source may claim it."""
        return name in self.reserved

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
                return node.zone
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

    def body(self, name: bytes, rtype: int) -> bytes:
        """The encoded RRset of one name and type (owner: pointer to the question), or b""."""
        node = self.nodes.get(name)
        if node is None:
            return b""
        found = node.get(key_for(rtype))
        return answer_of(found) if found else b""

    def rrset(self, name: bytes, rtype: int) -> list[bytes]:
        """The rdata of one RRset, read back from its encoded answer."""
        return wire.split_rrset(self.body(name, rtype))

    def snapshot(self, apex: bytes) -> ZoneSnapshot:
        """One zone as it is now, for a transfer; writes from here on leave it as it is."""
        self._generation += 1
        # A dict copy is one C-level memcpy of references (~10 ms at 100k pods); a list of its
        # items would build a tuple per name, and the garbage collector would walk them all.
        return ZoneSnapshot(self.zones[apex], self.nodes.copy())

    def live(self, apex: bytes) -> ZoneSnapshot:
        """One zone as a snapshot reads it, without the copy: valid until the next write, so read it
        within one turn of the event loop and never while a change is half written (`busy`)."""
        return ZoneSnapshot(self.zones[apex], self.nodes)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(changes)` after each commit with the ZoneChange of every zone it changed."""
        self.changes.add_listener(listener)

    # -- writing -------------------------------------------------------

    def set_rrset(self, name: bytes, rtype: int, rdatas: list[bytes]) -> bool:
        """Replace one RRset (empty list deletes it). Returns False if nothing changed.

        Names outside every zone are refused with ValueError; callers filter first.
        """
        body = wire.encode_rrset(rtype, self.settings.ttl, rdatas) if rdatas else b""
        return self.set_rrset_body(name, rtype, body, len(rdatas))

    def set_rrset_body(
        self,
        name: bytes,
        rtype: int,
        body: bytes,
        count: int,
        additional: bytes = b"",
        additional_count: int = 0,
        joined: int | None = None,
    ) -> bool:
        """set_rrset for records already encoded (as `body(...)` returns them): joins of
        other names' bodies make a set's RRset without encoding anything again.

        `additional`: records for the additional section that come with this
        RRset's answer (an SRV's targets' addresses); or, with `joined`, they
        are in `body` already, after its first `joined` bytes (kept as is: shared).
        """
        node = self.nodes.get(name)
        key = TYPE_KEYS.get(rtype) or type_key(rtype)
        if joined is not None:  # `body` already holds the additional records after `joined` bytes
            stored, answer_end = body, (joined if body and joined < len(body) else None)
        elif additional and body:
            stored, answer_end = body + additional, len(body)
        else:
            stored, answer_end = body, None
        # Read by index, headers made only for a write: this runs for every record of every event.
        if node is None:
            if not body:
                return False
            if self.changes.active:
                self.changes.before_write(name, None)
            headers = wire.reply_headers(wire.NOERROR, True, count, 0, arcount=additional_count)
            if not self._add_leaf(name, key, headers, stored, answer_end):
                raise ValueError(f"{names.to_text(name)} is outside every zone")
            return True
        if isinstance(node, Leaf):
            if key == node[0]:
                if stored == node[2]:
                    return False
                if self.changes.active:
                    self.changes.before_write(name, node)
                zone = node[3]
                zone.dirty = True
                below = node[5] if len(node) == 6 else 0
                if body:
                    headers = wire.reply_headers(wire.NOERROR, True, count, 0, arcount=additional_count)
                    if answer_end is None and not below:  # the common shape, without Leaf.make's call
                        self.nodes[name] = tuple.__new__(Leaf, (key, headers, stored, zone))
                    else:
                        self.nodes[name] = Leaf.make(key, headers, stored, zone, answer_end, below)
                elif below:  # names below keep it: an empty non-terminal now
                    ent = self.nodes[name] = Node(zone, self._generation)
                    ent.below = below
                else:
                    self._remove(name, zone)
                return True
            if not body:
                return False
            if self.changes.active:
                self.changes.before_write(name, node)
            node = self._expand(name, node)
        else:
            old = node.get(key)
            if (old[1] if old is not None else b"") == stored:
                return False
            if self.changes.active:
                self.changes.before_write(name, node)
            if node.generation != self._generation:
                node = self.nodes[name] = node.copy_for_write(self._generation)
        headers = wire.reply_headers(wire.NOERROR, True, count, 0, arcount=additional_count if body else 0)
        self._write(node, key, headers, stored, answer_end)
        node.zone.dirty = True
        if name != node.zone.apex:
            if not node:
                if not node.below:
                    self._remove(name, node.zone)
            elif len(node) == 2:
                self._compact(name, node)
        return True

    def set_addresses(self, name: bytes, a_body: bytes, a_count: int, aaaa_body: bytes, aaaa_count: int) -> None:
        """Set both address RRsets of a name (as encode_addresses gives them)."""
        node = self.nodes.get(name)
        self.set_rrset_body(name, wire.A, a_body, a_count)
        if aaaa_body or not (node is None or (type(node) is Leaf and node.key == _A_KEY)):
            # Not when IPv4-only and the name had nothing but A: no AAAA to write or clear.
            self.set_rrset_body(name, wire.AAAA, aaaa_body, aaaa_count)

    def set_ptr(self, name: bytes, target: bytes | None) -> int:
        """Give a reverse name one PTR to `target`, or none; the change in the number of
        names with a PTR (-1, 0 or 1). Names outside every zone get none."""
        node = self.nodes.get(name)
        if node is None:
            if target is None:
                return 0
            if self.changes.active:
                self.changes.before_write(name, None)
            return int(self._add_leaf(name, _PTR_KEY, _ONE_RECORD, self._ptr_prefix(target) + target))
        body = self._ptr_head + len(target).to_bytes(2, "big") + target if target is not None else b""
        # Almost every reverse name holds its PTR alone: rewritten here, 3-5% of an event faster than set_rrset_body.
        if type(node) is Leaf and len(node) == 4 and node[0] == _PTR_KEY:
            if body == node[2]:
                return 0
            if self.changes.active:
                self.changes.before_write(name, node)
            zone = node[3]
            zone.dirty = True
            if target is None:
                self._remove(name, zone)
                return -1
            self.nodes[name] = tuple.__new__(Leaf, (_PTR_KEY, _ONE_RECORD, body, zone))
            return 0
        had = node[0] == _PTR_KEY if type(node) is Leaf else _PTR_KEY in node
        self.set_rrset_body(name, wire.PTR, body, 1)
        return (target is not None) - had

    def _ptr_prefix(self, target: bytes) -> bytes:
        return self._ptr_head + len(target).to_bytes(2, "big")

    def encode_addresses(self, ips: Sequence[str]) -> tuple[bytes, int, bytes, int]:
        """The A and AAAA RRsets of textual addresses, with their record counts."""
        if len(ips) == 1 and ":" not in ips[0]:  # the common case, without the loops
            return self._a_prefix + socket.inet_pton(socket.AF_INET, ips[0]), 1, b"", 0
        v4 = [self._a_prefix + socket.inet_pton(socket.AF_INET, ip) for ip in ips if ":" not in ip]
        v6 = [self._aaaa_prefix + socket.inet_pton(socket.AF_INET6, ip) for ip in ips if ":" in ip]
        return b"".join(v4), len(v4), b"".join(v6), len(v6)

    def commit(self, version: int | None = None) -> list[Zone]:
        """Advance the serial of every zone changed since the last commit, and report the changes.

        Nothing moves before the store is synced (nothing is served then): the
        first commit after it gives every zone its first published serial. See
        `next_serial` for the rule.
        """
        if not self.synced:
            return []
        changed = [z for z in self.zones.values() if z.dirty or not z.published]
        moved = []
        for zone in changed:
            zone.dirty = False
            old = zone.serial if zone.published else None  # a first serial follows no known state
            zone.set_serial(next_serial(zone, version, int(time.time())))
            zone.published = True
            apex = self.nodes[zone.apex]
            if apex.generation != self._generation:  # type: ignore[union-attr]
                apex = self.nodes[zone.apex] = apex.copy_for_write(self._generation)  # type: ignore[union-attr]
            self._write(apex, TYPE_KEYS[wire.SOA], _ONE_RECORD, wire.encode_rrset(wire.SOA, zone.negative_ttl, [zone.soa_rdata]))  # type: ignore[arg-type]
            moved.append((zone, old))
        if self.changes.active:
            self.changes.commit(self, moved)
        return changed

    def _write(self, node: Node, key: bytes, headers: tuple, stored: bytes, answer_end: int | None = None) -> None:
        """Store one encoded RRset in the node (and its ANY answer)."""
        if stored:
            node[key] = (headers, stored) if answer_end is None else (headers, stored, answer_end)
        else:
            node.pop(key, None)
        if len(node) == 1 + (ANY_KEY in node) and key in node:
            node[ANY_KEY] = node[key]  # the one RRset is also the ANY answer: shared, not copied
        else:
            self._write_any(node)

    def _write_any(self, node: Node) -> None:
        keys = [key for key in node if key != ANY_KEY]
        if len(keys) == 1:
            node[ANY_KEY] = node[keys[0]]  # shared, not copied
        elif not keys:
            node.pop(ANY_KEY, None)
        else:
            # Every RRset's answer records; additional records (an SRV's targets) are left out of ANY.
            parts = [node[key] for key in sorted(keys)]
            count = sum(int.from_bytes(value[0][0][4:6], "big") for value in parts)  # their ANCOUNTs
            node[ANY_KEY] = (wire.reply_headers(wire.NOERROR, True, count, 0), b"".join(answer_of(value) for value in parts))

    # -- the shape of the tree: Leaf where it can be, Node where it must --

    def _expand(self, name: bytes, leaf: Leaf) -> Node:
        """The Node of a leaf that gains a second RRset."""
        node = self.nodes[name] = Node(leaf.zone, self._generation)
        node[leaf.key] = node[ANY_KEY] = leaf.value()
        node.below = leaf.below
        return node

    def _compact(self, name: bytes, node: Node) -> None:
        """A Node left with one RRset becomes a Leaf again (~230 bytes less a name)."""
        key = next(k for k in node if k != ANY_KEY)
        value = node[key]
        self.nodes[name] = Leaf.make(key, value[0], value[1], node.zone, value[2] if len(value) == 3 else None, node.below)

    def _add_leaf(self, name: bytes, key: bytes, headers: tuple, body: bytes, answer_end: int | None = None) -> bool:
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
        if isinstance(above, Leaf):
            nodes[above_name] = above.with_below(above.below + 1)
        else:
            above.below += 1
        zone = above.zone
        for ent_name in missing:
            ent = nodes[ent_name] = Node(zone, self._generation)
            ent.below = 1
        nodes[name] = (
            tuple.__new__(Leaf, (key, headers, body, zone)) if answer_end is None else Leaf.make(key, headers, body, zone, answer_end)
        )
        zone.dirty = True
        return True

    def _remove(self, name: bytes, zone: Zone) -> None:
        """Delete a name, and the empty non-terminals it leaves above it."""
        apex = zone.apex
        while True:
            del self.nodes[name]
            name = names.parent(name)
            above = self.nodes[name]
            if isinstance(above, Leaf):  # it has its records: it stays
                self.nodes[name] = above.with_below(above.below - 1)
                return
            above.below -= 1
            if above.below or name == apex:
                return
            if above:
                if len(above) == 2:
                    self._compact(name, above)
                return
