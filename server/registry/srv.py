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
from functools import lru_cache

from ..zone import names, wire

WEIGHT = 1  # equal weights: every target as likely as the next
MODES = ("all", "sets", "off")  # --srv-records

# One target's records: (the `_<port>._<proto>` labels, the SRV record followed by its target's address
# records, where the SRV record ends, how many address records). One bytes object, so a member's own SRV
# answer and its set's join share it.
Piece = tuple[bytes, bytes, int, int]
PortKey = bytes  # the `_<port>._<proto>` labels in wire form


@lru_cache(maxsize=4096)  # one bytes object per port name, not one per member: ~90 bytes a pod
def port_key(port_name: str, protocol: str) -> PortKey:
    port_label, protocol_label = b"_" + port_name.encode(), b"_" + protocol.encode()
    return bytes((len(port_label),)) + port_label + bytes((len(protocol_label),)) + protocol_label


def piece(key: PortKey, ttl: int, port: int, target: bytes, addresses: bytes) -> Piece:
    """One target's SRV record and its addresses, owned by the target's name."""
    record = wire.rr(wire.QNAME_POINTER, wire.SRV, ttl, struct.pack("!HHH", 0, WEIGHT, port) + target)
    additional, count = wire.reowned(addresses, target)
    return key, record + additional, len(record), count


class SrvRecords:
    """Writes the SRV RRsets of members and sets, and keeps what a set's join needs."""

    def __init__(self, store, mode: str = "all") -> None:
        self.store = store
        self.mode = mode
        self.ttl = store.settings.ttl
        self._members: dict[bytes, tuple[Piece, ...]] = {}  # member -> its pieces, one per port
        self._written: dict[bytes, tuple[bytes, ...]] = {}  # member or set -> the SRV owner names written below it
        self.count = 0  # SRV names served

    def member(self, name: bytes, ports: Iterable[tuple[str, str, int]], addresses: bytes) -> None:
        """A member's named ports (none: it has no SRV); `addresses` its served A and AAAA records."""
        if self.mode == "off":
            return
        pieces = tuple(piece(port_key(p, proto), self.ttl, number, name, addresses) for p, proto, number in ports) if addresses else ()
        if pieces:
            self._members[name] = pieces
        else:
            self._members.pop(name, None)
        if self.mode == "all":
            self._write(name, {p[0]: [p] for p in pieces})

    def set(self, set_name: bytes, members: Iterable[bytes]) -> None:
        """A set's SRV RRsets: for each port, every member declaring it, in the set's order."""
        if self.mode == "off":
            return
        groups: dict[PortKey, list[Piece]] = {}
        pieces_of = self._members.get
        for member in members:
            pieces = pieces_of(member)
            if pieces:
                for p in pieces:
                    groups.setdefault(p[0], []).append(p)
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
            if len(pieces) == 1:  # a member's own: the piece's bytes, shared
                _, body, split, count = pieces[0]
                self.store.set_rrset_body(owner, wire.SRV, body, 1, additional_count=count, joined=split)
            else:
                answer = b"".join([p[1][: p[2]] for p in pieces])
                additional = b"".join([p[1][p[2] :] for p in pieces])
                self.store.set_rrset_body(owner, wire.SRV, answer, len(pieces), additional, sum(p[3] for p in pieces))
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
