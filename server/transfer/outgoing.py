"""The replies of AXFR (RFC 5936) and IXFR (RFC 1995) as sequences of records, and the
asynchronous stream of signed messages that carries them to the transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from .encoder import Record, pack_messages, pack_pieces, record_piece
from .journal import Difference
from .tsig import Signer

TYPE_SOA = 6
FLAGS_ANSWER = 0x8400  # QR and AA; opcode QUERY, rcode NOERROR


class WireRecord(NamedTuple):
    """A record in the store's RR shape (owner, rtype, ttl, rdata: the encoder unpacks in this order)."""

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes


def axfr_records(soa: Record, records: Iterable[Record]) -> Iterator[Record]:
    """SOA, every other record once, SOA again."""
    return chain((soa,), records, (soa,))


_OWNER_AND_BODY = itemgetter(0, 2)


def axfr_pieces(snapshot: Any) -> Iterator[tuple[bytes, bytes]]:
    """SOA, every other record once, SOA again, as encoder pieces: the snapshot's stored RRsets
    spliced in when it hands them out (the zone store's `rrsets()`), else its records one by one."""
    soa = record_piece(snapshot.soa)
    rrsets = getattr(snapshot, "rrsets", None)
    body = map(_OWNER_AND_BODY, rrsets()) if rrsets is not None else map(record_piece, snapshot.records())
    return chain((soa,), body, (soa,))


def ixfr_records(current_soa: Record, old_soa: Record, difference: Difference) -> Iterator[Record]:
    """The condensed difference: new SOA, old SOA, removed, new SOA, added, new SOA (RFC 1995 §4)."""
    return chain((current_soa, old_soa), difference.removed, (current_soa,), difference.added, (current_soa,))


def reply_flags(request_flags: int) -> int:
    return FLAGS_ANSWER | (request_flags & 0x0100)  # RD copied


class Done(NamedTuple):
    """How a stream ended, for the observer: completed or not, and what it sent."""

    completed: bool
    records: int
    bytes: int
    messages: int


def messages(
    records: Iterable[Record], query_id: int, request_flags: int, question: bytes, limit: int, opt: bytes = b""
) -> Iterator[tuple[bytes, int]]:
    """The reply's messages, unsigned: the question and `opt` (our OPT, when asked with EDNS) in the first."""
    return pack_messages(records, query_id.to_bytes(2, "big"), reply_flags(request_flags), question, limit, opt)


def piece_messages(
    pieces: Iterable[tuple[bytes, bytes]], query_id: int, request_flags: int, question: bytes, limit: int, opt: bytes = b""
) -> Iterator[tuple[bytes, int]]:
    """messages() for encoder pieces."""
    return pack_pieces(pieces, query_id.to_bytes(2, "big"), reply_flags(request_flags), question, limit, opt)


def first_and_rest(encoded: Iterator[tuple[bytes, int]]) -> tuple[list[tuple[bytes, int]], Iterator[tuple[bytes, int]]]:
    """The first two messages (to tell a one-message reply) and the iterator of the rest."""
    head = []
    for item in encoded:
        head.append(item)
        if len(head) == 2:
            break
    return head, encoded


def sign_one(message: bytes, signer: Signer | None) -> bytes:
    return signer.sign(message) if signer is not None else message


async def stream(encoded: Iterable[tuple[bytes, int]], signer: Signer | None, done: Callable[[Done], None]) -> AsyncIterator[bytes]:
    """The messages, signed in order, giving the event loop a turn between two of them.

    Encoding happens as the transport takes messages, so at most one message
    of the zone exists at a time. `done` is called once, when the stream ends
    or is closed early (the client went away).
    """
    records = size = count = 0
    completed = False
    try:
        for message, in_message in encoded:
            if signer is not None:
                message = signer.sign(message)
            records += in_message
            size += len(message)
            count += 1
            yield message
            await asyncio.sleep(0)
        completed = True
    finally:
        done(Done(completed, records, size, count))
