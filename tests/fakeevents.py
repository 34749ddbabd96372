"""The fake API's events.k8s.io/v1 Events: created and patched as the API server validates them, every write recorded.

kube.events.writes        # every POST and PATCH, with its body and the status answered
kube.events.stored        # (namespace, name) -> the Event as it is now
kube.events.forbidden = True   # answer 403, like an API server whose RBAC does not grant it
kube.events.granted            # the verbs allowed, at first those deploy/clusterrole.yaml grants; others get 403
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from tests.fakepods import invalid_response, now_rfc3339, status_response

GROUP = "events.k8s.io"
PREFIX = "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
# The fields an update may not change (ValidateEventUpdate for events.k8s.io/v1).
IMMUTABLE = ("eventTime", "action", "reason", "type", "note", "regarding", "related", "reportingController", "reportingInstance")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass
class EventWrite:
    """One request to the Events API: POST (create) or PATCH, its body, and the status answered."""

    method: str
    namespace: str
    name: str  # the Event's name (from the body for a POST, from the path for a PATCH)
    body: dict[str, Any]
    status: int
    content_type: str = ""


class FakeEvents:
    """POST and PATCH of events.k8s.io/v1 Events, validated and recorded."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[EventWrite] = []
        self.forbidden = False  # 403 for every request, as without RBAC for events
        self.granted = shipped_event_verbs()  # what else is refused with 403: the verbs deploy/'s ClusterRole lacks
        self._versions = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(PREFIX, self._create)
        router.add_patch(PREFIX + "/{name}", self._patch)
        router.add_get(PREFIX + "/{name}", self._get)

    def posted(self) -> list[EventWrite]:
        """The creates that succeeded."""
        return [w for w in self.writes if w.method == "POST" and w.status == 201]

    def patched(self) -> list[EventWrite]:
        """The patches that succeeded."""
        return [w for w in self.writes if w.method == "PATCH" and w.status == 200]

    # -- HTTP ---------------------------------------------------------------------

    def _allows(self, verb: str) -> bool:
        return not self.forbidden and verb in self.granted

    def _refuse(self, verb: str, namespace: str) -> web.Response:
        return status_response(
            403,
            "Forbidden",
            f'events.events.k8s.io is forbidden: User "system:serviceaccount:dns:pod-identity-dns" cannot {verb} resource '
            f'"events" in API group "{GROUP}" in the namespace "{namespace}"',
            {"group": GROUP, "kind": "events"},
        )

    async def _create(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            return status_response(400, "BadRequest", f"the body is not JSON: {error}")
        if not isinstance(body, dict):
            return status_response(400, "BadRequest", "the body is not an object")
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        name = str(meta.get("name") or "")
        write = EventWrite("POST", namespace, name, body, 0, request.content_type)
        self.writes.append(write)
        response = self._created(namespace, name, body, meta) if self._allows("create") else self._refuse("create", namespace)
        write.status = response.status
        return response

    def _created(self, namespace: str, name: str, body: dict[str, Any], meta: dict[str, Any]) -> web.Response:
        causes = _create_problems(namespace, name, body, meta)
        if causes:
            return invalid_response("Event", GROUP, causes, name)
        if (namespace, name) in self.stored:
            return status_response(
                409, "AlreadyExists", f'events.events.k8s.io "{name}" already exists', {"name": name, "group": GROUP, "kind": "events"}
            )
        stored = dict(body)
        self._versions += 1
        stored["metadata"] = {**meta, "namespace": namespace, "resourceVersion": str(self._versions), "creationTimestamp": now_rfc3339()}
        self.stored[(namespace, name)] = stored
        return web.Response(status=201, body=orjson.dumps(stored), content_type="application/json")

    async def _patch(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            patch = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            return status_response(400, "BadRequest", f"the body is not JSON: {error}")
        write = EventWrite("PATCH", namespace, name, patch if isinstance(patch, dict) else {}, 0, request.content_type)
        self.writes.append(write)
        response = (
            self._patched(request.content_type, namespace, name, patch) if self._allows("patch") else self._refuse("patch", namespace)
        )
        write.status = response.status
        return response

    def _patched(self, content_type: str, namespace: str, name: str, patch: Any) -> web.Response:
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return status_response(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json; got {content_type}",
            )
        old = self.stored.get((namespace, name))
        if old is None:
            return status_response(
                404, "NotFound", f'events.events.k8s.io "{name}" not found', {"name": name, "group": GROUP, "kind": "events"}
            )
        if not isinstance(patch, dict):
            return status_response(400, "BadRequest", "the patch is not an object")
        new = _merge(old, patch)
        causes = [(key, "Invalid", "field is immutable") for key in IMMUTABLE if new.get(key) != old.get(key)]
        causes += _series_problems(new)
        if causes:
            return invalid_response("Event", GROUP, causes, name)
        self._versions += 1
        new["metadata"] = {**new.get("metadata", {}), "resourceVersion": str(self._versions)}
        self.stored[(namespace, name)] = new
        return web.Response(status=200, body=orjson.dumps(new), content_type="application/json")

    async def _get(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if not self._allows("get"):
            return self._refuse("get", key[0])
        if key not in self.stored:
            return status_response(404, "NotFound", f'events.events.k8s.io "{key[1]}" not found')
        return web.Response(body=orjson.dumps(self.stored[key]), content_type="application/json")


def shipped_event_verbs() -> set[str]:
    """The verbs deploy/clusterrole.yaml grants on events.k8s.io events: the fake refuses the others, as RBAC would."""
    role = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy" / "clusterrole.yaml").read_text(encoding="utf-8"))
    return {verb for rule in role["rules"] if GROUP in rule["apiGroups"] and "events" in rule["resources"] for verb in rule["verbs"]}


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def _create_problems(namespace: str, name: str, body: dict[str, Any], meta: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What ValidateEventCreate finds wrong with an events.k8s.io/v1 Event (the rules this server can break)."""
    causes: list[tuple[str, str, str]] = []
    if not name or len(name) > 253 or not _SUBDOMAIN.match(name):
        causes.append(("metadata.name", "Invalid", "a lowercase RFC 1123 subdomain of at most 253 characters is required"))
    if meta.get("namespace") not in (None, namespace):
        causes.append(("metadata.namespace", "Invalid", "does not match the namespace of the request"))
    if not isinstance(body.get("eventTime"), str) or not _MICRO_TIME.match(body["eventTime"]):
        causes.append(("eventTime", "Required value", ""))
    if body.get("type") not in ("Normal", "Warning"):
        causes.append(("type", "Invalid", f"has invalid value: {body.get('type')}"))
    for key in ("reportingController", "reportingInstance", "action", "reason"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            causes.append((key, "Required value", ""))
        elif len(value) > 128:
            causes.append((key, "Invalid", "can have at most 128 characters"))
    if isinstance(body.get("reportingController"), str) and not _QUALIFIED.match(body["reportingController"]):
        causes.append(("reportingController", "Invalid", "must be a qualified name"))
    note = body.get("note", "")
    if not isinstance(note, str) or len(note.encode()) > 1024:
        causes.append(("note", "Invalid", "can have at most 1024 characters"))
    regarding = body.get("regarding")
    if not isinstance(regarding, dict) or regarding.get("namespace") not in (None, namespace):
        causes.append(("regarding.namespace", "Invalid", "does not match event.namespace"))
    for stale in ("deprecatedCount", "deprecatedSource", "deprecatedFirstTimestamp", "deprecatedLastTimestamp"):
        if stale in body:
            causes.append((stale, "Invalid", "needs to be unset"))
    return causes + _series_problems(body)


def _series_problems(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    series = body.get("series")
    if series is None:
        return []
    if not isinstance(series, dict):
        return [("series", "Invalid", "must be an object")]
    causes = []
    if not isinstance(series.get("count"), int) or series["count"] < 2:
        causes.append(("series.count", "Invalid", "should be at least 2"))
    if not isinstance(series.get("lastObservedTime"), str) or not _MICRO_TIME.match(series["lastObservedTime"]):
        causes.append(("series.lastObservedTime", "Required value", ""))
    return causes
