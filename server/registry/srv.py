"""SRV per named container port (RFC 2782): `_<port>._<proto>.<identity>` (the member's one record) and
`_<port>._<proto>.<set>` (one record per member declaring the port), with the targets' addresses in the
additional section, pre-encoded like every other answer.

Every record is encoded once, when its member changes, in a form that does
not depend on where it lands in a message (the SRV owned by the question's
pointer, priority 0, weight 1 for all, the additional records owned by the
target's full name), so a set's answer is a join of its members' pieces.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ..zone import names, wire

WEIGHT = 1  # equal weights: every target as likely as the next
MODES = ("all", "sets", "off")  # --srv-records

Piece = tuple[bytes, bytes, int]  # (the SRV record, its target's address records, how many)
PortKey = bytes  # the `_<port>._<proto>` labels in wire form


def port_key(port_name: str, protocol: str) -> PortKey:
    port_label, protocol_label = b"_" + port_name.encode(), b"_" + protocol.encode()
    return bytes((len(port_label),)) + port_label + bytes((len(protocol_label),)) + protocol_label


def piece(ttl: int, port: int, target: bytes, addresses: bytes) -> Piece:
    """One target's SRV record and its addresses, owned by the target's name."""
    record = wire.rr(wire.QNAME_POINTER, wire.SRV, ttl, struct.pack("!HHH", 0, WEIGHT, port) + target)
    additional, count = wire.reowned(addresses, target)
    return record, additional, count


class SrvRecords:
    """Writes the SRV RRsets of members and sets, and keeps what a set's join needs."""

    def __init__(self, store, mode: str = "all") -> None:
        self.store = store
        self.mode = mode
        self.ttl = store.settings.ttl
        self._members: dict[bytes, dict[PortKey, Piece]] = {}  # member -> its pieces, by port
        self._written: dict[bytes, tuple[bytes, ...]] = {}  # member or set -> the SRV owner names written below it
        self.count = 0  # SRV names served

    def member(self, name: bytes, ports: Iterable[tuple[str, str, int]], addresses: bytes) -> None:
        """A member's named ports (none: it has no SRV); `addresses` its served A and AAAA records."""
        if self.mode == "off":
            return
        pieces = {port_key(p, proto): piece(self.ttl, number, name, addresses) for p, proto, number in ports} if addresses else {}
        if pieces:
            self._members[name] = pieces
        else:
            self._members.pop(name, None)
        if self.mode == "all":
            self._write(name, {key: [p] for key, p in pieces.items()})

    def set(self, set_name: bytes, members: Iterable[bytes]) -> None:
        """A set's SRV RRsets: for each port, every member declaring it, in the set's order."""
        if self.mode == "off":
            return
        groups: dict[PortKey, list[Piece]] = {}
        pieces_of = self._members.get
        for member in members:
            pieces = pieces_of(member)
            if pieces:
                for key, p in pieces.items():
                    groups.setdefault(key, []).append(p)
        self._write(set_name, groups)

    def forget(self, name: bytes) -> None:
        """A member or set that is gone: its SRV names go."""
        self._members.pop(name, None)
        if name in self._written:
            self._write(name, {})

    def _write(self, base: bytes, groups: dict[PortKey, list[Piece]]) -> None:
        old = self._written.pop(base, ())
        if not groups and not old:
            return
        written = []
        for key, pieces in groups.items():
            owner = key + base
            if len(owner) > names.MAX_NAME:
                continue
            answer = b"".join([p[0] for p in pieces])
            additional = b"".join([p[1] for p in pieces])
            self.store.set_rrset_body(owner, wire.SRV, answer, len(pieces), additional, sum(p[2] for p in pieces))
            written.append(owner)
        for stale in old:
            if stale not in written:
                self.store.set_rrset_body(stale, wire.SRV, b"", 0)
        if written:
            self._written[base] = tuple(written)
        self.count += len(written) - len(old)

    def names_of(self, base: bytes) -> tuple[bytes, ...]:
        return self._written.get(base, ())

    def has_member(self, name: bytes) -> bool:
        return name in self._members or name in self._written

    def written_items(self):
        """(member or set name, its SRV owner names) for every name with SRV records."""
        return list(self._written.items())

    def is_srv_name(self, name: bytes) -> bool:
        """Whether `name` is one this writes (records of the records file may not take it)."""
        if not (name[0] and name[1:2] == b"_"):
            return False
        base = names.parent(names.parent(name))
        return name in self._written.get(base, ())
