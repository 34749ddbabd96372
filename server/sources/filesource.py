"""The file sources: a pod list file and a hosts file, each loaded at start and re-read when it changes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator

from ..model import PodSink, StaticEntry, StaticRecord
from .filewatch import WatchedFile
from .hostsfile import DEFAULT_MAX_SIZE, parse_hosts_file
from .podfile import DEFAULT_MEMORY_LIMIT, StartedPodFile, parse_pod_file, pod_file_batches
from .recordsfile import parse_records_file

# (kind, result[, stats]): "pods"|"hosts", "success"|"error", and what a pod file's load counted
OnReload = Callable[..., None]


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

    def __init__(
        self,
        path: str,
        sink: PodSink,
        interval: float,
        on_reload: OnReload,
        started: StartedPodFile | None = None,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    ):
        super().__init__(interval)
        self.sink = sink

        def load_in_batches(path: str):
            # The source is empty: each batch is applied as the child decodes the next.
            load = started.batches if started else pod_file_batches(path, memory_limit)
            for batch in load:
                sink.update(batch, [])
            return load.stats

        self.watched = WatchedFile(
            "pods",
            path,
            functools.partial(parse_pod_file, memory_limit=memory_limit),
            sink.replace_all_steps,
            on_reload,
            load_in_batches,
            started.signature if started else None,
            report_of=lambda content: content.stats,
        )

    async def start(self) -> None:
        await super().start()
        self.sink.set_synced(True)


class HostsFileSource(_FileSource):
    """Static host entries in /etc/hosts syntax."""

    name = "hosts-file"

    def __init__(
        self,
        path: str,
        replace_static: Callable[[Iterable[StaticEntry]], Iterator[None] | None],
        interval: float,
        on_reload: OnReload,
        max_size: int = DEFAULT_MAX_SIZE,
    ):
        super().__init__(interval)
        self.watched = WatchedFile("hosts", path, functools.partial(parse_hosts_file, max_size=max_size), replace_static, on_reload)


class RecordsFileSource(_FileSource):
    """Static records of any type in master-file syntax (server/sources/recordsfile.py)."""

    name = "records-file"

    def __init__(
        self,
        path: str,
        replace_records: Callable[[list[StaticRecord]], None],
        interval: float,
        on_reload: OnReload,
        origin: str,
        default_ttl: int,
    ):
        super().__init__(interval)
        parse = functools.partial(parse_records_file, origin=origin, default_ttl=default_ttl)
        self.watched = WatchedFile("records", path, parse, replace_records, on_reload)
