"""The conflict book: every name or IP claimed by more than one party right now, who keeps it and who loses.

A party is a pod's Claim or STATIC (a hosts-file entry). Each new (winner,
loser) pair is reported once, to the log (a bounded number of lines per
change, then a count) and to any listener (Kubernetes Events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..zone import names
from .claims import Claim

log = logging.getLogger("pod_identity_dns.registry")

STATIC = "static"  # the party of a hosts-file entry
LOG_LINES_PER_CHANGE = 20

Party = Claim | str


class Conflict(NamedTuple):
    kind: str  # "name" or "ip"
    subject: bytes | str  # a name in wire form, or an IP
    winner: Party
    loser: Party


def describe_party(party: Party | None) -> str:
    if party is None:
        return "-"
    if party == STATIC:
        return "static entry (hosts or records file)"
    return party.describe() if isinstance(party, Claim) else str(party)


def subject_text(subject: bytes | str) -> str:
    return names.to_text(subject) if isinstance(subject, bytes) else subject


class _Contest:
    __slots__ = ("losers", "winner")

    def __init__(self, winner: Party):
        self.winner = winner
        self.losers: dict[Party, None] = {}


class ConflictBook:
    def __init__(self) -> None:
        self._contests: dict[tuple[str, bytes | str], _Contest] = {}
        self.count = 0  # (winner, loser) pairs right now
        self.listeners: list[Callable[[Conflict], None]] = []
        self._reported = 0  # new pairs reported in the current change
        self._unlogged = 0

    def settle(self, kind: str, subject: bytes | str, winner: Party | None, losers: Iterable[Party]) -> None:
        """The whole current state of one subject: its winner and every loser (none: no conflict)."""
        key = (kind, subject)
        contest = self._contests.get(key)
        wanted = dict.fromkeys(losers) if winner is not None else {}
        if contest is not None and contest.winner is winner:
            for loser in [p for p in contest.losers if p not in wanted]:
                self.remove_loser(kind, subject, loser)
            for loser in wanted:
                self.add_loser(kind, subject, winner, loser)
            return
        if contest is not None:
            self.count -= len(contest.losers)
            del self._contests[key]
        if winner is not None:
            for loser in wanted:
                self.add_loser(kind, subject, winner, loser)

    def add_loser(self, kind: str, subject: bytes | str, winner: Party, loser: Party) -> None:
        key = (kind, subject)
        contest = self._contests.get(key)
        if contest is None:
            contest = self._contests[key] = _Contest(winner)
        elif loser in contest.losers:
            return
        contest.losers[loser] = None
        self.count += 1
        self._report(Conflict(kind, subject, winner, loser))

    def remove_loser(self, kind: str, subject: bytes | str, loser: Party) -> None:
        key = (kind, subject)
        contest = self._contests.get(key)
        if contest is None or loser not in contest.losers:
            return
        del contest.losers[loser]
        self.count -= 1
        if not contest.losers:
            del self._contests[key]

    def winner(self, kind: str, subject: bytes | str) -> Party | None:
        contest = self._contests.get((kind, subject))
        return contest.winner if contest is not None else None

    def has(self, kind: str, subject: bytes | str) -> bool:
        """Whether the subject is contested now (so a change to it must be settled again)."""
        return (kind, subject) in self._contests

    def __bool__(self) -> bool:
        return bool(self._contests)

    def items(self) -> list[Conflict]:
        return [Conflict(kind, subject, c.winner, loser) for (kind, subject), c in self._contests.items() for loser in c.losers]

    def end_change(self) -> None:
        """One change is applied: summarise what was not logged line by line."""
        if self._unlogged:
            log.warning("and %d more new conflicts in this change (see /debug/identities)", self._unlogged)
        self._reported = self._unlogged = 0

    def _report(self, conflict: Conflict) -> None:
        for listener in self.listeners:
            listener(conflict)
        self._reported += 1
        if self._reported > LOG_LINES_PER_CHANGE:
            self._unlogged += 1
            return
        log.warning(
            "conflict on %s %s: %s keeps it, %s loses it",
            conflict.kind,
            subject_text(conflict.subject),
            describe_party(conflict.winner),
            describe_party(conflict.loser),
        )
