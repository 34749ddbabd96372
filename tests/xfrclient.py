"""dnspython as the transfer client of the in-process engine: requests, the replies' messages
read back the way dns.query.inbound_xfr reads them (TSIG chain included), zones compared."""

from __future__ import annotations

import base64
import inspect
from collections.abc import Iterable

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.xfr
import dns.zone

from server.transfer.keys import TsigKey, make_key
from tests.fakestore import FakeStore, to_rdata

SECRET_1 = base64.b64decode("c2VjcmV0LW9uZS1zZWNyZXQtb25lLXNlY3JldC1vbmUtISE=")
SECRET_2 = base64.b64decode("dHdvLXR3by10d28tdHdvLXR3by10d28tdHdvLXR3by0yMg==")
KEY_1 = make_key("xfr-key", "hmac-sha256", SECRET_1)
KEY_2 = make_key("other-key", "hmac-sha512", SECRET_2)
PEER = ("192.0.2.10", 40000)


def request(zone: str, rdtype: str = "AXFR", key: TsigKey | None = None, serial: int | None = None, **kw) -> dns.message.Message:
    """An AXFR/IXFR request as dns.query.xfr makes it (the IXFR carries the client's SOA)."""
    query = dns.message.make_query(zone, rdtype, **kw)
    if serial is not None:
        soa = dns.rrset.from_text(dns.name.from_text(zone), 0, "IN", "SOA", f". . {serial} 0 0 0 0")
        query.authority.append(soa)
    if key is not None:
        query.use_tsig(key.key)
    return query


async def collect(reply) -> list[bytes]:
    """The messages of a handle() result: one bytes, or an async iterator of them."""
    if reply is None:
        return []
    if isinstance(reply, bytes):
        return [reply]
    assert inspect.isasyncgen(reply) or hasattr(reply, "__anext__")
    return [message async for message in reply]


def parse_all(messages: Iterable[bytes], query: dns.message.Message, ixfr: bool = False, origin=None) -> list[dns.message.Message]:
    """Each message parsed as inbound_xfr does: TSIG verified, each MAC chained to the previous."""
    out = []
    tsig_ctx = None
    for index, wire in enumerate(messages):
        message = dns.message.from_wire(
            wire,
            keyring=query.keyring,
            request_mac=query.mac,
            xfr=True,
            origin=origin,
            tsig_ctx=tsig_ctx,
            multi=True,
            one_rr_per_rrset=ixfr,
        )
        assert query.is_response(message, xfr_continuation=index > 0)
        tsig_ctx = message.tsig_ctx
        out.append(message)
    return out


def apply_transfer(messages: list[bytes], query: dns.message.Message, zone: dns.zone.Zone, serial: int | None = None) -> dns.zone.Zone:
    """Run dnspython's inbound transfer state machine (dns.xfr.Inbound) over the messages into `zone`."""
    rdtype = query.question[0].rdtype
    with dns.xfr.Inbound(zone, rdtype, serial) as inbound:
        done = False
        for message in parse_all(messages, query, rdtype == dns.rdatatype.IXFR, zone.from_wire_origin()):
            assert not done, "records after the transfer ended"
            done = inbound.process_message(message)
        assert done, "the transfer did not end with the SOA"
    return zone


def zone_of(store: FakeStore, apex: bytes) -> dns.zone.Zone:
    """The fake store's zone as a dnspython zone (what a secondary should end up holding)."""
    source = store.zones[apex]
    origin = dns.name.from_wire(apex, 0)[0]
    zone = dns.zone.Zone(origin, relativize=False)
    for record in (source.soa, *source.records):
        name = dns.name.from_wire(record.owner, 0)[0]
        zone.find_rdataset(name, record.rtype, create=True).add(to_rdata(record), record.ttl)
    return zone


def empty_zone(name: str) -> dns.zone.Zone:
    return dns.zone.Zone(dns.name.from_text(name), relativize=False)


def records_of(messages: list[dns.message.Message]) -> list[tuple[str, int, str]]:
    """Every answer record of the messages in order, as (owner, type, rdata text)."""
    out = []
    for message in messages:
        for rrset in message.answer:
            for rdata in rrset:
                out.append((rrset.name.to_text(), rrset.rdtype, rdata.to_text()))
    return out
