"""SRV per named container port (RFC 2782): `_<port>._<proto>.<identity>` (the member's one record) and
`_<port>._<proto>.<set>` (one record per member declaring the port), with the targets' addresses in the
additional section, pre-encoded like every other answer."""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..zone import names, wire

MAX_POINTER = 0x3FFF  # compression pointers reach this far into a message


class Target(NamedTuple):
    name: bytes  # an identity name (wire)
    port: int
    addresses: bytes  # its encoded A and AAAA records, owned by the question pointer


def owner_name(port_name: str, protocol: str, base: bytes) -> bytes | None:
    """`_<port>._<protocol>.<base>` in wire form; None when it would be longer than a name may be."""
    port_label, protocol_label = b"_" + port_name.encode(), b"_" + protocol.encode()
    owner = bytes((len(port_label),)) + port_label + bytes((len(protocol_label),)) + protocol_label + base
    return owner if len(owner) <= names.MAX_NAME else None


def encode(owner: bytes, ttl: int, targets: list[Target]) -> tuple[bytes, int, bytes, int]:
    """The SRV RRset for `owner` (priority 0, equal weights splitting 100 as CoreDNS does) and its additional
    records: each target's addresses, owned by a pointer to the target's name inside its SRV record."""
    weight = max(1, 100 // len(targets))
    offset = 12 + len(owner) + 4  # where the answer starts: after the header and the question
    answers, additional, additional_count = [], [], 0
    for target in targets:
        record = wire.rr(wire.QNAME_POINTER, wire.SRV, ttl, struct.pack("!HHH", 0, weight, target.port) + target.name)
        at = offset + wire.RECORD_HEAD + 6  # the target name, after priority, weight and port
        if target.addresses and at <= MAX_POINTER:
            records, count = wire.reowned(target.addresses, wire.pointer_to(at))
            additional.append(records)
            additional_count += count
        answers.append(record)
        offset += len(record)
    return b"".join(answers), len(answers), b"".join(additional), additional_count


class SrvRecords:
    """The SRV names written for each identity and set, so a change rewrites them and removes the stale."""

    def __init__(self, store) -> None:
        self.store = store
        self.ttl = store.settings.ttl
        self._written: dict[bytes, tuple[bytes, ...]] = {}  # identity or set name -> its SRV owner names
        self.count = 0  # SRV names served

    def write(self, base: bytes, groups: dict[tuple[str, str], list[Target]]) -> None:
        """The SRV RRsets below `base`: one per (port name, protocol) with its targets; none for an empty `groups`."""
        old = self._written.pop(base, ())
        if not groups and not old:
            return
        written = []
        for (port_name, protocol), targets in groups.items():
            owner = owner_name(port_name, protocol, base)
            if owner is None or not targets:
                continue
            body, count, additional, additional_count = encode(owner, self.ttl, targets)
            self.store.set_rrset_body(owner, wire.SRV, body, count, additional, additional_count)
            written.append(owner)
        for stale in old:
            if stale not in written:
                self.store.set_rrset_body(stale, wire.SRV, b"", 0)
        if written:
            self._written[base] = tuple(written)
        self.count += len(written) - len(old)

    def written_items(self):
        """(identity or set name, its SRV owner names) for every name with SRV records."""
        return list(self._written.items())

    def names_of(self, base: bytes) -> tuple[bytes, ...]:
        return self._written.get(base, ())

    def is_srv_name(self, name: bytes) -> bool:
        """Whether `name` is one this writes (records of the records file may not take it)."""
        parent = names.parent(names.parent(name)) if name[0] and name[1:2] == b"_" else None
        return parent is not None and name in self._written.get(parent, ())


def ports_of(ports: tuple[tuple[str, str, int], ...], target: bytes, addresses: bytes) -> dict[tuple[str, str], list[Target]]:
    """One member's groups: each of its named ports."""
    return {(name, protocol): [Target(target, number, addresses)] for name, protocol, number in ports}
