"""What a source could not use from its input: told once, counted by reason for the load's log line and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

# A value a pod record could not use: (reason, pod "namespace/name", what was wrong and what was kept).
Report = Callable[[str, str, str], None]

# The reasons, a fixed set (metric label values).
INVALID_NAME = "invalid_name"  # hostname, subdomain, namespace or pod name: no identity
INVALID_IP = "invalid_ip"  # an IP that is not one: skipped
EXTRA_IPS = "extra_ips"  # more than one IPv4 and one IPv6: the rest skipped
DUPLICATE_UID = "duplicate_uid"  # a second item with one metadata.uid: skipped
NOT_A_POD = "not_a_pod"  # a list item of another kind: skipped
INVALID_PORT = "invalid_port"  # a named container port that cannot be one: no SRV record for it
REASONS = (INVALID_NAME, INVALID_IP, EXTRA_IPS, DUPLICATE_UID, NOT_A_POD, INVALID_PORT)

WARNINGS_PER_REASON = 20  # per load; the counts tell the rest


class WarnOnce:
    """Logs each distinct message once. Past `limit` messages it forgets them all, so memory stays bounded."""

    def __init__(self, logger: logging.Logger, limit: int = 10_000):
        self._log, self._limit = logger, limit
        self._seen: set[str] = set()

    def __call__(self, message: str) -> bool:
        """Log `message` unless it was logged before; True if it was logged now."""
        if message in self._seen:
            return False
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(message)
        self._log.warning("%s", message)
        return True


@dataclass
class LoadStats:
    """What one load of a pod file found. Plain values: it crosses the pipe from the decoding child."""

    path: str
    pods: int = 0  # records loaded (duplicates left out)
    identities: int = 0  # of those, pods that would get a name (hostname+subdomain+IP, not hostNetwork, not finished)
    skipped_items: int = 0  # items that had a value skipped, or were skipped (not duplicates)
    duplicates: int = 0  # items skipped because an earlier one has their metadata.uid
    by_reason: dict[str, int] = field(default_factory=dict)  # items per reason (duplicates included)
    warnings: list[str] = field(default_factory=list)  # the first WARNINGS_PER_REASON of each reason, then a count

    def summary(self) -> str:
        """The load's log line."""
        return (
            f"loaded {self.pods} pods from {self.path}: {self.identities} identities, "
            f"{self.skipped_items} skipped, {self.duplicates} duplicates"
        )


class ItemProblems:
    """Collects the problems of one load, item by item; `where` names the item being read (an index: "item N")."""

    def __init__(self, path: str):
        self.stats = LoadStats(path)
        self.where: str | int = ""
        self._counted: str | int = ""  # the last item counted in skipped_items
        self._untold: dict[str, int] = {}

    def report(self, reason: str, pod: str, message: str) -> None:
        """A Report for pod_record: one value of the current item was not used."""
        stats = self.stats
        if reason != DUPLICATE_UID and self._counted != self.where:
            self._counted = self.where
            stats.skipped_items += 1
        count = stats.by_reason.get(reason, 0) + 1
        stats.by_reason[reason] = count
        if count <= WARNINGS_PER_REASON:
            where = f"item {self.where}" if isinstance(self.where, int) else self.where
            who = f" (pod {pod})" if pod else ""
            stats.warnings.append(f"{stats.path}: {where}{who}: {message}")
        else:
            self._untold[reason] = self._untold.get(reason, 0) + 1

    def finish(self) -> LoadStats:
        """The stats, with one line for each reason's warnings not listed."""
        stats = self.stats
        for reason, count in self._untold.items():
            stats.warnings.append(f"{stats.path}: {count} more items with {reason.replace('_', ' ')} (not listed one by one)")
        return stats
