"""Records into transfer messages, encoded by hand: owner names compressed, nothing parsed.

A zone of 240k records leaves as a few hundred messages of at most `limit`
bytes, each made when the one before has been taken, so the zone is never
whole in memory. Building them record by record with dnspython or dnslib is
two orders of magnitude slower (bench/axfr.py measures it), which is why this
is written out here.

Owners are compressed against every name and suffix earlier in the same
message (the apex among them). Rdata is copied as given, uncompressed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

CLASS_IN = 1
MAX_POINTER = 0x3FFF  # a compression pointer holds 14 bits
MAX_MESSAGE = 65535
_POINTERS = [struct.pack("!H", 0xC000 | offset) for offset in range(MAX_POINTER + 1)]
_HEADER = struct.Struct("!2sHHHHH")
_FIXED = struct.Struct("!HHIH")


class Record(Protocol):
    """The store's RR, a NamedTuple (owner, rtype, ttl, rdata): owner and rdata in uncompressed,
    lower-cased wire form. The encoder unpacks it as a tuple, in that order."""

    @property
    def owner(self) -> bytes: ...
    @property
    def rtype(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    @property
    def rdata(self) -> bytes: ...
    def __iter__(self) -> Iterator[Any]: ...


def pack_messages(
    records: Iterable[Record], query_id: bytes, flags: int, question: bytes | None, limit: int, first_additional: bytes = b""
) -> Iterator[tuple[bytes, int]]:
    """(message, record count) for consecutive runs of `records`, each message at most `limit`
    bytes (a record too big for one alone gets a message of its own up to 64 KiB).

    `question` (qname, type, class as the client sent it) goes into the first message only,
    and so does `first_additional` (one record: our OPT when the request had one).
    Messages carry no TSIG: the signer appends it (`limit` leaves room for it).
    """
    table: dict[bytes, int] = {}
    parts: list[bytes] = []
    qdcount = 0
    size = 12  # where the next record starts: compression pointers are offsets
    tail = first_additional
    room = limit - len(tail)
    if question:
        qdcount = 1
        parts.append(question)
        size += len(question)
        qname = question[:-4]
        if qname == qname.lower():  # a 0x20-cased question name must not leak into the owners
            table[qname] = 12
    count = 0
    lookup = table.get
    append = parts.append
    pack = _FIXED.pack
    fixed = b""
    last_type = last_ttl = last_length = -1
    for owner, rtype, ttl, rdata in records:
        length = len(rdata)
        if rtype != last_type or ttl != last_ttl or length != last_length:
            fixed = pack(rtype, CLASS_IN, ttl, length)
            last_type, last_ttl, last_length = rtype, ttl, length
        while True:
            # The longest suffix of `owner` already in this message (the root never is): usually
            # the owner itself (its second RRset) or its parent (a sibling came before).
            pointer = lookup(owner)
            if pointer is not None:
                cut = 0
                name = _POINTERS[pointer]
            else:
                cut = owner[0] + 1
                pointer = lookup(owner[cut:])
                while pointer is None and owner[cut]:
                    cut += owner[cut] + 1
                    pointer = lookup(owner[cut:])
                name = owner if pointer is None else owner[:cut] + _POINTERS[pointer]
            grown = size + len(name) + 10 + length
            if grown <= room or (count == 0 and grown + len(tail) <= MAX_MESSAGE):
                break
            if count == 0:
                raise ValueError("a record does not fit in one DNS message")
            yield _HEADER.pack(query_id, flags, qdcount, count, 0, 1 if tail else 0) + b"".join(parts) + tail, count
            table.clear()
            parts.clear()
            size, count, qdcount, tail, room = 12, 0, 0, b"", limit
        if cut and size <= MAX_POINTER:
            # Each suffix written out in full here can be pointed to by later owners.
            table[owner] = size
            start = owner[0] + 1
            while start < cut and size + start <= MAX_POINTER:
                table[owner[start:]] = size + start
                start += owner[start] + 1
        append(name)
        append(fixed)
        append(rdata)
        size = grown
        count += 1
    if count or qdcount:
        yield _HEADER.pack(query_id, flags, qdcount, count, 0, 1 if tail else 0) + b"".join(parts) + tail, count
