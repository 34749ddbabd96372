"""The two ways to list a namespace's pods: a paged list, and the query of a streaming list (KEP-3157).

Where to read from, as client-go's reflector does: with no resourceVersion a
list is a consistent read (the first list, and after a restore from backup,
when the API server's versions went back); a relist asks for a state
NotOlderThan the last version seen, which the API server may serve from its
watch cache instead of etcd.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from ..model import PodRecord
from .kubedecode import ApiError, decode_page
from .kubehttp import check, read_all, send
from .kubeimport import ApiClient

NOT_OLDER_THAN = "NotOlderThan"


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


class Listed(NamedTuple):
    pods: list[PodRecord]
    skipped: int  # objects that are not usable pods
    version: str  # the list's resourceVersion


async def paged_list(
    api: ApiClient, path: str, label_selector: str | None, page_size: int, timeout: float, list_from: str | None
) -> Listed:
    """Every page of a list, decoded one at a time (a page is ~2.5 MB; the loop runs between pages).

    Only the first page names a version: the others continue its snapshot.
    Raises Gone when a continue token expired (list again from scratch).
    """
    pods: list[PodRecord] = []
    token: str | None = None
    skipped = 0
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
        pods.extend(page.records)
        skipped += page.skipped
        token, version = page.token, page.version
        if not token:
            break
        await asyncio.sleep(0)  # the decode was a step of its own: let queries in before the next
    if not version:
        raise ApiError("decode", "pod list has no metadata.resourceVersion")
    return Listed(pods, skipped, version)
