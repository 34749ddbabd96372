"""The full answer path: any query bytes and a zone store in, reply bytes out (or None).

Pure and I/O-free. It handles every case, including the odd ones the fast
path hands over (see fastpath.py); dnslib parses the sections after the
question so a malformed packet is told from a valid one.
"""

from __future__ import annotations

import struct

import dnslib

from . import names, wire
from .store import ZoneStore

_COUNTS = struct.Struct("!HHHH")
TCP_LIMIT = 65535


class _Edns:
    __slots__ = ("do", "payload", "version")

    def __init__(self, payload: int, version: int, do: bool):
        self.payload, self.version, self.do = payload, version, do


class _Malformed(Exception):
    pass


def _read_edns(query: bytes, offset: int) -> _Edns | None:
    """The OPT record among the sections after the question, which ends at `offset`.

    dnslib reads the records; _Malformed for records it cannot read or for
    misused OPT (more than one, or not owned by the root).
    """
    _, ancount, nscount, arcount = _COUNTS.unpack_from(query, 4)
    buffer = dnslib.DNSBuffer(query)
    buffer.offset = offset
    opts = []
    try:
        for index in range(ancount + nscount + arcount):
            record = dnslib.RR.parse(buffer)
            if record.rtype == wire.OPT:
                if index < ancount + nscount:
                    raise _Malformed("OPT outside the additional section")
                opts.append(record)
    except _Malformed:
        raise
    except Exception as exc:  # dnslib raises several types for garbage
        raise _Malformed(str(exc)) from exc
    if buffer.offset != len(query):
        raise _Malformed("bytes after the last record")
    if not opts:
        return None
    if len(opts) > 1 or opts[0].rname.label != ():
        raise _Malformed("more than one OPT, or OPT not owned by the root")
    opt = opts[0]
    return _Edns(opt.rclass, (opt.ttl >> 16) & 0xFF, bool(opt.ttl & 0x8000))


def udp_limit(edns: _Edns | None) -> int:
    """Largest UDP reply: the requester's size (512 without EDNS), capped at ours."""
    if edns is None:
        return 512
    return min(max(512, edns.payload), wire.EDNS_PAYLOAD)


def answer(query: bytes, store: ZoneStore, tcp: bool = False) -> bytes | None:
    """Reply to one DNS message; None when no reply must be sent (responses, runts)."""
    if len(query) < 12 or query[2] & wire.FLAG_QR:
        return None
    qid, rd = query[:2], query[2] & wire.FLAG_RD
    opcode = (query[2] >> 3) & 0xF
    if opcode != 0:
        return wire.bare_header(qid, opcode, rd, wire.NOTIMP)
    qdcount = _COUNTS.unpack_from(query, 4)[0]
    qend = names.labels_end(query, 12) if qdcount == 1 else -1
    if qend < 0 or qend + 4 > len(query):
        return wire.bare_header(qid, 0, rd, wire.FORMERR)
    try:
        edns = _read_edns(query, qend + 4)
    except _Malformed:
        return wire.bare_header(qid, 0, rd, wire.FORMERR)

    question = query[12 : qend + 4]
    qtype, qclass = struct.unpack_from("!HH", query, qend)
    key = query[12:qend].lower()
    opt = b"" if edns is None else wire.opt_record(edns.do)
    limit = TCP_LIMIT if tcp else udp_limit(edns)

    def reply(rcode: int, aa: bool, ancount: int = 0, nscount: int = 0, body: bytes = b"", tail: bytes = opt, headers=None) -> bytes:
        index = rd | (2 if edns is not None else 0)
        headers = headers or wire.reply_headers(rcode, aa, ancount, nscount)
        out = qid + headers[index] + question + body + tail
        if len(out) <= limit:
            return out
        return qid + wire.reply_headers(rcode, aa, 0, 0, tc=True)[index] + question + tail

    if edns is not None and edns.version > 0:
        return reply(wire.BADVERS & 0xF, False, tail=wire.opt_record(edns.do, wire.BADVERS >> 4))
    if qclass == wire.CLASS_CH:
        text = store.chaos_txt.get(key)
        if text is None or qtype not in (wire.TXT, wire.ANY):
            return reply(wire.REFUSED, False)
        return reply(wire.NOERROR, True, 1, 0, wire.rr(wire.QNAME_POINTER, wire.TXT, 0, wire.txt_rdata(text), wire.CLASS_CH))
    if qclass != wire.CLASS_IN:
        return reply(wire.REFUSED, False)
    if qtype == wire.OPT:
        return wire.bare_header(qid, 0, rd, wire.FORMERR)
    if qtype in (wire.MAILA, wire.MAILB):
        return reply(wire.NOTIMP, False)

    node = store.nodes.get(key)
    zone = node.zone if node is not None else store.zone_for(key)
    if zone is None or qtype in (wire.AXFR, wire.IXFR):
        return reply(wire.REFUSED, False)
    if not store.synced:
        return reply(wire.SERVFAIL, False)
    if node is None:
        return reply(wire.NXDOMAIN, True, 0, 1, zone.soa_rr)
    found = node.get(query[qend : qend + 4])
    if found is None:
        return reply(wire.NOERROR, True, 0, 1, zone.soa_rr)
    headers, body = found
    return reply(wire.NOERROR, True, body=body, headers=headers)
