"""Hostile query shapes: the packets that cost a DNS server the most work per byte.

Used by the regression tests and by bench/worst_queries.py. Each builder
returns one query of about `size` bytes (never more), a valid header and
question first, so it gets past every cheap check.
"""

from __future__ import annotations

import random
import struct

from server.zone import message
from server.zone.names import to_wire
from tests.conftest import ZONE

QNAME = f"kafka-0.kafka.default.{ZONE}"
UDP_SIZES = (512, 1472, 4096)
TCP_SIZE = 65535
_FIXED = struct.Struct("!HHIH")
_UNKNOWN_TYPE = 65280
# The most records the scanner reads before it gives up on a message without reading any:
# shapes with this many records make it do the most work its budget allows.
READ_LIMIT = message.MAX_STEPS // message.RECORD_STEPS


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100, qid: int = 0x4242) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name: str = QNAME, qtype: int = 1, qclass: int = 1) -> bytes:
    return to_wire(name) + struct.pack("!HH", qtype, qclass)


def plain(name: str = QNAME, qtype: int = 1) -> bytes:
    return header() + question(name, qtype)


def _records(size: int, make, section: str = "ar", limit: int = 65535) -> bytes:
    """Header, question, then records make(offset, index) until `size` would be passed."""
    body = bytearray(question())
    count = 0
    while count < limit:
        record = make(12 + len(body), count)
        if 12 + len(body) + len(record) > size:
            break
        body += record
        count += 1
    return header(**{section: count}) + bytes(body)


def pointer_chain(size: int, section: str = "ar", limit: int = 65535) -> bytes:
    """Each record's owner is one label and a pointer back to the previous owner: names grow by a label
    a record, so a decoder that expands every name does work quadratic in the size (issue 9)."""
    previous = [12]

    def make(offset: int, _index: int) -> bytes:
        owner = b"\x01a" + struct.pack("!H", 0xC000 | previous[0])
        previous[0] = offset
        return owner + _FIXED.pack(1, 1, 0, 4) + b"\x7f\x00\x00\x01"

    return _records(size, make, section, limit)


def pointer_only_chain(size: int, limit: int = 65535) -> bytes:
    """Each owner is a bare pointer to the previous owner: the names never grow, the chains do."""
    previous = [12]

    def make(offset: int, _index: int) -> bytes:
        owner = struct.pack("!H", 0xC000 | previous[0])
        previous[0] = offset
        return owner + _FIXED.pack(_UNKNOWN_TYPE, 1, 0, 0)

    return _records(size, make, limit=limit)


def tiny_records(size: int, limit: int = 65535) -> bytes:
    """As many records as fit: root owner, no data, 11 bytes each."""
    return _records(size, lambda _offset, _index: b"\x00" + _FIXED.pack(_UNKNOWN_TYPE, 1, 0, 0), limit=limit)


def maximal_names(size: int, limit: int = 65535) -> bytes:
    """Records owned by 255-byte names of 127 one-byte labels, uncompressed."""
    name = b"\x01a" * 127 + b"\x00"
    return _records(size, lambda _offset, _index: name + _FIXED.pack(_UNKNOWN_TYPE, 1, 0, 0), limit=limit)


def pointers_to_maximal_name(size: int, limit: int = 65535) -> bytes:
    """One 127-label owner, then records whose owners point at it: each costs the whole name again."""
    name = b"\x01a" * 127 + b"\x00"
    first = [0]

    def make(offset: int, index: int) -> bytes:
        if index == 0:
            first[0] = offset
            return name + _FIXED.pack(_UNKNOWN_TYPE, 1, 0, 0)
        return struct.pack("!H", 0xC000 | first[0]) + _FIXED.pack(_UNKNOWN_TYPE, 1, 0, 0)

    return _records(size, make, limit=limit)


def many_options(size: int) -> bytes:
    """One OPT whose data is empty EDNS options, 4 bytes each."""
    room = size - len(header()) - len(question()) - 11
    options = b"\xff\x00\x00\x00" * (min(room, 65535) // 4)
    return header(ar=1) + question() + b"\x00" + _FIXED.pack(41, 1232, 0, len(options)) + options


def many_questions(size: int) -> bytes:
    """QDCOUNT as large as fits, every question the same name."""
    one = question()
    count = (size - 12) // len(one)
    return header(qd=count) + one * count


def long_question(size: int) -> bytes:
    """A question name of 63-byte labels that never ends within the packet."""
    labels = (b"\x3f" + b"a" * 63) * ((size - 12) // 64)
    return header() + labels


def deep_question(_size: int = 0, rng: random.Random | None = None) -> bytes:
    """The deepest name there is, new each time, under the zone: 255 bytes of 1-byte labels.

    What a random-subdomain flood would send to make every lookup walk the most names."""
    apex = to_wire(ZONE)
    first = bytes((rng or random).choices(b"abcdefghijklmnopqrstuvwxyz", k=7))
    depth = (255 - len(apex) - 8) // 2
    return header() + b"\x07" + first + b"\x01x" * depth + apex + b"\x00\x01\x00\x01"


def deep_question_with_options(_size: int = 0, options: int = message.MAX_STEPS - message.RECORD_STEPS) -> bytes:
    """A new deepest name, and an OPT with as many EDNS options as the scan allows: answered, not FORMERR."""
    query = deep_question()
    data = b"\xff\x00\x00\x00" * options
    return query[:11] + b"\x01" + query[12:] + b"\x00" + _FIXED.pack(41, 1232, 0, len(data)) + data


def chain_then_opt(size: int) -> bytes:
    """A pointer chain in the answer section, then an OPT: the OPT is far away."""
    chain = pointer_chain(size - 11, "an")
    arcount_at = 10
    return chain[:arcount_at] + b"\x00\x01" + chain[12:] + b"\x00" + _FIXED.pack(41, 1232, 0, 0)


def garbage(size: int, rng: random.Random | None = None) -> bytes:
    """Random bytes with the QR bit clear (a response would be dropped unread)."""
    data = bytearray((rng or random).randbytes(size))
    data[2] &= 0x7F
    return bytes(data)


SHAPES = {
    "pointer chain, additional": pointer_chain,
    "pointer chain, answer": lambda size: pointer_chain(size, "an"),
    "pointer-only chain": pointer_only_chain,
    "tiny records": tiny_records,
    "maximal names": maximal_names,
    "pointers to a maximal name": pointers_to_maximal_name,
    f"pointer chain, {READ_LIMIT} records": lambda size: pointer_chain(size, limit=READ_LIMIT),
    f"pointer-only chain, {READ_LIMIT} records": lambda size: pointer_only_chain(size, READ_LIMIT),
    f"tiny records, {READ_LIMIT} records": lambda size: tiny_records(size, READ_LIMIT),
    f"pointers to a maximal name, {READ_LIMIT} records": lambda size: pointers_to_maximal_name(size, READ_LIMIT),
    "EDNS options": many_options,
    "many questions": many_questions,
    "unterminated question": long_question,
    "chain, then OPT": chain_then_opt,
}
