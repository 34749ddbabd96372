"""What the Kubernetes API answers, decoded: list pages, watch events, Status objects, and the errors they mean.

Pod JSON goes through the msgspec schemas of podjson.py; whatever they reject
is decoded again with orjson and stripped tolerantly, to the same result.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import orjson

from ..model import PodRecord
from .podjson import EVENT_DECODER, LIST_DECODER, ListMeta, item_record, record
from .pods import strip_pod

WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
# How API servers say a requested resourceVersion is newer than their data: a StatusCause
# of this type (1.18+), or this text in a cause's or the Status's message (older ones).
TOO_LARGE_CAUSE = "ResourceVersionTooLarge"
TOO_LARGE_TEXT = "Too large resource version"
# The annotation of the BOOKMARK that ends a streaming list's initial events (KEP-3157).
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class ApiError(Exception):
    """A failed API request or unusable response; retried with backoff.

    `retry_after`: seconds the API server asked us to wait (Retry-After, or a
    Status's details.retryAfterSeconds), unbounded here.
    """

    def __init__(self, category: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.retry_after = retry_after


class VersionTooLarge(ApiError):
    """The API server's data is older than the version asked for (a lagging cache, or a restore from backup)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__("resource_version_too_large", message, retry_after)


class Gone(Exception):
    """410: the resourceVersion or continue token is too old; list again."""


class ApiStatus(NamedTuple):
    """The fields of a Kubernetes Status (an error response body, or an ERROR event's object) used here."""

    code: int | None
    reason: str
    message: str
    causes: tuple[str, ...] = ()  # the reason and the message of each of details.causes
    retry_after: float | None = None  # details.retryAfterSeconds

    @property
    def too_large_version(self) -> bool:
        """Whether it says the requested resourceVersion is newer than the API server's data."""
        return TOO_LARGE_CAUSE in self.causes or any(TOO_LARGE_TEXT in text for text in (self.message, *self.causes))


def status_error(code: int | None, status: ApiStatus, category: str, retry_after: float | None) -> Exception:
    """The exception a failure means: Gone for a 410, VersionTooLarge, else ApiError(category)."""
    if code == 410:
        return Gone(status.message)
    if status.too_large_version:
        return VersionTooLarge(status.message, retry_after)
    return ApiError(category, status.message, retry_after)


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
    status: ApiStatus | None = None  # ERROR: the Status
    initial_events_end: bool = False  # a BOOKMARK that ends a streaming list's initial events


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _status_of(obj: dict[str, Any]) -> ApiStatus:
    """The ApiStatus of a decoded Status object; tolerates any JSON in any field."""
    code = obj.get("code")
    details = obj.get("details")
    details = details if isinstance(details, dict) else {}
    texts: list[str] = []
    causes = details.get("causes")
    for cause in causes if isinstance(causes, list) else ():
        if isinstance(cause, dict):
            texts.extend(text for text in (_text(cause.get("reason")), _text(cause.get("message"))) if text)
    retry = details.get("retryAfterSeconds")
    return ApiStatus(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        _text(obj.get("reason")),
        _text(obj.get("message")) or _text(obj.get("reason")) or "no message",
        tuple(texts),
        float(retry) if isinstance(retry, int | float) and not isinstance(retry, bool) and retry > 0 else None,
    )


def decode_status(body: bytes) -> ApiStatus:
    """The Status in an error response body; for anything else, its start as the message."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        return _status_of(obj)
    return ApiStatus(None, "", body[:200].decode("utf-8", "replace") or "no message")


def decode_page(body: bytes) -> Page:
    """One page of a pod list. Raises ApiError when it is not a pod list."""
    try:
        page = LIST_DECODER.decode(body)
    except msgspec.ValidationError:
        return decode_page_tolerantly(body)
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


def decode_page_tolerantly(body: bytes) -> Page:
    """decode_page without the schemas: slower, and it means the same."""
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


def decode_event(line: bytes | memoryview) -> WatchEvent | None:
    """The event in one line of a watch stream (bytes, or a view of them); None when the line is not an event."""
    try:
        event = EVENT_DECODER.decode(line)
    except msgspec.ValidationError:
        return decode_event_tolerantly(line)
    except msgspec.DecodeError:
        return None
    obj, kind = event.object, event.type
    if obj is None or kind is None:
        return None
    if kind == "ERROR":
        # Rare, and a Status has fields no pod schema knows: the tolerant path reads it.
        return decode_event_tolerantly(line)
    version = obj.metadata.resourceVersion if obj.metadata is not None else None
    if kind == "BOOKMARK":
        return WatchEvent(kind, version or None, initial_events_end=_ends_initial_events(line))
    if kind not in WATCH_EVENT_TYPES:
        return WatchEvent(kind, version or None)
    try:
        return WatchEvent(kind, version or None, record(obj))
    except ValueError as error:
        return WatchEvent(kind, version or None, unusable=str(error))


def decode_event_tolerantly(line: bytes | memoryview) -> WatchEvent | None:
    """decode_event without the schemas: slower, and it means the same."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    obj = event.get("object") if isinstance(event, dict) else None
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(obj, dict) or not isinstance(kind, str):
        return None
    if kind == "ERROR":
        return WatchEvent(kind, None, status=_status_of(obj))
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    version = version if isinstance(version, str) and version else None
    if kind == "BOOKMARK":
        return WatchEvent(kind, version, initial_events_end=_ends_initial_events(line))
    if kind not in WATCH_EVENT_TYPES:
        return WatchEvent(kind, version)
    try:
        return WatchEvent(kind, version, strip_pod(obj))
    except ValueError as error:
        return WatchEvent(kind, version, unusable=str(error))


def _ends_initial_events(line: bytes | memoryview) -> bool:
    """Whether a BOOKMARK line carries the annotation k8s.io/initial-events-end: "true".

    Bookmarks are small and rare: the substring test keeps the common ones
    cheap, and the annotation itself is read from the parsed object.
    """
    if INITIAL_EVENTS_END.encode() not in bytes(line):
        return False
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    obj = event.get("object") if isinstance(event, dict) else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and annotations.get(INITIAL_EVENTS_END) == "true"
