"""Big changes in steps: a source's whole state, or a whole hosts file, applied a slice at a time.

Each function yields between slices so the caller can let queries and probes
in; the zones' serials move once, at the end, and the store says it is busy
until then (transfers wait for it).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING

from ..model import PodRecord, StaticEntry
from .claims import Dirty
from .records import merged
from .sink import bulk
from .statics import StaticTable

if TYPE_CHECKING:
    from .ownership import Registry

STEP_CHANGES = 2000  # pods applied between two yields (~25 ms)
STEP_ENTRIES = 5000  # hosts-file entries read between two yields
STEP_WRITES = 2000  # names and IPs written between two yields
STEP_COMPARES = 20_000  # pods compared with what the registry holds between two yields (~10 ms)


def replace_pods_steps(registry: Registry, source: str, pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
    """replace_pods in steps of STEP_CHANGES, yielding between them so the caller can let queries in.

    The records are written step by step, but the zones' serials move once,
    at the end: until then the store says it is busy (transfers wait for it).
    """
    changed, gone = yield from _difference_steps(registry, source, pods)
    if len(changed) + len(gone) <= STEP_CHANGES:
        registry.update_pods(source, changed, gone, version)
        return
    steps = range(0, max(len(changed), len(gone)), STEP_CHANGES)
    registry.store.busy = True
    try:
        for start in steps:
            last = start == steps[-1]
            registry.update_pods(source, changed[start : start + STEP_CHANGES], gone[start : start + STEP_CHANGES], version, commit=last)
            if not last:
                yield
    finally:
        registry.store.busy = False


def difference(registry: Registry, source: str, pods: Iterable[PodRecord]) -> tuple[list[PodRecord], list[str]]:
    """The pods that are new or changed against what the registry holds of `source`, and the uids gone."""
    steps = _difference_steps(registry, source, pods)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _difference_steps(
    registry: Registry, source: str, pods: Iterable[PodRecord]
) -> Generator[None, None, tuple[list[PodRecord], list[str]]]:
    """difference, yielding every STEP_COMPARES pods: comparing 100k records is a relist's longest step otherwise."""
    held = registry._claims.setdefault(source, {})
    fresh: dict[str, PodRecord] = {}
    for count, pod in enumerate(pods, 1):
        fresh[pod.uid] = pod  # a uid twice: the later record (the sources warn)
        if count % STEP_COMPARES == 0:
            yield
    changed: list[PodRecord] = []
    for count, (uid, pod) in enumerate(fresh.items(), 1):
        claim = held.get(uid)
        if claim is None or claim.pod != pod:
            changed.append(pod)
        if count % STEP_COMPARES == 0:
            yield
    gone = [uid for uid in list(held) if uid not in fresh]  # a copy: another change may come between two steps
    return changed, gone


def replace_static_steps(registry: Registry, entries: Iterable[StaticEntry]) -> Iterator[None]:
    """replace_static a slice at a time (a hosts file of a million lines), yielding in between.

    The serials move once, at the end; meanwhile the store is busy and a
    name may already answer from the new file while another still does not.
    """
    table = StaticTable()
    add = table.builder(lambda name: registry.store.zone_for(name) is not None, registry.store.is_reserved)
    entries = iter(entries)
    while True:
        taken = 0
        with bulk(STEP_ENTRIES):  # each slice allocates long-lived objects only: no collections, then frozen
            for entry in itertools.islice(entries, STEP_ENTRIES):
                add(entry)
                taken += 1
        if taken < STEP_ENTRIES:
            break
        yield
    table.finish()
    old = registry._static
    registry._hosts_static = table
    registry._static = merged(table, registry._records.static)
    changed_names: set[bytes] = set()
    changed_ips: set[str] = set()
    yield from registry._static.changed_steps(old, changed_names, changed_ips, STEP_ENTRIES)
    slices = _related_slices(changed_names, changed_ips, old, registry._static)
    dirty: Dirty | None = next(slices)
    registry.store.busy = True
    try:
        while dirty is not None:
            following = next(slices, None)
            last = following is None
            if last:
                # Beside a Kubernetes source, serials stay resourceVersions: a hosts change moves them by one.
                registry._version = max(registry._versions.values(), default=None)
            with bulk(STEP_WRITES):
                registry._flush(dirty, commit=last)
            if not last:
                yield
            dirty = following
    finally:
        registry.store.busy = False


def _related_slices(changed_names: set[bytes], changed_ips: set[str], old: StaticTable, new: StaticTable) -> Iterator[Dirty]:
    """The changed names and IPs in slices of about STEP_WRITES, each name with its own addresses,
    so a name and its IP are settled in one slice rather than once each in two."""
    dirty = Dirty()
    for name in changed_names:
        dirty.names.add(name)
        for ip in (*old.addresses.get(name, ()), *new.addresses.get(name, ())):
            if ip in changed_ips:
                dirty.ips.add(ip)
                changed_ips.discard(ip)
        if len(dirty.names) >= STEP_WRITES:
            yield dirty
            dirty = Dirty()
    for ip in changed_ips:
        dirty.ips.add(ip)
        if len(dirty.ips) >= STEP_WRITES:
            yield dirty
            dirty = Dirty()
    yield dirty
