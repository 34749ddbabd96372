"""The file sources: a pod list file and a hosts file, each loaded at start and re-read when it changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..model import PodSink, StaticEntry
from .filewatch import WatchedFile
from .hostsfile import parse_hosts_file
from .podfile import StartedPodFile, parse_pod_file, pod_file_batches

OnReload = Callable[[str, str], None]  # (kind, result): "pods"|"hosts", "success"|"error"


class _FileSource:
    """Common part: one WatchedFile, loaded by start(), polled by run()."""

    name = ""
    watched: WatchedFile

    def __init__(self, interval: float):
        self.interval = interval
        self.synced = False

    async def start(self) -> None:
        """The first load; a file that cannot be read or parsed raises SourceError (exit code 2)."""
        self.watched.load_now()
        self.synced = True

    async def run(self) -> None:
        await self.watched.watch(self.interval)


class PodFileSource(_FileSource):
    """Pods from a `kubectl get pods -o json|yaml` file; the first load applies batches as the child decodes them."""

    name = "pods-file"

    def __init__(self, path: str, sink: PodSink, interval: float, on_reload: OnReload, started: StartedPodFile | None = None):
        super().__init__(interval)
        self.sink = sink

        def load_in_batches(path: str) -> None:
            # The source is empty: each batch is applied as the child decodes the next.
            for batch in started.batches if started else pod_file_batches(path):
                sink.update(batch, [])

        self.watched = WatchedFile(
            "pods", path, parse_pod_file, sink.replace_all, on_reload, load_in_batches, started.signature if started else None
        )

    async def start(self) -> None:
        await super().start()
        self.sink.set_synced(True)


class HostsFileSource(_FileSource):
    """Static host entries in /etc/hosts syntax."""

    name = "hosts-file"

    def __init__(self, path: str, replace_static: Callable[[Iterable[StaticEntry]], None], interval: float, on_reload: OnReload):
        super().__init__(interval)
        self.watched = WatchedFile("hosts", path, parse_hosts_file, replace_static, on_reload)
