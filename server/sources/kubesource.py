"""The Kubernetes source as the server runs it: the client configuration at start, then list and watch."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..model import KubeObserver, PodSink
from .kube import KubeSettings, PodWatcher, load_client_config

log = logging.getLogger("pod_identity_dns")


class KubernetesSource:
    name = "kubernetes"

    def __init__(self, settings: KubeSettings, sink_for: Callable[[str], PodSink], observer: KubeObserver | None = None):
        self.settings = settings
        self.watcher = PodWatcher(settings, sink_for, observer)
        self._client_config: object | None = None

    @property
    def synced(self) -> bool:
        return self.watcher.synced

    async def start(self) -> None:
        """Load the client configuration now: a broken one is a SourceError (exit 2 before listening)."""
        self._client_config = await load_client_config(self.settings)

    async def run(self) -> None:
        await self.watcher.run(self._client_config)  # type: ignore[arg-type]

    def ended(self, error: BaseException | None) -> None:
        """The watch retries every failure it knows; if it still ends, say so before the server stops."""
        log.error(
            "the Kubernetes watch stopped (%s); shutting down so that a restart lists the cluster afresh",
            f"{type(error).__name__}: {error}" if error else "it returned",
            exc_info=error,
        )
