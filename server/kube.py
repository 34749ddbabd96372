"""The Kubernetes source: list and watch pods, strip them, feed the pod sinks.

Talks to the API with `kubernetes.aio`'s raw (`*_without_preload_content`)
calls and orjson; generated models are never built (they cost 10x the time
and memory on large clusters).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import aiohttp
import orjson
import yaml
from aiohttp.http_exceptions import LineTooLong
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig
from kubernetes.aio.config import ConfigException
# Imported here, not lazily on first use: the module takes ~0.7 s to import,
# which would otherwise block the running event loop.
from kubernetes.aio.client.api.core_v1_api import CoreV1Api

from .pods import PodRecord, PodSink, strip_pod
from .sourcefile import SourceError

LOG = logging.getLogger("pod_identity_dns.kube")

ALL_NAMESPACES_SOURCE = "kubernetes"
WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
# A pod is at most ~1.5 MiB in etcd; the limit only guards against a runaway stream.
MAX_EVENT_LINE = 64 * 1024 * 1024
# Like client-go: a watch that ends within a second having delivered nothing is a failure.
SHORT_WATCH_SECONDS = 1.0


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


class KubeObserver:
    """Hooks for what the watcher does; a no-op here, metrics subclass it."""

    def event(self, kind: str) -> None:
        """A watch event arrived: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    def relist(self) -> None:
        """A namespace is listed again after its first complete list."""

    def watch_restart(self) -> None:
        """A watch stream ended normally and is resumed from the last version."""

    def synced(self, value: bool) -> None:
        """Whether every watched namespace has been listed completely once."""

    def api_error(self, error: str) -> None:
        """A failed request; `error` is a short category (http_500, connection, ...)."""

    def applied(self, pod: PodRecord) -> None:
        """A watch event's pod was handed to the sink (upsert or delete)."""


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
        await kconfig.load_kube_config(
            config_file=paths, context=settings.context, client_configuration=config, persist_config=False
        )
    # The loader reports a malformed file by whatever its parsing trips over.
    except (ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError, KeyError, ValueError) as error:
        raise ClientConfigError(shown, None, f"unusable kubeconfig: {_one_line(error)}") from None
    return config


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
        async with kclient.ApiClient(configuration=config) as api_client:
            api = CoreV1Api(api_client)
            async with asyncio.TaskGroup() as group:
                for stream in self._streams:
                    group.create_task(stream.run(api))

    def _stream_synced(self) -> None:
        if not self._synced and all(stream.synced for stream in self._streams):
            self._synced = True
            self.observer.synced(True)

    @contextlib.contextmanager
    def _gc_paused(self) -> Iterator[None]:
        """Pause the cyclic GC while a list is parsed: it dominates bulk parsing.

        Counted, because several namespaces may be listed at once.
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
        self.version: str | None = None  # None: list before watching
        self.synced = False
        self.backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)

    async def run(self, api: CoreV1Api) -> None:
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
            except Exception as error:  # noqa: BLE001 - never let one failure stop the source
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

    async def _request(self, api: CoreV1Api, **params: Any) -> aiohttp.ClientResponse:
        params["label_selector"] = self.settings.label_selector
        params["_request_timeout"] = float(self.settings.read_timeout_seconds)
        if self.namespace is None:
            return await api.list_pod_for_all_namespaces_without_preload_content(**params)
        return await api.list_namespaced_pod_without_preload_content(self.namespace, **params)

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

    async def _list(self, api: CoreV1Api) -> None:
        """A complete paged list, handed to the sink with replace_all."""
        if self.synced:
            self.observer.relist()
        started = time.monotonic()
        records: list[PodRecord] = []
        token: str | None = None
        skipped = 0
        with self.watcher._gc_paused():
            while True:
                resp = await self._request(api, limit=int(self.settings.page_size), _continue=token)
                await self._check(resp)  # 410 on a continue token: Gone, list from scratch
                try:
                    page = orjson.loads(await resp.read())
                except orjson.JSONDecodeError as error:
                    raise ApiError("decode", f"unreadable pod list: {error}") from None
                finally:
                    resp.release()
                if not isinstance(page, dict):
                    raise ApiError("decode", "pod list is not an object")
                for item in page.get("items") or ():
                    try:
                        records.append(strip_pod(item))
                    except ValueError:
                        skipped += 1
                meta = page.get("metadata") or {}
                token = meta.get("continue") or None
                version = meta.get("resourceVersion")
                del page
                if not token:
                    break
            if not version:
                raise ApiError("decode", "pod list has no metadata.resourceVersion")
            self.sink.replace_all(records)
        if skipped:
            LOG.warning("%s: skipped %d unusable pod objects", self.name, skipped)
        LOG.info(
            "listed %d pods in %s at version %s in %.2fs", len(records), self.name, version, time.monotonic() - started
        )
        self.version = str(version)
        if not self.synced:
            self.synced = True
            self.sink.set_synced(True)
            self.watcher._stream_synced()

    async def _watch(self, api: CoreV1Api) -> None:
        """Watch from self.version until the stream ends.

        Raises Gone on a 410 (status or ERROR event), ApiError on other failures.
        The backoff is reset by a working watch only, not by a list, so that a
        server answering every fresh watch with 410 is not relisted in a tight loop.
        """
        started = time.monotonic()
        resp = await self._request(
            api,
            watch=True,
            resource_version=self.version,
            allow_watch_bookmarks=True,
            timeout_seconds=int(self.settings.watch_timeout_seconds),
        )
        await self._check(resp)
        lines = 0
        try:
            while True:
                try:
                    line = await resp.content.readline(max_line_length=MAX_EVENT_LINE)
                except LineTooLong:
                    # The rest of that event cannot be resynchronised; a list catches up.
                    raise Gone("watch event longer than the line limit") from None
                if not line:
                    break
                if line.strip():
                    lines += 1
                    self._apply_line(line)
        finally:
            resp.close()
        if lines == 0 and time.monotonic() - started < SHORT_WATCH_SECONDS:
            raise ApiError("watch_closed_early", "watch closed within a second without any event")
        self.backoff.reset()

    def _apply_line(self, line: bytes) -> None:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        obj = event.get("object") if isinstance(event, dict) else None
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(obj, dict) or not isinstance(kind, str):
            self.observer.api_error("malformed_event")
            LOG.warning("%s: skipped malformed watch event: %.120r", self.name, line)
            return
        if kind == "ERROR":
            self.observer.event(kind)
            code = obj.get("code")
            message = obj.get("message") or obj.get("reason") or "no message"
            if code == 410:
                raise Gone(str(message))
            raise ApiError(f"watch_error_{code}", f"ERROR event {code}: {message}")
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind in WATCH_EVENT_TYPES or kind == "BOOKMARK":
            self.observer.event(kind)
            self.backoff.reset()
        if kind in WATCH_EVENT_TYPES:
            try:
                pod = strip_pod(obj)
            except ValueError as error:
                LOG.warning("%s: skipped unusable pod in %s event: %s", self.name, kind, error)
            else:
                if kind == "DELETED":
                    self.sink.delete(pod.uid)
                else:
                    self.sink.upsert(pod)
                self.observer.applied(pod)
        elif kind != "BOOKMARK":
            LOG.warning("%s: skipped watch event of unknown type %r", self.name, kind)
        if isinstance(version, str) and version:
            self.version = version
