"""The Kubernetes source: list and watch pods, strip them, feed one PodSink per watched namespace.

Talks to the API through `kubernetes.aio`'s ApiClient (configuration, auth,
TLS) with raw responses; generated models are never built (they cost 10x the
time and memory on large clusters). The parts: kubeconfig.py (settings, client
configuration), kubedecode.py (pages, events, Status objects), kuberetry.py
(backoff, Retry-After, relist pacing), kubestream.py (one namespace's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator

from ..model import KubeObserver, PodSink
from .kubeconfig import ClientConfigError, KubeSettings, load_client_config
from .kubedecode import ApiError, Gone, Page, VersionTooLarge, WatchEvent, decode_event, decode_page
from .kubeimport import ApiClient, Configuration
from .kubestream import NamespaceWatch

__all__ = [
    "ApiError",
    "ClientConfigError",
    "Gone",
    "KubeObserver",
    "KubeSettings",
    "Page",
    "PodWatcher",
    "VersionTooLarge",
    "WatchEvent",
    "decode_event",
    "decode_page",
    "load_client_config",
    "source_name",
]

SOURCE_PREFIX = "kubernetes"


def source_name(*namespaces: str) -> str:
    """The name of a Kubernetes source: "kubernetes" for all namespaces, "kubernetes/<ns>[,<ns>...]" for some.

    The one place these names are made (PodSink sources, the watcher's own
    name), so that a cluster name can join them here later without collisions.
    """
    return f"{SOURCE_PREFIX}/{','.join(namespaces)}" if namespaces else SOURCE_PREFIX


class PodWatcher:
    """Lists and watches pods, one PodSink source per watched namespace."""

    def __init__(
        self,
        settings: KubeSettings,
        sink_for: Callable[[str], PodSink],
        observer: KubeObserver | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer or KubeObserver()
        self.name = source_name(*settings.namespaces)
        namespaces: tuple[str | None, ...] = settings.namespaces or (None,)
        self._streams = [
            NamespaceWatch(
                ns,
                sink_for(source_name(ns) if ns is not None else source_name()),
                settings,
                self.observer,
                self._gc_paused,
                self._stream_synced,
            )
            for ns in namespaces
        ]
        self._gc_pauses = 0
        self._gc_was_enabled = True
        self._synced = False

    @property
    def synced(self) -> bool:
        """True once every watched namespace has been listed completely; it stays so."""
        return self._synced

    async def run(self, client_config: Configuration | None = None) -> None:
        """List and watch until cancelled; API errors are retried, never raised.

        Only a missing or broken client configuration (ClientConfigError) raises;
        pass `client_config` loaded beforehand to have that happen at start-up.
        """
        config = client_config or await load_client_config(self.settings)
        async with ApiClient(configuration=config) as api, asyncio.TaskGroup() as group:
            for stream in self._streams:
                group.create_task(stream.run(api))

    def _stream_synced(self) -> None:
        if not self._synced and all(stream.synced for stream in self._streams):
            self._synced = True
            self.observer.synced(True)

    @contextlib.contextmanager
    def _gc_paused(self) -> Iterator[None]:
        """Pause the cyclic GC while a list is parsed and applied: it dominates bulk work.

        Counted, because several namespaces may be listed at once. What a list
        leaves behind lives long: it is frozen, or the next full collection
        would walk every record and name again (a pause of a second at 100k pods).
        """
        if self._gc_pauses == 0:
            self._gc_was_enabled = gc.isenabled()
            gc.disable()
        self._gc_pauses += 1
        try:
            yield
        finally:
            self._gc_pauses -= 1
            if self._gc_pauses == 0 and self._gc_was_enabled:
                gc.freeze()
                gc.enable()
