"""IXFR (RFC 1995) from the journal: the single SOA when current, the condensed difference when the journal
reaches back, a full zone in AXFR form when it does not; the journal's bounds; UDP; RFC 1982 serials."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.transfer import KeyRing, TransferObserver, TransferService, TransferSettings
from server.transfer.journal import Journal, Step, condense, record_size
from server.transfer.serial import newer
from server.zone import names
from tests.fakestore import FORWARD, REVERSE, RR, FakeStore, ZoneChange, a_record, pod_identity, pod_zones, ptr_record
from tests.xfrclient import KEY_1, PEER, apply_transfer, collect, parse_all, records_of, request, zone_of

APEX = names.to_wire(FORWARD)
TRUSTED = ("192.0.2.0/24",)


class Recorder(TransferObserver):
    def __init__(self):
        self.events = []
        self.journal = []

    def transfer_done(self, event):
        self.events.append(event)

    def journal_size(self, zone, changes, size):
        self.journal.append((zone, changes, size))


def make_service(pods: int = 200, serial: int = 1000, **settings_kw):
    store = FakeStore()
    pod_zones(store, pods, serial)
    recorder = Recorder()
    settings_kw.setdefault("allow_unsigned", TRUSTED)
    service = TransferService(TransferSettings(transfer_keys=("xfr-key",), **settings_kw), store, store.answer, recorder, KeyRing([KEY_1]))
    return service, store, recorder


def move_pod(store: FakeStore, i: int, new_ip: str, apex: bytes = APEX) -> ZoneChange:
    name, ip = pod_identity(i)
    return store.commit(apex, removed=[a_record(name, ip)], added=[a_record(name, new_ip)])


async def ixfr(service, zone_name: str, serial: int, tcp: bool = True, key=None, **kw):
    query = request(zone_name, "IXFR", key, serial=serial, **kw)
    return query, await collect(service.handle(query.to_wire(), PEER, tcp))


async def test_a_current_or_newer_client_gets_the_single_soa():
    service, _, recorder = make_service()
    for client in (1000, 1001, 1000 + 2**31 - 1):  # equal, newer, newest still "greater" in RFC 1982
        query, messages = await ixfr(service, FORWARD, client)
        assert len(messages) == 1
        records = records_of(parse_all(messages, query, ixfr=True))
        assert [r[1] for r in records] == [dns.rdatatype.SOA] and " 1000 " in records[0][2]
        assert recorder.events[-1].result == "current"


async def test_one_change_travels_as_the_difference():
    service, store, recorder = make_service()
    old_zone = zone_of(store, APEX)
    move_pod(store, 7, "10.1.2.3")
    query, messages = await ixfr(service, FORWARD, 1000)
    records = records_of(parse_all(messages, query, ixfr=True))
    soa_new = records[0]
    _, ip = pod_identity(7)
    assert [(r[1], r[2]) for r in records] == [
        (dns.rdatatype.SOA, soa_new[2]),
        (dns.rdatatype.SOA, soa_new[2].replace(" 1001 ", " 1000 ")),
        (dns.rdatatype.A, ip),
        (dns.rdatatype.SOA, soa_new[2]),
        (dns.rdatatype.A, "10.1.2.3"),
        (dns.rdatatype.SOA, soa_new[2]),
    ]
    assert apply_transfer(messages, query, old_zone, serial=1000) == zone_of(store, APEX)
    event = recorder.events[-1]
    assert (event.type, event.result, event.client_serial, event.serial, event.records) == ("ixfr", "incremental", 1000, 1001, 6)


async def test_several_changes_are_condensed_into_one_difference():
    service, store, _ = make_service()
    old_zone = zone_of(store, APEX)
    flapping = a_record(f"flap.{FORWARD}", "10.5.5.5")
    store.commit(APEX, added=[flapping])
    move_pod(store, 3, "10.3.3.3")
    store.commit(APEX, removed=[flapping])
    query, messages = await ixfr(service, FORWARD, 1000)
    records = records_of(parse_all(messages, query, ixfr=True))
    assert [r[1] for r in records].count(dns.rdatatype.SOA) == 4 and len(records) == 6  # flap.* cancelled out
    assert apply_transfer(messages, query, old_zone, serial=1000) == zone_of(store, APEX)


async def test_a_serial_the_journal_no_longer_holds_gets_the_zone_in_axfr_form():
    service, store, recorder = make_service(ixfr_journal=2)
    old_zone = zone_of(store, APEX)
    for i in range(3):
        move_pod(store, i, f"10.7.0.{i}")
    query, messages = await ixfr(service, FORWARD, 1000)
    records = records_of(parse_all(messages, query, ixfr=True))
    assert records[1][1] != dns.rdatatype.SOA  # SOA, then the zone: AXFR form
    assert apply_transfer(messages, query, old_zone, serial=1000) == zone_of(store, APEX)
    assert recorder.events[-1].result == "full" and recorder.events[-1].type == "ixfr"
    query, messages = await ixfr(service, FORWARD, 1001)  # still in the journal
    assert records_of(parse_all(messages, query, ixfr=True))[1][1] == dns.rdatatype.SOA


async def test_an_untracked_change_makes_the_zone_forget_its_history():
    service, store, _ = make_service()
    move_pod(store, 1, "10.8.0.1")
    store.commit(APEX, added=[a_record(f"big.{FORWARD}", "10.8.0.2")], untracked=True)
    move_pod(store, 2, "10.8.0.3")
    assert service.journal.changes(APEX) == 1
    query, messages = await ixfr(service, FORWARD, 1001)
    assert records_of(parse_all(messages, query, ixfr=True))[1][1] != dns.rdatatype.SOA
    query, messages = await ixfr(service, FORWARD, 1002)
    assert records_of(parse_all(messages, query, ixfr=True))[1][1] == dns.rdatatype.SOA


async def test_over_udp_a_small_difference_fits_and_a_big_one_is_the_single_soa():
    service, store, recorder = make_service()
    move_pod(store, 1, "10.9.0.1")
    query, messages = await ixfr(service, FORWARD, 1000, tcp=False)
    assert len(messages) == 1 and len(messages[0]) <= 512
    assert len(records_of(parse_all(messages, query, ixfr=True))) == 6
    assert recorder.events[-1].transport == "udp" and recorder.events[-1].result == "incremental"

    store.commit(APEX, added=[a_record(f"bulk-{i}.{FORWARD}", f"10.9.1.{i}") for i in range(60)])
    query, messages = await ixfr(service, FORWARD, 1000, tcp=False, use_edns=0)
    records = records_of(parse_all(messages, query, ixfr=True))
    assert [r[1] for r in records] == [dns.rdatatype.SOA] and " 1002 " in records[0][2]
    assert recorder.events[-1].result == "truncated"
    query, messages = await ixfr(service, FORWARD, 1000, tcp=True)
    assert len(records_of(parse_all(messages, query, ixfr=True))) == 4 + 1 + 61  # four SOAs, one removed, 61 added

    query, messages = await ixfr(service, FORWARD, 5, tcp=False)  # not in the journal: no AXFR over UDP
    assert [r[1] for r in records_of(parse_all(messages, query, ixfr=True))] == [dns.rdatatype.SOA]


async def test_signed_ixfr_and_the_reverse_zone():
    service, store, _ = make_service()
    apex = names.to_wire(REVERSE)
    old_zone = zone_of(store, apex)
    name, ip = pod_identity(4)
    store.commit(apex, removed=[ptr_record(ip, name)], added=[ptr_record("10.244.200.1", name)])
    query, messages = await ixfr(service, REVERSE, 1000, key=KEY_1)
    assert all(m.had_tsig for m in parse_all(messages, query, ixfr=True))
    assert apply_transfer(messages, query, old_zone, serial=1000) == zone_of(store, apex)


async def test_serial_arithmetic_across_the_wrap():
    assert newer(0, 0xFFFFFFFF) and newer(5, 0xFFFFFFF0) and not newer(0xFFFFFFF0, 5) and not newer(7, 7)
    service, store, _ = make_service(serial=0xFFFFFFFE)
    old_zone = zone_of(store, APEX)
    move_pod(store, 1, "10.10.0.1")
    move_pod(store, 2, "10.10.0.2")
    assert store.zones[APEX].serial == 0
    query, messages = await ixfr(service, FORWARD, 0xFFFFFFFE)
    assert apply_transfer(messages, query, old_zone, serial=0xFFFFFFFE) == zone_of(store, APEX)
    query, messages = await ixfr(service, FORWARD, 1)  # ahead of 0: current
    assert len(records_of(parse_all(messages, query, ixfr=True))) == 1


def rr(i: int) -> RR:
    return a_record(f"r{i}.{FORWARD}", f"10.0.0.{i}")


def change(old: int, new: int, removed=(), added=(), apex: bytes = APEX) -> ZoneChange:
    return ZoneChange(apex, old, new, tuple(removed), tuple(added))


def test_journal_count_bound_per_zone():
    journal = Journal(max_changes=3, max_bytes=10**9)
    for serial in range(10):
        journal.record([change(serial, serial + 1, added=[rr(serial)])])
    assert journal.changes(APEX) == 3 and journal.oldest_serial(APEX) == 7
    assert journal.difference(APEX, 6, 10) is None and journal.difference(APEX, 7, 10) is not None


def test_journal_byte_bound_drops_the_oldest_over_all_zones():
    other = names.to_wire(REVERSE)
    size = len(rr(1).owner) + 10 + 4
    sizes = []
    journal = Journal(max_changes=100, max_bytes=5 * size, on_size=lambda apex, changes, total: sizes.append((apex, changes, total)))
    journal.record([change(1, 2, added=[rr(1)]), change(1, 2, added=[rr(2)], apex=other)])
    journal.record([change(2, 3, added=[rr(3)]), change(2, 3, added=[rr(4)], apex=other)])
    assert journal.size == 4 * size
    journal.record([change(3, 4, added=[rr(5), rr(6)])])  # 6 records: the oldest (zone 1's first) goes
    assert journal.size == 5 * size and journal.oldest_serial(APEX) == 2 and journal.oldest_serial(other) == 1
    assert sizes[-1] in ((APEX, 2, 3 * size), (other, 2, 2 * size))
    journal.record([change(4, 5, added=[rr(i) for i in range(10, 20)])])  # bigger than the bound alone
    assert journal.size <= 5 * size and journal.difference(APEX, 4, 5) is None


def test_journal_gap_and_disabled():
    journal = Journal(max_changes=10, max_bytes=10**6)
    journal.record([change(1, 2, added=[rr(1)]), change(5, 6, added=[rr(2)])])  # 2 -> 5 is missing
    assert journal.changes(APEX) == 1 and journal.oldest_serial(APEX) == 5
    off = Journal(max_changes=0, max_bytes=10**6)
    off.record([change(1, 2, added=[rr(1)])])
    assert off.changes(APEX) == 0 and off.size == 0


def test_condense_cancels_what_comes_back():
    steps = [
        Step(1, 2, (rr(1),), (rr(2),), 0, 0),
        Step(2, 3, (rr(2),), (rr(1), rr(3)), 0, 1),  # rr(1) back, rr(2) gone again
        Step(3, 4, (rr(4),), (rr(5),), 0, 2),
    ]
    assert condense(steps) == ([rr(4)], [rr(3), rr(5)])


def test_the_journal_is_fed_by_the_store_listener():
    service, store, recorder = make_service()
    move_pod(store, 1, "10.11.0.1")
    assert service.journal.changes(APEX) == 1
    assert recorder.journal[-1][0] == FORWARD + "." and recorder.journal[-1][1] == 1


POOL = [a_record(f"p{i % 6}.{FORWARD}", f"10.20.{i // 6}.{i % 6}") for i in range(12)] + [a_record(f"p0.{FORWARD}", "fd00::1")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    initial=st.sets(st.sampled_from(POOL)),
    steps=st.lists(st.tuples(st.sets(st.integers(0, len(POOL) - 1), max_size=5), st.booleans(), st.integers(1, 3)), min_size=1, max_size=8),
    max_changes=st.integers(1, 6),
    max_records=st.integers(1, 40),
    start=st.sampled_from([1000, 0xFFFFFFFD]),
)
async def test_applying_the_ixfr_to_any_old_zone_gives_the_new_one(initial, steps, max_changes, max_records, start):
    """Property: for every serial the zone has had, the IXFR reply applied to that state is the current state,
    whether it comes as a difference or as the whole zone; and it is a difference whenever the last change
    is tracked and fits the journal."""
    store = FakeStore()
    zone = store.add_zone(FORWARD, start, f"ns.{FORWARD}")
    for record in initial:
        zone.records[record] = None
    size = len(POOL[0].owner) + 10 + 4
    service = TransferService(
        TransferSettings(allow_unsigned=TRUSTED, ixfr_journal=max_changes, ixfr_journal_bytes=max_records * size), store, store.answer
    )
    history = {zone.serial: zone_of(store, APEX)}
    last_tracked = False
    for toggles, untracked, step in steps:
        flipped = [POOL[i] for i in sorted(toggles)]
        removed = [r for r in flipped if r in zone.records]
        added = [r for r in flipped if r not in zone.records]
        store.commit(APEX, removed, added, untracked=untracked, step=step)
        history[zone.serial] = zone_of(store, APEX)
        # Fits when its records' bytes do (an AAAA takes 12 bytes more than an A).
        last_tracked = not untracked and sum(map(record_size, removed + added)) <= max_records * size
    current = zone_of(store, APEX)
    for serial, old_zone in history.items():
        query, messages = await ixfr(service, FORWARD, serial)
        assert apply_transfer(messages, query, old_zone, serial=serial) == current
        records = records_of(parse_all(messages, query, ixfr=True))
        if serial != zone.serial and serial == list(history)[-2] and last_tracked:
            assert records[1][1] == dns.rdatatype.SOA, "the last tracked change must come as a difference"


@pytest.mark.parametrize("tcp", [True, False])
async def test_an_ixfr_of_a_zone_we_do_not_serve_is_notauth(tcp):
    service, _, _ = make_service()
    query, messages = await ixfr(service, "example.com", 1, tcp=tcp, key=KEY_1)
    assert dns.message.from_wire(messages[0], keyring=KEY_1.key, request_mac=query.mac).rcode() == 9


async def test_an_ixfr_takes_no_snapshot_and_its_soa_is_the_one_served():
    service, store, _ = make_service()
    move_pod(store, 2, "10.12.0.1")
    query, messages = await ixfr(service, FORWARD, 1000)
    assert store.snapshots == []  # the SOA came from the ordinary answer path, not a zone snapshot
    served = dns.message.from_wire(store.answer(dns.message.make_query(FORWARD, "SOA").to_wire())).answer[0]
    first = parse_all(messages, query, ixfr=True)[0].answer[0]
    assert (first.ttl, first[0]) == (served.ttl, served[0])
