"""The Kubernetes source as the server runs it: the client configuration at start, then list and watch.

With an EventPoster, the Events about conflicts are written beside the watch,
through an ApiClient of the same configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..model import KubeObserver, PodSink
from .kube import KubeSettings, PodWatcher, load_client_config
from .kubeevents import EventPoster
from .kubeimport import Configuration

log = logging.getLogger("pod_identity_dns")


class KubernetesSource:
    name = "kubernetes"

    def __init__(
        self,
        settings: KubeSettings,
        sink_for: Callable[[str], PodSink],
        observer: KubeObserver | None = None,
        events: EventPoster | None = None,
    ):
        self.settings = settings
        self.watcher = PodWatcher(settings, sink_for, observer)
        self.events = events
        self._client_config: Configuration | None = None

    @property
    def synced(self) -> bool:
        return self.watcher.synced

    async def start(self) -> None:
        """Load the client configuration now: a broken one is a SourceError (exit 2 before listening)."""
        self._client_config = await load_client_config(self.settings)

    async def run(self) -> None:
        if self.events is None:
            await self.watcher.run(self._client_config)
            return
        config = self._client_config or await load_client_config(self.settings)
        # Not a TaskGroup: Events that stop (a bug) must not stop the watch, only be told.
        events = asyncio.create_task(self.events.run(config), name="kubernetes-events")
        events.add_done_callback(_events_ended)
        try:
            await self.watcher.run(config)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await events

    def ended(self, error: BaseException | None) -> None:
        """The watch retries every failure it knows; if it still ends, say so before the server stops."""
        log.error(
            "the Kubernetes watch stopped (%s); shutting down so that a restart lists the cluster afresh",
            f"{type(error).__name__}: {error}" if error else "it returned",
            exc_info=error,
        )


def _events_ended(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error(
            "Kubernetes Events about conflicts stopped (%s: %s); answers are not affected", type(error).__name__, error, exc_info=error
        )
