"""The list-then-watch loop of one namespace (or of all), feeding one PodSink; every failure is retried.

A list is a streaming list where the API server has them (one request: the
state as ADDED events, then the same stream watches on), else a paged list
and then a watch. Either way the state goes to the sink in steps, with the
event loop let in between (queries and probes answer throughout): a first
list as it comes, a relist whole once complete, the old state served until
then (kubelist.ListTarget).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import quote

import aiohttp

from ..model import KubeObserver, PodSink
from .kubeapply import EventLines, InitialEvents, NotAStreamingList
from .kubeconfig import KubeSettings
from .kubedecode import ApiError, Gone, VersionTooLarge
from .kubehttp import RequestRejected, check, send
from .kubeimport import ApiClient
from .kubelines import LineReader, WatchStalled
from .kubelist import ListTarget, paged_list, streaming_list_query
from .kuberetry import Backoff, RelistPacer, retry_delay

LOG = logging.getLogger("pod_identity_dns.kube")

# Like client-go: a watch that ends within a second having delivered nothing is a failure.
SHORT_WATCH_SECONDS = 1.0
# Watches in a row that end before they stayed up (see KubeSettings.healthy_watch_seconds) before it is logged.
EARLY_ENDS_LOGGED_AT = 5

__all__ = ["NamespaceWatch", "WatchStalled", "error_category"]


def error_category(error: BaseException) -> str:
    """The short name of a failure, as counted in poddns_kubernetes_api_errors_total{error}."""
    if isinstance(error, ApiError):
        return error.category
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, (aiohttp.ClientConnectionError, OSError)):
        return "connection"
    if isinstance(error, aiohttp.ClientError):
        return "http"
    return "internal"


class NamespaceWatch:
    """List, then watch from the list's version, for ever: one namespace (None: all), one sink.

    Pacing, so that no misbehaving API server is hammered: a watch that stayed
    up `healthy_watch_bound` seconds resets the backoff, any other ending backs
    off (bar the first of a run, which may be an API server restart); relists
    are spaced by a RelistPacer; a Retry-After is honoured up to a bound. An
    API server that refuses streaming lists is remembered: this stream lists
    in pages from then on.
    """

    def __init__(
        self,
        namespace: str | None,
        sink: PodSink,
        settings: KubeSettings,
        observer: KubeObserver,
        gc_paused: Callable[[], AbstractContextManager[None]],
        on_synced: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self.sink = sink
        self.settings = settings
        self.observer = observer
        self._gc_paused = gc_paused
        self._on_synced = on_synced
        self.clock = clock
        self.name = f"namespace {namespace}" if namespace else "all namespaces"
        self.path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        self.version: str | None = None  # where the watch resumes; None: list before watching
        self.list_from: str | None = None  # a list asks for a state NotOlderThan this; None: a consistent read
        self.streaming = settings.streaming_lists  # False once the API server refused a streaming list
        self.synced = False
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.pacer = RelistPacer(settings.relist_backoff_initial, settings.relist_backoff_max, clock)
        self.early_ends = 0  # watches in a row that ended before they stayed up
        self.too_large = 0  # "Too large resource version" errors in a row
        self._opened_at: float | None = None  # when the current watch's stream opened (answered 200)
        self._partial = False  # the sink holds part of a first list that did not complete
        self.lines = EventLines(self.name, sink, observer, settings.warning_summary_seconds)

    async def run(self, api: ApiClient) -> None:
        while True:
            try:
                if self.version is None:
                    await self._wait_for_relist()
                    if not self.streaming:
                        await self._paged_list(api)
                delay = await self._watch_once(api)
            except Exception as error:
                delay = self._after_failure(error)
            if delay > 0:
                await asyncio.sleep(delay)

    # -- pacing ----------------------------------------------------------------

    async def _watch_once(self, api: ApiClient) -> float:
        """One watch (a streaming list first, when there is no version) until it ends; returns the wait before the next one."""
        self._opened_at = None
        try:
            await self._watch(api)
        finally:
            stayed_up = self._watch_ended()
        self.observer.watch_restart()
        self.too_large = 0
        LOG.debug("watch of %s ended; resuming from version %s", self.name, self.version)
        if stayed_up:
            return 0.0
        self.early_ends += 1
        if self.early_ends == EARLY_ENDS_LOGGED_AT:
            LOG.warning(
                "%s: %d watches in a row ended within %.0fs of opening; backing off (up to %.0fs) until one stays up",
                self.name,
                self.early_ends,
                self.settings.healthy_watch_bound,
                self.settings.backoff_max,
            )
        # The first early end may be an API server restart: resume at once. A second in a row backs off.
        return 0.0 if self.early_ends == 1 else self.backoff.next_delay()

    def _watch_ended(self) -> bool:
        """Whether the watch stream stayed open long enough to count as working; if so, the backoffs start again."""
        if self._opened_at is None or self.clock() - self._opened_at < self.settings.healthy_watch_bound:
            return False
        if self.early_ends >= EARLY_ENDS_LOGGED_AT:
            LOG.info("%s: a watch stayed up again, after %d in a row that ended early", self.name, self.early_ends)
        self.early_ends = 0
        self.backoff.reset()
        self.pacer.reset()
        return True

    def _after_failure(self, error: Exception) -> float:
        """Log and count a failure, decide what to request next; returns the wait before it."""
        if isinstance(error, NotAStreamingList):
            self.streaming = False
            self.observer.api_error(error.category)
            LOG.warning("%s: the API server does not serve streaming lists (%s); listing in pages from now on", self.name, error)
            return 0.0
        if isinstance(error, Gone):
            listing = self.version is None  # a list's continue token expired, not a watch's version
            LOG.info("%s: %s (410); listing again", self.name, error)
            if not listing:
                self.list_from = self.version  # a state not older than the last one seen: the watch cache can serve it
            self.version = None
            # The relist is paced by the RelistPacer; a list failing with 410 itself backs off.
            return self.backoff.next_delay() if listing else 0.0
        category = error_category(error)
        self.observer.api_error(category)
        retry_after = error.retry_after if isinstance(error, ApiError) else None
        delay = retry_delay(self.backoff.next_delay(), retry_after, self.settings.retry_after_max)
        if category == "internal":
            # A bug, possibly halfway through applying a change: reconcile from a fresh list.
            LOG.exception("%s: unexpected error; listing again in %.1fs", self.name, delay)
            self.list_from = self.version or self.list_from
            self.version = None
            return delay
        reason = str(error) or type(error).__name__
        if isinstance(error, VersionTooLarge):
            self.too_large += 1
            if self.too_large >= self.settings.too_large_relist_after:
                LOG.warning(
                    "%s: %s (%d times in a row): the API server's data is older than version %s, as after a restore "
                    "from backup; listing again from scratch",
                    self.name,
                    reason,
                    self.too_large,
                    self.version or self.list_from,
                )
                # Only a consistent read (no version) can be trusted now, not a watch cache's.
                self.version = self.list_from = None
                self.too_large = 0
                return 0.0
        if isinstance(error, WatchStalled):
            LOG.log(
                logging.WARNING if error.partial else logging.INFO,
                "%s: %s; watching again from version %s in %.1fs",
                self.name,
                reason,
                self.version,
                delay,
            )
            return delay
        asked = f" (the server asked for {retry_after:.0f}s)" if retry_after is not None else ""
        LOG.warning("%s: %s: %s; retrying in %.1fs%s", self.name, category, reason, delay, asked)
        return delay

    async def _wait_for_relist(self) -> None:
        wait = self.pacer.wait() if self.synced else 0.0
        if wait > 0:
            LOG.warning(
                "%s: %d relists since a watch last stayed up; listing again in %.1fs, serving the last state meanwhile",
                self.name,
                self.pacer.relists,
                wait,
            )
            await asyncio.sleep(wait)

    # -- lists -------------------------------------------------------------------

    def _list_target(self) -> ListTarget:
        """Where a list's pods go: at once for a first list whose sink holds nothing of ours yet, else kept for one replace."""
        ahead = not self.synced and not self._partial
        self._partial = ahead  # until the list completes, the sink holds part of it
        return ListTarget(self.sink, ahead)

    async def _paged_list(self, api: ApiClient) -> None:
        """A complete paged list to the sink."""
        relist = self.synced
        if relist:
            self.observer.relist()
        started = time.monotonic()
        target = self._list_target()
        with self._gc_paused():
            version = await paged_list(
                api,
                self.path,
                self.settings.label_selector,
                int(self.settings.page_size),
                float(self.settings.read_timeout_seconds),
                self.list_from,
                target,
            )
            await self._listed(target, version, relist, started, "paged list")

    async def _listed(self, target: ListTarget, version: str, relist: bool, started: float, how: str) -> None:
        """The list is complete: the sink has it (in steps, when it replaces an old state); the stream is listed."""
        received = time.monotonic()
        await target.finish(version)
        self._partial = False
        if target.skipped:
            LOG.warning("%s: skipped %d unusable pod objects", self.name, target.skipped)
        LOG.info(
            "listed %d pods in %s at version %s by %s in %.2fs (%.2fs of it applying them%s)",
            target.count,
            self.name,
            version,
            how,
            time.monotonic() - started,
            time.monotonic() - received,
            ", after applying them as they came" if target.ahead else "",
        )
        self.version = self.list_from = version
        self.too_large = 0
        if relist:
            self.pacer.listed()
        else:
            self.synced = True
            self.sink.set_synced(True)
            self._on_synced()

    # -- watches -----------------------------------------------------------------

    async def _watch(self, api: ApiClient) -> None:
        """Watch from self.version until the stream ends; with no version, a streaming list comes first.

        Raises Gone on a 410 (status or ERROR event), WatchStalled when no
        complete line came for watch_stall_bound seconds, NotAStreamingList
        when the API server refuses a streaming list, ApiError on other failures.
        """
        settings = self.settings
        listing = self.version is None
        if listing:
            query = streaming_list_query(self.list_from, int(settings.watch_timeout_seconds))
        else:
            query = {
                "watch": True,
                "resourceVersion": self.version,
                "allowWatchBookmarks": True,
                "timeoutSeconds": int(settings.watch_timeout_seconds),
            }
        query["labelSelector"] = settings.label_selector
        relist = self.synced
        if listing and relist:
            self.observer.relist()
        started = time.monotonic()
        resp = await send(api, "GET", self.path, float(settings.read_timeout_seconds), query)
        try:
            await check(resp)
        except RequestRejected as error:
            if listing:
                raise NotAStreamingList(f"HTTP {error.code}: {error}") from None
            raise
        opened = self._opened_at = self.clock()
        reader = LineReader(resp, settings.watch_stall_bound, settings.max_event_bytes)
        initial = InitialEvents() if listing else None
        target = self._list_target() if listing else None
        with contextlib.ExitStack() as pausing:
            if listing:
                pausing.enter_context(self._gc_paused())  # bulk work, until the list is applied
            try:
                while (batch := await reader.next_batch()) is not None:
                    self.lines.tick()
                    if initial is not None and target is not None:
                        batch = self.lines.collect(batch, initial)
                        target.add(initial.pods)
                        initial.pods = []
                        if initial.complete:
                            if not initial.version:
                                raise ApiError("decode", "the bookmark that ends the streaming list has no resourceVersion")
                            target.skipped = initial.skipped
                            await self._listed(target, initial.version, relist, started, "streaming list")
                            initial = None
                            pausing.close()
                    if batch:
                        version, failure = self.lines.apply(batch)
                        if version is not None:
                            self.version = version
                        if failure is not None:
                            raise failure
                    await asyncio.sleep(0)  # the loop runs between batches, even when the next one is already read
            finally:
                resp.close()
        if initial is not None:
            raise ApiError("list_incomplete", "the streaming list ended before the bookmark that ends its initial events")
        if reader.lines == 0 and self.clock() - opened < SHORT_WATCH_SECONDS:
            raise ApiError("watch_closed_early", "watch closed within a second without any event")
