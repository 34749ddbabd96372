"""TSIG (RFC 8945): check a signed request, sign replies, and the error replies.

dnspython does the cryptography (dns.tsig.validate / dns.tsig.sign) on messages
whose shape shape.scan has already checked; the TSIG record itself is encoded
here, so hand-built transfer messages can be signed without being parsed.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from ..zone import wire
from .keys import KeyRing, TsigKey, name_wire
from .shape import Request

FUDGE = 300
RCODE_FORMERR, RCODE_REFUSED, RCODE_NOTAUTH = 1, 5, 9
BADSIG, BADKEY, BADTIME, BADTRUNC = 16, 17, 18, 22
ERROR_NAMES = {BADSIG: "badsig", BADKEY: "badkey", BADTIME: "badtime", BADTRUNC: "badtrunc", RCODE_FORMERR: "formerr"}
FLAG_QR, FLAG_TC = 0x8000, 0x0200

_TSIG_FIXED = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose TSIG checked out."""

    key: TsigKey
    request_mac: bytes
    original_id: int
    unsigned: bytes  # the request without its TSIG record, ARCOUNT adjusted


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request whose TSIG failed: `error` (BADSIG, BADKEY, BADTIME, BADTRUNC, or FORMERR) and the reply to send."""

    error: int
    key_name: str
    reply: bytes

    @property
    def result(self) -> str:
        return ERROR_NAMES[self.error]


def verify(message: bytes, request: Request, keys: KeyRing, now: float, fudge: int = FUDGE) -> Verified | Rejected:
    """Check the TSIG of a scanned request (RFC 8945 §5.2: key, then MAC, then time)."""
    assert request.tsig_start is not None and request.tsig_rdata is not None
    try:
        owner, _ = dns.name.from_wire(message, request.tsig_start)
        rdata = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.TSIG, message, *request.tsig_rdata)
    except (dns.exception.DNSException, ValueError, IndexError):
        return Rejected(RCODE_FORMERR, "", _bare_reply(message, request, RCODE_FORMERR))
    assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
    owner_text = owner.to_text().lower()
    key = keys.get(owner_text)
    if key is None or key.key.algorithm != rdata.algorithm:
        return Rejected(BADKEY, owner_text, unsigned_error(message, request, owner, rdata, BADKEY, now, fudge))
    if len(rdata.mac) != key.mac_size:
        # RFC 8945 §5.2.2.1: longer than the hash, or shorter than max(10, half of it), is malformed;
        # a truncation the RFC allows is below our policy (full MACs only): BADTRUNC, unsigned.
        if len(rdata.mac) > key.mac_size or len(rdata.mac) < max(10, key.mac_size // 2):
            return Rejected(RCODE_FORMERR, key.name, _bare_reply(message, request, RCODE_FORMERR))
        return Rejected(BADTRUNC, key.name, unsigned_error(message, request, owner, rdata, BADTRUNC, now, fudge))
    try:
        dns.tsig.validate(message, key.key, owner, rdata, int(now), None, request.tsig_start)
    except dns.tsig.BadTime:
        other = int(now).to_bytes(6, "big")
        signer = Signer(key, rdata.mac, rdata.original_id, fudge, clock=lambda: rdata.time_signed)
        reply = signer.sign(_bare_reply(message, request, RCODE_NOTAUTH), error=BADTIME, other=other)
        return Rejected(BADTIME, key.name, reply)
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        return Rejected(BADSIG, key.name, unsigned_error(message, request, owner, rdata, BADSIG, now, fudge))
    except (dns.tsig.PeerError, dns.exception.DNSException):
        return Rejected(RCODE_FORMERR, key.name, _bare_reply(message, request, RCODE_FORMERR))
    unsigned = message[:10] + ((message[10] << 8 | message[11]) - 1).to_bytes(2, "big") + message[12 : request.tsig_start]
    return Verified(key, rdata.mac, rdata.original_id, unsigned)


def tsig_reserve(key: TsigKey) -> int:
    """Bytes a TSIG record with `key` adds to a message (BADTIME's other data included)."""
    return len(key.wire_name) + 10 + len(key.algorithm_wire) + 16 + key.mac_size + 6


class Signer:
    """Signs the messages of one reply in order: the first over the request's MAC, each
    later one over the MAC before it (RFC 8945 §5.3.1)."""

    def __init__(self, key: TsigKey, request_mac: bytes, original_id: int, fudge: int = FUDGE, clock: Callable[[], float] = time.time):
        self.key = key
        self.request_mac = request_mac
        self.original_id = original_id
        self.fudge = fudge
        self.clock = clock
        self._mac = b""
        self._first = True

    @property
    def reserve(self) -> int:
        """Bytes a TSIG record adds to a message (BADTIME's other data included)."""
        return tsig_reserve(self.key)

    def sign(self, message: bytes, error: int = 0, other: bytes = b"") -> bytes:
        """`message` (without TSIG) with its TSIG record appended and ARCOUNT raised."""
        key = self.key
        now = int(self.clock())
        if self._first:
            template = dns.rdtypes.ANY.TSIG.TSIG(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, key.key.algorithm, 0, self.fudge, b"", self.original_id, error, other
            )
            rdata, _ = dns.tsig.sign(message, key.key, template, now, self.request_mac)
            mac = rdata.mac
            self._first = False
        else:
            # A later message: what dns.tsig.sign(multi=True) digests (the previous MAC, the message,
            # the timers), without building rdata objects, which costs three times the HMAC itself.
            context = dns.tsig.get_context(key.key)
            context.update(len(self._mac).to_bytes(2, "big") + self._mac)
            context.update(self.original_id.to_bytes(2, "big") + message[2:])
            context.update(now.to_bytes(6, "big") + self.fudge.to_bytes(2, "big"))
            mac = context.sign()
        self._mac = mac
        return append_tsig(message, key.wire_name, key.algorithm_wire, now, self.fudge, mac, self.original_id, error, other)


def append_tsig(
    message: bytes, owner: bytes, algorithm: bytes, time_signed: int, fudge: int, mac: bytes, original_id: int, error: int, other: bytes
) -> bytes:
    """`message` with one TSIG record added at the end (owner and algorithm uncompressed)."""
    rdata = (
        algorithm
        + time_signed.to_bytes(6, "big")
        + struct.pack("!HH", fudge, len(mac))
        + mac
        + struct.pack("!HHH", original_id, error, len(other))
        + other
    )
    arcount = ((message[10] << 8) | message[11]) + 1
    record = owner + _TSIG_FIXED.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata
    return message[:10] + arcount.to_bytes(2, "big") + message[12:] + record


def unsigned_error(
    message: bytes, request: Request, owner: dns.name.Name, rdata: dns.rdtypes.ANY.TSIG.TSIG, error: int, now: float, fudge: int
) -> bytes:
    """NOTAUTH with an unsigned TSIG carrying `error` (BADKEY, BADSIG, BADTRUNC: RFC 8945 §5.3.2): the question, nothing else."""
    body = _bare_reply(message, request, RCODE_NOTAUTH)
    return append_tsig(
        body, name_wire(owner.canonicalize()), name_wire(rdata.algorithm), int(now), fudge, b"", rdata.original_id, error, b""
    )


def refusal(message: bytes, request: Request, rcode: int, signer: Signer | None, ext_rcode: int = 0) -> bytes:
    """A reply with the question only and `rcode` (REFUSED, NOTAUTH, FORMERR; with `ext_rcode` 1 and an
    EDNS request, BADVERS), signed when the request was."""
    body = _bare_reply(message, request, rcode, ext_rcode)
    return signer.sign(body) if signer is not None else body


def _bare_reply(message: bytes, request: Request, rcode: int, ext_rcode: int = 0) -> bytes:
    """QR set, opcode and RD copied, AA clear; the question, and our OPT when the request had one
    (RFC 6891 §7: an EDNS request gets OPT in every reply)."""
    flags = FLAG_QR | (request.flags & 0x7900) | rcode
    opt = wire.opt_record(request.edns_do, ext_rcode) if request.edns_payload is not None else b""
    return message[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if opt else 0) + request.question + opt
