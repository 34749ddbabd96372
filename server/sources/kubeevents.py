"""Kubernetes Events for pods that lose their name or an address to another pod: `kubectl describe pod` tells.

One events.k8s.io/v1 Event (reason IdentityConflict, type Warning) per
(loser, subject, winner), regarding the losing pod, related to the winning one;
a repeat of the same pair bumps the Event's series (count, lastObservedTime)
with a merge patch instead of making another, like client-go's recorder.
Reports are queued (bounded: the oldest is dropped when full) and written by
a task of their own, a token bucket apart (a burst of 25, then one a second),
so that no answer ever waits for the API; a failed write is counted, logged
a few times, and never retried for ever.

Event names are derived from the pair and the server id, so the workers of
one server (and a restart) find the Event made already (409) instead of
making another; replicas, each with its own id, each report what they see.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from ..errors import RateLimitedWarning
from ..model import KubeObserver, PodRecord
from .kubedecode import ApiError, decode_status
from .kubehttp import read_all, send
from .kubeimport import ApiClient, Configuration

LOG = logging.getLogger("pod_identity_dns.kube.events")

REASON = "IdentityConflict"
ACTION = "Publishing"  # what did not go through: publishing the pod's DNS records
CONTROLLER = "pod-identity-dns"
STATIC = "static"  # the winner of a conflict against a hosts-file entry
MERGE_PATCH = "application/merge-patch+json"
TRANSIENT_ATTEMPTS = 3  # writes tried, at most, when the API is unreachable or overloaded


@dataclass(frozen=True)
class EventSettings:
    reporting_instance: str  # the server id: which replica saw it
    burst: int = 25  # writes at once, then `per_second`
    per_second: float = 1.0
    queue_limit: int = 1000  # pairs waiting to be written; the oldest is dropped beyond
    remembered: int = 10_000  # pairs whose Event is known, for their series; the least recent is forgotten beyond
    timeout: float = 10.0  # per request
    warning_interval: float = 600.0  # a failure is logged, then one summary per this many seconds


def micro_time(when: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def deciding_rule(winner: PodRecord, loser: PodRecord) -> str:
    """Which step of the ownership order gave the winner the name or address."""
    if winner.deleting != loser.deleting:
        return "not terminating"
    if winner.created != loser.created:
        return "older creationTimestamp"
    return "same creationTimestamp, lower uid"


def pod_reference(pod: PodRecord) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid}


@dataclass
class _Pair:
    """One (loser, subject, winner): the Event it has or will have, and how often it was seen."""

    kind: str  # "name" or "ip"
    subject: str
    loser: PodRecord
    winner: PodRecord | None  # None: a static hosts entry
    name: str  # of the Event
    seen: int = 1  # occurrences reported
    written: int = 0  # occurrences the Event says (0: not created yet)
    adopted: bool = False  # found made already (409): its count is read before it is patched
    attempts: int = 0  # failed writes of the current change, in a row


class EventPoster:
    """Queues conflict reports (`report`, from the registry) and writes them as Events (`run`)."""

    def __init__(self, settings: EventSettings, observer: KubeObserver | None = None, clock=time.monotonic, wall=time.time) -> None:
        self.settings = settings
        self.observer = observer or KubeObserver()
        self.clock, self.wall = clock, wall
        self._pairs: collections.OrderedDict[tuple[str, str, str, str], _Pair] = collections.OrderedDict()  # least recent first
        self._queue: collections.OrderedDict[tuple[str, str, str, str], None] = collections.OrderedDict()  # oldest first
        self._wake = asyncio.Event()
        self._tokens = float(settings.burst)
        self._filled_at = clock()
        self._failed = RateLimitedWarning(
            LOG, "could not write %d more Kubernetes Events in the last %.0f s", burst=1, interval=settings.warning_interval
        )

    # -- reports (on the DNS side: cheap, never raise) ---------------------------------

    def report(self, kind: str, subject: str, loser: PodRecord, winner: PodRecord | None) -> None:
        """A new conflict: `loser` lost `subject` (a name or an address) to `winner` (None: a static hosts entry)."""
        try:
            key = (loser.uid, kind, subject, winner.uid if winner is not None else STATIC)
            pair = self._pairs.get(key)
            if pair is None:
                pair = self._pairs[key] = _Pair(kind, subject, loser, winner, self._event_name(key, loser))
                if len(self._pairs) > self.settings.remembered:
                    self._pairs.popitem(last=False)
            else:
                pair.seen += 1
                pair.loser, pair.winner = loser, winner
                self._pairs.move_to_end(key)
            if key not in self._queue:
                self._queue[key] = None
                if len(self._queue) > self.settings.queue_limit:
                    self._queue.popitem(last=False)
                    self.observer.event_posted("dropped")
            self._wake.set()
        except Exception:  # a bug here must not break the registry's change
            LOG.exception("could not queue a Kubernetes Event for %s", loser.key)

    def _event_name(self, key: tuple[str, str, str, str], loser: PodRecord) -> str:
        digest = hashlib.sha256("\0".join((self.settings.reporting_instance, *key)).encode()).hexdigest()[:16]
        return f"{loser.name[:200].rstrip('.-')}.{digest}"

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- writing ---------------------------------------------------------------------

    async def run(self, client_config: Configuration) -> None:
        """Write what is queued, until cancelled; a failure is counted and logged, never raised."""
        async with ApiClient(configuration=client_config) as api:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._take_token()
                self._failed.tick()
                if not self._queue:
                    continue
                key, _ = self._queue.popitem(last=False)
                pair = self._pairs.get(key)
                if pair is None or pair.written >= pair.seen:
                    continue
                try:
                    await self._write(api, pair)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._failed_write(key, pair, error)
                else:
                    pair.attempts = 0
                    if pair.written < pair.seen:  # seen again meanwhile
                        self._queue[key] = None

    async def _take_token(self) -> None:
        rate, burst = self.settings.per_second, self.settings.burst
        while True:
            now = self.clock()
            self._tokens = min(burst, self._tokens + (now - self._filled_at) * rate)
            self._filled_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / rate)

    async def _write(self, api: ApiClient, pair: _Pair) -> None:
        if pair.written == 0:
            await self._create(api, pair)
        else:
            await self._bump(api, pair)

    def _path(self, pair: _Pair, name: str | None = None) -> str:
        base = f"/apis/events.k8s.io/v1/namespaces/{pair.loser.namespace}/events"
        return f"{base}/{name}" if name else base

    async def _create(self, api: ApiClient, pair: _Pair) -> None:
        seen, now = pair.seen, self.wall()
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": pair.name, "namespace": pair.loser.namespace},
            "eventTime": micro_time(now),
            "reportingController": CONTROLLER,
            "reportingInstance": self.settings.reporting_instance[:128],
            "action": ACTION,
            "reason": REASON,
            "type": "Warning",
            "note": self._note(pair)[:1024],
            "regarding": pod_reference(pair.loser),
        }
        if pair.winner is not None:
            body["related"] = pod_reference(pair.winner)
        if seen > 1:  # seen again before it was first written
            body["series"] = {"count": seen, "lastObservedTime": micro_time(now)}
        status, text = await self._request(api, "POST", self._path(pair), body)
        if status == 409:  # made already, by a sibling worker or before a restart
            pair.written, pair.adopted = seen, True
            self.observer.event_posted("posted")
            LOG.debug("Event %s exists already", pair.name)
            return
        self._raise_unless(status, (201, 200), text)
        pair.written = seen
        self.observer.event_posted("posted")

    async def _bump(self, api: ApiClient, pair: _Pair) -> None:
        seen = pair.seen
        count = seen
        if pair.adopted:  # its count is what the Event says, plus what was seen here since
            status, text = await self._request(api, "GET", self._path(pair, pair.name), None)
            if status == 404:
                pair.written, pair.adopted = 0, False
                await self._create(api, pair)
                return
            self._raise_unless(status, (200,), text)
            count = _series_count(text) + seen - pair.written
            pair.adopted = False
        patch = {"series": {"count": count, "lastObservedTime": micro_time(self.wall())}}
        status, text = await self._request(api, "PATCH", self._path(pair, pair.name), patch, MERGE_PATCH)
        if status == 404:  # the Event expired (the API server keeps them an hour by default): a new one
            pair.written = 0
            await self._create(api, pair)
            return
        self._raise_unless(status, (200,), text)
        pair.written = seen
        self.observer.event_posted("updated")

    async def _request(
        self, api: ApiClient, method: str, path: str, body: dict[str, Any] | None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        resp = await send(api, method, path, self.settings.timeout, body=body, content_type=content_type)
        return resp.status, await read_all(resp)

    @staticmethod
    def _raise_unless(status: int, ok: tuple[int, ...], text: bytes) -> None:
        if status not in ok:
            raise ApiError(f"http_{status}", f"HTTP {status}: {decode_status(text).message}")

    def _note(self, pair: _Pair) -> str:
        what = "the name" if pair.kind == "name" else "the address"
        if pair.winner is None:
            return f"{pair.subject}: a static hosts entry keeps {what}"
        winner = pair.winner
        return f"{pair.subject}: pod {winner.namespace}/{winner.name} keeps {what} ({deciding_rule(winner, pair.loser)})"

    def _failed_write(self, key: tuple[str, str, str, str], pair: _Pair, error: Exception) -> None:
        self.observer.event_posted("failed")
        transient = isinstance(error, (aiohttp.ClientError, TimeoutError, OSError)) or (
            isinstance(error, ApiError) and error.category in ("http_429", "http_500", "http_502", "http_503", "http_504")
        )
        pair.attempts += 1
        again = transient and pair.attempts < TRANSIENT_ATTEMPTS
        if again:
            self._queue[key] = None
        else:
            pair.attempts = 0
            pair.seen = pair.written  # given up: a later repeat tries afresh
        reason = str(error) or type(error).__name__
        forbidden = isinstance(error, ApiError) and error.category == "http_403"
        hint = " (the server's role needs create, get and patch on events in events.k8s.io: deploy/clusterrole.yaml)" if forbidden else ""
        self._failed.warn(
            "could not write the Kubernetes Event for pod %s losing %s %s: %s%s; answers are not affected%s",
            pair.loser.key,
            pair.kind,
            pair.subject,
            reason,
            hint,
            "; trying again" if again else "",
        )


def _series_count(text: bytes) -> int:
    """The series count of an Event's JSON (1 when it has no series)."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return 1
    series = event.get("series") if isinstance(event, dict) else None
    count = series.get("count") if isinstance(series, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
