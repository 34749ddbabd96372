"""The transfer engine's entry point: AXFR, IXFR and TSIG-signed queries in, replies out; NOTIFY out.

The server calls `may_concern_transfers(query)` (cheap, false for every
ordinary unsigned query) on its slow path and, when true,
`service.handle(query, peer, tcp)`: None means "not mine, answer as usual";
bytes are one reply; an async iterator yields the messages of a transfer,
which the TCP transport writes one by one, waiting for its buffer to drain.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.rdatatype

from ..zone import wire
from .chunks import ChunkCache
from .encoder import Record, record_piece
from .journal import Change, Journal
from .keys import KeyFileError, KeyRing, TsigKey, load_key_files
from .notify import NotifySender
from .observer import TransferEvent, TransferLog, TransferObserver, peer_text
from .outgoing import Done, WireRecord, axfr_pieces, first_and_rest, ixfr_records, messages, piece_messages, reply_flags, sign_one, stream
from .policy import TransferPolicy
from .serial import newer, replace_soa_serial, soa_serial
from .shape import CLASS_IN, QUERY, TYPE_AXFR, TYPE_IXFR, TYPE_SOA, Request, may_concern_transfers, scan
from .source import ZoneSource
from .tsig import FLAG_TC, FUDGE, RCODE_FORMERR, RCODE_NOTAUTH, RCODE_REFUSED, Rejected, Signer, Verified, refusal, tsig_reserve, verify
from .warmer import ChunkWarmer

log = logging.getLogger("pod_identity_dns.transfer")

__all__ = ["TransferService", "TransferSettings", "TransferSetupError", "check_settings", "may_concern_transfers"]

UDP_LIMIT = wire.EDNS_PAYLOAD
TCP_LIMIT = 65535
RCODE_SERVFAIL = 2
BUSY_WAIT = 3.0  # seconds a full transfer waits for a change written in steps to be committed
BUSY_POLL = 0.01

Reply = bytes | AsyncIterator[bytes] | None
Answer = Callable[[bytes, bool], "bytes | None"]  # (query, over TCP?) -> the ordinary reply


class TransferSetupError(Exception):
    """A one-line problem with the transfer settings (a key file, an unknown key name, a bad network)."""


@dataclass(frozen=True)
class TransferSettings:
    key_files: tuple[str, ...] = ()  # --tsig-key-file
    transfer_keys: tuple[str, ...] = ()  # --transfer-key
    allow_unsigned: tuple[str, ...] = ()  # --transfer-allow-unsigned (CIDRs)
    ixfr_journal: int = 100  # --ixfr-journal: changes kept per zone (0: IXFR always answered in full)
    ixfr_journal_bytes: int = 16 << 20  # --ixfr-journal-bytes: record bytes kept over all zones
    notify: tuple[tuple[str, int], ...] = ()  # --notify HOST:PORT
    notify_key: str | None = None  # --notify-key (default: the first transfer key)
    fudge: int = FUDGE
    message_size: int = 16384  # bytes per transfer message; all of it addressable by compression pointers
    notify_interval: float = 1.0


def check_settings(settings: TransferSettings, keys: KeyRing | None = None) -> tuple[KeyRing, TransferPolicy, TsigKey | None]:
    """The key ring, the policy and the NOTIFY key the settings name; TransferSetupError (one line) for
    the first problem. The server calls it before it binds anything, so a bad setting costs no listener."""
    try:
        ring = keys if keys is not None else load_key_files(settings.key_files)
    except KeyFileError as exc:
        raise TransferSetupError(str(exc)) from None
    for name in settings.transfer_keys:
        if name not in ring:
            raise TransferSetupError(f"--transfer-key {name}: no such key in the --tsig-key-file files")
    notify_key_name = settings.notify_key or (settings.transfer_keys[0] if settings.transfer_keys else None)
    notify_key: TsigKey | None = None
    if notify_key_name is not None:
        notify_key = ring.get(notify_key_name)
        if notify_key is None:
            raise TransferSetupError(f"--notify-key {notify_key_name}: no such key in the --tsig-key-file files")
    try:
        policy = TransferPolicy(settings.transfer_keys, settings.allow_unsigned)
    except ValueError as exc:
        raise TransferSetupError(f"--transfer-allow-unsigned: {exc}") from None
    for host, _ in settings.notify:
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise TransferSetupError(f"--notify: {exc} (HOST must be an IP address)") from None
    return ring, policy, notify_key


class TransferService:
    def __init__(
        self,
        settings: TransferSettings,
        store: ZoneSource,
        answer: Answer,
        observer: TransferObserver | None = None,
        keys: KeyRing | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.store = store
        self.answer = answer
        self.observer = observer or TransferObserver()
        self.clock = clock
        self.log = TransferLog()
        self.keys, self.policy, notify_key = check_settings(settings, keys)
        self.journal = Journal(settings.ixfr_journal, settings.ixfr_journal_bytes, self._journal_size)
        self.notifier = (
            NotifySender(settings.notify, notify_key, self.current_soa, self.observer, settings.notify_interval)
            if settings.notify
            else None
        )
        self._soa: dict[bytes, Record] = {}
        # Large zones' full transfers from kept chunks, when the store hands out views to encode them from.
        reserve = max((tsig_reserve(key) for key in map(self.keys.get, self.keys.names()) if key is not None), default=0)
        self.chunks = ChunkCache(settings.message_size - reserve) if hasattr(store, "live") else None
        self.warmer = ChunkWarmer(self.chunks, store, self._warmed_up) if self.chunks is not None else None
        self._held_notifies: dict[bytes, None] = {}  # zones whose NOTIFY waits for the first warm-up
        store.add_listener(self._committed)

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        """Open the NOTIFY socket and announce every zone (the secondaries may be behind). Before the
        store has synced nothing is announced: its first commit moves every serial, and that announces them."""
        if self.warmer is not None:
            await self.warmer.start()
        if self.notifier is not None:
            await self.notifier.start()
            if self.store.synced:
                self._notify(list(self.store.zones))

    async def stop(self) -> None:
        if self.warmer is not None:
            await self.warmer.stop()
        if self.notifier is not None:
            await self.notifier.stop()

    def _committed(self, changes: Sequence[Change]) -> None:
        self.journal.record(changes)
        if self.chunks is not None:
            for change in changes:
                self.chunks.changed(change.apex, change.removed, change.added)
        if self.warmer is not None:
            self.warmer.committed()
        self._notify([change.apex for change in changes])

    @property
    def warming_up(self) -> bool:
        """The first warm-up after the sync is under way: not ready, NOTIFYs held (server/transfer/warmer.py)."""
        return self.warmer is not None and self.warmer.warming_up

    def _warmed_up(self) -> None:
        held, self._held_notifies = list(self._held_notifies), {}
        self._notify(held)

    def _notify(self, apexes: Iterable[bytes]) -> None:
        if self.notifier is None:
            return
        for apex in apexes:
            if self.warmer is None or self.warmer.warmed:
                self.notifier.changed(apex)
            else:
                self._held_notifies[apex] = None

    def _journal_size(self, apex: bytes, changes: int, size: int) -> None:
        zone = self.store.zones.get(apex)
        self.observer.journal_size(zone.name if zone is not None else "", changes, size)

    # -- SOA records --------------------------------------------------------

    def current_soa(self, apex: bytes) -> Record:
        """The apex SOA as served now, with the zone's current serial."""
        return self.soa_at(apex, self.store.zones[apex].serial)

    def soa_at(self, apex: bytes, serial: int) -> Record:
        """The apex SOA with another serial: IXFR's old SOAs, and NOTIFY's and IXFR's current one
        without a snapshot (a snapshot of a big zone costs tens of milliseconds; this, microseconds)."""
        template = self._soa.get(apex)
        if template is None:
            template = self._soa[apex] = self._served_soa(apex) or self.store.snapshot(apex).soa
        if soa_serial(template.rdata) == serial:
            return template
        return WireRecord(template.owner, template.rtype, template.ttl, replace_soa_serial(template.rdata, serial))

    def _served_soa(self, apex: bytes) -> Record | None:
        """The SOA the ordinary answer path gives for the apex (its rdata uncompressed), or None."""
        query = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + apex + b"\x00\x06\x00\x01"
        reply = self.answer(query, True)
        if reply is None:
            return None
        try:
            answer = dns.message.from_wire(reply).answer
        except (dns.exception.DNSException, ValueError):
            return None
        for rrset in answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name.to_wire() == apex and len(rrset) == 1:
                rdata = rrset[0].to_wire()
                assert rdata is not None
                return WireRecord(apex, TYPE_SOA, rrset.ttl, rdata)
        return None

    # -- requests -----------------------------------------------------------

    may_concern = staticmethod(may_concern_transfers)

    def handle(self, query: bytes, peer: tuple, tcp: bool) -> Reply:
        """The reply to a zone transfer or a signed query; None for anything else."""
        request = scan(query)
        if request is None or request.opcode != QUERY:
            return None
        is_transfer = request.qtype in (TYPE_AXFR, TYPE_IXFR)
        verified: Verified | None = None
        if request.tsig_start is not None:
            outcome = verify(query, request, self.keys, self.clock(), self.settings.fudge)
            if isinstance(outcome, Rejected):
                if is_transfer:
                    self._report(request, peer, tcp, outcome.result, outcome.key_name or None, time.perf_counter())
                else:
                    self.observer.signed_query(outcome.result, outcome.key_name or None)
                return outcome.reply
            verified = outcome
        if not is_transfer:
            if verified is None:
                return None
            self.observer.signed_query("ok", verified.key.name)
            return self._signed_answer(request, verified, tcp)
        return self._transfer(query, request, verified, peer, tcp)

    def _signer(self, verified: Verified) -> Signer:
        """The signer of the reply to a verified request (one per reply: multi-message state)."""
        return Signer(verified.key, verified.request_mac, verified.original_id, self.settings.fudge, self.clock)

    def _signed_answer(self, request: Request, verified: Verified, tcp: bool) -> bytes | None:
        """The ordinary answer to the request without its TSIG, signed (RFC 8945 §5.3)."""
        reply = self.answer(verified.unsigned, tcp)
        if reply is None:
            return None
        signed = self._signer(verified).sign(reply)
        if len(signed) <= (TCP_LIMIT if tcp else _udp_limit(request)):
            return signed
        # RFC 8945 §5.3: when the TSIG does not fit, the question alone with TC set, signed.
        flags = ((reply[2] << 8) | reply[3]) | FLAG_TC
        opt = wire.opt_record(request.edns_do) if request.edns_payload is not None else b""
        body = reply[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
        return self._signer(verified).sign(body + request.question + opt)

    def _transfer(self, query: bytes, request: Request, verified: Verified | None, peer: tuple, tcp: bool, waited: bool = False) -> Reply:
        started = time.perf_counter()
        signer = self._signer(verified) if verified is not None else None
        key = verified.key.name if verified is not None else None

        def refuse(rcode: int, result: str) -> bytes:
            self._report(request, peer, tcp, result, key, started)
            return refusal(query, request, rcode, signer)

        if request.edns_version > 0:  # RFC 6891 §6.1.3: only version 0 is ours
            self._report(request, peer, tcp, "badvers", key, started)
            return refusal(query, request, 0, signer, ext_rcode=wire.BADVERS >> 4)
        if not self.policy.allows(key, peer):
            return refuse(RCODE_REFUSED, "refused")
        zone = self.store.zones.get(request.qname) if request.qclass == CLASS_IN else None
        if zone is None:
            return refuse(RCODE_NOTAUTH, "notauth")
        if not self.store.synced:
            return refuse(RCODE_SERVFAIL, "servfail")  # nothing is served before the first complete state, as for queries
        if request.qtype == TYPE_AXFR and not tcp:
            return refuse(RCODE_FORMERR, "formerr")  # AXFR is defined over TCP only (RFC 5936 §4.2)
        if request.qtype == TYPE_IXFR and (request.soa_serial is None or not request.soa_owner_ok):
            return refuse(RCODE_FORMERR, "formerr")  # RFC 1995 §3: the request carries the client's SOA of this zone

        apex, serial = zone.apex, zone.serial
        opt = wire.opt_record(request.edns_do) if request.edns_payload is not None else b""
        limit = self.settings.message_size if tcp else _udp_limit(request)
        limit -= signer.reserve if signer is not None else 0

        def report(result: str, done: Done) -> None:
            self._report(request, peer, tcp, result, key, started, zone.name, serial, done)

        if request.qtype == TYPE_IXFR:
            assert request.soa_serial is not None
            client = request.soa_serial
            if client == serial or newer(client, serial):
                return self._single_soa(request, apex, signer, opt, report, "current")
            difference = self.journal.difference(apex, client, serial)
            if difference is not None:
                records: Iterable[Record] = ixfr_records(self.current_soa(apex), self.soa_at(apex, client), difference)
                encoded = messages(records, request.id, request.flags, request.question, limit, opt)
                head, rest = first_and_rest(encoded)
                if len(head) == 1 and (tcp or len(head[0][0]) <= limit):
                    message = sign_one(head[0][0], signer)
                    report("incremental", Done(True, head[0][1], len(message), 1))
                    return message
                if not tcp:
                    return self._single_soa(request, apex, signer, opt, report, "truncated")
                return stream(_chain(head, rest), signer, lambda done: report("incremental" if done.completed else "aborted", done))
            if not tcp:
                return self._single_soa(request, apex, signer, opt, report, "truncated")

        chunks = self.chunks.zones.get(apex) if self.chunks is not None else None
        if chunks is not None and chunks.misplanned:
            chunks = None  # the warmer plans it again
        if chunks is not None and not chunks.unkept:
            # Every chunk is kept: they hold the committed state of this serial, half-written change or not.
            return self._chunked(request, apex, chunks, None, self.current_soa(apex), limit, opt, signer, report)
        if self.store.busy:  # a change is half written: a snapshot now would mix two states
            if waited:
                return refuse(RCODE_SERVFAIL, "servfail")
            return _when_settled(self.store, lambda: self._transfer(query, request, verified, peer, tcp, waited=True))
        snapshot = self.store.snapshot(apex)
        self._soa[apex] = snapshot.soa
        serial = snapshot.serial
        if chunks is not None:
            return self._chunked(request, apex, chunks, snapshot, snapshot.soa, limit, opt, signer, report)
        if self.warmer is not None:  # not planned yet (or no longer fits its plan): the warmer plans it now
            self.warmer.plan_soon()
        encoded = piece_messages(axfr_pieces(snapshot), request.id, request.flags, request.question, limit, opt)
        return stream(self._noted(encoded), signer, lambda done: report("full" if done.completed else "aborted", done))

    def _chunked(self, request: Request, apex: bytes, chunks, snapshot, soa: Record, limit: int, opt: bytes, signer, report) -> Reply:
        """A full transfer of the zone from its chunks (a snapshot when some must be encoded)."""
        assert self.chunks is not None
        flags = reply_flags(request.flags)
        encoded = self.chunks.messages(apex, chunks, snapshot, record_piece(soa), request.id, flags, request.question, limit, opt)
        return stream(self._noted(encoded), signer, lambda done: report("full" if done.completed else "aborted", done))

    def _noted(self, encoded: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
        return self.warmer.noted(encoded) if self.warmer is not None else encoded

    def _single_soa(self, request: Request, apex: bytes, signer: Signer | None, opt: bytes, report, result: str) -> bytes:
        """The current SOA alone (RFC 1995 §4: the client is current, or the answer does not fit UDP)."""
        soa = self.current_soa(apex)
        (message, _), *_ = messages([soa], request.id, request.flags, request.question, TCP_LIMIT, opt)
        message = sign_one(message, signer)
        report(result, Done(True, 1, len(message), 1))
        return message

    def _report(
        self,
        request: Request,
        peer: tuple,
        tcp: bool,
        result: str,
        key: str | None,
        started: float,
        zone: str = "",
        serial: int | None = None,
        done: Done | None = None,
    ) -> None:
        event = TransferEvent(
            type="axfr" if request.qtype == TYPE_AXFR else "ixfr",
            result=result,
            zone=zone,
            peer=peer_text(peer),
            key=key,
            client_serial=request.soa_serial if request.qtype == TYPE_IXFR else None,
            serial=serial,
            records=done.records if done else 0,
            bytes=done.bytes if done else 0,
            messages=done.messages if done else 0,
            duration=time.perf_counter() - started,
            transport="tcp" if tcp else "udp",
        )
        self.observer.transfer_done(event)
        self.log.transfer(event)


def _udp_limit(request: Request) -> int:
    if request.edns_payload is None:
        return 512
    return min(max(512, request.edns_payload), UDP_LIMIT)


async def _when_settled(store: ZoneSource, retry: Callable[[], Reply]) -> AsyncIterator[bytes]:
    """The reply `retry()` gives once the store is no longer busy (or after BUSY_WAIT: then SERVFAIL)."""
    deadline = time.monotonic() + BUSY_WAIT
    while store.busy and time.monotonic() < deadline:
        await asyncio.sleep(BUSY_POLL)
    reply = retry()
    if reply is None:
        return
    if isinstance(reply, bytes):
        yield reply
        return
    try:
        async for message in reply:
            yield message
    finally:
        close = getattr(reply, "aclose", None)
        if close is not None:
            await close()


def _chain(head, rest):
    yield from head
    yield from rest
