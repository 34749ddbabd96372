"""The fake API's pods collection endpoints: paged lists, streaming lists (KEP-3157) and watch streams.

What a real API server does with each combination of resourceVersion,
resourceVersionMatch, limit, continue and sendInitialEvents, including the
422 an API server without streaming lists answers (FakeKube.watch_list=False),
and the "Too large resource version" a watch cache gives for a version it
has not reached. The state (pods, history, open watches) is FakeKube's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from tests.fakepods import (
    EXPIRED_CONTINUE,
    Selector,
    StoredPod,
    event_line,
    invalid_response,
    parse_selector,
    selects,
    status_body,
    status_response,
    too_large_status,
)

if TYPE_CHECKING:
    from tests.fakekube import FakeKube

# Ways a watch can misbehave (FakeKube.watch_quirk):
#   bookmark-then-close: every watch sends one BOOKMARK and ends, at once
#   bookmark-then-410:   every watch sends one BOOKMARK, then an ERROR 410, and ends
#   drip:                every watch sends the start of an event one byte at a time (drip_interval), never a whole line
WatchQuirk = Literal["bookmark-then-close", "bookmark-then-410", "drip"]

# How an API server without streaming lists answers one (FakeKube.watch_list_refusal):
#   feature-gate: 1.27 and later with the WatchList feature gate off: 422
#   old-server:   1.19 to 1.26, which forbid resourceVersionMatch on any watch: 422
#   ignored:      before 1.19, which know neither parameter: a plain watch (the state as ADDED events, no end)
WatchListRefusal = Literal["feature-gate", "old-server", "ignored"]

NOT_OLDER_THAN = "NotOlderThan"
INITIAL_EVENTS_CHUNK = 256  # initial events written at a time: a 100k-pod stream is never one buffer


@dataclass
class Change:
    version: int
    kind: str  # ADDED / MODIFIED / DELETED
    old: StoredPod | None
    new: StoredPod


@dataclass(eq=False)
class Watch:
    namespace: str | None
    selector: Selector
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def event_for(self, change: Change) -> bytes | None:
        """The event this watcher sees for a change, if any (selectors turn changes into ADDED/DELETED)."""
        if self.namespace is not None and change.new.namespace != self.namespace:
            return None
        now = selects(self.selector, change.new)
        before = change.old is not None and selects(self.selector, change.old)
        if change.kind == "MODIFIED":
            if before and now:
                return change.new.event("MODIFIED")
            if now:
                return change.new.event("ADDED")
            if before:
                return change.new.event("DELETED")
            return None
        return change.new.event(change.kind) if now else None


def is_true(value: str | None) -> bool:
    return value in ("1", "true", "True")


class PodsEndpoints:
    """GET /api/v1/pods and /api/v1/namespaces/{namespace}/pods, list or watch, over a FakeKube's state."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self._snapshots: dict[str, tuple[int, tuple[str | None, str], list[StoredPod]]] = {}
        self._snapshot_ids = itertools.count(1)

    def expire_continue_tokens(self) -> None:
        self._snapshots.clear()

    async def pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        query = request.query
        try:
            selector = parse_selector(query.get("labelSelector", ""))
        except ValueError as error:
            return status_response(400, "BadRequest", str(error))
        if is_true(query.get("watch")):
            return await self._watch(request, namespace, selector)
        return self._list(namespace, query.get("labelSelector", ""), selector, query)

    def _current(self, namespace: str | None, selector: Selector) -> list[StoredPod]:
        return [pod for key, pod in sorted(self.kube.pods.items()) if (namespace is None or key[0] == namespace) and selects(selector, pod)]

    # -- lists -------------------------------------------------------------------

    def _list(self, namespace: str | None, selector_text: str, selector: Selector, query: Any) -> web.StreamResponse:
        kube = self.kube
        scope = (namespace, selector_text)
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        since, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
        refused = self._refused_list(since, match, token)
        if refused is not None:
            return refused
        if token:
            try:
                snapshot_id, offset_text = base64.urlsafe_b64decode(token.encode()).decode().split(":")
                offset = int(offset_text)
            except ValueError:
                return status_response(400, "BadRequest", "continue key is not valid")
            if snapshot_id not in self._snapshots:
                return status_response(410, "Expired", EXPIRED_CONTINUE)
            version, snapshot_scope, items = self._snapshots[snapshot_id]
            if snapshot_scope != scope:
                return status_response(400, "BadRequest", "continue key does not match the query")
        else:
            if since not in ("", "0") and int(since) > kube.version:  # NotOlderThan a version the cache has not reached
                status = too_large_status(since, kube.version)
                return status_response(504, status["reason"], status["message"], status["details"])
            # "" (a consistent read), "0" (any version) and NotOlderThan all get the current state here.
            snapshot_id, offset, version = "", 0, kube.version
            items = self._current(namespace, selector)
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        end = offset + len(page)
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if end < len(items):
            if not snapshot_id:
                snapshot_id = str(next(self._snapshot_ids))
                self._snapshots[snapshot_id] = (version, scope, items)
            meta["continue"] = base64.urlsafe_b64encode(f"{snapshot_id}:{end}".encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        elif snapshot_id:
            self._snapshots.pop(snapshot_id, None)
        body = b"".join(
            (
                b'{"kind":"PodList","apiVersion":"v1","metadata":',
                orjson.dumps(meta),
                b',"items":[',
                b",".join(pod.body for pod in page),
                b"]}",
            )
        )
        return web.Response(body=body, content_type="application/json")

    @staticmethod
    def _refused_list(since: str, match: str, token: str | None) -> web.Response | None:
        """What the API server answers to a list whose parameters do not go together, if they do not."""
        if since and not since.isdigit():
            return status_response(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        if token and since not in ("", "0"):
            return status_response(400, "BadRequest", "specifying resource version is not allowed when using continue")
        causes = []
        if match:
            if not since:
                causes.append(("resourceVersionMatch", "Forbidden", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            if token:
                causes.append(("resourceVersionMatch", "Forbidden", "resourceVersionMatch is forbidden when continue is provided"))
            if match not in ("Exact", NOT_OLDER_THAN):
                causes.append(("resourceVersionMatch", "Unsupported value", f'"{match}": supported values: "Exact", "NotOlderThan", ""'))
            elif match == "Exact":
                causes.append(("resourceVersionMatch", "Unsupported value", '"Exact": the fake API serves no exact versions'))
        return invalid_response("ListOptions", "meta.k8s.io", causes) if causes else None

    # -- watches -----------------------------------------------------------------

    def _refused_watch(self, query: Any) -> web.Response | None:
        """The 422 for a watch's streaming-list parameters, as an API server with or without the feature words it."""
        initial, match = query.get("sendInitialEvents"), query.get("resourceVersionMatch")
        if initial is None and match is None:
            return None
        causes = []
        if not self.kube.watch_list and self.kube.watch_list_refusal == "ignored":
            return None
        if not self.kube.watch_list and self.kube.watch_list_refusal == "old-server":
            # Before 1.27 sendInitialEvents is an unknown parameter (ignored), and any match is forbidden.
            if match is not None:
                causes.append(("resourceVersionMatch", "Forbidden", "resourceVersionMatch is forbidden for watch"))
        else:
            if initial is not None:
                if match != NOT_OLDER_THAN:
                    causes.append(
                        ("resourceVersionMatch", "Forbidden", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
                    )
                if not self.kube.watch_list:
                    causes.append(
                        (
                            "sendInitialEvents",
                            "Forbidden",
                            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                        )
                    )
            if match is not None:
                if initial is None:
                    causes.append(
                        (
                            "resourceVersionMatch",
                            "Forbidden",
                            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                        )
                    )
                if match != NOT_OLDER_THAN:
                    causes.append(("resourceVersionMatch", "Unsupported value", f'"{match}": supported values: "NotOlderThan"'))
        return invalid_response("ListOptions", "meta.k8s.io", causes) if causes else None

    async def _watch(self, request: web.Request, namespace: str | None, selector: Selector) -> web.StreamResponse:
        kube = self.kube
        query = request.query
        refused = self._refused_watch(query)
        if refused is not None:
            return refused
        watch = Watch(namespace, selector, is_true(query.get("allowWatchBookmarks")), request)
        since = query.get("resourceVersion", "")
        if not since.isdigit() and since != "":
            return status_response(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        streaming = kube.watch_list and is_true(query.get("sendInitialEvents"))
        first: list[bytes] = []
        initial: list[StoredPod] = []
        gone = not streaming and since not in ("", "0") and int(since) < kube.compacted
        too_large = since not in ("", "0") and int(since) > kube.version
        if gone:
            message = f"too old resource version: {since} ({kube.compacted})"
            if kube.gone_as == "status":
                return status_response(410, "Expired", message)
            first.append(event_line("ERROR", status_body(410, "Expired", message)))
        elif too_large:
            status = too_large_status(since, kube.version)
            if kube.too_large_as == "status":
                return status_response(504, status["reason"], status["message"], status["details"])
            first.append(event_line("ERROR", status))
        elif streaming or since in ("", "0"):
            # The current state as ADDED events (a streaming list, or a watch from no version), then
            # for a streaming list the bookmark that ends it.
            initial = self._current(namespace, selector)
        else:
            for change in kube.history:
                if change.version > int(since):
                    line = watch.event_for(change)
                    if line is not None:
                        first.append(line)
        end_bookmark = event_line("BOOKMARK", self._initial_events_end()) if streaming and watch.bookmarks else None
        ends = gone or too_large
        if kube.watch_quirk in ("bookmark-then-close", "bookmark-then-410") and not ends:
            first.append(kube.bookmark_line())
            if kube.watch_quirk == "bookmark-then-410":
                first.append(event_line("ERROR", status_body(410, "Expired", f"too old resource version: {kube.version}")))
            ends = True
        if not ends:
            kube.watches.add(watch)  # in the same step as the snapshot and the replay: no change can fall between

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") and kube.honour_timeout else None
        try:
            async with asyncio.timeout(timeout):
                if not await self._write_initial(watch, response, initial, end_bookmark):
                    ends = True  # dropped while the bookmark was held back
                if first:
                    await response.write(b"".join(first))
                if not ends:
                    if kube.watch_quirk == "drip":
                        await self._drip(watch, response)
                    else:
                        while await self._write_queued(watch, response):
                            pass
        except (TimeoutError, ConnectionError):
            pass
        finally:
            kube.watches.discard(watch)
        if request.transport is not None and not request.transport.is_closing():
            try:
                await response.write_eof()
            except ConnectionError:
                pass
        return response

    async def _write_initial(self, watch: Watch, response: web.StreamResponse, initial: list[StoredPod], end: bytes | None) -> bool:
        """The initial ADDED events a few hundred at a time, then the bookmark that ends them (if any).

        FakeKube.initial_events_delay spaces the chunks out; FakeKube.initial_events_gate, while not
        set, holds the bookmark back (the events are out, the list is not complete). False when
        the watch was dropped meanwhile: the stream ends without the bookmark.
        """
        kube = self.kube
        for start in range(0, len(initial), INITIAL_EVENTS_CHUNK):
            if start and kube.initial_events_delay:
                await asyncio.sleep(kube.initial_events_delay)
            await response.write(b"".join(pod.event("ADDED") for pod in initial[start : start + INITIAL_EVENTS_CHUNK]))
            kube.initial_events_sent += len(initial[start : start + INITIAL_EVENTS_CHUNK])
        if end is not None:
            gate = kube.initial_events_gate
            while gate is not None and not gate.is_set():
                if watch not in kube.watches:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), 0.02)
            await response.write(end)
        return True

    async def _drip(self, watch: Watch, response: web.StreamResponse) -> None:
        """Bytes of an event that never ends, one every drip_interval, until the watch is dropped (or times out)."""
        partial = self.kube.bookmark_line().rstrip(b"\n")
        for index in itertools.count():
            while not watch.queue.empty():
                if watch.queue.get_nowait() is None:
                    return
            await response.write(partial[index % len(partial) :][:1])
            await asyncio.sleep(self.kube.drip_interval)

    @staticmethod
    async def _write_queued(watch: Watch, response: web.StreamResponse) -> bool:
        """Write what is queued in one chunk (a burst of events costs one write); False at the end."""
        lines = [await watch.queue.get()]
        while lines[-1] is not None and not watch.queue.empty() and len(lines) < 512:
            lines.append(watch.queue.get_nowait())
        more = lines[-1] is not None
        if not more:
            lines.pop()
        if lines:
            await response.write(b"".join(lines))
        return more

    def _initial_events_end(self) -> dict[str, Any]:
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": str(self.kube.version),
                "creationTimestamp": None,
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
            "spec": {"containers": None},
            "status": {},
        }
