"""A cheap, bounded look at a request's shape before any parsing library sees it.

It walks the header, the one question and at most a handful of records,
checking every length against the message, and finds what the transfer
engine needs: the question, EDNS payload, the IXFR request's SOA serial, and
where the TSIG record sits. Anything unusual is None: the ordinary answer path
then handles (or rejects) the message.

Lead: swap for the shared bounded scanner (server/zone/message.py) once it exists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.exception
import dns.name

QUERY, NOTIFY = 0, 4
TYPE_SOA, TYPE_OPT, TYPE_TSIG, TYPE_IXFR, TYPE_AXFR = 6, 41, 250, 251, 252
CLASS_IN, CLASS_ANY = 1, 255
MAX_RECORDS = 8  # a request has the question, an IXFR SOA, OPT and TSIG: more is not ours
MAX_NAME = 255

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class Request:
    """What the scanner found; offsets index the request's own bytes."""

    id: int
    flags: int
    qname: bytes  # lower-cased, uncompressed wire form
    question: bytes  # the question as sent (case kept), type and class included
    qtype: int
    qclass: int
    question_end: int
    edns_payload: int | None  # None: no OPT record
    edns_do: bool
    soa_serial: int | None  # the first SOA in the authority section (the IXFR client's serial)
    soa_owner_ok: bool  # that SOA is owned by the question's name (RFC 1995 §3), or there is none
    tsig_start: int | None  # offset of the TSIG record (the last record), None when unsigned
    tsig_rdata: tuple[int, int] | None  # (offset, length) of its rdata
    edns_version: int = 0

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)


def skip_name(message: bytes, offset: int) -> int:
    """Offset just past a (possibly compressed) name; -1 if it runs off the end or is malformed.

    Pointers are not followed: this only finds where the name ends.
    """
    end = len(message)
    start = offset
    while offset < end:
        length = message[offset]
        if length == 0:
            return offset + 1 if offset + 1 - start <= MAX_NAME else -1
        if length & 0xC0 == 0xC0:
            return offset + 2 if offset + 2 <= end else -1
        if length & 0xC0:
            return -1  # the reserved label types
        offset += 1 + length
    return -1


def plain_name_end(message: bytes, offset: int) -> int:
    """Offset past an uncompressed name (a question's), -1 if it is compressed or malformed."""
    end = len(message)
    start = offset
    while offset < end:
        length = message[offset]
        if length == 0:
            return offset + 1 if offset + 1 - start <= MAX_NAME else -1
        if length > 63:
            return -1
        offset += 1 + length
    return -1


def scan(message: bytes) -> Request | None:
    """The request's shape, or None when it is not a plain one-question request we can vouch for."""
    if len(message) < 12 + 5 or len(message) > 65535:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(message, 0)
    if flags & 0x8000 or qdcount != 1 or ancount + nscount + arcount > MAX_RECORDS:
        return None
    name_end = plain_name_end(message, 12)
    if name_end < 0 or name_end + 4 > len(message):
        return None
    qtype, qclass = struct.unpack_from("!HH", message, name_end)
    question_end = name_end + 4
    offset = question_end
    edns_payload: int | None = None
    edns_do = False
    soa_serial: int | None = None
    soa_owner_ok = True
    edns_version = 0
    tsig_start: int | None = None
    tsig_rdata: tuple[int, int] | None = None
    total = ancount + nscount + arcount
    for index in range(total):
        start = offset
        offset = skip_name(message, offset)
        if offset < 0 or offset + 10 > len(message):
            return None
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(message, offset)
        rdata_start = offset + 10
        offset = rdata_start + rdlength
        if offset > len(message):
            return None
        in_additional = index >= ancount + nscount
        if rtype == TYPE_TSIG:
            if index != total - 1 or not in_additional or rclass != CLASS_ANY or ttl:
                return None  # RFC 8945 §4.2, §5.1: the last record, class ANY, TTL 0
            tsig_start, tsig_rdata = start, (rdata_start, rdlength)
        elif rtype == TYPE_OPT:
            if not in_additional or edns_payload is not None:
                return None
            edns_payload, edns_do, edns_version = rclass, bool(ttl & 0x8000), (ttl >> 16) & 0xFF
        elif rtype == TYPE_SOA and ancount <= index < ancount + nscount and soa_serial is None:
            if rdlength < 22:
                return None
            soa_serial = int.from_bytes(message[offset - 20 : offset - 16], "big")
            soa_owner_ok = _owner_is(message, start, message[12:name_end].lower())
    if offset != len(message):
        return None
    return Request(
        id=qid,
        flags=flags,
        qname=message[12:name_end].lower(),
        question=message[12:question_end],
        qtype=qtype,
        qclass=qclass,
        question_end=question_end,
        edns_payload=edns_payload,
        edns_do=edns_do,
        soa_serial=soa_serial,
        soa_owner_ok=soa_owner_ok,
        tsig_start=tsig_start,
        tsig_rdata=tsig_rdata,
        edns_version=edns_version,
    )


def _owner_is(message: bytes, offset: int, qname: bytes) -> bool:
    """Whether the (possibly compressed) name at `offset` is `qname` (lower-cased wire form)."""
    if message[offset : offset + 2] == b"\xc0\x0c":  # a pointer to the question's name, as clients write it
        return True
    try:
        name, _ = dns.name.from_wire(message, offset)
    except dns.exception.DNSException:
        return False
    return name.canonicalize().to_wire() == qname


def may_concern_transfers(message: bytes) -> bool:
    """The caller's cheap predicate: a zone transfer type, or additional records that are more
    than one plain OPT (so maybe a TSIG). False for every ordinary unsigned query."""
    if len(message) < 17:
        return False
    end = message.find(0, 12)
    if end < 0 or end + 5 > len(message):
        return False
    if message[end + 1] == 0 and message[end + 2] in (TYPE_AXFR, TYPE_IXFR):
        return True
    arcount = (message[10] << 8) | message[11]
    if arcount == 0:
        return False
    # One OPT with no options is exactly 11 bytes after the question: no room for a TSIG.
    return not (arcount == 1 and len(message) == end + 5 + 11)
