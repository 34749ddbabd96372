"""The per-query fast path: plain queries answered from pre-encoded pieces, no parsing library.

A reply is the query's ID, a ready header (RD copied), the question's own
bytes (0x20 case kept), the stored answer or SOA, and our OPT. Anything
unusual returns None and goes to the full path in answer.py, which gives
byte-for-byte the same reply for everything this path does answer.
"""

from __future__ import annotations

from . import names, wire
from .answer import TCP_LIMIT, answer, zone_of_missing
from .nodes import ANY_KEY as _ANY_IN
from .nodes import CNAME_KEY as _CNAME
from .nodes import Leaf
from .store import ZoneStore

_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"
_NO_ADDITIONAL = b"\x00\x00"
_ONE_ADDITIONAL = b"\x00\x01"
_OPT_TYPE = b"\x00\x29"
_CLASS_IN = b"\x00\x01"
_SPECIAL = frozenset(t.to_bytes(2, "big") for t in wire.SPECIAL_QTYPES)

_NXDOMAIN = wire.reply_headers(wire.NXDOMAIN, True, 0, 1)
_NODATA = wire.reply_headers(wire.NOERROR, True, 0, 1)
_REFUSED = wire.reply_headers(wire.REFUSED, False, 0, 0)
_OPT = (wire.opt_record(False), wire.opt_record(True))


def fast_answer(query: bytes, store: ZoneStore, tcp: bool = False) -> bytes | None:
    """The reply for a plain query, or None to take the full path."""
    if len(query) < 17 or query[2] & 0xF8 or query[4:10] != _ONE_QUESTION or not store.synced:
        return None
    end = query.find(0, 12, 12 + names.MAX_NAME)  # a name ends within 255 bytes
    if end < 0:
        return None
    qend = end + 5
    additional = query[10:12]
    if additional == _NO_ADDITIONAL:
        if len(query) != qend:
            return None
        edns, opt, limit = 0, b"", 512
    elif additional == _ONE_ADDITIONAL:
        # OPT with root owner, version 0 and no options: 11 bytes exactly.
        if len(query) != qend + 11 or query[qend] or query[qend + 1 : qend + 3] != _OPT_TYPE or query[qend + 6]:
            return None
        if query[qend + 9] or query[qend + 10]:
            return None
        edns, opt = 2, _OPT[query[qend + 7] >> 7]
        limit = min(max(512, (query[qend + 3] << 8) | query[qend + 4]), wire.EDNS_PAYLOAD)
    else:
        return None

    key = query[12 : end + 1].lower()
    typeclass = query[end + 1 : qend]
    node = store.nodes.get(key)
    if node is not None:
        if type(node) is Leaf:
            found = (node.headers, node.body) if typeclass == node.key or typeclass == _ANY_IN else None
        else:
            found = node.get(typeclass)
        if found is None:
            if typeclass[2:] != _CLASS_IN or typeclass[:2] in _SPECIAL or _CNAME in node:
                return None  # an alias is chased on the full path
            headers, body = _NODATA, node.zone.soa_rr
        else:
            headers, body = found[0], found[1]  # with any additional records (an SRV's targets)
    else:
        if typeclass[2:] != _CLASS_IN or typeclass[:2] in _SPECIAL:
            return None
        # A miss: only now check that the bytes up to `end` really are one name.
        starts = names.label_starts(query, 12)
        if starts is None or starts[-1] != end - 12:
            return None
        zone = zone_of_missing(store, key, starts)
        if zone is None:
            headers, body = _REFUSED, b""
        else:
            headers, body = _NXDOMAIN, zone.soa_rr

    reply = query[:2] + headers[(query[2] & 1) | edns] + query[12:qend] + body + opt
    if len(reply) > (TCP_LIMIT if tcp else limit):
        return None
    return reply


def respond(query: bytes, store: ZoneStore, tcp: bool = False) -> bytes | None:
    """The server's one entry point per query: fast path, else full path."""
    return fast_answer(query, store, tcp) or answer(query, store, tcp)
