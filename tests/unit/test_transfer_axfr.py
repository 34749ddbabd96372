"""AXFR as RFC 5936 has it, read back by dnspython: SOA first and last, the question in the first message,
AA, every record once, messages of bounded size made one at a time while the loop keeps turning."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest

from server.transfer import KeyRing, TransferObserver, TransferService, TransferSettings
from server.zone import names
from tests.fakestore import FORWARD, REVERSE, FakeStore, pod_zones
from tests.xfrclient import KEY_1, PEER, apply_transfer, collect, empty_zone, parse_all, records_of, request, zone_of

TRUSTED = ("192.0.2.0/24",)


class Recorder(TransferObserver):
    def __init__(self):
        self.events = []

    def transfer_done(self, event):
        self.events.append(event)


def make_service(pods: int = 3000, **settings_kw):
    store = FakeStore()
    pod_zones(store, pods)
    recorder = Recorder()
    settings_kw.setdefault("allow_unsigned", TRUSTED)
    service = TransferService(TransferSettings(transfer_keys=("xfr-key",), **settings_kw), store, store.answer, recorder, KeyRing([KEY_1]))
    return service, store, recorder


def expected_records(store: FakeStore, zone_name: str) -> Counter:
    zone = store.zones[names.to_wire(zone_name)]
    out: Counter = Counter()
    for record in (zone.soa, zone.soa, *zone.records):
        rdata = dns.rdata.from_wire(1, record.rtype, record.rdata, 0, len(record.rdata))
        out[(names.to_text(record.owner), record.rtype, rdata.to_text())] += 1
    return out


@pytest.mark.parametrize("zone_name", [FORWARD, REVERSE])
async def test_the_whole_zone_in_rfc_5936_form(zone_name):
    service, store, recorder = make_service()
    query = request(zone_name, "AXFR")
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    parsed = parse_all(messages, query)
    assert len(parsed) > 3
    assert [len(m.question) for m in parsed] == [1] + [0] * (len(parsed) - 1)
    assert all(m.flags & dns.flags.AA and m.flags & dns.flags.QR and m.id == query.id for m in parsed)
    assert all(len(wire) <= 16384 for wire in messages)
    records = records_of(parsed)
    assert records[0][1] == records[-1][1] == dns.rdatatype.SOA and records[0] == records[-1]
    assert Counter(records) == expected_records(store, zone_name)  # every record exactly once, the SOA twice
    assert apply_transfer(messages, query, empty_zone(zone_name)) == zone_of(store, names.to_wire(zone_name))
    event = recorder.events[-1]
    assert (event.type, event.result, event.zone, event.records, event.messages) == (
        "axfr",
        "full",
        zone_name + ".",
        len(records),
        len(messages),
    )
    assert event.bytes == sum(map(len, messages)) and event.serial == 1000 and event.key is None


async def test_owner_names_are_compressed():
    service, store, _ = make_service()
    messages = await collect(service.handle(request(FORWARD, "AXFR").to_wire(), PEER, True))
    zone = store.zones[names.to_wire(FORWARD)]
    uncompressed = sum(len(r.owner) + 10 + len(r.rdata) for r in zone.records)
    assert sum(map(len, messages)) < 0.5 * uncompressed


async def test_a_0x20_question_is_echoed_and_the_owners_stay_lower_case():
    service, _, _ = make_service(pods=50)
    query = request("PoDs.ExAmPlE.iNtErNaL", "AXFR")
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    assert messages[0][12 : 12 + len(FORWARD) + 2] == query.to_wire()[12 : 12 + len(FORWARD) + 2]
    owners = {owner for owner, _, _ in records_of(parse_all(messages, query))}
    assert owners == {o.lower() for o in owners}


async def test_edns_requests_get_our_opt_in_the_first_message():
    service, _, _ = make_service(pods=2000)
    query = request(FORWARD, "AXFR", use_edns=0)
    parsed = parse_all(await collect(service.handle(query.to_wire(), PEER, True)), query)
    assert parsed[0].opt is not None and all(m.opt is None for m in parsed[1:])


async def test_messages_are_made_as_the_transport_takes_them():
    service, store, _ = make_service(pods=5000)
    stream = service.handle(request(FORWARD, "AXFR").to_wire(), PEER, True)
    first = await stream.__anext__()
    snapshot = store.snapshots[-1]
    total = len(snapshot._records)
    in_first = int.from_bytes(first[6:8], "big") - 1  # ANCOUNT, less the SOA
    assert 0 < in_first <= snapshot.taken <= in_first + 1 < total / 5  # one record read ahead, no more
    assert len(first) <= 16384
    rest = [m async for m in stream]
    assert snapshot.taken == total and len(rest) >= 5


async def test_the_loop_turns_between_messages():
    service, _, _ = make_service(pods=5000)
    turns = 0
    running = True

    async def ticker():
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    messages = 0
    async for _ in service.handle(request(FORWARD, "AXFR").to_wire(), PEER, True):
        messages += 1
    running = False
    await task
    assert messages >= 5 and turns >= messages - 1


async def test_the_store_may_change_during_a_transfer():
    service, store, _ = make_service(pods=3000)
    from tests.fakestore import a_record

    apex = names.to_wire(FORWARD)
    before = zone_of(store, apex)
    query = request(FORWARD, "AXFR")
    stream = service.handle(query.to_wire(), PEER, True)
    messages = [await stream.__anext__()]
    store.commit(apex, added=[a_record(f"late.{FORWARD}", "10.9.9.9")])
    messages += [m async for m in stream]
    assert apply_transfer(messages, query, empty_zone(FORWARD)) == before  # the snapshot's state, whole


async def test_a_transfer_closed_early_is_reported_aborted(caplog):
    service, _, recorder = make_service(pods=3000)
    caplog.set_level(logging.INFO, logger="pod_identity_dns.transfer")
    stream = service.handle(request(FORWARD, "AXFR", KEY_1).to_wire(), PEER, True)
    await stream.__anext__()
    await stream.aclose()
    event = recorder.events[-1]
    assert event.result == "aborted" and event.messages == 1 and event.key == "xfr-key."
    line = caplog.records[-1].getMessage()
    assert "AXFR aborted" in line and "zone=pods.example.internal." in line and "peer=192.0.2.10#40000" in line and "key=xfr-key." in line


async def test_one_log_line_per_transfer_without_secrets(caplog):
    service, _, _ = make_service(pods=100)
    caplog.set_level(logging.DEBUG, logger="pod_identity_dns")
    await collect(service.handle(request(FORWARD, "AXFR", KEY_1).to_wire(), PEER, True))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "AXFR full zone=pods.example.internal. peer=192.0.2.10#40000 key=xfr-key. serial=-->1000 records=" in lines[0]
    assert "messages=1" in lines[0] and "via tcp" in lines[0]
    secret_text = __import__("base64").b64encode(KEY_1.key.secret).decode()
    assert secret_text not in lines[0]


async def test_a_large_message_size_still_stays_under_64k():
    service, store, _ = make_service(pods=6000, message_size=65535)
    query = request(FORWARD, "AXFR", KEY_1)
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    assert all(len(m) <= 65535 for m in messages) and len(messages) >= 2
    assert apply_transfer(messages, query, empty_zone(FORWARD)) == zone_of(store, names.to_wire(FORWARD))


async def test_serials_near_the_wrap():
    store = FakeStore()
    pod_zones(store, 10, serial=0xFFFFFFFF)
    service = TransferService(TransferSettings(allow_unsigned=TRUSTED), store, store.answer)
    apex = names.to_wire(FORWARD)
    from tests.fakestore import a_record

    store.commit(apex, added=[a_record(f"x.{FORWARD}", "10.0.0.1")])
    assert store.zones[apex].serial == 0
    query = request(FORWARD, "AXFR")
    zone = apply_transfer(await collect(service.handle(query.to_wire(), PEER, True)), query, empty_zone(FORWARD))
    assert zone.get_soa().serial == 0


def test_the_store_interface_is_all_it_needs():
    """The engine touches only zones, snapshot(), add_listener(), synced and busy: a store with nothing else will do."""
    store = FakeStore()
    pod_zones(store, 3)

    class Narrow:
        zones = store.zones
        snapshot = staticmethod(store.snapshot)
        add_listener = staticmethod(store.add_listener)
        synced = True
        busy = False

    service = TransferService(TransferSettings(allow_unsigned=TRUSTED), Narrow(), store.answer)
    reply = asyncio.run(collect(service.handle(request(FORWARD, "AXFR").to_wire(), PEER, True)))
    assert dns.message.from_wire(reply[0]).answer[0].rdtype == dns.rdatatype.SOA
    assert dns.name.from_text(FORWARD).to_wire() in service.store.zones
