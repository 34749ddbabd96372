"""Hand-encoded DNS wire pieces: resource records, reply headers, our OPT record.

Records are encoded once, when the data changes, and kept as bytes; a reply is
then a concatenation of ready pieces. Encoding 100k records with dnslib takes
tens of seconds, by hand well under one, which is why this lives here.
"""

from __future__ import annotations

import struct
from functools import cache

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, IXFR, AXFR, MAILB, MAILA, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 251, 252, 253, 254, 255
CLASS_IN, CLASS_CH = 1, 3

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

TYPE_NAMES = {
    A: "A",
    NS: "NS",
    CNAME: "CNAME",
    SOA: "SOA",
    PTR: "PTR",
    MX: "MX",
    TXT: "TXT",
    AAAA: "AAAA",
    SRV: "SRV",
    OPT: "OPT",
    ANY: "ANY",
}
# Query types we never answer from zone data: zone transfers, obsolete mail types, OPT itself.
SPECIAL_QTYPES = frozenset({OPT, IXFR, AXFR, MAILB, MAILA})

EDNS_PAYLOAD = 1232
QNAME_POINTER = b"\xc0\x0c"  # the question's name always starts at offset 12

FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD = 0x80, 0x04, 0x02, 0x01

_RR_FIXED = struct.Struct("!HHIH")


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = CLASS_IN) -> bytes:
    """One resource record in wire form."""
    return owner + _RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata


def soa_rdata(mname: bytes, rname: bytes, serial: int, refresh: int, retry: int, expire: int, minimum: int) -> bytes:
    return mname + rname + struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)


def txt_rdata(text: str) -> bytes:
    raw = text.encode("utf-8")[:255]
    return bytes([len(raw)]) + raw


@cache
def reply_headers(rcode: int, aa: bool, ancount: int, nscount: int, tc: bool = False, arcount: int = 0) -> tuple[bytes, ...]:
    """The 10 header bytes after the ID, indexed by `rd | (edns << 1)`.

    Opcode is QUERY (0); RA, Z, AD and CD are never set. `arcount`: additional
    records that come with the answer (an SRV's targets), our OPT not counted.
    """
    variants = []
    for index in range(4):
        rd, edns = index & 1, index >> 1
        flags1 = FLAG_QR | (FLAG_AA if aa else 0) | (FLAG_TC if tc else 0) | rd
        variants.append(struct.pack("!BBHHHH", flags1, rcode & 0xF, 1, ancount, nscount, arcount + edns))
    return tuple(variants)


def bare_header(query_id: bytes, opcode: int, rd: int, rcode: int, arcount: int = 0) -> bytes:
    """A reply header without a question (FORMERR, NOTIMP); `arcount` 1 when our OPT follows."""
    return query_id + struct.pack("!BBHHHH", FLAG_QR | (opcode << 3) | rd, rcode, 0, 0, 0, arcount)


@cache
def opt_record(do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT: root owner, payload 1232, version 0, DO echoed, no options."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return rr(b"\x00", OPT, ttl, b"", rclass=EDNS_PAYLOAD)


def split_rrset(body: bytes) -> list[bytes]:
    """The rdata of each record in an encoded RRset (owner is always the 2-byte pointer)."""
    out = []
    offset = 0
    while offset < len(body):
        size = int.from_bytes(body[offset + 10 : offset + 12], "big")
        out.append(body[offset + 12 : offset + 12 + size])
        offset += 12 + size
    return out


def encode_rrset(rtype: int, ttl: int, rdatas: list[bytes], rclass: int = CLASS_IN) -> bytes:
    """An RRset owned by the question's name (compression pointer to offset 12)."""
    if len(rdatas) == 1:
        return rr(QNAME_POINTER, rtype, ttl, rdatas[0], rclass)
    return b"".join([rr(QNAME_POINTER, rtype, ttl, rdata, rclass) for rdata in rdatas])


RECORD_HEAD = 12  # a pointer-owned record's bytes before its RDATA: owner pointer (2) + type, class, TTL, RDLENGTH (10)


def pointer_to(offset: int) -> bytes:
    """A compression pointer to `offset` in the message (below 16384)."""
    return (0xC000 | offset).to_bytes(2, "big")


def reowned(body: bytes, pointer: bytes) -> tuple[bytes, int]:
    """The records of an encoded RRset owned by `pointer` instead of the question's pointer; and their count."""
    out, offset, count = [], 0, 0
    while offset < len(body):
        end = offset + RECORD_HEAD + ((body[offset + 10] << 8) | body[offset + 11])
        out.append(pointer + body[offset + 2 : end])
        offset, count = end, count + 1
    return b"".join(out), count
