"""Records into transfer messages, encoded by hand: owner names compressed, stored RRsets spliced in.

A zone of 240k records leaves as a few hundred messages of at most `limit`
bytes, each made when the one before has been taken, so the zone is never
whole in memory. Building them record by record with dnspython or dnslib is
two orders of magnitude slower (bench/axfr.py measures it), which is why this
is written out here.

Owners are compressed against every name and suffix earlier in the same
message (the apex among them). Rdata is copied as given, uncompressed; the
zone store's RRsets (owner pointer, type, class, TTL, rdata, already encoded
for answers) are copied whole.
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


def record_piece(record: Record) -> tuple[bytes, bytes]:
    """A record as a piece: (owner, the record with the 2-byte question pointer as its owner)."""
    owner, rtype, ttl, rdata = record
    return owner, b"\xc0\x0c" + _FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def pack_messages(
    records: Iterable[Record], query_id: bytes, flags: int, question: bytes | None, limit: int, first_additional: bytes = b""
) -> Iterator[tuple[bytes, int]]:
    """pack_pieces for records, one piece each."""
    return pack_pieces(map(record_piece, records), query_id, flags, question, limit, first_additional)


def pack_pieces(
    pieces: Iterable[tuple[bytes, bytes]], query_id: bytes, flags: int, question: bytes | None, limit: int, first_additional: bytes = b""
) -> Iterator[tuple[bytes, int]]:
    """(message, record count) for consecutive runs of `pieces`, each message at most `limit` bytes.

    A piece is (owner, records): one or more records of that owner as the zone store keeps an RRset
    for its answers, each record's owner the 2-byte question pointer 0xC00C; the owner is written
    once, compressed, and the records after the first point to it, so a stored RRset is spliced in
    as it is, never decoded. A piece stays in one message; one that might not fit a message of `limit`
    alone is split into its records (RRsets may span messages in a transfer), and a record too big
    for one alone gets a message of its own up to 64 KiB.

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
    pointers = _POINTERS
    split_at = room - 12 - 255 - len(question or b"")  # a piece longer than this might not fit an empty message
    for owner, whole in pieces:
        # A piece too long for one message is split into its records (rare: an RRset of thousands).
        for body in (whole,) if len(whole) <= split_at else _records(whole):
            single = ((body[10] << 8) | body[11]) + 12 == len(body)
            while True:
                # The longest suffix of `owner` already in this message (the root never is): usually
                # the owner itself (its second RRset) or its parent (a sibling came before).
                pointer = lookup(owner)
                if pointer is not None:
                    cut = 0
                    name = pointers[pointer]
                else:
                    cut = owner[0] + 1
                    pointer = lookup(owner[cut:])
                    while pointer is None and owner[cut]:
                        cut += owner[cut] + 1
                        pointer = lookup(owner[cut:])
                    name = owner if pointer is None else owner[:cut] + pointers[pointer]
                if single:
                    number, rest = 1, body[2:]
                else:  # the records after the first point to the owner as written here
                    reference = name if not cut or size > MAX_POINTER else pointers[size]
                    number, rest = _spliced(body, reference)
                grown = size + len(name) + len(rest)
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
            append(rest)
            size = grown
            count += number
    if count or qdcount:
        yield _HEADER.pack(query_id, flags, qdcount, count, 0, 1 if tail else 0) + b"".join(parts) + tail, count


def _records(body: bytes) -> list[bytes]:
    """The records of an encoded RRset, each with its own 2-byte owner pointer."""
    out, offset = [], 0
    while offset < len(body):
        end = offset + 12 + ((body[offset + 10] << 8) | body[offset + 11])
        out.append(body[offset:end])
        offset = end
    return out


def _spliced(body: bytes, reference: bytes) -> tuple[int, bytes]:
    """The records of `body` after the first owner: each later owner replaced by `reference`."""
    segments = []
    offset = 2
    while True:
        end = offset + 10 + ((body[offset + 8] << 8) | body[offset + 9])
        segments.append(body[offset:end])
        if end >= len(body):
            return len(segments), reference.join(segments)
        offset = end + 2
