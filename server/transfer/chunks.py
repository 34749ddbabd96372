"""Full transfers from kept chunks: a zone's names split by hash into chunks, each chunk kept as the
messages it was last encoded into until a committed change touches one of its names.

A full transfer copies every kept chunk and encodes, from its snapshot, only the chunks touched since
they were kept. The service plans a zone's chunks and encodes touched ones in the background once
commits pause (`plan_steps`, `encode_step`), so a full transfer after a change usually copies
everything but the SOA; a zone not planned yet is transferred the plain way (outgoing.axfr_pieces).

Kept messages carry no question, OPT or TSIG, and zeros for ID and flags: a transfer writes the
request's ID and flags in, sends the question, the SOA and our OPT in a message before them and the SOA
in one after them, and signs each. They are at most `limit` bytes, the room the largest configured TSIG
leaves, so one encoding serves every key. Each message compresses its owners on its own
(encoder.pack_pieces), which is what makes chunks independent.

A name's chunk: its bucket (near its parent's hash, bucket_of) and the bucket's chunk, a run of
consecutive buckets filled to about FILL of a message when planned. Python's hash differs between processes, and so does
the order of two servers' transfers (AXFR order is free). A zone of one chunk keeps its RRsets as
pieces instead, and a transfer encodes them with the SOAs: one message when it fits.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Protocol, cast

from .encoder import pack_pieces

BUCKETS = 1 << 14
SPREAD = 64  # buckets a parent's names spread over
FILL = 0.75  # of a message, what a chunk's records are planned to take (hashing leaves some uneven)
OWNER_BYTES = 6  # besides its first label, what a compressed owner name takes in a message, about

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

    def __init__(self, chunk_of_bucket: array, names: list[tuple[bytes, ...]]):
        self.chunk_of_bucket = chunk_of_bucket
        self.count = len(names)
        self.names = names
        self.kept: list[Kept | None] = [None] * self.count
        self.sizes = [0] * self.count
        self.touched: list[set[bytes] | None] = [None] * self.count
        self.versions = [0] * self.count
        self.unkept = self.count
        self.kept_bytes = 0
        self.reference = 0.0  # bytes a chunk held on average when all were first kept

    def touch(self, owner: bytes) -> None:
        index = self.chunk_of_bucket[bucket_of(owner)]
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
        if not self.unkept and not self.reference:
            self.reference = max(1.0, self.kept_bytes / self.count)

    @property
    def misplanned(self) -> bool:
        """The zone grew or shrank so much since its chunks were first all kept that they are far off
        their size then (a lumpy zone, such as one huge RRset, stays as planned while it keeps its size)."""
        kept = self.count - self.unkept
        if not kept or not self.reference:
            return False
        average = self.kept_bytes / kept
        return average > 2 * self.reference or (self.count >= 8 and average < self.reference / 4)


def bucket_of(name: bytes) -> int:
    """The bucket of a name: one of the SPREAD buckets after its parent's hash, so that siblings mostly
    share a chunk (chunks are runs of buckets) and a message, where the encoder points their owners at
    the parent written once, while a parent of thousands of names still fills several chunks."""
    return (hash(name[name[0] + 1 :]) + hash(name) % SPREAD) % BUCKETS


def encode(view: View, names: Iterable[bytes], limit: int | None) -> tuple[tuple[bytes, ...], Kept]:
    """The names of `names` that hold records, and their RRsets: as messages of at most `limit` bytes
    (ID and flags zero), or as encoder pieces when `limit` is None."""
    pieces = tuple(view.rrsets_of(names))
    present = tuple(dict.fromkeys([name for name, _ in pieces]))
    return present, pieces if limit is None else tuple(pack_pieces(pieces, b"\x00\x00", 0, None, limit))


class ChunkCache:
    """The chunks of every planned zone, fed with each commit's changed owners."""

    def __init__(self, limit: int):
        self.limit = limit
        self.zones: dict[bytes, ZoneChunks] = {}
        self.encoded = 0  # chunks encoded so far (the tests and the bench read it)
        self._planning: dict[bytes, set[bytes] | None] = {}  # owners changed while a plan is made (None: unknown)

    def forget(self, apex: bytes) -> None:
        self.zones.pop(apex, None)

    def needs_plan(self, apex: bytes) -> bool:
        chunks = self.zones.get(apex)
        return chunks is None or chunks.misplanned

    def changed(self, apex: bytes, removed: Iterable | None, added: Iterable | None) -> None:
        """A commit's difference for one zone (records as (owner, ...)); None: unknown, plan again."""
        if apex in self._planning:
            seen = self._planning[apex]
            if removed is None or added is None:
                self._planning[apex] = None
            elif seen is not None:
                seen.update(record[0] for record in chain(removed, added))
        chunks = self.zones.get(apex)
        if chunks is None:
            return
        if removed is None or added is None:
            del self.zones[apex]
            return
        touch = chunks.touch
        for record in chain(removed, added):
            touch(record[0])

    def plan_steps(self, apex: bytes, snapshot: View, budget: float) -> Iterator[None]:
        """Plan the zone's chunks from `snapshot` (a copy the store no longer writes), yielding each time
        `budget` seconds have gone by; what commits change meanwhile is touched once the plan is in."""
        self._planning[apex] = set()
        try:
            buckets: list[list[bytes]] = [[] for _ in range(BUCKETS)]
            sizes = [0] * BUCKETS
            deadline = time.perf_counter() + budget
            for done, (name, size) in enumerate(snapshot.names()):
                if size:
                    bucket = bucket_of(name)
                    buckets[bucket].append(name)
                    sizes[bucket] += size + name[0] + OWNER_BYTES
                if done & 1023 == 1023 and time.perf_counter() > deadline:
                    yield
                    deadline = time.perf_counter() + budget
            changed = self._planning[apex]
        finally:
            self._planning.pop(apex, None)
        if changed is None:  # a change too big to track came meanwhile: the next pass plans again
            return
        chunk_of_bucket = array("I", bytes(4 * BUCKETS))
        target, filled, index = self.limit * FILL, 0, 0
        for bucket, size in enumerate(sizes):
            if filled and filled + size > target:
                index, filled = index + 1, 0
            chunk_of_bucket[bucket] = index
            filled += size
        joined: list[list[bytes]] = [[] for _ in range(index + 1)]
        for bucket, names in enumerate(buckets):
            joined[chunk_of_bucket[bucket]].extend(names)
        chunks = self.zones[apex] = ZoneChunks(chunk_of_bucket, [tuple(names) for names in joined])
        for owner in changed:
            chunks.touch(owner)

    def encode_step(self, apex: bytes, live: View, budget: float) -> bool:
        """Encode chunks touched since kept, from the live zone (call within one turn of the loop, never
        while a change is half written), for about `budget` seconds; True when none is left to encode."""
        chunks = self.zones.get(apex)
        if chunks is None:
            return True
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
        flags = int.from_bytes(header[2:], "big")
        yield from pack_pieces((soa,), header[:2], flags, question, limit, opt)
        for index in range(len(plan)):
            for message, count in cast(Messages, self._chunk(apex, chunks, plan, index, view, self.limit)):
                yield header + message[4:], count
        yield from pack_pieces((soa,), header[:2], flags, None, limit)

    def _chunk(self, apex: bytes, chunks: ZoneChunks, plan: list, index: int, view: View | None, limit: int | None) -> Kept:
        """Chunk `index` as kept when the transfer began, or encoded now from its snapshot (and kept)."""
        kept, names, version = plan[index]
        if kept is None and self.zones.get(apex) is chunks and chunks.versions[index] == version:
            kept = chunks.kept[index]  # kept since, by the warmer, and not touched: the same records
        if kept is None:
            assert view is not None
            names, kept = encode(view, names, limit)
            self.encoded += 1
            if self.zones.get(apex) is chunks:
                chunks.keep(index, version, names, kept)
        return kept
