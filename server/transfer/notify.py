"""NOTIFY (RFC 1996): tell the secondaries that a zone changed, from a UDP socket of its own.

A zone whose serial moves is announced to every target at most once per
`interval` (a burst of commits becomes one NOTIFY with the latest serial).
Each NOTIFY is resent with growing pauses until the target answers with a
response that matches its ID, opcode and zone (and TSIG, when signed); a newer
serial supersedes the retries of an older one. After the last pause it counts
as failed (logged, the metric) and is resent every LATE_PAUSE until answered
or superseded (one pending NOTIFY per zone and target, however long).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from .encoder import Record
from .keys import TsigKey
from .observer import TransferObserver

log = logging.getLogger("pod_identity_dns.transfer")

RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0)  # after each send: 8 sends in about two minutes
LATE_PAUSE = 300.0  # then one send every five minutes until answered
OPCODE_NOTIFY = 4
MAX_RESPONSE_RECORDS = 8


@dataclass
class _Pending:
    apex: bytes
    target: tuple[str, int]
    query_id: int
    serial: int
    wire: bytes
    mac: bytes | None
    sends: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, sender: NotifySender):
        self.sender = sender

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.sender.received(data, addr)
        except Exception:  # one odd datagram must not stop the sender
            log.exception("internal error reading a NOTIFY response from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("NOTIFY socket error: %s", exc)


class NotifySender:
    """NOTIFY of changed zones to fixed targets; start() opens its sockets, stop() closes them."""

    def __init__(
        self,
        targets: tuple[tuple[str, int], ...],
        key: TsigKey | None,
        soa_of: Callable[[bytes], Record],
        observer: TransferObserver | None = None,
        interval: float = 1.0,
        pauses: tuple[float, ...] = RETRY_PAUSES,
        late_pause: float = LATE_PAUSE,
    ):
        self.targets = tuple((ipaddress.ip_address(host).compressed, port) for host, port in targets)
        self.key = key
        self.soa_of = soa_of
        self.observer = observer or TransferObserver()
        self.interval = interval
        self.pauses = pauses
        self.late_pause = late_pause
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._last_round: dict[bytes, float] = {}
        self._scheduled: dict[bytes, asyncio.TimerHandle] = {}
        self._pending: dict[tuple[bytes, tuple[str, int]], _Pending] = {}
        self._by_id: dict[tuple[str, int, int], _Pending] = {}

    async def start(self, apexes=()) -> None:
        loop = asyncio.get_running_loop()
        for family in {socket.AF_INET6 if ":" in host else socket.AF_INET for host, _ in self.targets}:
            local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Socket(self), local_addr=local, family=family)
            self._transports[family] = transport
        for apex in apexes:
            self.changed(apex)

    async def stop(self) -> None:
        for handle in self._scheduled.values():
            handle.cancel()
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._scheduled.clear()
        self._pending.clear()
        self._by_id.clear()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def changed(self, apex: bytes) -> None:
        """A zone's serial moved: announce it now, or once a second has passed since the last round."""
        if not self._transports or apex in self._scheduled:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_round.get(apex, -1e9) + self.interval - time.monotonic())
        self._scheduled[apex] = loop.call_later(delay, self._round, apex)

    def pending(self) -> int:
        """NOTIFYs sent and not yet answered (a target that never answers stays pending, one per zone)."""
        return len(self._pending)

    def _round(self, apex: bytes) -> None:
        self._scheduled.pop(apex, None)
        self._last_round[apex] = time.monotonic()
        soa = self.soa_of(apex)
        serial = int.from_bytes(soa.rdata[-20:-16], "big")
        for target in self.targets:
            old = self._pending.pop((apex, target), None)
            if old is not None:
                self._forget(old)
            query_id = secrets.randbelow(0x10000)
            wire, mac = self._message(apex, soa, query_id)
            pending = _Pending(apex, target, query_id, serial, wire, mac)
            self._pending[(apex, target)] = pending
            self._by_id[(target[0], target[1], query_id)] = pending
            self._send(pending)

    def _message(self, apex: bytes, soa: Record, query_id: int) -> tuple[bytes, bytes | None]:
        name = dns.name.from_wire(apex, 0)[0]
        message = dns.message.Message(id=query_id)
        message.set_opcode(dns.opcode.NOTIFY)
        message.flags |= dns.flags.AA
        message.find_rrset(message.question, name, dns.rdataclass.IN, dns.rdatatype.SOA, create=True, force_unique=True)
        rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SOA, soa.rdata, 0, len(soa.rdata))
        message.find_rrset(message.answer, name, dns.rdataclass.IN, dns.rdatatype.SOA, create=True).add(rdata, soa.ttl)
        if self.key is not None:
            message.use_tsig(self.key.key)
        wire = message.to_wire()
        return wire, (message.mac if self.key is not None else None)

    def _send(self, pending: _Pending) -> None:
        family = socket.AF_INET6 if ":" in pending.target[0] else socket.AF_INET
        transport = self._transports.get(family)
        if transport is None:
            return
        transport.sendto(pending.wire, pending.target)
        pending.sends += 1
        self.observer.notify_sent(_zone_text(pending.apex), _target_text(pending.target), pending.serial)
        log.debug(
            "NOTIFY %s serial %d sent to %s (try %d)", _zone_text(pending.apex), pending.serial, _target_text(pending.target), pending.sends
        )
        pause = self.pauses[pending.sends - 1] if pending.sends <= len(self.pauses) else self.late_pause
        pending.timer = asyncio.get_running_loop().call_later(pause, self._timed_out, pending)

    def _timed_out(self, pending: _Pending) -> None:
        if self._pending.get((pending.apex, pending.target)) is not pending:
            return
        if pending.sends == len(self.pauses):  # every quick retry unanswered: failed, said once; then slower
            self.observer.notify_failed(_zone_text(pending.apex), _target_text(pending.target))
            log.warning(
                "NOTIFY %s serial %d to %s: no answer after %d tries; trying every %.0f s until it answers",
                _zone_text(pending.apex),
                pending.serial,
                _target_text(pending.target),
                pending.sends,
                self.late_pause,
            )
        self._send(pending)

    def received(self, data: bytes, addr) -> None:
        """A datagram on the NOTIFY socket: the answer to a pending NOTIFY, or ignored."""
        if len(data) < 12 or not data[2] & 0x80 or (data[2] >> 3) & 0xF != OPCODE_NOTIFY:
            return
        if sum(struct.unpack_from("!HHHH", data, 4)) > MAX_RESPONSE_RECORDS:
            return
        query_id = (data[0] << 8) | data[1]
        pending = self._by_id.get((_host(addr[0]), addr[1], query_id))
        if pending is None:
            return
        try:
            response = dns.message.from_wire(data, keyring=self.key.key if self.key else None, request_mac=pending.mac or b"")
        except (dns.exception.DNSException, ValueError):
            log.debug("NOTIFY response from %s does not parse or verify: ignored", addr)
            return
        if self.key is not None and not response.had_tsig:
            return
        name = dns.name.from_wire(pending.apex, 0)[0]
        if not response.question or response.question[0].name != name or response.question[0].rdtype != dns.rdatatype.SOA:
            return
        self._pending.pop((pending.apex, pending.target), None)
        self._forget(pending)
        rcode = dns.rcode.to_text(response.rcode())
        self.observer.notify_answered(_zone_text(pending.apex), _target_text(pending.target), rcode)
        if response.rcode() == dns.rcode.NOERROR:
            log.debug("NOTIFY %s serial %d answered by %s", _zone_text(pending.apex), pending.serial, _target_text(pending.target))
        else:
            log.warning(
                "NOTIFY %s serial %d: %s answered %s", _zone_text(pending.apex), pending.serial, _target_text(pending.target), rcode
            )

    def _forget(self, pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        self._by_id.pop((pending.target[0], pending.target[1], pending.query_id), None)


def _host(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.compressed


def _zone_text(apex: bytes) -> str:
    return dns.name.from_wire(apex, 0)[0].to_text()


def _target_text(target: tuple[str, int]) -> str:
    return f"{target[0]}#{target[1]}"
