"""The two ways to list a namespace's pods (a paged list, a streaming list's query), and where the pods go.

Where to read from, as client-go's reflector does: with no resourceVersion a
list is a consistent read (the first list, and after a restore from backup,
when the API server's versions went back); a relist asks for a state
NotOlderThan the last version seen, which the API server may serve from its
watch cache instead of etcd.

Where the pods go (ListTarget): a first list is handed to the sink as it
arrives, since nothing is served before it is complete (no second copy of
100k records, no final diff); a relist, or a first list after an attempt
that failed halfway, is kept whole and then replaces the old state in steps,
which is served until then.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model import PodRecord, PodSink
from .kubedecode import ApiError, decode_page
from .kubehttp import check, read_all, send
from .kubeimport import ApiClient

NOT_OLDER_THAN = "NotOlderThan"
# Loop turns between two steps of applying a list: a request in flight (an HTTP probe: accept, read,
# answer) needs a few, and should not wait a step for each.
TURNS_BETWEEN_STEPS = 3


RELEASED_AT_ONCE = 10_000  # records freed between two loop turns after a replace


async def let_requests_through() -> None:
    """Let the event loop run a few turns (each a poll for I/O and the callbacks ready)."""
    for _ in range(TURNS_BETWEEN_STEPS):
        await asyncio.sleep(0)


class ListTarget:
    """The pods of one list on their way to the sink: applied as they come (`ahead`), or kept for one replace."""

    def __init__(self, sink: PodSink, ahead: bool) -> None:
        self.sink = sink
        self.ahead = ahead
        self.kept: list[PodRecord] = []
        self.count = 0
        self.skipped = 0  # objects that are not usable pods

    def add(self, pods: list[PodRecord]) -> None:
        if not pods:
            return
        self.count += len(pods)
        if self.ahead:
            self.sink.update(pods, [], version=None)  # no version: the serials move when the list is complete
        else:
            self.kept.extend(pods)

    async def finish(self, version: str) -> None:
        """The list is complete at `version`: the sink holds it (and no pod it does not have) once this returns."""
        if self.ahead:
            self.sink.update([], [], version=version)
            return
        steps = self.sink.replace_all_steps(self.kept, version=version)
        try:
            for _ in steps:
                await let_requests_through()
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()  # cancelled halfway: the registry's generator says it is no longer busy
        # The records the sink did not take (the pods that did not change) are freed now, a slice at a
        # time: 100k of them at once held the loop up ~20 ms, and the watch that follows should not keep them.
        kept = self.kept
        self.kept = []
        while kept:
            del kept[-RELEASED_AT_ONCE:]
            await asyncio.sleep(0)


def streaming_list_query(list_from: str | None, timeout_seconds: int) -> dict[str, Any]:
    """The watch that starts with the current state as ADDED events, ended by a bookmark; then goes on watching."""
    return {
        "watch": True,
        "sendInitialEvents": True,
        "resourceVersionMatch": NOT_OLDER_THAN,
        "allowWatchBookmarks": True,
        "resourceVersion": list_from,
        "timeoutSeconds": timeout_seconds,
    }


async def paged_list(
    api: ApiClient, path: str, label_selector: str | None, page_size: int, timeout: float, list_from: str | None, target: ListTarget
) -> str:
    """Every page of a list to `target`, decoded one at a time (a page is ~2.5 MB; the loop runs between
    pages); returns the list's resourceVersion.

    Only the first page names a version: the others continue its snapshot.
    Raises Gone when a continue token expired (list again from scratch).
    """
    token: str | None = None
    version: str | None = None
    while True:
        query: dict[str, Any] = {"labelSelector": label_selector, "limit": page_size}
        if token:
            query["continue"] = token
        elif list_from is not None:
            query.update(resourceVersion=list_from, resourceVersionMatch=NOT_OLDER_THAN)
        resp = await send(api, "GET", path, timeout, query)
        await check(resp)
        body = await read_all(resp)
        page = decode_page(body)
        del body
        target.add(page.records)
        target.skipped += page.skipped
        token, version = page.token, page.version
        if not token:
            break
        await asyncio.sleep(0)  # the decode was a step of its own: let queries in before the next
    if not version:
        raise ApiError("decode", "pod list has no metadata.resourceVersion")
    return version
