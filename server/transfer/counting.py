"""An observer that passes the engine's reports on as plain values, to counters that know nothing of
the engine (the server's metrics: server/ops/transfermetrics.py's TransferStats has these methods)."""

from __future__ import annotations

from typing import Protocol

from .observer import TransferEvent, TransferObserver


class Counters(Protocol):
    def transfer(self, kind: str, result: str, records: int, size: int, duration: float) -> None: ...
    def signed_query(self, result: str) -> None: ...
    def notify(self, result: str) -> None: ...
    def journal(self, zone: str, changes: int, size: int) -> None: ...


class CountingObserver(TransferObserver):
    def __init__(self, counters: Counters):
        self.counters = counters

    def transfer_done(self, event: TransferEvent) -> None:
        self.counters.transfer(event.type, event.result, event.records, event.bytes, event.duration)

    def signed_query(self, result: str, key: str | None) -> None:
        self.counters.signed_query(result)

    def notify_sent(self, zone: str, target: str, serial: int) -> None:
        self.counters.notify("sent")

    def notify_answered(self, zone: str, target: str, rcode: str) -> None:
        self.counters.notify("answered" if rcode == "NOERROR" else "refused")

    def notify_failed(self, zone: str, target: str) -> None:
        self.counters.notify("failed")

    def journal_size(self, zone: str, changes: int, size: int) -> None:
        self.counters.journal(zone, changes, size)
