"""The IXFR journal: the last changes of each zone, kept in memory, fed by the store's listener.

Each step is one committed change (old serial -> new serial, records removed
and added). A zone keeps at most `max_changes` steps; all zones together keep
at most `max_bytes` of records (counted as their wire size), oldest dropped
first. A change whose difference is unknown, or that does not follow the last
one kept, makes the zone forget its history: clients older than that get a
full transfer.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .encoder import Record
from .serial import MASK


class Change(Protocol):
    """The store's ZoneChange (read-only: a NamedTuple matches it)."""

    @property
    def apex(self) -> bytes: ...
    @property
    def old_serial(self) -> int: ...
    @property
    def new_serial(self) -> int: ...
    @property
    def removed(self) -> tuple[Record, ...] | None: ...
    @property
    def added(self) -> tuple[Record, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Step:
    old_serial: int
    new_serial: int
    removed: tuple[Record, ...]
    added: tuple[Record, ...]
    size: int  # wire bytes of its records
    sequence: int  # global age: the smallest is dropped first


@dataclass(frozen=True, slots=True)
class Difference:
    """What a client at `old_serial` needs to reach `new_serial`, condensed into one step."""

    old_serial: int
    new_serial: int
    removed: list[Record]
    added: list[Record]


@dataclass
class ZoneJournal:
    apex: bytes
    steps: deque[Step] = field(default_factory=deque)
    size: int = 0


def record_size(record: Record) -> int:
    return len(record.owner) + 10 + len(record.rdata)


class Journal:
    """Steps per zone apex, bounded in count per zone and in bytes over all zones."""

    def __init__(self, max_changes: int, max_bytes: int, on_size: Callable[[bytes, int, int], None] | None = None):
        self.max_changes = max_changes
        self.max_bytes = max_bytes
        self.zones: dict[bytes, ZoneJournal] = {}
        self.size = 0
        self._sequence = itertools.count()
        self._on_size = on_size or (lambda apex, changes, size: None)

    def record(self, changes: Iterable[Change]) -> None:
        """The store's listener: keep each change, then enforce the bounds."""
        touched = set()
        for change in changes:
            zone = self.zones.get(change.apex) or self.zones.setdefault(change.apex, ZoneJournal(change.apex))
            touched.add(change.apex)
            if change.removed is None or change.added is None or self.max_changes == 0:
                self._forget(zone)
                continue
            if zone.steps and zone.steps[-1].new_serial != change.old_serial & MASK:
                self._forget(zone)
            size = sum(map(record_size, change.removed)) + sum(map(record_size, change.added))
            zone.steps.append(
                Step(
                    change.old_serial & MASK,
                    change.new_serial & MASK,
                    tuple(change.removed),
                    tuple(change.added),
                    size,
                    next(self._sequence),
                )
            )
            zone.size += size
            self.size += size
            while len(zone.steps) > self.max_changes:
                self._drop_oldest(zone)
        while self.size > self.max_bytes:
            oldest = min((z for z in self.zones.values() if z.steps), key=lambda z: z.steps[0].sequence)
            self._drop_oldest(oldest)
            touched.add(oldest.apex)
        for apex in touched:
            zone = self.zones[apex]
            self._on_size(apex, len(zone.steps), zone.size)

    def difference(self, apex: bytes, since: int, current: int) -> Difference | None:
        """The condensed change from serial `since` to `current`, or None when the journal
        does not reach back to `since` (or does not end at `current`)."""
        zone = self.zones.get(apex)
        if zone is None or not zone.steps or zone.steps[-1].new_serial != current:
            return None
        start = next((i for i, step in enumerate(zone.steps) if step.old_serial == since), None)
        if start is None:
            return None
        steps = list(itertools.islice(zone.steps, start, None))
        if len(steps) == 1:
            return Difference(since, current, list(steps[0].removed), list(steps[0].added))
        return Difference(since, current, *condense(steps))

    def changes(self, apex: bytes) -> int:
        zone = self.zones.get(apex)
        return len(zone.steps) if zone else 0

    def oldest_serial(self, apex: bytes) -> int | None:
        zone = self.zones.get(apex)
        return zone.steps[0].old_serial if zone and zone.steps else None

    def _forget(self, zone: ZoneJournal) -> None:
        self.size -= zone.size
        zone.steps.clear()
        zone.size = 0

    def _drop_oldest(self, zone: ZoneJournal) -> None:
        step = zone.steps.popleft()
        zone.size -= step.size
        self.size -= step.size


def condense(steps: Iterable[Step]) -> tuple[list[Record], list[Record]]:
    """Removed and added records of several consecutive steps as one step: a record added
    then removed (or removed then added back) cancels out. Order of first appearance kept."""
    removed: dict[Record, None] = {}
    added: dict[Record, None] = {}
    for step in steps:
        for record in step.removed:
            if record in added:
                del added[record]
            else:
                removed[record] = None
        for record in step.added:
            if record in removed:
                del removed[record]
            else:
                added[record] = None
    return list(removed), list(added)
