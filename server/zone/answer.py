"""The full answer path: any query bytes and a zone store in, reply bytes out (or None).

Pure and I/O-free. It handles every case, including the odd ones the fast
path hands over (see fastpath.py). The records after the question are read
by message.scan_sections, whose work is bounded whatever the packet holds.
"""

from __future__ import annotations

from . import message, names, wire
from .alias import chase
from .message import Opt
from .nodes import CNAME_KEY
from .store import Zone, ZoneStore

TCP_LIMIT = 65535
DEEP_NAME = 8  # labels: from here on, finding the zone by its apex is cheaper than by the ancestors
_CLASS_ANY = 255
_AS_IN = b"\x00\x01"


def udp_limit(opt: Opt | None) -> int:
    """Largest UDP reply: the requester's size (512 without EDNS), capped at ours."""
    if opt is None:
        return 512
    return min(max(512, opt.payload), wire.EDNS_PAYLOAD)


def zone_of_missing(store: ZoneStore, name: bytes, starts: list[int]) -> Zone | None:
    """The zone of a name the store does not hold (lower-cased wire form, `starts` its label offsets).

    That is the deepest apex ending the name on a label boundary, which is
    what store.zone_for finds by looking up every ancestor; for a deep name
    (a 127-label one from a random-subdomain flood costs it ~15 µs, hashing
    every suffix) matching the few apexes instead is cheaper.
    """
    if len(starts) <= DEEP_NAME:
        return store.cached_zone_for(name)
    found, found_size = None, -1
    size = len(name)
    for apex, zone in store.zones.items():
        if len(apex) > found_size and name.endswith(apex) and size - len(apex) in starts:
            found, found_size = zone, len(apex)
    return found


def answer(query: bytes, store: ZoneStore, tcp: bool = False) -> bytes | None:
    """Reply to one DNS message; None when no reply must be sent (responses, runts)."""
    if len(query) < 12 or query[2] & wire.FLAG_QR:
        return None
    qid, rd = query[:2], query[2] & wire.FLAG_RD
    opcode = (query[2] >> 3) & 0xF
    if opcode != 0:
        return wire.bare_header(qid, opcode, rd, wire.NOTIMP)
    if query[4] or query[5] != 1:
        return _formerr_without_question(qid, rd, message.find_opt(query))
    starts = names.label_starts(query, 12)
    if starts is None or 17 + starts[-1] > len(query):
        return wire.bare_header(qid, 0, rd, wire.FORMERR)
    qend = 13 + starts[-1]
    question = query[12 : qend + 4]
    try:
        opt = message.scan_sections(query, qend + 4).opt
    except message.Malformed as exc:
        return _formerr(qid, rd, question, exc.opt)

    if opt is None:
        variant, tail, limit = rd, b"", TCP_LIMIT if tcp else 512
    else:
        variant, tail, limit = rd | 2, wire.opt_record(opt.do), TCP_LIMIT if tcp else udp_limit(opt)
    answer_end = None
    if opt is not None and opt.version > 0:
        headers, body, tail = _BADVERS, b"", wire.opt_record(opt.do, wire.BADVERS >> 4)
    else:
        found = _find(query, qend, starts, store)
        headers, body = found[0], found[1]
        if len(found) == 3:
            answer_end = found[2]
    out = qid + headers[variant] + question + body + tail
    if len(out) <= limit:
        return out
    if answer_end is not None:  # additional records as far as they fit (RFC 2782), the answer whole
        fitted = _fit_additional(headers, body, answer_end, limit - len(qid) - 10 - len(question) - len(tail))
        if fitted is not None:
            return qid + fitted[0][variant] + question + fitted[1] + tail
    rcode, aa = out[3] & 0xF, bool(out[2] & wire.FLAG_AA)
    return qid + wire.reply_headers(rcode, aa, 0, 0, tc=True)[variant] + question + tail


def _record_end(body: bytes, start: int) -> int:
    """Where a stored record ends: its owner (a pointer, or a whole name), type, class, TTL, RDATA."""
    i = start
    while body[i] and body[i] < 0xC0:
        i += 1 + body[i]
    i += 2 if body[i] else 1
    return i + 10 + ((body[i + 8] << 8) | body[i + 9])


def _fit_additional(headers: tuple[bytes, ...], body: bytes, answer_end: int, room: int) -> tuple[tuple[bytes, ...], bytes] | None:
    """The answer with as many of its additional records as fit in `room` bytes; None if the answer alone does not."""
    if answer_end > room:
        return None
    end, kept = answer_end, 0
    while end < len(body):
        record_end = _record_end(body, end)
        if record_end > room:
            break
        end, kept = record_end, kept + 1
    ancount = int.from_bytes(headers[0][4:6], "big")
    return wire.reply_headers(wire.NOERROR, True, ancount, 0, arcount=kept), body[:end]


_REFUSED = wire.reply_headers(wire.REFUSED, False, 0, 0)
_NOTIMP = wire.reply_headers(wire.NOTIMP, False, 0, 0)
_FORMERR = wire.reply_headers(wire.FORMERR, False, 0, 0)
_SERVFAIL = wire.reply_headers(wire.SERVFAIL, False, 0, 0)
_BADVERS = wire.reply_headers(wire.BADVERS & 0xF, False, 0, 0)
_NXDOMAIN = wire.reply_headers(wire.NXDOMAIN, True, 0, 1)
_NODATA = wire.reply_headers(wire.NOERROR, True, 0, 1)
_ONE_ANSWER = wire.reply_headers(wire.NOERROR, True, 1, 0)


def _find(query: bytes, qend: int, starts: list[int], store: ZoneStore) -> tuple:
    """The header variants and the sections for the question ending at `qend` (and, when additional
    records follow the answer in them, where the answer ends)."""
    qtype = (query[qend] << 8) | query[qend + 1]
    qclass = (query[qend + 2] << 8) | query[qend + 3]
    key = query[12:qend].lower()
    if qclass == wire.CLASS_CH:
        text = store.chaos_txt.get(key)
        if text is None or qtype not in (wire.TXT, wire.ANY):
            return _REFUSED, b""
        return _ONE_ANSWER, wire.rr(wire.QNAME_POINTER, wire.TXT, 0, wire.txt_rdata(text), wire.CLASS_CH)
    if qclass not in (wire.CLASS_IN, _CLASS_ANY):  # class ANY matches the IN data (RFC 1034 §3.7.1)
        return _REFUSED, b""
    if qtype == wire.OPT:
        return _FORMERR, b""
    if qtype in (wire.MAILA, wire.MAILB):
        return _NOTIMP, b""
    node = store.nodes.get(key)
    zone = node.zone if node is not None else zone_of_missing(store, key, starts)
    if zone is None or qtype in (wire.AXFR, wire.IXFR):
        return _REFUSED, b""
    if not store.synced:
        return _SERVFAIL, b""
    if node is None:
        return _NXDOMAIN, zone.soa_rr
    typekey = query[qend : qend + 2] + _AS_IN
    found = node.get(typekey)
    if found is None:
        if CNAME_KEY in node:
            return chase(store, key, node, qend + 4 - 12, typekey)
        return _NODATA, zone.soa_rr
    return found


def _formerr(qid: bytes, rd: int, question: bytes, opt: Opt | None) -> bytes:
    """FORMERR with the question echoed, and our OPT when the query's was read (RFC 6891 §7)."""
    if opt is None:
        return qid + _FORMERR[rd] + question
    return qid + _FORMERR[rd | 2] + question + wire.opt_record(opt.do)


def _formerr_without_question(qid: bytes, rd: int, opt: Opt | None) -> bytes:
    """FORMERR for QDCOUNT other than 1 (RFC 9619), with our OPT when the query's was found."""
    if opt is None:
        return wire.bare_header(qid, 0, rd, wire.FORMERR)
    return wire.bare_header(qid, 0, rd, wire.FORMERR, arcount=1) + wire.opt_record(opt.do)
