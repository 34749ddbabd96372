"""CNAME (RFC 1034 §3.6.2): the alias's record, and its in-zone target chased into the same answer.

Target records are stored owned by the 2-byte question pointer; here each
one's owner becomes a pointer to the target name inside the CNAME record
before it, so nothing is encoded again.
"""

from __future__ import annotations

from . import wire
from .nodes import CNAME_KEY, Leaf, Node, answer_of

MAX_CHAIN = 8  # aliases followed in one answer; a longer chain (or a loop) ends with the last CNAME
_RECORD_HEAD = wire.RECORD_HEAD


def chase(store, name: bytes, node: Node | Leaf, question_size: int, typekey: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """The answer to `typekey` at an alias `node` (the question's name; `question_size` bytes of question):
    the CNAME chain as far as it stays in the served zones, then the target's RRset of that type, or,
    where the chain ends at a name that does not exist (NXDOMAIN) or lacks the type (NODATA), the SOA."""
    cname = answer_of(node.get(CNAME_KEY))  # type: ignore[arg-type]
    parts, count = [cname], 1
    rdata_at = 12 + question_size + _RECORD_HEAD  # where the CNAME's target name sits in the reply
    target = cname[_RECORD_HEAD:].lower()  # the store's names are lower case; a target may be written otherwise
    seen = {name}
    for _ in range(MAX_CHAIN):
        if target in seen:  # a loop: the chain so far is the answer
            break
        seen.add(target)
        zone = store.zone_for(target)
        if zone is None:  # out of our zones: the resolver follows it
            break
        pointer = wire.pointer_to(rdata_at)
        found_node = store.nodes.get(target)
        if found_node is None:
            return wire.reply_headers(wire.NXDOMAIN, True, count, 1), b"".join(parts) + zone.soa_rr
        found = found_node.get(typekey)
        if found is not None:
            records, added = wire.reowned(answer_of(found), pointer)
            return wire.reply_headers(wire.NOERROR, True, count + added, 0), b"".join(parts) + records
        if CNAME_KEY not in found_node:
            return wire.reply_headers(wire.NOERROR, True, count, 1), b"".join(parts) + zone.soa_rr
        record, _ = wire.reowned(answer_of(found_node.get(CNAME_KEY)), pointer)
        rdata_at = 12 + question_size + sum(len(p) for p in parts) + _RECORD_HEAD
        parts.append(record)
        count += 1
        target = record[_RECORD_HEAD:].lower()
    return wire.reply_headers(wire.NOERROR, True, count, 0), b"".join(parts)
