"""Zone transfer, TSIG and NOTIFY metrics as plain counters, turned into samples when /metrics is scraped.

The transfer engine reports through its own observer hooks; its CountingObserver (server/transfer/
counting.py) passes them on to TransferStats as plain values, so ops imports nothing of server.transfer. Every label takes a small fixed set of
values: a result outside the known ones is counted as "other", and zones are the served zones.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

TRANSFER_TYPES = ("axfr", "ixfr")
TRANSFER_RESULTS = (
    "full",
    "incremental",
    "current",
    "truncated",
    "aborted",
    "refused",
    "notauth",
    "servfail",
    "formerr",
    "badkey",
    "badsig",
    "badtime",
    "badtrunc",
    "other",
)
TSIG_RESULTS = ("ok", "badkey", "badsig", "badtime", "badtrunc", "formerr", "other")
NOTIFY_RESULTS = ("sent", "answered", "refused", "failed")
# A transfer of one change takes a millisecond; of 100k pods, a second or two; a slow reader, minutes.
TRANSFER_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LE = tuple(floatToGoString(b) for b in TRANSFER_BUCKETS) + ("+Inf",)


class TransferStats:
    """Counters of transfers (by type and result), their records, bytes and durations, signed queries,
    NOTIFY messages, and the size of each zone's IXFR journal."""

    def __init__(self) -> None:
        self.transfers = {(kind, result): 0 for kind in TRANSFER_TYPES for result in TRANSFER_RESULTS}
        self.records = dict.fromkeys(TRANSFER_TYPES, 0)
        self.bytes = dict.fromkeys(TRANSFER_TYPES, 0)
        self.durations = {kind: [0] * (len(TRANSFER_BUCKETS) + 1) for kind in TRANSFER_TYPES}
        self.duration_sums = dict.fromkeys(TRANSFER_TYPES, 0.0)
        self.tsig = dict.fromkeys(TSIG_RESULTS, 0)
        self.notifies = dict.fromkeys(NOTIFY_RESULTS, 0)
        self.journals: dict[str, tuple[int, int]] = {}  # zone -> (changes, bytes)

    def transfer(self, kind: str, result: str, records: int, size: int, duration: float) -> None:
        """One transfer request's outcome; records, bytes and duration only for those that sent a zone."""
        if kind not in self.records:
            return
        key = (kind, result if result in TRANSFER_RESULTS else "other")
        self.transfers[key] += 1
        if result in ("full", "incremental", "aborted"):
            self.records[kind] += records
            self.bytes[kind] += size
            self.durations[kind][bisect_left(TRANSFER_BUCKETS, duration)] += 1
            self.duration_sums[kind] += duration

    def signed_query(self, result: str) -> None:
        self.tsig[result if result in self.tsig else "other"] += 1

    def notify(self, result: str) -> None:
        if result in self.notifies:
            self.notifies[result] += 1

    def journal(self, zone: str, changes: int, size: int) -> None:
        self.journals[zone] = (changes, size)

    def families(self) -> Iterable[Metric]:
        transfers = CounterMetricFamily(
            "poddns_transfers",
            "Zone transfer requests (AXFR, IXFR) by type and result: full, incremental, current (the client "
            "is up to date), truncated (UDP: the current SOA only), aborted (the client went away), or why it was refused.",
            labels=["type", "result"],
        )
        for (kind, result), count in self.transfers.items():
            if count or result in ("full", "refused") or (kind, result) == ("ixfr", "incremental"):
                transfers.add_metric([kind, result], count)
        yield transfers
        records = CounterMetricFamily("poddns_transfer_records", "Records sent in zone transfers, by type.", labels=["type"])
        size = CounterMetricFamily("poddns_transfer_bytes", "Bytes of DNS messages sent in zone transfers, by type.", labels=["type"])
        duration = HistogramMetricFamily(
            "poddns_transfer_duration_seconds",
            "From a transfer request to its last message taken by the transport, by type (transfers that sent a zone).",
            labels=["type"],
        )
        for kind in TRANSFER_TYPES:
            records.add_metric([kind], self.records[kind])
            size.add_metric([kind], self.bytes[kind])
            cumulative, running = [], 0
            for bound, count in zip(_LE, self.durations[kind]):
                running += count
                cumulative.append((bound, running))
            duration.add_metric([kind], cumulative, self.duration_sums[kind])
        yield records
        yield size
        yield duration
        tsig = CounterMetricFamily("poddns_tsig_queries", "TSIG-signed queries other than transfers, by result.", labels=["result"])
        for result, count in self.tsig.items():
            tsig.add_metric([result], count)
        yield tsig
        notifies = CounterMetricFamily(
            "poddns_notifies",
            "NOTIFY messages: sent (each try), answered (NOERROR), refused (answered with an error), failed (no answer after the eight quick tries; resent every 5 minutes from then on).",
            labels=["result"],
        )
        for result, count in self.notifies.items():
            notifies.add_metric([result], count)
        yield notifies
        changes = GaugeMetricFamily("poddns_ixfr_journal_changes", "Changes the IXFR journal holds, by zone.", labels=["zone"])
        held = GaugeMetricFamily("poddns_ixfr_journal_bytes", "Bytes of records the IXFR journal holds, by zone.", labels=["zone"])
        for zone, (count, stored) in sorted(self.journals.items()):
            changes.add_metric([zone], count)
            held.add_metric([zone], stored)
        yield changes
        yield held
