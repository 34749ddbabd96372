"""Full transfers from kept chunks: a large zone's names split by hash into chunks, each chunk kept as the
messages it was last encoded into until a committed change touches one of its names.

A full transfer copies every kept chunk and encodes, from its snapshot, only the chunks changed since
they were last encoded; `warm()` encodes those in the background (the service calls it once commits
pause), so a full transfer after a change usually copies everything but the SOA.

Kept messages carry no question, OPT or TSIG, and zeros for ID and flags: a transfer writes the
request's ID and flags in, sends the question, the SOA and our OPT in a message before them and the SOA
in one after them, and signs each. They are at most `limit` bytes, the room the largest configured TSIG
leaves, so one encoding serves every key. Each message compresses its owners on its own
(encoder.pack_pieces), which is what makes chunks independent. A name's chunk is hash(name): Python's
hash differs between processes, and so does the order of two servers' transfers (AXFR order is free).

A small zone (planned as one chunk) keeps its RRsets as pieces instead, and its transfer encodes them
with the SOAs each time: one message when it fits, as before chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Protocol, cast

from .encoder import pack_pieces

CHUNK_BYTES = 8192  # stored bytes a chunk holds at most when planned (messages are 16 KiB by default)
BUCKETS = 1 << 14  # planning sorts names into this many buckets, then joins them into chunks

Messages = tuple[tuple[bytes, int], ...]  # (message, records in it)
Pieces = tuple[tuple[bytes, bytes], ...]  # (owner, encoded RRset): what a zone of one chunk keeps
Kept = Messages | Pieces


class View(Protocol):
    """The zone store's snapshot of one zone, or its live view (server/zone/changes.py ZoneSnapshot)."""

    def names(self) -> Iterator[tuple[bytes, int]]: ...
    def rrsets_of(self, wanted: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]: ...


class ZoneChunks:
    """One zone's chunks: per chunk the names last encoded in it, its kept messages (None: touched
    since), the names touched since and a version that every touch moves."""

    def __init__(self, names: list[tuple[bytes, ...]]):
        self.count = len(names)
        self.names = names
        self.kept: list[Kept | None] = [None] * self.count
        self.sizes = [0] * self.count
        self.touched: list[set[bytes] | None] = [None] * self.count
        self.versions = [0] * self.count
        self.unkept = self.count
        self.kept_bytes = 0

    def touch(self, owner: bytes) -> None:
        index = hash(owner) % self.count
        self.versions[index] += 1
        if self.kept[index] is not None:
            self.kept[index] = None
            self.unkept += 1
            self.kept_bytes -= self.sizes[index]
        touched = self.touched[index]
        if touched is None:
            self.touched[index] = {owner}
        else:
            touched.add(owner)

    def names_of(self, index: int) -> tuple[bytes, ...]:
        """The names chunk `index` may hold now: those last encoded in it and those touched since."""
        names, touched = self.names[index], self.touched[index]
        if not touched:
            return names
        return names + tuple(touched.difference(names))

    def keep(self, index: int, version: int, names: tuple[bytes, ...], kept: Kept) -> None:
        """Keep chunk `index` as encoded from its names at `version`, unless touched since."""
        if self.versions[index] != version:
            return
        if self.kept[index] is None:
            self.unkept -= 1
        else:
            self.kept_bytes -= self.sizes[index]
        size = sum(len(part) + (len(other) if type(other) is bytes else 0) for part, other in kept)
        self.kept[index], self.names[index], self.touched[index], self.sizes[index] = kept, names, None, size
        self.kept_bytes += size

    @property
    def misplanned(self) -> bool:
        """The zone grew or shrank so much since it was planned that its chunks are far off their size."""
        kept = self.count - self.unkept
        if not kept:
            return False
        average = self.kept_bytes / kept
        return average > 3 * CHUNK_BYTES or (kept >= 8 and average < CHUNK_BYTES / 8)


def encode(view: View, names: Iterable[bytes], limit: int | None) -> tuple[tuple[bytes, ...], Kept]:
    """The names of `names` that hold records, and their RRsets: as messages of at most `limit` bytes
    (ID and flags zero), or as encoder pieces when `limit` is None."""
    pieces = tuple(view.rrsets_of(names))
    present = tuple(dict.fromkeys([name for name, _ in pieces]))
    return present, pieces if limit is None else tuple(pack_pieces(pieces, b"\x00\x00", 0, None, limit))


class ChunkCache:
    """The chunks of every large zone, fed with each commit's changed owners."""

    def __init__(self, limit: int):
        self.limit = limit
        self.zones: dict[bytes, ZoneChunks] = {}
        self.encoded = 0  # chunks encoded so far (the tests and the bench read it)

    def forget(self, apex: bytes) -> None:
        self.zones.pop(apex, None)

    def changed(self, apex: bytes, removed: Iterable | None, added: Iterable | None) -> None:
        """A commit's difference for one zone (records as (owner, ...)); None: unknown, plan again."""
        chunks = self.zones.get(apex)
        if chunks is None:
            return
        if removed is None or added is None:
            del self.zones[apex]
            return
        touch = chunks.touch
        for record in chain(removed, added):
            touch(record[0])

    def chunks_for(self, apex: bytes, view: View) -> ZoneChunks:
        """The zone's chunks, planned from `view` when it has none that fit it."""
        chunks = self.zones.get(apex)
        if chunks is not None and not chunks.misplanned:
            return chunks
        return self.plan(apex, view)

    def plan(self, apex: bytes, view: View) -> ZoneChunks:
        """Split the zone's names into a power of two of chunks of at most about CHUNK_BYTES."""
        buckets: list[list[bytes]] = [[] for _ in range(BUCKETS)]
        total = 0
        for name, size in view.names():
            if size:
                buckets[hash(name) % BUCKETS].append(name)
                total += size
        count = 1
        while count < BUCKETS and total > count * CHUNK_BYTES:
            count *= 2
        # hash % count == (hash % BUCKETS) % count, count dividing BUCKETS: bucket b joins chunk b % count
        names = [tuple(chain.from_iterable(buckets[b] for b in range(index, BUCKETS, count))) for index in range(count)]
        chunks = self.zones[apex] = ZoneChunks(names)
        return chunks

    def messages(
        self,
        apex: bytes,
        chunks: ZoneChunks,
        view: View | None,
        soa: tuple[bytes, bytes],
        query_id: int,
        flags: int,
        question: bytes,
        limit: int,
        opt: bytes,
    ) -> Iterator[tuple[bytes, int]]:
        """The transfer's messages, unsigned, ID and flags those of the reply: the question, the SOA and
        `opt` first, the chunks, the SOA last (`soa` an encoder piece). What the chunks hold is read now;
        a chunk touched since it was kept is encoded from `view`, the snapshot taken with this call."""
        plan = [
            (kept, (), 0) if kept is not None else (None, chunks.names_of(index), chunks.versions[index])
            for index, kept in enumerate(chunks.kept)
        ]
        if view is None and any(kept is None for kept, _, _ in plan):
            raise ValueError("chunks to encode and no snapshot to encode them from")
        header = query_id.to_bytes(2, "big") + flags.to_bytes(2, "big")
        if chunks.count == 1:  # a small zone: one encoding, one message when it fits
            pieces = self._chunk(apex, chunks, plan, 0, view, None)
            return pack_pieces(chain((soa,), pieces, (soa,)), header[:2], flags, question, limit, opt)  # type: ignore[arg-type]
        return self._messages(apex, chunks, plan, view, header, soa, question, limit, opt)

    def _messages(
        self, apex: bytes, chunks: ZoneChunks, plan: list, view: View | None, header: bytes, soa, question: bytes, limit: int, opt: bytes
    ) -> Iterator[tuple[bytes, int]]:
        yield from pack_pieces((soa,), header[:2], int.from_bytes(header[2:], "big"), question, limit, opt)
        for index in range(len(plan)):
            for message, count in cast(Messages, self._chunk(apex, chunks, plan, index, view, self.limit)):
                yield header + message[4:], count
        yield from pack_pieces((soa,), header[:2], int.from_bytes(header[2:], "big"), None, limit)

    def _chunk(self, apex: bytes, chunks: ZoneChunks, plan: list, index: int, view: View | None, limit: int | None) -> Kept:
        """Chunk `index` as kept when the transfer began, or encoded now from its snapshot (and kept)."""
        kept, names, version = plan[index]
        if kept is None:
            assert view is not None
            names, kept = encode(view, names, limit)
            self.encoded += 1
            if self.zones.get(apex) is chunks:
                chunks.keep(index, version, names, kept)
        return kept

    def warm(self, apex: bytes, live: View, budget: float) -> bool:
        """Encode chunks touched since kept, from the live zone (call within one turn of the loop, never
        while a change is half written), for about `budget` seconds; True when none is left to encode."""
        chunks = self.zones.get(apex)
        if chunks is None or chunks.misplanned:
            self.plan(apex, live)  # a pass over the zone: encode on the next call
            return False
        deadline = time.perf_counter() + budget
        kept = chunks.kept
        for index in range(chunks.count):
            if kept[index] is None:
                names, encoded = encode(live, chunks.names_of(index), self.limit if chunks.count > 1 else None)
                self.encoded += 1
                chunks.keep(index, chunks.versions[index], names, encoded)
                if time.perf_counter() > deadline:
                    return chunks.unkept == 0
        return True
