"""The zone store as the transfer engine sees it (server/zone/store.py provides it).

Records (RR) are (owner, rtype, ttl, rdata) tuples in that order, names and
rdata in uncompressed lower-cased wire form; changes (ZoneChange) come to a
listener after each commit. SOA records are never among a change's records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from .encoder import Record
from .journal import Change


class ServedZone(Protocol):
    @property
    def apex(self) -> bytes: ...
    @property
    def serial(self) -> int: ...
    @property
    def name(self) -> str: ...


class Snapshot(Protocol):
    """One consistent state of one zone, read in pieces while the store keeps changing."""

    @property
    def serial(self) -> int: ...
    @property
    def soa(self) -> Record: ...

    def records(self) -> Iterator[Record]:
        """Every record but the apex SOA."""
        ...

    # The zone store's snapshot also has rrsets(): (owner, type key, encoded RRset) of the same records,
    # which the engine splices into messages without decoding them (outgoing.axfr_pieces).


class ZoneSource(Protocol):
    """`synced`: False until every source has synced (nothing is served: transfers get SERVFAIL).
    `busy`: True while a change is written in steps, before its serials move (a snapshot waits)."""

    synced: bool
    busy: bool

    @property
    def zones(self) -> Mapping[bytes, ServedZone]: ...

    def snapshot(self, apex: bytes) -> Snapshot: ...

    def add_listener(self, listener: Callable[[Sequence[Change]], None]) -> None: ...
