"""An HTTP fake of the Kubernetes API (pods, and Events), for tests and benchmarks.

Speaks the real wire protocol (checked against kubectl): one global increasing
resourceVersion, paged lists with consistent-snapshot continue tokens, label
selectors, chunked watch streams with bookmarks, streaming lists (KEP-3157:
the current state as ADDED events, then a bookmark annotated
k8s.io/initial-events-end) or the 422 of an API server without them, lists
NotOlderThan a version (a watch cache's read), 410 Gone for versions and
tokens that are too old, and "Too large resource version" for versions newer
than its data; events.k8s.io/v1 Events (tests/fakeevents.py). Test hooks
change pods and break things on purpose (failing statuses with Retry-After, a
restore from backup, watch quirks). Pods are kept serialized (about a sixth
of the memory of parsed JSON, and no encoding per list or event), so a
benchmark can hold 100k realistic pods. The endpoints are tests/fakewatch.py,
the stateless pieces (pod shapes, selectors, statuses) tests/fakepods.py.

    async with FakeKube() as kube:
        kube.add_pod(make_pod("web-0", ip="10.244.0.5", hostname="web-0", subdomain="web"))
        kube.write_kubeconfig(tmp_path / "kubeconfig")
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakeevents import FakeEvents
from tests.fakekubethread import FakeKubeThread
from tests.fakepods import (
    EXPIRED_CONTINUE,
    Pod,
    Selector,
    StoredPod,
    clone,
    event_line,
    make_pod,
    now_rfc3339,
    parse_selector,
    selects,
    status_body,
    status_response,
    too_large_status,
)
from tests.fakewatch import Change, PodsEndpoints, Watch, WatchListRefusal, WatchQuirk, is_true

__all__ = [
    "EXPIRED_CONTINUE",
    "Backup",
    "FakeKube",
    "FakeKubeThread",
    "Pod",
    "Request",
    "Selector",
    "StoredPod",
    "WatchQuirk",
    "clone",
    "event_line",
    "make_pod",
    "now_rfc3339",
    "parse_selector",
    "selects",
    "status_body",
    "status_response",
    "too_large_status",
]


@dataclass
class Request:
    """One request the fake received, for assertions."""

    method: str
    path: str
    query: dict[str, str]
    namespace: str | None = None
    is_pods: bool = False

    @property
    def is_watch(self) -> bool:
        return is_true(self.query.get("watch"))

    @property
    def is_streaming_list(self) -> bool:
        """A watch that begins with the current state (sendInitialEvents=true): a list and a watch in one."""
        return self.is_watch and is_true(self.query.get("sendInitialEvents"))


@dataclass(frozen=True)
class Backup:
    """What FakeKube.backup() saved: the pods and the resourceVersion at that moment."""

    version: int
    pods: dict[tuple[str, str], StoredPod]


class FakeKube:
    """The fake API server: `await start()` / `await stop()`, or `async with`.

    gone_as: how a watch from a compacted version fails, "event" (200 and an
    ERROR event, like current API servers) or "status" (HTTP 410).
    too_large_as: how a watch from a version newer than the data fails (after
    restore()): "status" (HTTP 504, Retry-After: 1) or "event" (an ERROR event).
    """

    def __init__(
        self,
        *,
        gone_as: Literal["event", "status"] = "event",
        too_large_as: Literal["event", "status"] = "status",
        token: str | None = None,
        watch_list: bool = True,
        watch_list_refusal: WatchListRefusal = "feature-gate",
    ) -> None:
        self.gone_as = gone_as
        self.too_large_as = too_large_as
        self.token = token
        self.version = 1
        self.compacted = 0  # watches from versions below this get 410
        self.pods: dict[tuple[str, str], StoredPod] = {}
        self.history: list[Change] = []
        self.requests: list[Request] = []
        self.failing_status: int | None = None
        self.failing_retry_after: int | None = None
        self.watch_quirk: WatchQuirk | None = None
        self.drip_interval = 1.0
        self.honour_timeout = True  # False: ignore timeoutSeconds, like a silently stuck server
        # While this is an Event that is not set, pod list requests wait for it (a slow first list).
        self.list_gate: asyncio.Event | None = None
        # Called with each request before it is served: lets a test act between two pages.
        self.before_request: Callable[[Request], None] | None = None
        self.watch_list = watch_list  # streaming lists; False: refused with a 422, worded as watch_list_refusal says
        self.watch_list_refusal: WatchListRefusal = watch_list_refusal
        self.initial_events_delay = 0.0  # seconds between chunks of a streaming list's ADDED events
        self.initial_events_sent = 0  # ADDED events written by streaming lists (and watches from no version)
        # While this is an Event that is not set, streaming lists hold back the bookmark that ends them.
        self.initial_events_gate: asyncio.Event | None = None
        self.watches: set[Watch] = set()
        self.events = FakeEvents()
        self.endpoints = PodsEndpoints(self)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1: a free port the first time, the same port after go_down()."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_get("/api/v1", self._api_resources)
        app.router.add_get("/api/v1/pods", self.endpoints.pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self.endpoints.pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._pod)
        self.events.add_routes(app.router)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_down(self) -> None:
        """Stop listening and close every connection: clients get connection refused."""
        await self.stop()

    async def come_up(self) -> None:
        """Listen again on the same port after go_down()."""
        await self.start()

    async def __aenter__(self) -> FakeKube:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | Path, *, namespace: str | None = None) -> Path:
        """A kubeconfig (JSON is YAML) pointing at this fake over plain HTTP."""
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        context: dict[str, Any] = {"cluster": "fake", "user": "fake"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
        }
        path = Path(path)
        path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        return path

    # -- test hooks: pods --------------------------------------------------

    def add_pod(self, pod: Pod, *, copy: bool = True) -> Pod:
        """Create a pod (uid and creationTimestamp filled in); returns the stored object.

        copy=False fills in the caller's dict itself (faster for bulk loads).
        """
        if copy:
            pod = clone(pod)
        meta = pod["metadata"]
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        key = (meta["namespace"], meta["name"])
        if key in self.pods:
            raise ValueError(f"pod {key} already exists")
        self._record("ADDED", None, pod)
        return pod

    def get_pod(self, namespace: str, name: str) -> Pod:
        """A copy of the current object."""
        return self.pods[(namespace, name)].obj()

    def add_pods(self, pods: Iterable[Pod], *, copy: bool = True) -> None:
        for pod in pods:
            self.add_pod(pod, copy=copy)

    def modify_pod(self, namespace: str, name: str, change: Callable[[Pod], None]) -> Pod:
        """Apply `change` to a copy of the pod and store it as a new version."""
        old = self.pods[(namespace, name)]
        new = old.obj()
        change(new)
        self._record("MODIFIED", old, new)
        return new

    def delete_pod(self, namespace: str, name: str) -> None:
        old = self.pods[(namespace, name)]
        self._record("DELETED", old, old.obj())

    def _record(self, kind: str, old: StoredPod | None, new: Pod) -> None:
        self.version += 1
        new["metadata"]["resourceVersion"] = str(self.version)
        self._record_stored(kind, old, StoredPod.of(new))

    def _record_stored(self, kind: str, old: StoredPod | None, new: StoredPod) -> None:
        """Store `new`, already serialized with resourceVersion == self.version, and notify watches."""
        key = (new.namespace, new.name)
        if kind == "DELETED":
            del self.pods[key]
        else:
            self.pods[key] = new
        change = Change(self.version, kind, old, new)
        self.history.append(change)
        for watch in self.watches:
            line = watch.event_for(change)
            if line is not None:
                watch.queue.put_nowait(line)

    # -- test hooks: failures ----------------------------------------------

    def drop_watches(self, *, abort: bool = False) -> int:
        """End every open watch: cleanly (end of chunked body) or by closing the socket."""
        dropped = list(self.watches)
        self.watches.clear()
        for watch in dropped:
            if abort and watch.request.transport is not None:
                watch.request.transport.close()
            watch.queue.put_nowait(None)
        return len(dropped)

    def send_bookmark(self) -> None:
        """A BOOKMARK at the current version to every watch that asked for bookmarks."""
        for watch in self.watches:
            if watch.bookmarks:
                watch.queue.put_nowait(self.bookmark_line())

    def bookmark_line(self) -> bytes:
        obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.version), "creationTimestamp": None},
            "spec": {"containers": None},
            "status": {},
        }
        return event_line("BOOKMARK", obj)

    def send_error(self, code: int = 410, reason: str = "Expired", message: str = "too old resource version") -> None:
        """An ERROR event (a Status) to every open watch, which then ends, as the API server does."""
        line = event_line("ERROR", status_body(code, reason, message))
        for watch in list(self.watches):
            watch.queue.put_nowait(line)
        self.drop_watches()

    def inject_line(self, raw: bytes) -> None:
        """Write raw bytes (a newline is added) into every open watch stream."""
        self.inject_bytes(raw.rstrip(b"\n") + b"\n")

    def inject_bytes(self, raw: bytes) -> None:
        """Write exactly these bytes into every open watch stream (part of a line, or several)."""
        for watch in self.watches:
            watch.queue.put_nowait(raw)

    def compact(self) -> None:
        """Forget history up to now: older watch versions and all continue tokens get 410."""
        self.compacted = self.version
        self.history = [change for change in self.history if change.version > self.compacted]
        self.expire_continue_tokens()

    def expire_continue_tokens(self) -> None:
        self.endpoints.expire_continue_tokens()

    def fail_requests(self, status: int | None = 500, *, retry_after: int | None = None) -> None:
        """Answer every request with this HTTP status (None: serve normally); drops open watches.

        retry_after: also send it, as Retry-After and as the Status's details.retryAfterSeconds.
        """
        self.failing_status = status
        self.failing_retry_after = retry_after
        if status is not None:
            self.drop_watches()

    def backup(self) -> Backup:
        """The state to restore() later, as an etcd snapshot holds it."""
        return Backup(self.version, dict(self.pods))

    def restore(self, backup: Backup) -> None:
        """The cluster restored from a backup: pods and resourceVersion go back to it, open watches end.

        A client that watches on from a newer version than the backup's gets
        "Too large resource version" (see too_large_as) until it lists again.
        """
        self.version = backup.version
        self.pods = dict(backup.pods)
        self.history = [change for change in self.history if change.version <= backup.version]
        self.compacted = min(self.compacted, backup.version)
        self.expire_continue_tokens()
        self.drop_watches()

    # -- assertions --------------------------------------------------------

    def pod_requests(self, *, watch: bool | None = None, namespace: str | None = None) -> list[Request]:
        """Requests to a pods collection, optionally only watches or only lists."""
        return [
            r
            for r in self.requests
            if r.is_pods and (watch is None or r.is_watch == watch) and (namespace is None or r.namespace == namespace)
        ]

    def list_requests(self, namespace: str | None = None, *, first_pages_only: bool = True) -> list[Request]:
        """Requests that list the pods: paged lists (by default only each one's first page) and streaming lists."""
        lists = [r for r in self.pod_requests(namespace=namespace) if not r.is_watch or r.is_streaming_list]
        return [r for r in lists if not (first_pages_only and r.query.get("continue"))]

    def resumed_watch_requests(self, namespace: str | None = None) -> list[Request]:
        """Watches from a version (not streaming lists)."""
        return [r for r in self.pod_requests(watch=True, namespace=namespace) if not r.is_streaming_list]

    def paged_list_requests(self, namespace: str | None = None) -> list[Request]:
        """The first pages of paged lists only."""
        return [r for r in self.list_requests(namespace) if not r.is_watch]

    def streaming_list_requests(self, namespace: str | None = None) -> list[Request]:
        """The streaming lists only (refused ones included)."""
        return [r for r in self.list_requests(namespace) if r.is_watch]

    @property
    def open_watches(self) -> int:
        return len(self.watches)

    # -- HTTP ----------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        is_pods = request.path == "/api/v1/pods" or (request.path.startswith("/api/v1/namespaces/") and request.path.endswith("/pods"))
        record = Request(request.method, request.path, dict(request.query), namespace, is_pods)
        self.requests.append(record)
        if self.before_request is not None:
            self.before_request(record)
        if self.failing_status is not None:
            details = {"retryAfterSeconds": self.failing_retry_after} if self.failing_retry_after is not None else None
            return status_response(self.failing_status, "InternalError", "the fake API is failing on purpose", details)
        if record.is_pods and (not record.is_watch or record.is_streaming_list) and self.list_gate is not None:
            await self.list_gate.wait()
        if self.token and request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return status_response(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "major": "1",
                "minor": "37",
                "gitVersion": "v1.37.0-fake",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def _api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}],
            }
        )

    async def _api_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def _api_resources(self, request: web.Request) -> web.Response:
        pods = {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["po"],
            "categories": ["all"],
        }
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": [pods]})

    async def _pod(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.pods:
            return status_response(404, "NotFound", f'pods "{key[1]}" not found')
        return web.Response(body=self.pods[key].body, content_type="application/json")
