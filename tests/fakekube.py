"""An HTTP fake of the Kubernetes pods API, for tests and benchmarks.

Speaks the real wire protocol (checked against kubectl): one global increasing
resourceVersion, paged lists with consistent-snapshot continue tokens, label
selectors, chunked watch streams with bookmarks, 410 Gone for versions and
tokens that are too old, and "Too large resource version" for versions newer
than its data. Test hooks change pods and break things on purpose (failing
statuses with Retry-After, a restore from backup, watch quirks).
Pods are kept serialized (about a sixth of the memory of parsed JSON, and no
encoding per list or event), so a benchmark can hold 100k realistic pods.

    async with FakeKube() as kube:
        kube.add_pod(make_pod("web-0", ip="10.244.0.5", hostname="web-0", subdomain="web"))
        kube.write_kubeconfig(tmp_path / "kubeconfig")
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web

Pod = dict[str, Any]
Selector = list[Callable[[dict[str, str]], bool]]

EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)


def clone(obj: Any) -> Any:
    """A deep copy of JSON data (several times faster than copy.deepcopy)."""
    return orjson.loads(orjson.dumps(obj))


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_pod(
    name: str,
    namespace: str = "default",
    *,
    ip: str | None = "10.244.0.10",
    ips: Iterable[str] | None = None,
    hostname: str | None = None,
    subdomain: str | None = None,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    phase: str = "Running",
    host_network: bool = False,
    uid: str | None = None,
    padding: int = 0,
) -> Pod:
    """A Pod object shaped like the API's; `padding` adds about that many bytes of env entries."""
    all_ips = list(ips) if ips is not None else ([ip] if ip else [])
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if uid:
        meta["uid"] = uid
    container: dict[str, Any] = {"name": "main", "image": "registry.example/app:1.0"}
    if padding:
        # Many small objects, like a real pod's env, mounts and managedFields: parse cost is per object.
        container["env"] = [{"name": f"SETTING_{i:04d}", "value": f"value-{i:06d}-abcdefgh"} for i in range(padding // 56)]
    spec: dict[str, Any] = {"containers": [container], "nodeName": "node-1"}
    if hostname is not None:
        spec["hostname"] = hostname
    if subdomain is not None:
        spec["subdomain"] = subdomain
    if host_network:
        spec["hostNetwork"] = True
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now_rfc3339()}],
    }
    if all_ips:
        status["podIP"] = all_ips[0]
        status["podIPs"] = [{"ip": one} for one in all_ips]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}


_REQUIREMENT = re.compile(
    r"""\s*(?:
        !\s*(?P<absent>[A-Za-z0-9_./-]+)
      | (?P<key>[A-Za-z0-9_./-]+)\s*
        (?: (?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)
          | \s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
        )?
    )\s*(?:,|$)""",
    re.X,
)


def parse_selector(text: str) -> Selector:
    """A label selector (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a)`, comma = AND)."""
    tests: Selector = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _REQUIREMENT.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"unable to parse requirement: {text[pos:]!r}")
        pos = match.end()
        key = match["key"]
        if match["absent"]:
            absent = match["absent"]
            tests.append(lambda labels, k=absent: k not in labels)
        elif match["op"] in ("=", "=="):
            tests.append(lambda labels, k=key, v=match["value"]: labels.get(k) == v)
        elif match["op"] == "!=":
            tests.append(lambda labels, k=key, v=match["value"]: labels.get(k) != v)
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            if match["setop"] == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return tests


def selects(selector: Selector, pod: Pod | StoredPod) -> bool:
    labels = pod.labels if isinstance(pod, StoredPod) else pod["metadata"].get("labels") or {}
    return all(test(labels) for test in selector)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    """A Status error; like the API server, a details.retryAfterSeconds is sent as Retry-After too."""
    headers = {"Retry-After": str(details["retryAfterSeconds"])} if details and "retryAfterSeconds" in details else None
    body = orjson.dumps(status_body(code, reason, message, details))
    return web.Response(status=code, body=body, content_type="application/json", headers=headers)


def too_large_status(since: str, current: int) -> dict[str, Any]:
    """The Status of a watch from a version newer than the data, as kube-apiserver 1.18+ words it."""
    return status_body(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {since}, current: {current}",
        {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
    )


def event_line(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


@dataclass(frozen=True, slots=True)
class StoredPod:
    """One version of a pod as the fake keeps it: its JSON, and what keys and selectors need."""

    namespace: str
    name: str
    labels: dict[str, str]
    body: bytes  # the whole object, resourceVersion included

    @classmethod
    def of(cls, pod: Pod) -> StoredPod:
        meta = pod["metadata"]
        return cls(meta["namespace"], meta["name"], dict(meta.get("labels") or {}), orjson.dumps(pod))

    def obj(self) -> Pod:
        return orjson.loads(self.body)

    def event(self, kind: str) -> bytes:
        return b'{"type":"%s","object":%s}\n' % (kind.encode(), self.body)


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
        return self.query.get("watch") in ("1", "true", "True")


@dataclass(frozen=True)
class Backup:
    """What FakeKube.backup() saved: the pods and the resourceVersion at that moment."""

    version: int
    pods: dict[tuple[str, str], StoredPod]


# Ways a watch can misbehave (FakeKube.watch_quirk):
#   bookmark-then-close: every watch sends one BOOKMARK and ends, at once
#   bookmark-then-410:   every watch sends one BOOKMARK, then an ERROR 410, and ends
#   drip:                every watch sends the start of an event one byte at a time (drip_interval), never a whole line
WatchQuirk = Literal["bookmark-then-close", "bookmark-then-410", "drip"]


@dataclass
class _Change:
    version: int
    kind: str  # ADDED / MODIFIED / DELETED
    old: StoredPod | None
    new: StoredPod


@dataclass(eq=False)
class _Watch:
    namespace: str | None
    selector: Selector
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def event_for(self, change: _Change) -> bytes | None:
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
    ) -> None:
        self.gone_as = gone_as
        self.too_large_as = too_large_as
        self.token = token
        self.version = 1
        self.compacted = 0  # watches from versions below this get 410
        self.pods: dict[tuple[str, str], StoredPod] = {}
        self.history: list[_Change] = []
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
        self._watches: set[_Watch] = set()
        self._snapshots: dict[str, tuple[int, tuple[str | None, str], list[StoredPod]]] = {}
        self._snapshot_ids = itertools.count(1)
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
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._pod)
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
        change = _Change(self.version, kind, old, new)
        self.history.append(change)
        for watch in self._watches:
            line = watch.event_for(change)
            if line is not None:
                watch.queue.put_nowait(line)

    # -- test hooks: failures ----------------------------------------------

    def drop_watches(self, *, abort: bool = False) -> int:
        """End every open watch: cleanly (end of chunked body) or by closing the socket."""
        dropped = list(self._watches)
        self._watches.clear()
        for watch in dropped:
            if abort and watch.request.transport is not None:
                watch.request.transport.close()
            watch.queue.put_nowait(None)
        return len(dropped)

    def send_bookmark(self) -> None:
        """A BOOKMARK at the current version to every watch that asked for bookmarks."""
        for watch in self._watches:
            if watch.bookmarks:
                watch.queue.put_nowait(self._bookmark())

    def _bookmark(self) -> bytes:
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
        for watch in list(self._watches):
            watch.queue.put_nowait(line)
        self.drop_watches()

    def inject_line(self, raw: bytes) -> None:
        """Write raw bytes (a newline is added) into every open watch stream."""
        self.inject_bytes(raw.rstrip(b"\n") + b"\n")

    def inject_bytes(self, raw: bytes) -> None:
        """Write exactly these bytes into every open watch stream (part of a line, or several)."""
        for watch in self._watches:
            watch.queue.put_nowait(raw)

    def compact(self) -> None:
        """Forget history up to now: older watch versions and all continue tokens get 410."""
        self.compacted = self.version
        self.history = [change for change in self.history if change.version > self.compacted]
        self.expire_continue_tokens()

    def expire_continue_tokens(self) -> None:
        self._snapshots.clear()

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
        """List requests; by default only each list's first page (no continue token)."""
        lists = self.pod_requests(watch=False, namespace=namespace)
        return [r for r in lists if not (first_pages_only and r.query.get("continue"))]

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    # -- HTTP ----------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        is_pods = request.path == "/api/v1/pods" or (namespace is not None and "name" not in request.match_info)
        record = Request(request.method, request.path, dict(request.query), namespace, is_pods)
        self.requests.append(record)
        if self.before_request is not None:
            self.before_request(record)
        if self.failing_status is not None:
            details = {"retryAfterSeconds": self.failing_retry_after} if self.failing_retry_after is not None else None
            return status_response(self.failing_status, "InternalError", "the fake API is failing on purpose", details)
        if record.is_pods and not record.is_watch and self.list_gate is not None:
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

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        query = request.query
        try:
            selector = parse_selector(query.get("labelSelector", ""))
        except ValueError as error:
            return status_response(400, "BadRequest", str(error))
        if query.get("watch") in ("1", "true", "True"):
            return await self._watch(request, namespace, selector)
        return self._list(namespace, query.get("labelSelector", ""), selector, query)

    def _list(self, namespace: str | None, selector_text: str, selector: Selector, query: Any) -> web.Response:
        scope = (namespace, selector_text)
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
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
            snapshot_id, offset, version = "", 0, self.version
            items = [pod for key, pod in sorted(self.pods.items()) if (namespace is None or key[0] == namespace) and selects(selector, pod)]
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

    async def _watch(self, request: web.Request, namespace: str | None, selector: Selector) -> web.StreamResponse:
        query = request.query
        watch = _Watch(namespace, selector, query.get("allowWatchBookmarks") in ("1", "true"), request)
        since = query.get("resourceVersion", "")
        if not since.isdigit() and since != "":
            return status_response(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        first: list[bytes] = []
        gone = since not in ("", "0") and int(since) < self.compacted
        too_large = since not in ("", "0") and int(since) > self.version
        if gone:
            message = f"too old resource version: {since} ({self.compacted})"
            if self.gone_as == "status":
                return status_response(410, "Expired", message)
            first.append(event_line("ERROR", status_body(410, "Expired", message)))
        elif too_large:
            status = too_large_status(since, self.version)
            if self.too_large_as == "status":
                return status_response(504, status["reason"], status["message"], status["details"])
            first.append(event_line("ERROR", status))
        elif since in ("", "0"):
            # No version: synthetic ADDED events for the current state, like the API server.
            for key, pod in sorted(self.pods.items()):
                if (namespace is None or key[0] == namespace) and selects(selector, pod):
                    first.append(pod.event("ADDED"))
            if query.get("sendInitialEvents") == "true" and watch.bookmarks:
                first.append(event_line("BOOKMARK", self._initial_events_end()))
        else:
            for change in self.history:
                if change.version > int(since):
                    line = watch.event_for(change)
                    if line is not None:
                        first.append(line)
        ends = gone or too_large
        if self.watch_quirk in ("bookmark-then-close", "bookmark-then-410") and not ends:
            first.append(self._bookmark())
            if self.watch_quirk == "bookmark-then-410":
                first.append(event_line("ERROR", status_body(410, "Expired", f"too old resource version: {self.version}")))
            ends = True
        if not ends:
            self._watches.add(watch)  # in the same step as the replay: no change can fall between

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") and self.honour_timeout else None
        try:
            if first:
                await response.write(b"".join(first))
            if not ends:
                async with asyncio.timeout(timeout):
                    if self.watch_quirk == "drip":
                        await self._drip(watch, response)
                    else:
                        while await self._write_queued(watch, response):
                            pass
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._watches.discard(watch)
        if request.transport is not None and not request.transport.is_closing():
            try:
                await response.write_eof()
            except ConnectionError:
                pass
        return response

    async def _drip(self, watch: _Watch, response: web.StreamResponse) -> None:
        """Bytes of an event that never ends, one every drip_interval, until the watch is dropped (or times out)."""
        partial = self._bookmark().rstrip(b"\n")
        for index in itertools.count():
            while not watch.queue.empty():
                if watch.queue.get_nowait() is None:
                    return
            await response.write(partial[index % len(partial) :][:1])
            await asyncio.sleep(self.drip_interval)

    @staticmethod
    async def _write_queued(watch: _Watch, response: web.StreamResponse) -> bool:
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
                "resourceVersion": str(self.version),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }


class FakeKubeThread:
    """A FakeKube serving from its own event loop in a daemon thread, for clients in other processes.

    Hooks run on the fake's loop: `call(fn, *args)` (e.g. `call(kube.add_pod, pod)`) or `run(coroutine)`.

        with FakeKubeThread() as fake:
            fake.call(fake.kube.add_pod, make_pod("web-0"))
    """

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fakekube", daemon=True)
        self._thread.start()
        try:
            self.kube: FakeKube = self.run(self._start(options))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _start(options: dict[str, Any]) -> FakeKube:
        kube = FakeKube(**options)
        await kube.start()
        return kube

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def invoke() -> Any:
            return fn(*args, **kwargs)

        return self.run(invoke())

    def hold_lists(self) -> None:
        """Pod lists wait from now on until release_lists()."""
        self.call(setattr, self.kube, "list_gate", asyncio.Event())

    def release_lists(self) -> None:
        self.call(lambda: self.kube.list_gate.set())

    def close(self) -> None:
        try:
            self.run(self.kube.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> FakeKubeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
