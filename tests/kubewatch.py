"""A PodWatcher run in process against tests/fakekube.py, with sinks and an observer that record everything."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.model import KubeObserver, PodRecord
from server.sources.kube import KubeSettings, PodWatcher
from tests.fakekube import FakeKube, WatchQuirk, make_pod

WAIT_SECONDS = 5.0


class RecordingSink:
    """A PodSink that keeps the pods it was given and every call.

    replace_all_steps applies `step` pods at a time, like the registry, and
    counts the steps of each call in `steps`.
    """

    step = 100

    def __init__(self, source: str) -> None:
        self.source = source
        self.steps: list[int] = []  # steps of each replace_all_steps
        self.pods: dict[str, PodRecord] = {}
        self.synced = False
        self.calls: list[tuple[str, Any]] = []
        self.batches: list[tuple[int, int]] = []  # (upserts, deletes) of each update()
        self.versions: list[str | None] = []  # the resourceVersion handed with each change

    def replace_all(self, pods: Iterable[PodRecord], version: str | None = None) -> None:
        self.versions.append(version)
        self.pods = {pod.uid: pod for pod in pods}
        self.calls.append(("replace_all", len(self.pods)))

    def replace_all_steps(self, pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
        pods = list(pods)
        self.versions.append(version)
        self.calls.append(("replace_all", len(pods)))
        fresh: dict[str, PodRecord] = {}
        self.steps.append(0)
        for start in range(0, max(len(pods), 1), self.step):
            if start:
                yield
            fresh.update((pod.uid, pod) for pod in pods[start : start + self.step])
            self.steps[-1] += 1
        self.pods = fresh

    def upsert(self, pod: PodRecord) -> None:
        self.pods[pod.uid] = pod
        self.calls.append(("upsert", pod.name))

    def delete(self, uid: str) -> None:
        self.pods.pop(uid, None)
        self.calls.append(("delete", uid))

    def update(self, upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None) -> None:
        self.versions.append(version)
        upserts, deletes = list(upserts), list(deletes)
        self.batches.append((len(upserts), len(deletes)))
        for uid in deletes:
            self.delete(uid)
        for pod in upserts:
            self.upsert(pod)

    def set_synced(self, synced: bool) -> None:
        self.synced = synced
        self.calls.append(("set_synced", synced))

    def names(self) -> list[str]:
        return sorted(pod.name for pod in self.pods.values())

    def ips(self, name: str) -> tuple[str, ...]:
        return next(pod.ips for pod in self.pods.values() if pod.name == name)


@dataclass
class RecordingObserver(KubeObserver):
    events: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    relists: int = 0
    restarts: int = 0
    synced_values: list[bool] = field(default_factory=list)
    applied_names: list[str] = field(default_factory=list)

    def event(self, kind: str, count: int = 1) -> None:
        self.events[kind] += count

    def relist(self) -> None:
        self.relists += 1

    def watch_restart(self) -> None:
        self.restarts += 1

    def synced(self, value: bool) -> None:
        self.synced_values.append(value)

    def api_error(self, error: str) -> None:
        self.errors.append(error)

    def applied(self, pods: list[PodRecord]) -> None:
        self.applied_names.extend(pod.name for pod in pods)


@dataclass
class Harness:
    kube: FakeKube
    watcher: PodWatcher
    sinks: dict[str, RecordingSink]
    observer: RecordingObserver
    task: asyncio.Task
    helpers: list[asyncio.Task] = field(default_factory=list)  # a test's own tasks, cancelled at the end

    @property
    def sink(self) -> RecordingSink:
        """The all-namespaces sink."""
        return self.sinks["kubernetes"]

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
        """Poll `condition` until true; fail after `timeout` or if the watcher died."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if self.task.done():
                self.task.result()
                raise AssertionError(f"watcher stopped while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)

    async def synced(self) -> None:
        await self.until(lambda: self.watcher.synced, "the first complete list")

    async def bookmarked(self) -> None:
        """A BOOKMARK to the open watch, once it arrived: a watch that ends within a second having delivered nothing is a failure."""
        await self.until(lambda: self.kube.open_watches > 0, "an open watch")
        seen = self.observer.events["BOOKMARK"]
        self.kube.send_bookmark()
        await self.until(lambda: self.observer.events["BOOKMARK"] > seen, "the bookmark")

    async def end_watches(self, quirk: WatchQuirk | None = None) -> None:
        """End the open watch cleanly, after an event (see bookmarked); the next ones have this quirk."""
        await self.bookmarked()
        self.kube.watch_quirk = quirk
        self.kube.drop_watches()

    async def watching_again(self, watches_before: int) -> None:
        """Wait until a new watch request came in and is open."""
        await self.until(
            lambda: len(self.kube.pod_requests(watch=True)) > watches_before and self.kube.open_watches > 0,
            "a new watch",
        )


@contextlib.asynccontextmanager
async def watching(kube: FakeKube, tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    """Run a PodWatcher against `kube` for the duration of the block."""
    settings: dict[str, Any] = dict(
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        backoff_initial=0.05,
        backoff_max=0.2,
        relist_backoff_initial=0.05,
        relist_backoff_max=0.2,
    )
    settings.update(overrides)
    sinks: dict[str, RecordingSink] = {}

    def sink_for(source: str) -> RecordingSink:
        sinks[source] = RecordingSink(source)
        return sinks[source]

    observer = RecordingObserver()
    watcher = PodWatcher(KubeSettings(**settings), sink_for, observer)
    task = asyncio.create_task(watcher.run())
    harness = Harness(kube, watcher, sinks, observer, task)
    try:
        yield harness
    finally:
        for running in (task, *harness.helpers):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def pod(name: str, namespace: str = "default", n: int = 1, **kwargs: Any) -> dict[str, Any]:
    return make_pod(name, namespace, ip=f"10.244.0.{n}", hostname=name, subdomain="svc", **kwargs)
