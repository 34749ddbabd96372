"""CNAME (RFC 1034 §3.6.2): the alias's record, and its in-zone target chased into the same answer.

Target records are stored owned by the 2-byte question pointer; here each
one's owner becomes a pointer to the target name inside the CNAME record
before it, so nothing is encoded again.
"""

from __future__ import annotations

from . import wire
from .nodes import CNAME_KEY, Leaf, Node, answer_of

MAX_CHAIN = 8  # aliases followed in one answer; a longer chain (or a loop) ends with the last CNAME
_RECORD_HEAD = 12  # owner pointer (2) + type, class, TTL, RDLENGTH (10)


def _reowned(body: bytes, pointer: bytes) -> tuple[bytes, int]:
    """The records of an encoded RRset owned by `pointer` instead of the question's; and their count."""
    out, offset, count = [], 0, 0
    while offset < len(body):
        end = offset + _RECORD_HEAD + ((body[offset + 10] << 8) | body[offset + 11])
        out.append(pointer + body[offset + 2 : end])
        offset, count = end, count + 1
    return b"".join(out), count


def chase(store, node: Node | Leaf, question_size: int, typekey: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """The answer to `typekey` at an alias `node` (the question's name; `question_size` bytes of question):
    the CNAME chain as far as it stays in the served zones, then the target's RRset of that type, or,
    where the chain ends at a name that does not exist (NXDOMAIN) or lacks the type (NODATA), the SOA."""
    cname = answer_of(node.get(CNAME_KEY))  # type: ignore[arg-type]
    parts, count = [cname], 1
    rdata_at = 12 + question_size + _RECORD_HEAD  # where the CNAME's target name sits in the reply
    target = cname[_RECORD_HEAD:]
    for _ in range(MAX_CHAIN):
        zone = store.zone_for(target)
        if zone is None:  # out of our zones: the resolver follows it
            break
        pointer = (0xC000 | rdata_at).to_bytes(2, "big")
        found_node = store.nodes.get(target)
        if found_node is None:
            return wire.reply_headers(wire.NXDOMAIN, True, count, 1), b"".join(parts) + zone.soa_rr
        found = found_node.get(typekey)
        if found is not None:
            records, added = _reowned(answer_of(found), pointer)
            return wire.reply_headers(wire.NOERROR, True, count + added, 0), b"".join(parts) + records
        if CNAME_KEY not in found_node:
            return wire.reply_headers(wire.NOERROR, True, count, 1), b"".join(parts) + zone.soa_rr
        record, _ = _reowned(answer_of(found_node.get(CNAME_KEY)), pointer)
        rdata_at = 12 + question_size + sum(len(p) for p in parts) + _RECORD_HEAD
        parts.append(record)
        count += 1
        target = record[_RECORD_HEAD:]
    return wire.reply_headers(wire.NOERROR, True, count, 0), b"".join(parts)
