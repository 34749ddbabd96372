"""What the zone store reports and hands out for zone transfers: its records as RRs, each commit's
differences per zone (ZoneChange, what an IXFR journal consumes) and consistent snapshots (AXFR)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from . import wire
from .nodes import ANY_KEY, TYPE_KEYS, Leaf, Node, Zone

if TYPE_CHECKING:
    from .store import ZoneStore

_SOA_KEY = TYPE_KEYS[wire.SOA]
TRACK_LIMIT = 20_000  # names changed in one commit beyond which its difference is not worked out


class RR(NamedTuple):
    owner: bytes  # lower-case wire name, uncompressed
    rtype: int
    ttl: int
    rdata: bytes  # uncompressed wire form


class ZoneChange(NamedTuple):
    """One committed change of one zone. removed/added are None when the difference is not known
    (too big to work out); SOA records are never in them: the serial change says it."""

    apex: bytes
    old_serial: int
    new_serial: int
    removed: tuple[RR, ...] | None
    added: tuple[RR, ...] | None


Listener = Callable[[list[ZoneChange]], None]


def body_records(owner: bytes, body: bytes) -> Iterator[RR]:
    """The RRs of an encoded RRset (each owned by the 2-byte question pointer)."""
    offset = 0
    while offset < len(body):
        rtype = (body[offset + 2] << 8) | body[offset + 3]
        ttl = int.from_bytes(body[offset + 6 : offset + 10], "big")
        size = (body[offset + 10] << 8) | body[offset + 11]
        yield RR(owner, rtype, ttl, body[offset + 12 : offset + 12 + size])
        offset += 12 + size


def _rrsets(node, apex: bool) -> dict[bytes, bytes]:
    if node is None:
        return {}
    rrsets = dict(node.rrsets())
    if apex:
        rrsets.pop(_SOA_KEY, None)
    return rrsets


class ChangeTracker:
    """Remembers each name's state before its first write since the last commit, while anyone listens."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.active = False  # anyone listening: a plain attribute, read before every write
        self._before: dict[bytes, object] = {}
        self._overflow = False

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
        self.active = True

    def before_write(self, name: bytes, node: Node | Leaf | None) -> None:
        """Call before changing `name` (whose current node is `node`)."""
        before = self._before
        if name in before or self._overflow:
            return
        if len(before) >= TRACK_LIMIT:
            self._overflow = True
            before.clear()
            return
        # A Leaf never changes; a Node may be written in place, so keep what it holds now.
        before[name] = dict(node.rrsets()) if type(node) is Node else node

    def commit(self, store: ZoneStore, changed: list[tuple[Zone, int | None]]) -> None:
        """Report the zones that changed, as (zone, old serial) after their new serial is set;
        an old serial of None (the zone's first published serial) reports the difference as unknown."""
        before, overflow = self._before, self._overflow
        self._before, self._overflow = {}, False
        if not self.listeners or not changed:
            return
        diffs: dict[bytes, tuple[list[RR], list[RR]]] = {zone.apex: ([], []) for zone, _ in changed}
        if not overflow:
            for name, old in before.items():
                new = store.nodes.get(name)
                zone = store.zone_for(name)
                if zone is None or zone.apex not in diffs:
                    continue
                is_apex = name == zone.apex
                old_sets = old if type(old) is dict else _rrsets(old, is_apex)
                if is_apex:
                    old_sets.pop(_SOA_KEY, None)
                new_sets = _rrsets(new, is_apex)
                removed, added = diffs[zone.apex]
                for key in old_sets.keys() | new_sets.keys():
                    old_body, new_body = old_sets.get(key, b""), new_sets.get(key, b"")
                    if old_body == new_body or key == ANY_KEY:
                        continue
                    old_rrs, new_rrs = set(body_records(name, old_body)), set(body_records(name, new_body))
                    removed.extend(sorted(old_rrs - new_rrs))
                    added.extend(sorted(new_rrs - old_rrs))
        report = [
            ZoneChange(zone.apex, old_serial if old_serial is not None else zone.serial, zone.serial, None, None)
            if overflow or old_serial is None
            else ZoneChange(zone.apex, old_serial, zone.serial, tuple(diffs[zone.apex][0]), tuple(diffs[zone.apex][1]))
            for zone, old_serial in changed
        ]
        for listener in self.listeners:
            listener(report)


class ZoneSnapshot:
    """One zone as it was when taken: its serial, SOA and every other record, read lazily."""

    def __init__(self, zone: Zone, nodes: dict[bytes, Node | Leaf]):
        self.zone = zone
        self.apex = zone.apex
        self.serial = zone.serial
        self.soa = RR(zone.apex, wire.SOA, zone.negative_ttl, zone.soa_rdata)
        self._nodes = nodes

    def rrsets(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """The records of records() as the store keeps them: (owner, type key, encoded RRset) per RRset,
        the RRset's records each owned by the 2-byte question pointer (as in answers), ready to be spliced
        into a transfer message without decoding (server/transfer/encoder.py)."""
        zone, apex = self.zone, self.apex
        for name, node in self._nodes.items():
            if node.zone is not zone:
                continue
            if type(node) is Leaf:
                yield name, node.key, node.answer
                continue
            for key, value in node.items():  # Node.rrsets() inline: a generator per name costs
                if key != ANY_KEY and (key != _SOA_KEY or name != apex):
                    yield name, key, value[1] if len(value) == 2 else value[1][: value[2]]

    def names(self) -> Iterator[tuple[bytes, int]]:
        """Each name of the zone with the bytes of its stored RRsets (about their share of a transfer;
        0 for an empty non-terminal)."""
        zone = self.zone
        for name, node in self._nodes.items():
            if node.zone is not zone:
                continue
            if type(node) is Leaf:
                yield name, len(node.body)
            else:
                yield name, sum(len(value[1]) for key, value in node.items() if key != ANY_KEY)

    def rrsets_of(self, wanted: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """(owner, encoded RRset) as rrsets() gives them, for the names of `wanted` in the zone (the rest
        are skipped), a name's RRsets together."""
        zone, apex, nodes = self.zone, self.apex, self._nodes
        for name in wanted:
            node = nodes.get(name)
            if node is None or node.zone is not zone:
                continue
            if type(node) is Leaf:
                yield name, node.answer
                continue
            for key, value in node.items():
                if key != ANY_KEY and (key != _SOA_KEY or name != apex):
                    yield name, value[1] if len(value) == 2 else value[1][: value[2]]

    def records(self) -> Iterator[RR]:
        """Every record of the zone except the apex SOA, from the state at snapshot time (apex records first:
        apexes are the store's oldest names)."""
        zone, apex = self.zone, self.apex
        for name, node in self._nodes.items():
            if node.zone is not zone:
                continue
            for key, body in node.rrsets():
                if key == _SOA_KEY and name == apex:
                    continue
                yield from body_records(name, body)
