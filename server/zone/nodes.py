"""The shapes a served name takes in the zone store: Zone (an apex), Node (a name with several RRsets, or
an empty non-terminal) and Leaf (a name with one RRset, which is almost every name)."""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

from . import names, wire

SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 86400


def type_key(rtype: int) -> bytes:
    """The key of an RRset in a node: qtype + qclass IN, as a query carries them."""
    return rtype.to_bytes(2, "big") + b"\x00\x01"


ANY_KEY = type_key(wire.ANY)
# One shared key object per type: a fresh bytes key in every node would cost ~70 bytes a name.
TYPE_KEYS = {t: type_key(t) for t in (wire.A, wire.NS, wire.CNAME, wire.SOA, wire.PTR, wire.MX, wire.TXT, wire.AAAA, wire.SRV, wire.ANY)}


def key_for(rtype: int) -> bytes:
    return TYPE_KEYS.get(rtype) or type_key(rtype)


CNAME_KEY = TYPE_KEYS[wire.CNAME]


def answer_of(value: tuple) -> bytes:
    """The answer records of a stored answer: (headers, body) or, with additional records after the
    answer (an SRV's targets), (headers, body, where the answer ends)."""
    return value[1] if len(value) == 2 else value[1][: value[2]]


class Zone:
    """One apex: its SOA (re-encoded when the serial moves) and NS names."""

    __slots__ = ("apex", "dirty", "hostmaster", "negative_ttl", "ns_names", "published", "serial", "soa_rdata", "soa_rr")

    def __init__(self, apex: bytes, ns_names: tuple[bytes, ...], negative_ttl: int, serial: int):
        self.apex = apex
        self.ns_names = ns_names  # the first is the SOA MNAME
        self.hostmaster = b"\x0ahostmaster" + names.parent(ns_names[0])
        self.negative_ttl = negative_ttl
        self.dirty = False
        self.published = False  # serials are meaningful once the store has synced and committed
        self.set_serial(serial)

    def set_serial(self, serial: int) -> None:
        self.serial = serial & 0xFFFFFFFF
        self.soa_rdata = wire.soa_rdata(
            self.ns_names[0], self.hostmaster, self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.negative_ttl
        )
        # The SOA's own TTL is the negative TTL: caches (CoreDNS's among them) use it.
        self.soa_rr = wire.rr(self.apex, wire.SOA, self.negative_ttl, self.soa_rdata)

    @property
    def name(self) -> str:
        return names.to_text(self.apex)


class Node(dict):
    """A name that exists. The dict maps qtype+qclass wire bytes to the ready answer:
    (reply_headers variants, answer section bytes). Empty for empty non-terminals.

    Being the dict itself, rather than holding one, saves an object per name:
    at 100k pods that is megabytes. `generation` says which snapshot era it
    was made in: a node older than the last snapshot is copied before a write.
    """

    __slots__ = ("below", "generation", "zone")

    def __init__(self, zone: Zone, generation: int = 0):
        super().__init__()
        self.zone = zone
        self.below = 0  # existing names one label below this one
        self.generation = generation

    def copy_for_write(self, generation: int) -> Node:
        node = Node(self.zone, generation)
        node.update(self)
        node.below = self.below
        return node

    def rrsets(self) -> Iterator[tuple[bytes, bytes]]:
        """(type key, encoded RRset) of each RRset, ANY excluded; the answer records only."""
        for key, value in self.items():
            if key != ANY_KEY:
                yield key, answer_of(value)

    def types(self) -> list[int]:
        """The record types present (ANY excluded), in type order."""
        return sorted(int.from_bytes(key[:2], "big") for key in self if key != ANY_KEY)


class Leaf(tuple):
    """A name with one RRset: (type key, reply_headers variants, answer bytes, zone) and, when additional
    records follow the answer in those bytes, where the answer ends; and, when names lie below it (an
    identity with SRV names under it), where the answer ends (or None) and how many names lie below.

    72 bytes where a Node with its answer tuple is ~300: at 100k pods (200k
    names) that is ~45 MiB. Reads like a Node; the store turns one into the
    other as a name gains or loses RRsets or names below it. Immutable: a
    change makes a new Leaf.
    """

    __slots__ = ()

    key = property(itemgetter(0), doc="the type key of its one RRset")
    headers = property(itemgetter(1), doc="reply_headers variants for that RRset")
    body = property(itemgetter(2), doc="the RRset, encoded for the answer section")
    zone = property(itemgetter(3), doc="the Zone it lies in")

    @classmethod
    def make(cls, key: bytes, headers: tuple, body: bytes, zone: Zone, answer_end: int | None = None, below: int = 0) -> Leaf:
        if below:
            return tuple.__new__(cls, (key, headers, body, zone, answer_end, below))
        if answer_end is None:
            return tuple.__new__(cls, (key, headers, body, zone))
        return tuple.__new__(cls, (key, headers, body, zone, answer_end))

    @property
    def below(self) -> int:
        """Existing names one label below this one."""
        return self[5] if len(self) == 6 else 0

    @property
    def answer_end(self) -> int | None:
        return None if len(self) == 4 else self[4]

    def with_below(self, below: int) -> Leaf:
        """The same records with another count of names below."""
        return Leaf.make(self[0], self[1], self[2], self[3], self.answer_end, below)

    @property
    def answer(self) -> bytes:
        """The answer records alone (without any additional records that follow them)."""
        return self[2] if len(self) == 4 else self[2][: self[4]]  # [:None] is the whole

    def value(self) -> tuple:
        """The stored answer, as a Node holds it."""
        end = self.answer_end
        return (self[1], self[2]) if end is None else (self[1], self[2], end)

    def get(self, key: bytes, default=None):
        return self.value() if key == self[0] or key == ANY_KEY else default

    def __contains__(self, key: object) -> bool:
        return key == self[0] or key == ANY_KEY

    def items(self):
        answer = self.value()
        return [(self[0], answer), (ANY_KEY, answer)]

    def rrsets(self) -> Iterator[tuple[bytes, bytes]]:
        yield self[0], self[2] if len(self) == 4 else self[2][: self[4]]

    def types(self) -> list[int]:
        return [int.from_bytes(self[0][:2], "big")]
