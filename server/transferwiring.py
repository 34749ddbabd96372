"""Zone transfers in the running server: the engine's settings from the Config, the service over the
zone store, and its observer hooks passed on to the metrics' plain counters.

Loaded only when a transfer option is set (Config.transfers_configured): without one, AXFR and
IXFR are REFUSED by the answer path and nothing here is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .config import Config
from .transfer import TransferObserver, TransferService, TransferSettings, check_settings
from .transfer.observer import TransferEvent
from .zone.store import ZoneStore

if TYPE_CHECKING:
    from .ops.transfermetrics import TransferStats

__all__ = ["TransferService", "check_transfer_config", "make_transfer_service", "transfer_settings"]


class MetricsObserver(Protocol):
    def transfer_stats(self) -> TransferStats: ...


def transfer_settings(config: Config) -> TransferSettings:
    return TransferSettings(
        key_files=config.tsig_key_files,
        transfer_keys=config.transfer_keys,
        allow_unsigned=config.transfer_allow_unsigned,
        ixfr_journal=config.ixfr_journal,
        ixfr_journal_bytes=config.ixfr_journal_bytes,
        notify=config.notify,
        notify_key=config.notify_key,
    )


def check_transfer_config(config: Config) -> None:
    """Read the key files and check the names they must hold: TransferSetupError (one line) if not."""
    check_settings(transfer_settings(config))


def make_transfer_service(
    config: Config, store: ZoneStore, answer: Callable[[bytes, bool], bytes | None], metrics: MetricsObserver | None = None
) -> TransferService:
    """The engine over the real zone store; `answer` is the ordinary answer path (signed queries, SOA)."""
    observer: TransferObserver | None = None
    if metrics is not None:
        stats = metrics.transfer_stats()
        for zone in store.zones.values():
            stats.journal(zone.name, 0, 0)
        observer = _Counting(stats)
    return TransferService(transfer_settings(config), store, answer, observer)


class _Counting(TransferObserver):
    """The engine's hooks, passed on as plain values (ops knows nothing of the engine's types)."""

    def __init__(self, stats: TransferStats):
        self.stats = stats

    def transfer_done(self, event: TransferEvent) -> None:
        self.stats.transfer(event.type, event.result, event.records, event.bytes, event.duration)

    def signed_query(self, result: str, key: str | None) -> None:
        self.stats.signed_query(result)

    def notify_sent(self, zone: str, target: str, serial: int) -> None:
        self.stats.notify("sent")

    def notify_answered(self, zone: str, target: str, rcode: str) -> None:
        self.stats.notify("answered" if rcode == "NOERROR" else "refused")

    def notify_failed(self, zone: str, target: str) -> None:
        self.stats.notify("failed")

    def journal_size(self, zone: str, changes: int, size: int) -> None:
        self.stats.journal(zone, changes, size)
