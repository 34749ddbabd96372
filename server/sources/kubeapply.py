"""Watch lines decoded and handed on: events to the sink in batches, a streaming list's initial events to a collection.

Bad lines are skipped, never fatal: malformed ones are counted as API errors,
and each kind of bad line is logged a few times, then summarised (RateLimitedWarning).
"""

from __future__ import annotations

import logging

from ..errors import RateLimitedWarning
from ..model import KubeObserver, PodRecord, PodSink
from .kubedecode import WATCH_EVENT_TYPES, ApiError, WatchEvent, decode_event, status_error
from .kubelines import Line, is_blank

LOG = logging.getLogger("pod_identity_dns.kube")


class NotAStreamingList(ApiError):
    """A streaming list request answered with something else: the API server does not implement them."""

    def __init__(self, message: str) -> None:
        super().__init__("watch_list_unsupported", message)


class InitialEvents:
    """The current state a streaming list sends: ADDED events, until the BOOKMARK annotated k8s.io/initial-events-end.

    `pods` holds those of the last lines collected, for the caller to take.
    """

    def __init__(self) -> None:
        self.pods: list[PodRecord] = []
        self.skipped = 0  # objects that are not usable pods
        self.version: str | None = None  # the ending bookmark's: the list's resourceVersion
        self.complete = False


class EventLines:
    """Decodes watch lines for one stream (`name` in logs) and applies them to its sink."""

    def __init__(self, name: str, sink: PodSink, observer: KubeObserver, warning_interval: float) -> None:
        self.name = name
        self.sink = sink
        self.observer = observer
        self._malformed = RateLimitedWarning(
            LOG, f"{name}: skipped %d more malformed watch events in the last %.0f s", interval=warning_interval
        )
        self._unusable = RateLimitedWarning(
            LOG, f"{name}: skipped %d more watch events with unusable pods in the last %.0f s", interval=warning_interval
        )
        self._unknown = RateLimitedWarning(
            LOG, f"{name}: skipped %d more watch events of unknown types in the last %.0f s", interval=warning_interval
        )

    def tick(self) -> None:
        """Summarise the warnings held back, once their interval is over (call it per batch)."""
        self._malformed.tick()
        self._unusable.tick()
        self._unknown.tick()

    def _decode(self, line: Line) -> WatchEvent | None:
        event = decode_event(line)
        if event is None:
            self.observer.api_error("malformed_event")
            self._malformed.warn("%s: skipped malformed watch event: %.120r", self.name, bytes(line[:120]))
        return event

    def apply(self, lines: list[Line]) -> tuple[str | None, Exception | None]:
        """Apply the events in these lines to the sink as one batch (the last state of each pod wins).

        Returns the version of the last event applied (None if none had one),
        and for an ERROR event what its Status means (the events before it are
        applied, those after it are not), for the caller to raise.
        """
        batch: dict[str, PodRecord | None] = {}  # uid -> its last state, None once deleted
        stripped: list[PodRecord] = []
        kinds: dict[str, int] = {}  # events counted by kind, reported once per batch
        version: str | None = None
        error: Exception | None = None
        for line in lines:
            if is_blank(line):
                continue
            event = self._decode(line)
            if event is None:
                continue
            kind = event.kind
            if event.status is not None:  # an ERROR event
                kinds[kind] = kinds.get(kind, 0) + 1
                status = event.status
                error = status_error(status.code, status, f"watch_error_{status.code}", status.retry_after)
                break
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
        if batch:
            deletes = [uid for uid, pod in batch.items() if pod is None]
            self.sink.update([pod for pod in batch.values() if pod is not None], deletes, version=version)
        if stripped:
            self.observer.applied(stripped)
        for kind, seen in kinds.items():
            self.observer.event(kind, seen)
        return version, error

    def collect(self, lines: list[Line], initial: InitialEvents) -> list[Line]:
        """Add a streaming list's initial events to `initial`; returns the lines after the one that ends them.

        These are the list, not changes: they are not counted as watch events.
        An ERROR event raises what its Status means; a change (MODIFIED,
        DELETED) or a plain bookmark before the end means the API server
        ignored sendInitialEvents (NotAStreamingList).
        """
        pods = initial.pods
        for index, line in enumerate(lines):
            if is_blank(line):
                continue
            event = self._decode(line)
            if event is None:
                continue
            kind = event.kind
            if event.status is not None:
                self.observer.event(kind)
                status = event.status
                raise status_error(status.code, status, f"watch_error_{status.code}", status.retry_after)
            if kind == "ADDED":
                if event.pod is None:
                    initial.skipped += 1
                else:
                    pods.append(event.pod)
            elif kind == "BOOKMARK" and event.initial_events_end:
                initial.version = event.version
                initial.complete = True
                return lines[index + 1 :]
            elif kind == "BOOKMARK" or kind in WATCH_EVENT_TYPES:
                # An API server that has streaming lists sends neither before the end of the initial events.
                raise NotAStreamingList(f"a {kind} event came before the end of the initial events: sendInitialEvents was ignored")
            else:
                self._unknown.warn("%s: skipped watch event of unknown type %r", self.name, kind)
        return []
