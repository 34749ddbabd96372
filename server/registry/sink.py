"""How a source reaches the registry: a PodSink per source, and the garbage-collector pause for bulk changes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..model import PodRecord

if TYPE_CHECKING:
    from .ownership import Registry

BULK_CHANGES = 1000


class RegistrySink:
    """PodSink adapter: one source's view of the registry.

    `version` is the source's resourceVersion after the change (Kubernetes): it
    becomes the serial of the zones the change touched.
    """

    def __init__(self, registry: Registry, source: str):
        self._registry, self._source = registry, source

    def replace_all(self, pods: Iterable[PodRecord], version: str | None = None) -> None:
        self._registry.replace_pods(self._source, pods, version)

    def replace_all_steps(self, pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
        return self._registry.replace_pods_steps(self._source, pods, version)

    def upsert(self, pod: PodRecord) -> None:
        self._registry.update_pods(self._source, [pod], [])

    def delete(self, uid: str) -> None:
        self._registry.update_pods(self._source, [], [uid])

    def update(self, upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None) -> None:
        self._registry.update_pods(self._source, upserts, deletes, version)

    def set_synced(self, synced: bool) -> None:
        self._registry.set_synced(self._source, synced)


@contextlib.contextmanager
def bulk(changes: int):
    """Pause the garbage collector for large batches (an initial list, a relist).

    Bulk loads only allocate long-lived objects; collections during them find
    nothing yet cost most of the time. Afterwards the survivors are frozen so
    later collections need not scan them again.
    """
    if changes < BULK_CHANGES or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
