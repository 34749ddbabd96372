"""Full transfers from kept chunks, over the real zone store: a transfer carries exactly the zone as it
was when the transfer began, whatever changed, was encoded or was planned again meanwhile; a change
costs the encoding of its chunk only; a zone whose chunks are all kept is sent without a snapshot."""

from __future__ import annotations

import asyncio
from collections import Counter

import dns.message
import dns.rdata
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.transfer import KeyRing, warmer
from server.transfer import service as transfer_service
from server.zone import names
from server.zone.store import ZoneSettings, ZoneStore
from tests.xfrclient import KEY_1, KEY_2, collect, parse_all, request

ZONE = "pods.example.internal"
APEX = names.to_wire(ZONE)
REVERSE = names.to_wire("10.in-addr.arpa")
PEER = ("127.0.0.1", 5353)


def owner(i: int) -> bytes:
    return names.to_wire(f"pod-{i}.set-{i % 7}.default.{ZONE}")


def address(i: int, generation: int = 0) -> str:
    return f"10.{generation % 200}.{i // 250}.{i % 250 + 1}"


class Cluster:
    """Pods written straight into a zone store: pod i has a name, an A record (and every third an AAAA)
    and the PTR of its address."""

    def __init__(self, pods: int):
        self.store = ZoneStore(ZoneSettings((ZONE,), ("10.0.0.0/8",), 30, 5))
        self.addresses: dict[int, str] = {}
        for i in range(pods):
            self.put(i, address(i))
        self.store.commit()

    def put(self, i: int, ip: str) -> None:
        old = self.addresses.get(i)
        if old is not None:
            self.store.set_ptr(names.reverse_name(old), None)
        ips = (ip, f"fd00::{i:x}") if i % 3 == 0 else (ip,)
        self.store.set_addresses(owner(i), *self.store.encode_addresses(ips))
        self.store.set_ptr(names.reverse_name(ip), owner(i))
        self.addresses[i] = ip

    def remove(self, i: int) -> None:
        ip = self.addresses.pop(i, None)
        if ip is not None:
            self.store.set_addresses(owner(i), b"", 0, b"", 0)
            self.store.set_ptr(names.reverse_name(ip), None)


def service_for(store, message_size: int = 16384):
    settings = transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",), message_size=message_size)
    return transfer_service.TransferService(settings, store, lambda query, tcp: None)


def keep_all(service, store, apex: bytes = APEX) -> None:
    """What the service's warmer does once commits pause: plan the zone, then encode every chunk."""
    for _ in service.chunks.plan_steps(apex, store.snapshot(apex), 1.0):
        pass
    while not service.chunks.encode_step(apex, store.live(apex), 1.0):
        pass


def axfr_query(apex: bytes = APEX) -> bytes:
    return dns.message.make_query(names.to_text(apex), "AXFR").to_wire()


def records_of(messages: list[bytes] | list[dns.message.Message]) -> Counter:
    out: Counter = Counter()
    for message in messages:
        parsed = message if isinstance(message, dns.message.Message) else dns.message.from_wire(message, one_rr_per_rrset=True)
        for rrset in parsed.answer:
            out.update((rrset.name.to_text(), rrset.rdtype, rrset.ttl, rdata.to_text()) for rdata in rrset)
    return out


def zone_now(store, apex: bytes = APEX) -> Counter:
    """The zone's records as the store holds them now, SOA twice (first and last of a transfer)."""
    snapshot = store.snapshot(apex)
    out: Counter = Counter()
    for record in [snapshot.soa, *snapshot.records(), snapshot.soa]:
        rdata = dns.rdata.from_wire(1, record.rtype, record.rdata, 0, len(record.rdata))
        out[(names.to_text(record.owner), record.rtype, record.ttl, rdata.to_text())] += 1
    return out


def check_framing(messages: list[bytes], limit: int) -> None:
    first, last = dns.message.from_wire(messages[0]), dns.message.from_wire(messages[-1])
    assert first.question and first.answer[0].rdtype == dns.rdatatype.SOA
    assert last.answer[-1].rdtype == dns.rdatatype.SOA and first.answer[0][0] == last.answer[-1][0]
    assert all(len(message) <= limit for message in messages)
    assert all(not dns.message.from_wire(message).question for message in messages[1:])


async def test_a_chunked_zone_transfers_exactly_its_records_and_a_change_costs_one_chunk():
    cluster = Cluster(3000)
    service = service_for(cluster.store)
    plain = await collect(service.handle(axfr_query(), PEER, True))  # not planned yet: encoded the plain way
    assert records_of(plain) == zone_now(cluster.store) and service.chunks.encoded == 0
    keep_all(service, cluster.store)
    chunks = service.chunks.zones[APEX]
    assert chunks.count >= 4 and service.chunks.encoded == chunks.count
    messages = await collect(service.handle(axfr_query(), PEER, True))
    assert service.chunks.encoded == chunks.count  # copied
    assert records_of(messages) == zone_now(cluster.store)
    check_framing(messages, 16384)
    assert len(messages) <= 2 * len(plain) + 2  # chunks fill their messages (3/4 of one, planned)

    cluster.put(42, "10.250.0.42")
    cluster.store.commit()
    changed = await collect(service.handle(axfr_query(), PEER, True))
    assert service.chunks.encoded == chunks.count + 1  # the chunk of pod-42's name only
    assert records_of(changed) == zone_now(cluster.store)
    assert ("pod-42.set-0.default.pods.example.internal.", dns.rdatatype.A, 30, "10.250.0.42") in records_of(changed)

    # The reverse zone is chunked on its own: the PTR moved with the address.
    keep_all(service, cluster.store, REVERSE)
    reverse = await collect(service.handle(axfr_query(REVERSE), PEER, True))
    assert records_of(reverse) == zone_now(cluster.store, REVERSE)
    assert ("42.0.250.10.in-addr.arpa.", dns.rdatatype.PTR, 30, "pod-42.set-0.default.pods.example.internal.") in records_of(reverse)


async def test_a_chunk_encoded_for_a_transfer_begun_before_a_change_is_not_kept_as_current():
    cluster = Cluster(3000)
    service = service_for(cluster.store)
    for _ in service.chunks.plan_steps(APEX, cluster.store.snapshot(APEX), 1.0):
        pass
    before = zone_now(cluster.store)
    stream = service.handle(axfr_query(), PEER, True)  # planned, nothing kept: every chunk encoded from this snapshot
    first = [await stream.__anext__()]
    for i in range(0, 3000, 97):
        cluster.put(i, address(i, 3))  # touches many chunks not encoded yet
    cluster.store.commit()
    rest = [message async for message in stream]
    assert records_of(first + rest) == before  # the transfer is the zone when it began
    assert records_of(await collect(service.handle(axfr_query(), PEER, True))) == zone_now(cluster.store)


async def test_a_zone_whose_chunks_are_all_kept_is_sent_without_a_snapshot_even_mid_change():
    cluster = Cluster(2000)
    service = service_for(cluster.store)
    service.current_soa(APEX)  # the SOA template (the real server reads it from its answer path)
    keep_all(service, cluster.store)
    first = await collect(service.handle(axfr_query(), PEER, True))
    taken: list[bytes] = []
    snapshot = cluster.store.snapshot
    cluster.store.snapshot = lambda apex: taken.append(apex) or snapshot(apex)  # type: ignore[method-assign]
    cluster.store.busy = True  # a change half written: its records are not the serial's
    cluster.put(7, "10.251.0.7")
    again = await collect(service.handle(axfr_query(), PEER, True))
    assert taken == [] and [m[2:] for m in again] == [m[2:] for m in first]  # all but the ID


async def test_a_small_zone_is_one_message_and_is_planned_again_as_it_grows():
    cluster = Cluster(10)
    service = service_for(cluster.store)
    keep_all(service, cluster.store)
    assert service.chunks.zones[APEX].count == 1
    (message,) = await collect(service.handle(axfr_query(), PEER, True))
    assert records_of([message]) == zone_now(cluster.store)
    for i in range(10, 3000):
        cluster.put(i, address(i))
    cluster.store.commit()
    grown = await collect(service.handle(axfr_query(), PEER, True))  # its one chunk encoded: far too big now
    assert records_of(grown) == zone_now(cluster.store)
    assert service.chunks.needs_plan(APEX)
    plain = await collect(service.handle(axfr_query(), PEER, True))  # sent the plain way until planned again
    assert records_of(plain) == zone_now(cluster.store)
    keep_all(service, cluster.store)
    again = await collect(service.handle(axfr_query(), PEER, True))
    assert service.chunks.zones[APEX].count >= 4 and records_of(again) == zone_now(cluster.store)
    for i in range(10, 3000):
        cluster.remove(i)
    cluster.store.commit()
    shrunk = await collect(service.handle(axfr_query(), PEER, True))
    assert records_of(shrunk) == zone_now(cluster.store)
    keep_all(service, cluster.store)
    assert service.chunks.zones[APEX].count == 1


async def test_changes_committed_while_a_plan_is_made_are_in_it():
    cluster = Cluster(3000)
    service = service_for(cluster.store)
    planning = service.chunks.plan_steps(APEX, cluster.store.snapshot(APEX), 0.0)  # yields every 1024 names
    next(planning)
    cluster.put(9, "10.253.0.9")
    cluster.remove(10)
    cluster.put(3001, "10.253.0.1")  # a name the snapshot does not have
    cluster.store.commit()
    for _ in planning:
        pass
    while not service.chunks.encode_step(APEX, cluster.store.live(APEX), 1.0):
        pass
    assert records_of(await collect(service.handle(axfr_query(), PEER, True))) == zone_now(cluster.store)


async def test_a_change_too_big_to_track_plans_the_zone_again(monkeypatch):
    monkeypatch.setattr("server.zone.changes.TRACK_LIMIT", 50)
    cluster = Cluster(2000)
    service = service_for(cluster.store)
    keep_all(service, cluster.store)
    for i in range(200):
        cluster.put(i, address(i, 1))
    cluster.store.commit()  # 400 names changed: the difference is not worked out
    assert APEX not in service.chunks.zones
    assert records_of(await collect(service.handle(axfr_query(), PEER, True))) == zone_now(cluster.store)


async def test_signed_transfers_fit_the_message_size_whichever_key_signs():
    cluster = Cluster(3000)
    settings = transfer_service.TransferSettings(transfer_keys=("xfr-key", "other-key"), message_size=4096)
    service = transfer_service.TransferService(settings, cluster.store, lambda query, tcp: None, keys=KeyRing([KEY_1, KEY_2]))
    keep_all(service, cluster.store)
    for key in (KEY_2, KEY_1):  # hmac-sha512 has the longer MAC; the chunks leave room for it
        query = request(ZONE, key=key)
        messages = await collect(service.handle(query.to_wire(), PEER, True))
        assert len(messages) > 20 and all(len(m) <= 4096 for m in messages)
        parsed = parse_all(messages, query)  # every message signed, each MAC chained to the one before
        assert records_of(parsed) == zone_now(cluster.store)


async def test_the_warmer_encodes_changed_chunks_once_commits_pause(monkeypatch):
    monkeypatch.setattr(warmer, "WARM_QUIET", 0.05)
    cluster = Cluster(3000)
    cluster.store.synced = True
    service = service_for(cluster.store)
    service.current_soa(APEX)  # the SOA template (the real server reads it from its answer path)
    await service.start()
    try:
        for _ in range(200):
            await asyncio.sleep(0.02)
            zone = service.chunks.zones.get(APEX)
            if zone is not None and not zone.unkept and REVERSE in service.chunks.zones and not service.chunks.zones[REVERSE].unkept:
                break
        assert not service.chunks.zones[APEX].unkept, "the warmer planned and encoded the zone"
        cluster.put(5, "10.252.0.5")
        cluster.store.commit()
        assert service.chunks.zones[APEX].unkept == 1
        for _ in range(200):
            await asyncio.sleep(0.02)
            if not service.chunks.zones[APEX].unkept:
                break
        taken: list[bytes] = []
        snapshot = cluster.store.snapshot
        cluster.store.snapshot = lambda apex: taken.append(apex) or snapshot(apex)  # type: ignore[method-assign]
        messages = await collect(service.handle(axfr_query(), PEER, True))
        assert taken == [], "every chunk was kept by the warmer"
        cluster.store.snapshot = snapshot  # type: ignore[method-assign]
        assert records_of(messages) == zone_now(cluster.store)
    finally:
        await service.stop()


# -- the property: every transfer is the zone as it was when it began ------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 799), st.integers(0, 5)),
        st.tuples(st.just("remove"), st.integers(0, 799), st.just(0)),
        st.tuples(st.just("commit"), st.just(0), st.just(0)),
        st.tuples(st.just("start"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("read"), st.integers(0, 3), st.integers(1, 40)),
        st.tuples(st.just("warm"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("plan"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("plan more"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("unknown"), st.integers(0, 1), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_every_transfer_is_the_zone_as_it_was_when_it_began(steps):
    asyncio.run(_interleave(steps))


async def _interleave(steps) -> None:
    cluster = Cluster(800)
    service = service_for(cluster.store, message_size=2048)
    zones = (APEX, REVERSE)
    running: list[tuple[object, list[bytes], Counter]] = []  # (stream, messages so far, zone when it began)
    pending = False
    plans: dict = {}  # plans begun, yielded once

    async def read(entry, count: int) -> bool:
        stream, got, _ = entry
        for _ in range(count):
            try:
                got.append(await stream.__anext__())
            except StopAsyncIteration:
                return True
        return False

    for action, a, b in steps:
        if action == "put":
            cluster.put(a, address(a, b))
            pending = True
        elif action == "remove":
            cluster.remove(a)
            pending = True
        elif action == "commit" and pending:
            cluster.store.commit()
            pending = False
        elif action == "start" and not pending:  # the store is not mid-change: a transfer starts at once
            apex = zones[a]
            expected = zone_now(cluster.store, apex)
            running.append((service.handle(axfr_query(apex), PEER, True), [], expected))
        elif action == "read" and running:
            entry = running[a % len(running)]
            if await read(entry, b):
                running.remove(entry)
                assert records_of(entry[1]) == entry[2]
        elif action == "warm" and not pending:
            service.chunks.encode_step(zones[a], cluster.store.live(zones[a]), 1.0)
        elif action == "plan" and not pending and zones[a] not in plans:
            plans[zones[a]] = service.chunks.plan_steps(zones[a], cluster.store.snapshot(zones[a]), 0.0)
            next(plans[zones[a]], None)
        elif action == "plan more" and zones[a] in plans:
            for _ in plans.pop(zones[a]):
                pass
        elif action == "unknown":
            service.chunks.changed(zones[a], None, None)
    for entry in running:
        await read(entry, 10**6)
        assert records_of(entry[1]) == entry[2]
    if pending:
        cluster.store.commit()
    for apex in zones:
        assert records_of(await collect(service.handle(axfr_query(apex), PEER, True))) == zone_now(cluster.store, apex)


async def test_the_warmer_steps_aside_while_a_full_transfer_is_sent(monkeypatch):
    monkeypatch.setattr(warmer, "WARM_QUIET", 0.05)
    cluster = Cluster(3000)
    service = service_for(cluster.store, message_size=1024)
    service.current_soa(APEX)
    await service.start()
    try:
        stream = service.handle(axfr_query(), PEER, True)  # not planned: sent the plain way, the warmer woken
        for _ in range(40):  # a slow client: a message every 10 ms for 0.4 s
            await stream.__anext__()
            await asyncio.sleep(0.01)
        assert service.chunks.encoded == 0, "the warmer encoded while the transfer was being sent"
        await stream.aclose()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if service.chunks.encoded:
                break
        assert service.chunks.encoded, "the warmer went on once the transfer ended"
    finally:
        await service.stop()
