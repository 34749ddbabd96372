"""Claims: what one pod of one source asks for, and the indexes from names and IPs to their claimants.

Almost every name and IP has one claimant, so an index entry is that claim
itself; two to CROWD claimants are a tuple; more (a Deployment whose pods all
set one hostname, a hostile pod file) are a Crowd with a heap, so that adding
or removing one of 100k claimants stays O(log n). Callers never see the
storage form: they ask `sole`, `claimants`, `owner`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from ..model import PodRecord

CROWD = 16  # claimants of one key kept as a tuple up to this many, then a Crowd

K = TypeVar("K", bound=Hashable)


class Claim:
    """One pod of one source: its record, the identity name it asks for (or None) and its set's name.

    Mutable on purpose: a pod that keeps its name (an IP or status change) is
    updated in place, and the index entries that point at it stay valid.
    """

    __slots__ = ("fallback", "name", "pod", "set_name", "source")

    def __init__(self, source: str, pod: PodRecord, name: bytes | None, set_name: bytes | None, fallback: bool):
        self.source = source
        self.pod = pod
        self.name = name
        self.set_name = set_name
        self.fallback = fallback  # no identity, but may get a CoreDNS-style pod-IP PTR

    def rank(self) -> tuple[bool, float, str, str]:
        """Who owns a contested name or IP: lowest wins (not terminating, oldest, uid, source)."""
        pod = self.pod
        return (pod.deleting, pod.created, pod.uid, self.source)

    def describe(self) -> str:
        return f"pod {self.pod.key} (uid {self.pod.uid})"


class Crowd:
    """Many claimants of one key: the members with their ranks, and a heap for the lowest."""

    __slots__ = ("_heap", "members")

    _order = itertools.count()  # tie-break for the heap: ranks are unique, but equal ones must not compare claims

    def __init__(self, claims: tuple[Claim, ...]):
        self.members: dict[Claim, tuple] = {}
        self._heap: list[tuple[tuple, int, Claim]] = []
        for claim in claims:
            self.add(claim)

    def add(self, claim: Claim) -> None:
        rank = claim.rank()
        if self.members.get(claim) == rank:
            return
        self.members[claim] = rank
        heapq.heappush(self._heap, (rank, next(self._order), claim))

    def discard(self, claim: Claim) -> None:
        self.members.pop(claim, None)
        if len(self._heap) > 2 * len(self.members) + CROWD:  # drop stale entries now and then
            self._heap = [(rank, order, c) for rank, order, c in self._heap if self.members.get(c) == rank]
            heapq.heapify(self._heap)

    def lowest(self) -> Claim | None:
        heap, members = self._heap, self.members
        while heap:
            rank, _, claim = heap[0]
            if members.get(claim) == rank:
                return claim
            heapq.heappop(heap)  # removed, or re-added with another rank
        return None

    def in_rank_order(self) -> Iterator[Claim]:
        """Members lowest rank first (a sorted copy: for the rare cases that need more than the lowest)."""
        return iter(sorted(self.members, key=self.members.__getitem__))

    def __len__(self) -> int:
        return len(self.members)


Entry = Claim | tuple[Claim, ...] | Crowd


class ClaimIndex(Generic[K]):
    """Key (a name or an IP) -> the claims on it."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[K, Entry] = {}  # read by the registry's loops over many keys; written here only

    def add(self, key: K, claim: Claim) -> None:
        entries = self.entries
        found = entries.get(key)
        if found is None:
            entries[key] = claim
        elif isinstance(found, Claim):
            if found is not claim:
                entries[key] = (found, claim)
        elif isinstance(found, tuple):
            if claim not in found:
                entries[key] = (*found, claim) if len(found) < CROWD else Crowd((*found, claim))
        else:
            found.add(claim)

    def add_first(self, key: K, claim: Claim) -> bool:
        """Add the first claim on `key`; False, adding nothing, when it has claims already (then `add`)."""
        entries = self.entries
        if key in entries:
            return False
        entries[key] = claim
        return True

    def discard(self, key: K, claim: Claim) -> None:
        entries = self.entries
        found = entries.get(key)
        if found is None:
            return
        if isinstance(found, Claim):
            if found is claim:
                del entries[key]
        elif isinstance(found, tuple):
            if claim in found:
                rest = tuple(c for c in found if c is not claim)
                entries[key] = rest[0] if len(rest) == 1 else rest
        else:
            found.discard(claim)
            if len(found) <= CROWD // 2:  # hysteresis: no flapping between forms at the boundary
                rest = tuple(found.in_rank_order())
                entries[key] = rest[0] if len(rest) == 1 else rest

    def rerank(self, key: K, claim: Claim) -> None:
        """A claimant's rank changed (it began terminating): a Crowd must re-sort it."""
        found = self.entries.get(key)
        if isinstance(found, Crowd):
            found.add(claim)

    def sole(self, key: K) -> Claim | None:
        """The claim on `key` when it is the only one (the common case, one lookup), else None."""
        found = self.entries.get(key)
        return found if isinstance(found, Claim) else None

    def claimants(self, key: K) -> tuple[Claim, ...]:
        found = self.entries.get(key)
        if found is None:
            return ()
        if isinstance(found, Claim):
            return (found,)
        if isinstance(found, tuple):
            return found
        return tuple(found.members)

    def holds(self, key: K, claim: Claim) -> bool:
        """Whether `claim` is among the claims on `key`."""
        found = self.entries.get(key)
        if found is None or isinstance(found, Claim):
            return found is claim
        if isinstance(found, tuple):
            return claim in found
        return claim in found.members

    def count(self, key: K) -> int:
        found = self.entries.get(key)
        if found is None:
            return 0
        return 1 if isinstance(found, Claim) else len(found)

    def owner(self, key: K) -> Claim | None:
        """The claimant of lowest rank, or None."""
        found = self.entries.get(key)
        if found is None or isinstance(found, Claim):
            return found
        if isinstance(found, tuple):
            return min(found, key=Claim.rank)
        return found.lowest()

    def owner_where(self, key: K, eligible) -> Claim | None:
        """The claimant of lowest rank among those `eligible(claim)` accepts."""
        found = self.entries.get(key)
        if found is None:
            return None
        if isinstance(found, Claim):
            return found if eligible(found) else None
        if isinstance(found, tuple):
            candidates = [c for c in found if eligible(c)]
            return min(candidates, key=Claim.rank) if candidates else None
        lowest = found.lowest()
        if lowest is not None and eligible(lowest):
            return lowest
        return next((c for c in found.in_rank_order() if eligible(c)), None)

    def is_crowd(self, key: K) -> bool:
        return isinstance(self.entries.get(key), Crowd)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self):
        return self.entries.keys()


class Dirty:
    """What one change touched. Names and IPs claimed before it remember their owner from before it."""

    __slots__ = ("crowd_claims", "ips", "names", "prior_ip_owner", "prior_name_owner")

    def __init__(self) -> None:
        self.names: set[bytes] = set()
        self.ips: set[str] = set()
        self.prior_name_owner: dict[bytes, Claim | None] = {}
        self.prior_ip_owner: dict[str, Claim | None] = {}
        self.crowd_claims: dict[bytes, list[Claim]] = {}  # name -> claims added or removed since its owner was noted
