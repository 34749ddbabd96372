"""Prometheus metrics and the Observer, App's hook for what /metrics shows.

Per query nothing touches prometheus_client: the wrapped handler adds to plain
lists of integers, and a custom collector turns them into samples when
/metrics is scraped. State (records, conflicts, serials) is read at scrape
time through the ServerStatus the App attaches (status.py).
"""

from __future__ import annotations

import operator
import platform
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .. import __version__
from ..serve.tcppool import CLOSE_REASONS
from ..serve.transport import on_first
from ..zone import wire
from .transfermetrics import TransferStats

if TYPE_CHECKING:
    from ..model import PodRecord
    from ..serve.transport import Handler
    from .status import ServerStatus

# CoreDNS's buckets: request duration 0.25 ms doubling 16 times, sizes in bytes.
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000)
# Kubernetes timestamps have whole seconds, so sub-second buckets would say nothing.
PROGRAMMING_BUCKETS = (1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)

QTYPE_LABELS = ("A", "AAAA", "PTR", "SOA", "NS", "ANY", "TXT", "other")
_QTYPE_INDEX = {t.to_bytes(2, "big"): i for i, t in enumerate((wire.A, wire.AAAA, wire.PTR, wire.SOA, wire.NS, wire.ANY, wire.TXT))}
_OTHER_QTYPE = QTYPE_LABELS.index("other")
_PROTOS = ("udp", "tcp")
_FAMILIES = ("1", "2")  # CoreDNS's labels: 1 = IPv4, 2 = IPv6
# Header rcodes 0-15, then BADVERS (16), which only the OPT record can carry.
RCODE_LABELS = (
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "RCODE11",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
    "BADVERS",
)
_BADVERS_INDEX = 16
_BADVERS_SLOT = 256  # in DnsStats.rcodes
_ALWAYS_SHOWN_RCODES = frozenset(range(6))
# What a pod file's load may skip (server/sources/problems.py REASONS; a test holds the two together).
FILE_SKIP_REASONS = ("invalid_name", "invalid_ip", "extra_ips", "duplicate_uid", "not_a_pod", "invalid_port")
KUBE_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
EVENT_POST_RESULTS = ("posted", "updated", "dropped", "failed")  # Kubernetes Events about conflicts


def _le(bounds: Iterable[float]) -> tuple[str, ...]:
    return tuple(floatToGoString(b) for b in bounds) + ("+Inf",)


_DURATION_LE, _SIZE_LE, _PROGRAMMING_LE = _le(DURATION_BUCKETS), _le(SIZE_BUCKETS), _le(PROGRAMMING_BUCKETS)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], le: tuple[str, ...], counts: list[int], total: float) -> None:
    """Per-slot counts (one per bucket, +Inf last) as Prometheus's cumulative buckets."""
    cumulative, running = [], 0
    for bound, count in zip(le, counts):
        running += count
        cumulative.append((bound, running))
    family.add_metric(labels, cumulative, total)


class DnsStats:
    """Query counters as plain integers; `wrap` puts them around one listener's handler."""

    def __init__(self) -> None:
        self.requests = [0] * 32  # [(proto * 2 + family) * 8 + qtype]
        self.rcodes = [0] * 257  # by reply byte 3 (flags RA..CD and rcode; we set no flags), BADVERS last
        # Queries slower than the first bucket, by bucket; the first bucket's count is the
        # rest of the requests, so the common case costs no increment here.
        self.slow = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sums: list[Callable[[], float]] = []
        # Counts per exact message size, per proto: one increment per query gives both the
        # histogram buckets and the byte sum, added up only when scraped.
        self.request_sizes = ([0] * 65536, [0] * 65536)
        self.response_sizes = ([0] * 65536, [0] * 65536)
        self.listeners: set[tuple[int, int]] = set()  # (proto, family) indexes wrapped so far

    def wrap(self, handler: Handler, family: int, tcp: bool) -> Handler:
        """`handler` with every call counted, for a listener of this address family and transport.

        Every operation here costs ~30-60 ns on every query; bench/metrics_overhead.py measures them.
        """
        proto, v6 = int(tcp), int(family == socket.AF_INET6)
        self.listeners.add((proto, v6))
        base = (proto * 2 + v6) * 8
        request_index = {qtype: base + index for qtype, index in _QTYPE_INDEX.items()}.get
        other = base + _OTHER_QTYPE
        requests, rcodes, slow = self.requests, self.rcodes, self.slow
        request_sizes, response_sizes = self.request_sizes[proto], self.response_sizes[proto]
        bounds, fastest = DURATION_BUCKETS, DURATION_BUCKETS[0]
        clock = time.perf_counter
        total = 0.0

        def record_reply(reply: bytes, start: float) -> None:
            """Duration, rcode and size of a reply: for a stream, of its first message (when it is ready)."""
            nonlocal total
            elapsed = clock() - start
            total += elapsed
            if elapsed > fastest:
                slow[bisect_left(bounds, elapsed)] += 1
            rcode = reply[3]
            if not rcode and reply[11] and reply[-6]:
                rcode = _BADVERS_SLOT
            rcodes[rcode] += 1
            response_sizes[len(reply)] += 1

        def counted(query: bytes, tcp: bool, peer):
            nonlocal total
            start = clock()
            reply: Any = handler(query, tcp, peer)
            elapsed = clock() - start
            # The qtype, found from the end where the layout allows: find() alone would cost a
            # third of all the metrics work.
            try:
                if not query[11]:  # no additional records: the question ends the packet
                    qtype = query[-4:-2]
                elif query[-9] == 41 and not query[-10]:  # ends with an OPT record without options
                    qtype = query[-15:-13]
                else:  # the name ends at its first zero byte (when it is a plain name)
                    end = query.find(0, 12)
                    qtype = query[end + 1 : end + 3] if end > 0 else b""
            except IndexError:  # shorter than a header
                qtype = b""
            requests[request_index(qtype, other)] += 1
            request_sizes[len(query)] += 1
            if reply is not None:
                try:
                    rcode = reply[3]
                except TypeError:  # a stream of messages (TCP): one response, counted at its first message
                    return on_first(reply, lambda first: record_reply(first, start))
                # Our OPT is always last, without options: its extended rcode is 6 bytes from the end.
                if not rcode and reply[11] and reply[-6]:
                    rcode = _BADVERS_SLOT
                rcodes[rcode] += 1
                response_sizes[len(reply)] += 1
            total += elapsed
            if elapsed > fastest:
                slow[bisect_left(bounds, elapsed)] += 1
            return reply

        self._duration_sums.append(lambda: total)
        return counted

    def families(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "poddns_dns_requests",
            "DNS queries received, by transport, address family and query type.",
            labels=["proto", "family", "type"],
        )
        for proto, v6 in sorted(self.listeners):
            base = (proto * 2 + v6) * 8
            for index, qtype in enumerate(QTYPE_LABELS):
                requests.add_metric([_PROTOS[proto], _FAMILIES[v6], qtype], self.requests[base + index])
        yield requests

        by_rcode = [0] * len(RCODE_LABELS)
        for flags, count in enumerate(self.rcodes[:256]):
            by_rcode[flags & 15] += count
        by_rcode[_BADVERS_INDEX] = self.rcodes[_BADVERS_SLOT]
        responses = CounterMetricFamily("poddns_dns_responses", "DNS replies sent, by response code.", labels=["rcode"])
        for index, count in enumerate(by_rcode):
            if count or index in _ALWAYS_SHOWN_RCODES:
                responses.add_metric([RCODE_LABELS[index]], count)
        yield responses

        duration = HistogramMetricFamily(
            "poddns_dns_request_duration_seconds",
            "Time spent answering one query (in the handler, without socket I/O).",
            labels=[],
        )
        counts = list(self.slow)
        counts[0] = sum(self.requests) - sum(self.slow)
        _add_histogram(duration, [], _DURATION_LE, counts, sum(read() for read in self._duration_sums))
        yield duration

        for name, doc, by_proto in (
            ("poddns_dns_request_size_bytes", "Size of the queries received, in bytes.", self.request_sizes),
            ("poddns_dns_response_size_bytes", "Size of the replies sent, in bytes.", self.response_sizes),
        ):
            family = HistogramMetricFamily(name, doc, labels=["proto"])
            for proto in sorted({proto for proto, _ in self.listeners}):
                counts, total = _size_buckets(by_proto[proto])
                _add_histogram(family, [_PROTOS[proto]], _SIZE_LE, counts, total)
            yield family


def _size_buckets(by_size: list[int]) -> tuple[list[int], int]:
    """Per-bucket counts (+Inf last) and the byte sum, from counts per exact size."""
    counts, total, low = [], 0, 0
    for high in SIZE_BUCKETS + (len(by_size) - 1,):
        part = by_size[low : high + 1]
        count = sum(part)
        counts.append(count)
        if count:  # most buckets are empty: multiply only where there is something
            total += sum(map(operator.mul, range(low, high + 1), part))
        low = high + 1
    return counts, total


class KubeStats:
    """What the Kubernetes source reports; fed by a KubeObserver subclass (see `Observer.kube_observer`)."""

    def __init__(self) -> None:
        self.events = dict.fromkeys(KUBE_EVENT_TYPES, 0)
        self.relists = 0
        self.watch_restarts = 0
        self.api_errors: dict[str, int] = {}
        self.events_posted = dict.fromkeys(EVENT_POST_RESULTS, 0)
        self.synced = False
        self.last_event: float | None = None
        self.programming = [0] * (len(PROGRAMMING_BUCKETS) + 1)
        self.programming_sum = 0.0

    def event(self, kind: str, count: int = 1) -> None:
        key = kind if kind in self.events else "other"
        self.events[key] = self.events.get(key, 0) + count
        self.last_event = time.time()

    def applied(self, pods: list[PodRecord]) -> None:
        now = time.time()
        for pod in pods:
            if pod.changed_at is None:
                continue
            delay = now - pod.changed_at
            # A terminating pod's deletionTimestamp is the end of its grace period, in the future:
            # it dates no change, so it is not observed (nor is a delay made negative by clock skew).
            if delay < 0:
                continue
            self.programming[bisect_left(PROGRAMMING_BUCKETS, delay)] += 1
            self.programming_sum += delay

    def families(self) -> Iterable[Metric]:
        events = CounterMetricFamily("poddns_kubernetes_events", "Pod watch events received, by type.", labels=["type"])
        for kind, count in self.events.items():
            events.add_metric([kind], count)
        yield events
        yield CounterMetricFamily(
            "poddns_kubernetes_relists", "Complete lists of pods after the first (410 Gone, broken watches).", value=self.relists
        )
        yield CounterMetricFamily(
            "poddns_kubernetes_watch_restarts", "Pod watches that ended normally and were resumed.", value=self.watch_restarts
        )
        errors = CounterMetricFamily(
            "poddns_kubernetes_api_errors", "Failed Kubernetes API requests, by kind of failure.", labels=["error"]
        )
        for category, count in sorted(self.api_errors.items()):
            errors.add_metric([category], count)
        yield errors
        posted = CounterMetricFamily(
            "poddns_kubernetes_events_posted",
            "Kubernetes Events about pods that lost a name or an address (IdentityConflict), by result: posted (created), "
            "updated (a repeat bumped its series), dropped (the queue was full), failed (refused, or the API unreachable).",
            labels=["result"],
        )
        for result, count in self.events_posted.items():
            posted.add_metric([result], count)
        yield posted
        yield GaugeMetricFamily(
            "poddns_kubernetes_synced",
            "1 once every watched namespace has been listed completely, else 0.",
            value=1 if self.synced else 0,
        )
        if self.last_event is not None:
            yield GaugeMetricFamily(
                "poddns_kubernetes_last_event_timestamp_seconds",
                "Unix time of the last pod watch event received.",
                value=self.last_event,
            )
        programming = HistogramMetricFamily(
            "poddns_programming_duration_seconds",
            "From a pod's newest API timestamp (creation, deletion, condition transition) to the moment the registry "
            "applied its watch event. Kubernetes timestamps have 1-second resolution: an upper bound, 1 s granularity. "
            "Timestamps in the future (a terminating pod's deletionTimestamp) are not observed.",
            labels=[],
        )
        _add_histogram(programming, [], _PROGRAMMING_LE, self.programming, self.programming_sum)
        yield programming


def _kube_metrics_observer(stats: KubeStats):
    """A server.kube.KubeObserver feeding `stats`; kube.py (and kubernetes) load only when the cluster is used."""
    from ..model import KubeObserver

    class KubeMetrics(KubeObserver):
        def event(self, kind: str, count: int = 1) -> None:
            stats.event(kind, count)

        def relist(self) -> None:
            stats.relists += 1

        def watch_restart(self) -> None:
            stats.watch_restarts += 1

        def synced(self, value: bool) -> None:
            stats.synced = bool(value)

        def api_error(self, error: str) -> None:
            stats.api_errors[error] = stats.api_errors.get(error, 0) + 1

        def applied(self, pods: list[PodRecord]) -> None:
            stats.applied(pods)

        def event_posted(self, result: str) -> None:
            stats.events_posted[result] = stats.events_posted.get(result, 0) + 1

    return KubeMetrics()


class Observer:
    """Everything /metrics shows (App's `observer`); the App attaches its ServerStatus before serving."""

    def __init__(self) -> None:
        self.dns = DnsStats()
        self.kube: KubeStats | None = None
        self.transfers: TransferStats | None = None  # once the server does zone transfers or NOTIFY
        self.file_reloads: dict[tuple[str, str], int] = {}
        self.file_skipped: dict[str, dict[str, int]] = {}  # file -> reason -> items the last load skipped
        self.status: ServerStatus | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # collect() below, called per scrape
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # -- App's hooks ---------------------------------------------------

    def attach(self, status: ServerStatus) -> None:
        self.status = status

    def wrap_handler(self, handler: Handler, family: int, tcp: bool) -> Handler:
        return self.dns.wrap(handler, family, tcp)

    def kube_observer(self):
        self.kube = KubeStats()
        return _kube_metrics_observer(self.kube)

    def file_items(self, kind: str, stats) -> None:
        """What the last load of a file skipped, by reason (stats: a pod file's LoadStats, read by field)."""
        self.file_skipped[kind] = dict(stats.by_reason)

    def transfer_stats(self) -> TransferStats:
        """The counters the zone transfer engine's CountingObserver feeds (App wires them)."""
        self.transfers = TransferStats()
        return self.transfers

    def file_reload(self, kind: str, result: str) -> None:
        if not any(k == kind for k, _ in self.file_reloads):
            self.file_reloads[(kind, "success")] = self.file_reloads[(kind, "error")] = 0
        self.file_reloads[(kind, result)] = self.file_reloads.get((kind, result), 0) + 1

    # -- exposition ----------------------------------------------------

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The /metrics body in the format the scraper asked for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def state_families(self) -> Iterable[Metric]:
        """Gauges read from the running server's status, computed only when scraped."""
        status = self.status
        if status is None:
            return
        counts = status.record_counts()
        records = GaugeMetricFamily("poddns_records", "Records served, by kind.", labels=["kind"])
        for kind in ("forward_names", "ptrs", "static_entries", "srv", "static_records"):
            records.add_metric([kind], counts.get(kind, 0))
        yield records
        yield GaugeMetricFamily(
            "poddns_identity_conflicts",
            "Current conflicts: names or IPs claimed by more than one pod or entry.",
            value=counts["conflicts"],
        )
        serials = GaugeMetricFamily("poddns_zone_serial", "SOA serial of each served zone.", labels=["zone"])
        for zone, serial in status.zone_serials().items():
            serials.add_metric([zone], serial)
        yield serials
        yield GaugeMetricFamily("poddns_ready", "1 while /readyz answers 200, else 0.", value=1 if status.ready else 0)
        yield GaugeMetricFamily("poddns_tcp_connections", "Open DNS TCP connections.", value=status.tcp_connections())
        closes = status.tcp_closes()
        closed = CounterMetricFamily("poddns_tcp_closed", "DNS TCP connections closed, by reason.", labels=["reason"])
        for reason in CLOSE_REASONS:
            closed.add_metric([reason], closes.get(reason, 0))
        yield closed

    def collect(self) -> Iterable[Metric]:
        """Every poddns_* family, built from the plain counters and the App's state now."""
        yield from self.dns.families()
        yield from self.state_families()
        if self.kube is not None:
            yield from self.kube.families()
        if self.transfers is not None:
            yield from self.transfers.families()
        reloads = CounterMetricFamily("poddns_file_reloads", "Loads of the pods and hosts files, by result.", labels=["file", "result"])
        for (kind, result), count in sorted(self.file_reloads.items()):
            reloads.add_metric([kind, result], count)
        yield reloads
        if self.file_skipped:
            skipped = GaugeMetricFamily(
                "poddns_file_items_skipped",
                "Items (or values of items) the last load of a file could not use, by reason.",
                labels=["file", "reason"],
            )
            for kind, by_reason in sorted(self.file_skipped.items()):
                for reason in FILE_SKIP_REASONS:
                    skipped.add_metric([kind, reason], by_reason.get(reason, 0))
            yield skipped
        info = GaugeMetricFamily("poddns_build_info", "Always 1; the labels name the version.", labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
