"""The messages of each zone's last full transfer, kept for its serial, so that the next full transfer of
the same serial (the other secondaries after a NOTIFY, a restarted one) copies them instead of encoding
the zone again.

A zone's serial moves with every commit that changes it, so one serial is one content; records written
but not committed yet (a change written in steps) are not in it, which is what a transfer must send.
Messages are kept unsigned and with the request's own bytes cut out (ID, RD, the question's case, our
OPT): those, and the TSIG, are put back for each transfer. The cache holds at most one variant a zone
and `max_bytes` over all zones; the messages of a transfer that does not finish are not kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

MAX_BYTES = 64 << 20  # about five times a 100k-pod cluster's two zones


class Variant(NamedTuple):
    """What makes two full transfers of one zone the same messages, their IDs and flags aside."""

    serial: int
    limit: int  # bytes a message may take (TSIG room left)
    opt: bytes  # our OPT in the first message (b"" when asked without EDNS)
    question_length: int
    question_lowercase: bool  # a 0x20-cased question is not used for compression


class FullTransferCache:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._zones: dict[bytes, tuple[Variant, list[tuple[bytes, int]], int]] = {}

    def get(self, apex: bytes, variant: Variant) -> list[tuple[bytes, int]] | None:
        entry = self._zones.get(apex)
        return entry[1] if entry is not None and entry[0] == variant else None

    def forget(self, apex: bytes) -> None:
        entry = self._zones.pop(apex, None)
        if entry is not None:
            self.size -= entry[2]

    def filling(self, apex: bytes, variant: Variant, encoded: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
        """`encoded` as it comes, kept once it has all come (and fits)."""
        kept: list[tuple[bytes, int]] = []
        size = 0
        for item in encoded:
            if size <= self.max_bytes:
                kept.append(item)
                size += len(item[0])
            yield item
        if size > self.max_bytes:
            return
        self.forget(apex)
        while self._zones and self.size + size > self.max_bytes:
            self.forget(next(iter(self._zones)))
        self._zones[apex] = (variant, kept, size)
        self.size += size


def replayed(kept: list[tuple[bytes, int]], query_id: int, flags: int, question: bytes) -> Iterator[tuple[bytes, int]]:
    """The kept messages with this request's ID and flags, and its question (its case) in the first."""
    header = query_id.to_bytes(2, "big") + flags.to_bytes(2, "big")
    first = True
    for message, count in kept:
        if first:
            first = False
            yield header + message[4:12] + question + message[12 + len(question) :], count
        else:
            yield header + message[4:], count
