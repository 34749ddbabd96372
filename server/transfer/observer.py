"""What the transfer engine reports: hooks that do nothing by default, and one log line per transfer.

Proposed metrics for the lead's metrics module (labels bounded):
  poddns_transfers_total{type="axfr|ixfr", result="full|incremental|current|truncated|refused|notauth|
      servfail|formerr|badkey|badsig|badtime|badtrunc|aborted"}
  poddns_transfer_records_total{type}, poddns_transfer_bytes_total{type},
  poddns_transfer_duration_seconds{type} (histogram)
  poddns_tsig_queries_total{result="ok|badkey|badsig|badtime|badtrunc|formerr"} (signed ordinary queries)
  poddns_notifies_total{result="sent|answered|refused|failed"}
  poddns_ixfr_journal_changes{zone}, poddns_ixfr_journal_bytes{zone}
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger("pod_identity_dns.transfer")

REFUSAL_LOG_BURST = 20  # refusal lines per minute before they are only counted
REFUSAL_LOG_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One transfer request's outcome."""

    type: str  # "axfr" or "ixfr"
    result: str  # see the module docstring
    zone: str  # text with trailing dot ("" when the request named no served zone)
    peer: str
    key: str | None  # the TSIG key name, None when unsigned
    client_serial: int | None  # the IXFR client's serial
    serial: int | None  # the serial sent
    records: int
    bytes: int
    messages: int
    duration: float  # seconds, from the request to the last message taken by the transport
    transport: str  # "tcp" or "udp"


class TransferObserver:
    """Override what you need; every hook is called on the event loop and must be cheap."""

    def transfer_done(self, event: TransferEvent) -> None:
        pass

    def signed_query(self, result: str, key: str | None) -> None:
        pass

    def notify_sent(self, zone: str, target: str, serial: int) -> None:
        pass

    def notify_answered(self, zone: str, target: str, rcode: str) -> None:
        pass

    def notify_failed(self, zone: str, target: str) -> None:
        pass

    def journal_size(self, zone: str, changes: int, size: int) -> None:
        pass


class TransferLog:
    """The log line of each transfer. Refusals are rate-limited: a flood of refused UDP IXFRs
    must not flood the log (they are still counted by the observer)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._window_start = -REFUSAL_LOG_WINDOW
        self._in_window = 0
        self._suppressed = 0

    def transfer(self, event: TransferEvent) -> None:
        refused = event.result not in ("full", "incremental", "current", "aborted")
        if refused and not self._admit():
            return
        serials = f"{'-' if event.client_serial is None else event.client_serial}->{'-' if event.serial is None else event.serial}"
        log.info(
            "transfer %s %s zone=%s peer=%s key=%s serial=%s records=%d bytes=%d messages=%d duration=%.1fms via %s",
            event.type.upper(),
            event.result,
            event.zone or "-",
            event.peer,
            event.key or "-",
            serials,
            event.records,
            event.bytes,
            event.messages,
            event.duration * 1000,
            event.transport,
        )

    def _admit(self) -> bool:
        now = self.clock()
        if now - self._window_start >= REFUSAL_LOG_WINDOW:
            if self._suppressed:
                log.info("transfer refusals: %d more not logged in the last %.0f s", self._suppressed, REFUSAL_LOG_WINDOW)
            self._window_start, self._in_window, self._suppressed = now, 0, 0
        if self._in_window >= REFUSAL_LOG_BURST:
            self._suppressed += 1
            return False
        self._in_window += 1
        return True


def peer_text(peer: tuple) -> str:
    if not peer:
        return "-"
    return f"{peer[0]}#{peer[1]}" if len(peer) > 1 else str(peer[0])
