"""The list-then-watch loop of one namespace (or of all), feeding one PodSink; every failure is retried."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote

import aiohttp

# The bare ApiClient (auth, TLS, token refresh), not the generated CoreV1Api:
# that module alone costs ~0.7 s and ~25 MiB, for two URLs built below.
from kubernetes.aio.client.api_client import ApiClient

from ..errors import RateLimitedWarning
from ..model import KubeObserver, PodRecord, PodSink
from .kubeconfig import KubeSettings
from .kubedecode import WATCH_EVENT_TYPES, ApiError, Gone, VersionTooLarge, decode_event, decode_page, decode_status, status_error
from .kuberetry import Backoff, RelistPacer, parse_retry_after, retry_delay

LOG = logging.getLogger("pod_identity_dns.kube")

# Like client-go: a watch that ends within a second having delivered nothing is a failure.
SHORT_WATCH_SECONDS = 1.0
# Events applied in one registry update, at most; a longer burst yields to queries in between.
BATCH_EVENTS = 256
# Watches in a row that end before they stayed up (see KubeSettings.healthy_watch_seconds) before it is logged.
EARLY_ENDS_LOGGED_AT = 5


class WatchStalled(ApiError):
    """No complete line arrived on a watch stream for too long (KubeSettings.watch_stall_seconds)."""

    def __init__(self, message: str, partial: bool) -> None:
        super().__init__("watch_stalled", message)
        self.partial = partial  # a line had begun: the stream is broken, not merely quiet


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
    are spaced by a RelistPacer; a Retry-After is honoured up to a bound.
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
        self.version: str | None = None  # None: list before watching
        self.synced = False
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.pacer = RelistPacer(settings.relist_backoff_initial, settings.relist_backoff_max, clock)
        self.early_ends = 0  # watches in a row that ended before they stayed up
        self.too_large = 0  # "Too large resource version" errors in a row
        self._opened_at: float | None = None  # when the current watch's stream opened (answered 200)
        every = settings.warning_summary_seconds
        self._malformed = RateLimitedWarning(LOG, f"{self.name}: skipped %d more malformed watch events in the last %.0f s", interval=every)
        self._unusable = RateLimitedWarning(
            LOG, f"{self.name}: skipped %d more watch events with unusable pods in the last %.0f s", interval=every
        )
        self._unknown = RateLimitedWarning(
            LOG, f"{self.name}: skipped %d more watch events of unknown types in the last %.0f s", interval=every
        )

    async def run(self, api: ApiClient) -> None:
        while True:
            try:
                if self.version is None:
                    await self._paced_list(api)
                delay = await self._watch_once(api)
            except Exception as error:
                delay = self._after_failure(error)
            if delay > 0:
                await asyncio.sleep(delay)

    # -- pacing ----------------------------------------------------------------

    async def _watch_once(self, api: ApiClient) -> float:
        """One watch until it ends; returns the wait before the next one."""
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
        if isinstance(error, Gone):
            listing = self.version is None  # a list's continue token expired, not a watch's version
            LOG.info("%s: %s (410); listing again", self.name, error)
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
                    self.version,
                )
                self.version = None
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

    async def _paced_list(self, api: ApiClient) -> None:
        wait = self.pacer.wait() if self.synced else 0.0
        if wait > 0:
            LOG.warning(
                "%s: %d relists since a watch last stayed up; listing again in %.1fs, serving the last state meanwhile",
                self.name,
                self.pacer.relists,
                wait,
            )
            await asyncio.sleep(wait)
        await self._list(api)

    # -- requests ----------------------------------------------------------------

    async def _request(self, api: ApiClient, **query: Any) -> aiohttp.ClientResponse:
        """GET this stream's pods collection (a list page or a watch); the raw response, body unread."""
        query["labelSelector"] = self.settings.label_selector
        params = [(key, value) for key, value in query.items() if value is not None]
        method, url, headers, body, post = await api.param_serialize(
            "GET",
            self.path,
            query_params=params,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = await api.call_api(
            method,
            url,
            headers,
            body,
            post,
            _request_timeout=float(self.settings.read_timeout_seconds),
            _preload_content=False,
        )
        return response.response

    @staticmethod
    async def _check(resp: aiohttp.ClientResponse) -> None:
        """Raise what a failed response means (Gone, VersionTooLarge, ApiError), releasing it, unless it is a 200."""
        if resp.status == 200:
            return
        try:
            body = await resp.read()
        finally:
            resp.release()
        status = decode_status(body)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise status_error(resp.status, status, f"http_{resp.status}", retry_after if retry_after is not None else status.retry_after)

    async def _list(self, api: ApiClient) -> None:
        """A complete paged list, handed to the sink with replace_all.

        No resourceVersion is sent: the list is a consistent read from etcd,
        right even when the API server's versions went back (a restore).
        """
        relist = self.synced
        if relist:
            self.observer.relist()
        started = time.monotonic()
        records: list[PodRecord] = []
        token: str | None = None
        skipped = 0
        with self._gc_paused():
            while True:
                resp = await self._request(api, limit=int(self.settings.page_size), **{"continue": token})
                await self._check(resp)  # 410 on a continue token: Gone, list from scratch
                try:
                    body = await resp.read()
                finally:
                    resp.release()
                page = decode_page(body)
                del body
                records.extend(page.records)
                skipped += page.skipped
                token, version = page.token, page.version
                if not token:
                    break
            if not version:
                raise ApiError("decode", "pod list has no metadata.resourceVersion")
            received = time.monotonic()
            self.sink.replace_all(records, version=str(version))
        if skipped:
            LOG.warning("%s: skipped %d unusable pod objects", self.name, skipped)
        LOG.info(
            "listed %d pods in %s at version %s in %.2fs (%.2fs of it applying them)",
            len(records),
            self.name,
            version,
            time.monotonic() - started,
            time.monotonic() - received,
        )
        self.version = str(version)
        self.too_large = 0
        if relist:
            self.pacer.listed()
        else:
            self.synced = True
            self.sink.set_synced(True)
            self._on_synced()

    async def _watch(self, api: ApiClient) -> None:
        """Watch from self.version until the stream ends.

        Raises Gone on a 410 (status or ERROR event), WatchStalled when no
        complete line came for watch_stall_bound seconds, ApiError on other failures.
        """
        resp = await self._request(
            api,
            watch=True,
            resourceVersion=self.version,
            allowWatchBookmarks=True,
            timeoutSeconds=int(self.settings.watch_timeout_seconds),
        )
        await self._check(resp)
        started = self._opened_at = self.clock()
        lines = 0
        stall = self.settings.watch_stall_bound
        loop = asyncio.get_running_loop()
        unfinished: list[bytes] = []  # the start of a line still arriving
        unfinished_size = 0
        deadline = asyncio.timeout(stall)
        try:
            async with deadline:
                # Whatever has arrived is applied as one batch: one registry update
                # and one serial bump for many events, and no wait for the next one.
                while chunk := await resp.content.readany():
                    self._tick_warnings()
                    # Split the chunk itself: copying it whole first (up to megabytes a
                    # read) cost as much as the split.
                    events = chunk.split(b"\n")
                    rest = events.pop()  # after the last newline: the start of a line still arriving
                    if not events:
                        unfinished.append(rest)
                        unfinished_size += len(rest)
                        if unfinished_size > self.settings.max_event_bytes:
                            # The rest of that event cannot be resynchronised; a list catches up.
                            raise Gone("watch event longer than the line limit")
                        continue
                    deadline.reschedule(loop.time() + stall)
                    if unfinished:
                        events[0] = b"".join((*unfinished, events[0]))
                    unfinished, unfinished_size = ([rest], len(rest)) if rest else ([], 0)
                    for first in range(0, len(events), BATCH_EVENTS):
                        if first:
                            await asyncio.sleep(0)  # let queries in between the batches of a burst
                        lines += self._apply_lines(events[first : first + BATCH_EVENTS])
                if unfinished:  # a last line without its newline
                    lines += self._apply_lines([b"".join(unfinished)])
        except TimeoutError:
            if not deadline.expired():
                raise  # the client's read timeout
            under_way = f" ({unfinished_size} bytes of a line under way)" if unfinished_size else ""
            raise WatchStalled(f"no complete watch event in {stall:.0f}s{under_way}", bool(unfinished_size)) from None
        finally:
            resp.close()
        if lines == 0 and self.clock() - started < SHORT_WATCH_SECONDS:
            raise ApiError("watch_closed_early", "watch closed within a second without any event")

    def _tick_warnings(self) -> None:
        self._malformed.tick()
        self._unusable.tick()
        self._unknown.tick()

    def _apply_lines(self, lines: list[bytes]) -> int:
        """Apply the events in these lines to the sink in one batch; returns the number of non-blank lines.

        An ERROR event raises what its Status means, after the events before it are applied.
        """
        batch: dict[str, PodRecord | None] = {}  # uid -> its last state, None once deleted
        stripped: list[PodRecord] = []
        kinds: dict[str, int] = {}  # events counted by kind, reported once per batch
        version: str | None = None
        count = 0
        try:
            for line in lines:
                if not line or line.isspace():  # not strip(): that would copy each 5 KB line
                    continue
                count += 1
                event = decode_event(line)
                if event is None:
                    self.observer.api_error("malformed_event")
                    self._malformed.warn("%s: skipped malformed watch event: %.120r", self.name, line)
                    continue
                kind = event.kind
                if event.status is not None:  # an ERROR event
                    kinds[kind] = kinds.get(kind, 0) + 1
                    status = event.status
                    raise status_error(status.code, status, f"watch_error_{status.code}", status.retry_after)
                if kind in WATCH_EVENT_TYPES or kind == "BOOKMARK":
                    kinds[kind] = kinds.get(kind, 0) + 1
                if kind in WATCH_EVENT_TYPES:
                    if event.pod is None:
                        self._unusable.warn("%s: skipped unusable pod in %s event: %s", self.name, kind, event.unusable)
                    else:
                        batch[event.pod.uid] = None if kind == "DELETED" else event.pod
                        stripped.append(event.pod)
                elif kind != "BOOKMARK":
                    self._unknown.warn("%s: skipped watch event of unknown type %r", self.name, kind)
                if event.version:
                    version = event.version
        finally:
            # Reached on an ERROR event too: the events before it were seen and count.
            if batch:
                deletes = [uid for uid, pod in batch.items() if pod is None]
                self.sink.update([pod for pod in batch.values() if pod is not None], deletes, version=version)
            if stripped:
                self.observer.applied(stripped)
            for kind, seen in kinds.items():
                self.observer.event(kind, seen)
            if version is not None:
                self.version = version
        return count
