"""The Kubernetes source: list and watch pods, strip them, feed the pod sinks.

Talks to the API through `kubernetes.aio`'s ApiClient (configuration, auth,
TLS) with raw responses; generated models are never built (they cost 10x the
time and memory on large clusters). Pod JSON is decoded by msgspec schemas
that keep only the fields a PodRecord needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import msgspec
import orjson
import yaml
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

# The bare ApiClient (auth, TLS, token refresh), not the generated CoreV1Api:
# that module alone costs ~0.7 s and ~25 MiB, for two URLs built below.
from kubernetes.aio.client.api_client import ApiClient
from kubernetes.aio.config import ConfigException

from ..errors import SourceError
from ..model import KubeObserver, PodRecord, PodSink
from .podjson import EVENT_DECODER, LIST_DECODER, ListMeta, item_record, record
from .pods import strip_pod

LOG = logging.getLogger("pod_identity_dns.kube")

ALL_NAMESPACES_SOURCE = "kubernetes"
WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
# A pod is at most ~1.5 MiB in etcd; the limit only guards against a runaway stream.
MAX_EVENT_LINE = 64 * 1024 * 1024
# Like client-go: a watch that ends within a second having delivered nothing is a failure.
SHORT_WATCH_SECONDS = 1.0
# Events applied in one registry update, at most; a longer burst yields to queries in between.
BATCH_EVENTS = 256


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str | None = None  # None: in-cluster if KUBERNETES_SERVICE_HOST set, else KUBECONFIG / ~/.kube/config
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    label_selector: str | None = None
    page_size: int = 500
    watch_timeout_seconds: int = 240  # server-side timeoutSeconds
    read_timeout_seconds: float = 300  # client timeout per request, longer than the above
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class Gone(Exception):
    """410: the resourceVersion or continue token is too old; list again."""


class ApiError(Exception):
    """A failed API request or unusable response; retried with backoff."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


def source_name(namespace: str | None) -> str:
    """The PodSink source for one watched namespace (None: all namespaces)."""
    return ALL_NAMESPACES_SOURCE if namespace is None else f"{ALL_NAMESPACES_SOURCE}/{namespace}"


class ClientConfigError(SourceError):
    """No usable client configuration (in-cluster or kubeconfig): a start-up error, exit code 2."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


async def load_client_config(settings: KubeSettings) -> kclient.Configuration:
    """Client configuration: in-cluster when running in a pod, else a kubeconfig.

    Raises ClientConfigError, naming the file and the reason in one line, when
    no usable configuration is found.
    """
    config = kclient.Configuration()
    in_cluster = settings.kubeconfig is None and settings.context is None
    if in_cluster and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            kconfig.load_incluster_config(client_configuration=config)
        except ConfigException as error:
            raise ClientConfigError("in-cluster configuration", None, _one_line(error)) from None
        return config
    paths = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    shown = os.pathsep.join(os.path.expanduser(p) for p in paths.split(os.pathsep) if p)
    if not any(os.path.isfile(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p):
        raise ClientConfigError(shown, None, "no kubeconfig file there, and not in a cluster (KUBERNETES_SERVICE_HOST unset)")
    try:
        await kconfig.load_kube_config(config_file=paths, context=settings.context, client_configuration=config, persist_config=False)
    # The loader reports a malformed file by whatever its parsing trips over.
    except (ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError, KeyError, ValueError) as error:
        raise ClientConfigError(shown, None, f"unusable kubeconfig: {_one_line(error)}") from None
    return config


class Page(NamedTuple):
    records: list[PodRecord]
    skipped: int  # objects that are not usable pods
    token: str | None  # metadata.continue
    version: str | None  # metadata.resourceVersion


class WatchEvent(NamedTuple):
    kind: str
    version: str | None  # metadata.resourceVersion of the object
    pod: PodRecord | None = None  # ADDED, MODIFIED, DELETED of a usable pod
    unusable: str = ""  # why such an event's pod was not usable
    code: Any = None  # ERROR: the Status's code and message
    message: str = ""


def decode_page(body: bytes) -> Page:
    """One page of a pod list. Raises ApiError when it is not a pod list."""
    try:
        page = LIST_DECODER.decode(body)
    except msgspec.ValidationError:
        return _decode_page_tolerantly(body)
    except msgspec.DecodeError as error:
        raise ApiError("decode", f"unreadable pod list: {error}") from None
    records: list[PodRecord] = []
    skipped = 0
    for item in page.items or ():
        try:
            records.append(item_record(item))
        except (ValueError, TypeError):
            skipped += 1
    meta = page.metadata or ListMeta()
    return Page(records, skipped, meta.continue_ or None, meta.resourceVersion or None)


def _decode_page_tolerantly(body: bytes) -> Page:
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError("decode", f"unreadable pod list: {error}") from None
    if not isinstance(page, dict):
        raise ApiError("decode", "pod list is not an object")
    records: list[PodRecord] = []
    skipped = 0
    for item in page.get("items") or ():
        try:
            records.append(strip_pod(item))
        except ValueError:
            skipped += 1
    meta = page.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    token, version = meta.get("continue"), meta.get("resourceVersion")
    return Page(records, skipped, token if isinstance(token, str) and token else None, str(version) if version else None)


def decode_event(line: bytes) -> WatchEvent | None:
    """The event in one line of a watch stream; None when the line is not an event."""
    try:
        event = EVENT_DECODER.decode(line)
    except msgspec.ValidationError:
        return _decode_event_tolerantly(line)
    except msgspec.DecodeError:
        return None
    obj, kind = event.object, event.type
    if obj is None or kind is None:
        return None
    if kind == "ERROR":
        return WatchEvent(kind, None, code=obj.code, message=obj.message or obj.reason or "no message")
    version = obj.metadata.resourceVersion if obj.metadata is not None else None
    if kind not in WATCH_EVENT_TYPES:
        return WatchEvent(kind, version or None)
    try:
        return WatchEvent(kind, version or None, record(obj))
    except ValueError as error:
        return WatchEvent(kind, version or None, unusable=str(error))


def _decode_event_tolerantly(line: bytes) -> WatchEvent | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    obj = event.get("object") if isinstance(event, dict) else None
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(obj, dict) or not isinstance(kind, str):
        return None
    if kind == "ERROR":
        return WatchEvent(kind, None, code=obj.get("code"), message=str(obj.get("message") or obj.get("reason") or "no message"))
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    version = version if isinstance(version, str) and version else None
    if kind not in WATCH_EVENT_TYPES:
        return WatchEvent(kind, version)
    try:
        return WatchEvent(kind, version, strip_pod(obj))
    except ValueError as error:
        return WatchEvent(kind, version, unusable=str(error))


class Backoff:
    """Exponential backoff with jitter; reset after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def _status_message(body: bytes) -> str:
    """The message of a Kubernetes Status body, or the start of the raw body."""
    try:
        status = orjson.loads(body)
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    except orjson.JSONDecodeError:
        pass
    return body[:200].decode("utf-8", "replace")


def _error_category(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return error.category
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, (aiohttp.ClientConnectionError, OSError)):
        return "connection"
    if isinstance(error, aiohttp.ClientError):
        return "http"
    return "internal"


class PodWatcher:
    """Lists and watches pods, one PodSink source per watched namespace."""

    def __init__(
        self,
        settings: KubeSettings,
        sink_for: Callable[[str], PodSink],
        observer: KubeObserver | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer or KubeObserver()
        namespaces: tuple[str | None, ...] = settings.namespaces or (None,)
        self._streams = [_NamespaceStream(self, ns, sink_for(source_name(ns))) for ns in namespaces]
        self._gc_pauses = 0
        self._gc_was_enabled = True
        self._synced = False

    @property
    def synced(self) -> bool:
        """True once every watched namespace has been listed completely."""
        return self._synced

    async def run(self, client_config: kclient.Configuration | None = None) -> None:
        """List and watch until cancelled; API errors are retried, never raised.

        Only a missing or broken client configuration (ClientConfigError) raises;
        pass `client_config` loaded beforehand to have that happen at start-up.
        """
        config = client_config or await load_client_config(self.settings)
        async with ApiClient(configuration=config) as api, asyncio.TaskGroup() as group:
            for stream in self._streams:
                group.create_task(stream.run(api))

    def _stream_synced(self) -> None:
        if not self._synced and all(stream.synced for stream in self._streams):
            self._synced = True
            self.observer.synced(True)

    @contextlib.contextmanager
    def _gc_paused(self) -> Iterator[None]:
        """Pause the cyclic GC while a list is parsed and applied: it dominates bulk work.

        Counted, because several namespaces may be listed at once. What a list
        leaves behind lives long: it is frozen, or the next full collection
        would walk every record and name again (a pause of a second at 100k pods).
        """
        if self._gc_pauses == 0:
            self._gc_was_enabled = gc.isenabled()
            gc.disable()
        self._gc_pauses += 1
        try:
            yield
        finally:
            self._gc_pauses -= 1
            if self._gc_pauses == 0 and self._gc_was_enabled:
                gc.freeze()
                gc.enable()


class _NamespaceStream:
    """List-then-watch loop for one namespace (or all), feeding one sink."""

    def __init__(self, watcher: PodWatcher, namespace: str | None, sink: PodSink) -> None:
        self.watcher = watcher
        self.settings = watcher.settings
        self.observer = watcher.observer
        self.namespace = namespace
        self.sink = sink
        self.name = f"namespace {namespace}" if namespace else "all namespaces"
        self.path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        self.version: str | None = None  # None: list before watching
        self.synced = False
        self.backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)

    async def run(self, api: ApiClient) -> None:
        while True:
            try:
                if self.version is None:
                    await self._list(api)
                await self._watch(api)
                self.observer.watch_restart()
                LOG.debug("watch of %s ended; resuming from version %s", self.name, self.version)
            except Gone as gone:
                LOG.info("%s: %s (410); listing again", self.name, gone)
                self.version = None
                await asyncio.sleep(self.backoff.next_delay())
            except Exception as error:
                category = _error_category(error)
                self.observer.api_error(category)
                delay = self.backoff.next_delay()
                if category == "internal":
                    # A bug, possibly halfway through applying a change: reconcile from a fresh list.
                    LOG.exception("%s: unexpected error; listing again in %.1fs", self.name, delay)
                    self.version = None
                else:
                    reason = str(error) or type(error).__name__
                    LOG.warning("%s: %s: %s; retrying in %.1fs", self.name, category, reason, delay)
                await asyncio.sleep(delay)

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
        """Raise Gone or ApiError (releasing the response) unless it is a 200."""
        if resp.status == 200:
            return
        try:
            message = _status_message(await resp.read())
        finally:
            resp.release()
        if resp.status == 410:
            raise Gone(message)
        raise ApiError(f"http_{resp.status}", f"HTTP {resp.status}: {message}")

    async def _list(self, api: ApiClient) -> None:
        """A complete paged list, handed to the sink with replace_all."""
        if self.synced:
            self.observer.relist()
        started = time.monotonic()
        records: list[PodRecord] = []
        token: str | None = None
        skipped = 0
        with self.watcher._gc_paused():
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
            self.sink.replace_all(records)
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
        if not self.synced:
            self.synced = True
            self.sink.set_synced(True)
            self.watcher._stream_synced()

    async def _watch(self, api: ApiClient) -> None:
        """Watch from self.version until the stream ends.

        Raises Gone on a 410 (status or ERROR event), ApiError on other failures.
        The backoff is reset by a working watch only, not by a list, so that a
        server answering every fresh watch with 410 is not relisted in a tight loop.
        """
        started = time.monotonic()
        resp = await self._request(
            api,
            watch=True,
            resourceVersion=self.version,
            allowWatchBookmarks=True,
            timeoutSeconds=int(self.settings.watch_timeout_seconds),
        )
        await self._check(resp)
        lines = 0
        try:
            unfinished: list[bytes] = []  # the start of a line still arriving
            unfinished_size = 0
            # Whatever has arrived is applied as one batch: one registry update
            # and one serial bump for many events, and no wait for the next one.
            while chunk := await resp.content.readany():
                # Split the chunk itself: copying it whole first (up to megabytes a
                # read) cost as much as the split.
                events = chunk.split(b"\n")
                rest = events.pop()  # after the last newline: the start of a line still arriving
                if not events:
                    unfinished.append(rest)
                    unfinished_size += len(rest)
                    if unfinished_size > MAX_EVENT_LINE:
                        # The rest of that event cannot be resynchronised; a list catches up.
                        raise Gone("watch event longer than the line limit")
                    continue
                if unfinished:
                    events[0] = b"".join((*unfinished, events[0]))
                unfinished, unfinished_size = ([rest], len(rest)) if rest else ([], 0)
                for first in range(0, len(events), BATCH_EVENTS):
                    if first:
                        await asyncio.sleep(0)  # let queries in between the batches of a burst
                    lines += self._apply_lines(events[first : first + BATCH_EVENTS])
            if unfinished:  # a last line without its newline
                lines += self._apply_lines([b"".join(unfinished)])
        finally:
            resp.close()
        if lines == 0 and time.monotonic() - started < SHORT_WATCH_SECONDS:
            raise ApiError("watch_closed_early", "watch closed within a second without any event")
        self.backoff.reset()

    def _apply_lines(self, lines: list[bytes]) -> int:
        """Apply the events in these lines to the sink in one batch; returns the number of non-blank lines.

        An ERROR event raises Gone or ApiError, after the events before it are applied.
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
                    LOG.warning("%s: skipped malformed watch event: %.120r", self.name, line)
                    continue
                kind = event.kind
                if kind == "ERROR":
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if event.code == 410:
                        raise Gone(event.message)
                    raise ApiError(f"watch_error_{event.code}", f"ERROR event {event.code}: {event.message}")
                if kind in WATCH_EVENT_TYPES or kind == "BOOKMARK":
                    kinds[kind] = kinds.get(kind, 0) + 1
                if kind in WATCH_EVENT_TYPES:
                    if event.pod is None:
                        LOG.warning("%s: skipped unusable pod in %s event: %s", self.name, kind, event.unusable)
                    else:
                        batch[event.pod.uid] = None if kind == "DELETED" else event.pod
                        stripped.append(event.pod)
                elif kind != "BOOKMARK":
                    LOG.warning("%s: skipped watch event of unknown type %r", self.name, kind)
                if event.version:
                    version = event.version
        finally:
            # Reached on an ERROR event too: the events before it were seen and count.
            if batch:
                deletes = [uid for uid, pod in batch.items() if pod is None]
                self.sink.update([pod for pod in batch.values() if pod is not None], deletes)
            if stripped:
                self.observer.applied(stripped)
            for kind, seen in kinds.items():
                self.observer.event(kind, seen)
            if version is not None:
                self.version = version
            if kinds.keys() - {"ERROR"}:  # a working stream, not one that only failed
                self.backoff.reset()
        return count
