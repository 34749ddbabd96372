"""A bounded reader of a query's records after the question: where the OPT and TSIG are, and whether they parse.

A hostile query may hold thousands of records whose names chain compression
pointers backwards through each other: decoding every name costs time
quadratic in the message size. This scanner reads no record data. It walks
each record's owner name (following pointers, which must point backwards),
checks the framing, and stops at a fixed budget of work, whatever the size
of the message. Any byte is valid inside a label (binary labels, RFC 2181 §11).

    sections = scan_sections(query, question_end)   # or raises Malformed
    sections.opt                                     # Opt(offset, payload, version, do) or None
    sections.last_additional, sections.tsig          # where the last additional record starts; TSIG?
"""

from __future__ import annotations

import struct
from typing import NamedTuple

TYPE_OPT, TYPE_TSIG, CLASS_ANY = 41, 250, 255
MAX_NAME = 255  # bytes of a decompressed name, root included (RFC 1035 §3.1)
MAX_POINTERS = 127  # a name has at most 127 labels: it needs no more pointers than that
# The work budget of one message after its question: a record costs
# RECORD_STEPS (reading one takes about as long as walking four labels), each
# label, compression pointer and EDNS option one step; a pointer to a name
# already read costs one step, not a walk. An EDNS query with a cookie takes
# 5, a TSIG-signed IXFR request with a cookie about 19. A query that needs
# more is FORMERR: the budget, not the size of the message, bounds the work
# (a few microseconds at most).
MAX_STEPS = 32
RECORD_STEPS = 4
# A name walk gets at most MAX_STEPS - RECORD_STEPS + 1 steps, so the budget
# alone keeps it under MAX_POINTERS pointers.
assert MAX_STEPS - RECORD_STEPS < MAX_POINTERS

_FIXED = struct.Struct("!HHIH")  # type, class, TTL, data length
_COUNTS = struct.Struct("!HHHH")


class Opt(NamedTuple):
    """The query's OPT record (RFC 6891)."""

    offset: int  # where the record starts (its owner name, the root)
    payload: int  # the requester's UDP payload size (the CLASS field)
    version: int  # EDNS version
    do: bool  # DNSSEC OK


class Sections(NamedTuple):
    """What the records after the question hold, as far as an answer needs."""

    opt: Opt | None
    last_additional: int  # where the last additional record starts; -1 when ARCOUNT is 0
    tsig: bool  # that record is a TSIG (type 250, class ANY; RFC 8945 §5.1: it must be the last)
    steps: int  # the work spent, at most MAX_STEPS


class Malformed(ValueError):
    """The message cannot be read: Malformed(reason, opt, steps).

    `opt` is its OPT when that was read before the fault, so a FORMERR can
    still carry EDNS (RFC 6891 §7); `steps` the work spent, at most
    MAX_STEPS + 1. (Plain exception arguments: raising is on the hot path of
    hostile queries, and a Python __init__ would double its cost.)
    """

    @property
    def reason(self) -> str:
        return self.args[0]

    @property
    def opt(self) -> Opt | None:
        return self.args[1]

    @property
    def steps(self) -> int:
        return self.args[2]


def scan_sections(query: bytes, question_end: int) -> Sections:
    """Walk the answer, authority and additional records, which start at `question_end`,
    just past the one question (its name uncompressed at offset 12, as names.labels_end checks).

    Malformed for a record cut short, a name longer than 255 bytes, a pointer
    that does not point backwards, an extended label type (RFC 6891 §5), an OPT
    outside the additional section, not owned by the root, with broken options,
    or twice, a TSIG that is not the last record or not of class ANY, bytes
    after the last record, or more work than MAX_STEPS.
    """
    return _scan(query, question_end, 0, question_end - 16)


def _scan(query: bytes, question_end: int, spent: int, qname_size: int) -> Sections:
    """scan_sections after `spent` steps; `qname_size` is the size of the valid name at offset 12
    (0: none known), so that pointers into it cost a step, not a walk."""
    size = len(query)
    if size < 12:
        raise Malformed("shorter than a header", None, 0)
    _, ancount, nscount, arcount = _COUNTS.unpack_from(query, 4)
    first_additional = ancount + nscount
    records = first_additional + arcount
    if records * RECORD_STEPS > MAX_STEPS - spent:  # over budget before the first name: read none
        raise Malformed("more records than the work budget allows", None, MAX_STEPS + 1)
    opt: Opt | None = None
    tsig = False
    last = -1
    steps = spent
    p = question_end
    # Names known valid, by offset -> decompressed size: the question's, and each owner once
    # walked, which is where compressors point. A pointer to one costs a step, not a walk.
    known = {12: qname_size} if qname_size > 0 else {}
    qname_end = 12 + qname_size if qname_size > 0 else 0
    unpack = _FIXED.unpack_from
    for index in range(records):
        steps += RECORD_STEPS
        if steps > MAX_STEPS:
            raise Malformed("too many records for the work their names took", opt, MAX_STEPS + 1)
        start = p
        if p < size and not query[p]:  # the root: OPT's owner, the common case
            p += 1
        else:
            p, steps = _name_end(query, p, steps, opt, known, qname_end)
        if p + 10 > size:
            raise Malformed("record cut short", opt, steps)
        rtype, rclass, ttl, rdlength = unpack(query, p)
        rdata = p + 10
        p = rdata + rdlength
        if rtype == TYPE_OPT:
            if index < first_additional:
                raise Malformed("OPT outside the additional section", opt, steps)
            if opt is not None:
                raise Malformed("more than one OPT", opt, steps)
            opt = Opt(start, rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))  # found, even if broken
            if p > size:
                raise Malformed("record data cut short", opt, steps)
            if query[start]:
                raise Malformed("OPT not owned by the root", opt, steps)
            if rdlength:
                steps = _check_options(query, rdata, p, steps, opt)
        elif p > size:
            raise Malformed("record data cut short", opt, steps)
        elif rtype == TYPE_TSIG:
            if index != records - 1 or index < first_additional or rclass != CLASS_ANY:
                raise Malformed("TSIG not the last additional record, or not of class ANY", opt, steps)
            tsig = True
        last = start
    if p != size:
        raise Malformed("bytes after the last record", opt, steps)
    return Sections(opt, last if arcount else -1, tsig, steps)


def find_opt(query: bytes) -> Opt | None:
    """The OPT of a message whose question section is unusable (QDCOUNT 0, or more than 1),
    read within the same one budget; None when it cannot be found."""
    steps, p = 0, 12
    try:
        questions = (query[4] << 8) | query[5]
        if questions * RECORD_STEPS > MAX_STEPS:
            return None
        for _ in range(questions):
            steps += RECORD_STEPS
            p, steps = _name_end(query, p, steps, None, {}, 0)
            p += 4
        return _scan(query, p, steps, 0).opt
    except Malformed as exc:
        return exc.opt
    except IndexError:  # shorter than a header
        return None


def name_at(query: bytes, offset: int) -> tuple[bytes, int]:
    """The name at `offset` decompressed into wire form (case kept), and the offset just past it in place.

    Malformed as scan_sections would be. For reading names the scan has
    passed over, such as a TSIG's key name at `Sections.last_additional`.
    """
    end, _ = _name_end(query, offset, 0, None, {}, 0)
    labels = []
    at = offset
    while query[at]:
        n = query[at]
        if n >= 0xC0:
            at = ((n << 8) | query[at + 1]) & 0x3FFF
        else:
            labels.append(query[at : at + 1 + n])
            at += 1 + n
    return b"".join(labels) + b"\x00", end


def _name_end(query: bytes, p: int, steps: int, opt: Opt | None, known: dict[int, int], qname_end: int) -> tuple[int, int]:
    """Offset just past the name at `p` in place, and the steps spent so far; pointers are followed,
    but not into a name in `known` (offset -> size), which the name at `p` then joins."""
    length = 1  # the root byte
    at = p
    left = MAX_STEPS - steps
    try:
        for step in range(left + 1):  # the labels in place, up to the root or the first pointer
            n = query[at]
            if not n:
                known[p] = length
                return at + 1, steps + step
            if n >= 0x40:
                break
            length += n + 1
            if length > MAX_NAME:
                raise Malformed("name longer than 255 bytes", opt, steps + step)
            at += n + 1
        else:
            raise Malformed("too much work in names", opt, MAX_STEPS + 1)
        end = at + 2  # the name ends in place after its first pointer
        for step in range(step, left + 1):  # noqa: B020 (steps go on counting) wherever pointers lead
            n = query[at]
            if n < 0x40:
                if not n:
                    known[p] = length
                    return end, steps + step
                length += n + 1
                if length > MAX_NAME:
                    raise Malformed("name longer than 255 bytes", opt, steps + step)
                at += n + 1
            elif n >= 0xC0:
                target = ((n << 8) | query[at + 1]) & 0x3FFF
                if target >= at:
                    raise Malformed("compression pointer does not point backwards", opt, steps + step)
                size = known.get(target)
                if size is None and 12 < target < qname_end and qname_end - 1 not in known:
                    _learn_question(query, known, qname_end)
                    size = known.get(target)
                if size is not None and step < left:
                    length += size - 1
                    if length > MAX_NAME:
                        raise Malformed("name longer than 255 bytes", opt, steps + step)
                    known[p] = length
                    return end, steps + step + 1
                at = target
            else:
                raise Malformed("extended label type", opt, steps + step)
    except IndexError:
        raise Malformed("name runs past the end", opt, steps) from None
    raise Malformed("too much work in names", opt, MAX_STEPS + 1)


def _learn_question(query: bytes, known: dict[int, int], qname_end: int) -> None:
    """Every suffix of the (valid, uncompressed) question name, for pointers to a part of it."""
    at = 12
    while at < qname_end:
        known[at] = qname_end - at
        at += query[at] + 1


def _check_options(query: bytes, p: int, end: int, steps: int, opt: Opt) -> int:
    """EDNS options (code, length, data) must tile the OPT's data exactly; each is a step."""
    count = 0
    try:
        for count in range(MAX_STEPS - steps + 1):  # noqa: B007 (count is the result)
            if p >= end:
                break
            p += 4 + ((query[p + 2] << 8) | query[p + 3])
        else:
            raise Malformed("too many EDNS options", opt, MAX_STEPS + 1)
    except IndexError:
        raise Malformed("EDNS option cut short", opt, steps) from None
    if p != end:
        raise Malformed("EDNS option cut short or running past the OPT record", opt, steps + count)
    return steps + count
