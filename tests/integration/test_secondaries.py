"""Real secondaries, Knot (knotd) and BIND (named), transferring from the engine with TSIG: both load a
forward and a reverse zone and answer like the primary; a change reaches both by NOTIFY and IXFR; a change
too big for the journal falls back to a full transfer; bad keys and times are refused."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from unittest import mock

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.xfr
import pytest

from server.transfer import TransferSettings
from server.transfer.keys import make_key, read_key_file
from server.zone import names
from tests.fakestore import FORWARD, NS_NAME, REVERSE, FakeStore, a_record, pod_identity, pod_zones, ptr_record
from tests.secondaries import Bind, Knot, Primary, free_port, generate_keys

ZONES = [FORWARD, REVERSE]
PODS = 300
JOURNAL_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One primary with NOTIFY to one knotd and one named, each with its own transfer key."""
    directory = tmp_path_factory.mktemp("secondaries")
    key_file = generate_keys(directory, "knot-xfr", "bind-xfr", "notify-key")
    store = FakeStore()
    pod_zones(store, PODS)
    port = free_port()
    knot = Knot(directory / "knot", port, ZONES, key_file, "knot-xfr", "notify-key")
    bind = Bind(directory / "bind", port, ZONES, key_file, "bind-xfr", "notify-key")
    settings = TransferSettings(
        key_files=(str(key_file),),
        transfer_keys=("knot-xfr", "bind-xfr"),
        notify_key="notify-key",
        notify=(("127.0.0.1", knot.port), ("127.0.0.1", bind.port)),
        ixfr_journal_bytes=JOURNAL_BYTES,
    )
    primary = Primary(store, settings, port)
    try:
        primary.__enter__()
        knot.start()
        bind.start()
        for secondary in (knot, bind):
            secondary.wait_for(lambda s=secondary: all(s.serial(z) == primary.store.zones[names.to_wire(z)].serial for z in ZONES))
        yield SimpleNamespace(primary=primary, knot=knot, bind=bind, key_file=key_file, directory=directory)
    finally:
        knot.stop()
        bind.stop()
        primary.close()


def ask(port: int, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=3, port=port)


def answer_of(message: dns.message.Message) -> tuple:
    """What must be equal between primary and secondary: rcode, AA, the answer; for negatives the SOA."""
    answer = sorted((r.name.to_text(), r.rdtype, r.ttl, sorted(d.to_text() for d in r)) for r in message.answer)
    negative = sorted((r.name.to_text(), r.rdtype, sorted(d.to_text() for d in r)) for r in message.authority if not message.answer)
    return message.rcode(), bool(message.flags & dns.flags.AA), answer, negative


def sample_questions() -> list[tuple[str, str]]:
    questions = [(FORWARD, "SOA"), (FORWARD, "NS"), (REVERSE, "SOA"), (REVERSE, "NS"), (NS_NAME, "A")]
    for i in (0, 1, 77, PODS - 1):
        name, ip = pod_identity(i)
        questions += [(name, "A"), (name, "AAAA"), (names.to_text(names.reverse_name(ip)), "PTR")]
    questions += [(f"nobody.{FORWARD}", "A"), ("99.99.244.10.in-addr.arpa", "PTR"), (f"set-1.ns-1.{FORWARD}", "A")]
    return questions


def converged(secondary, primary) -> bool:
    return all(secondary.serial(z) == primary.store.zones[names.to_wire(z)].serial for z in ZONES)


def test_both_secondaries_hold_every_zone_and_answer_like_the_primary(setup):
    for secondary in (setup.knot, setup.bind):
        secondary.wait_for(lambda s=secondary: converged(s, setup.primary))
        for name, rdtype in sample_questions():
            expected = answer_of(ask(setup.primary.port, name, rdtype))
            assert answer_of(ask(secondary.port, name, rdtype)) == expected, f"{secondary.name}: {name} {rdtype}"
    loaded = {(e.key, e.zone) for e in setup.primary.events.transfers if e.result in ("full", "incremental")}
    assert {(k, z + ".") for k in ("knot-xfr.", "bind-xfr.") for z in ZONES} <= loaded


def test_a_change_reaches_both_by_notify_and_travels_as_ixfr(setup):
    primary = setup.primary
    forward, reverse = names.to_wire(FORWARD), names.to_wire(REVERSE)
    old_serials = {z: primary.store.zones[z].serial for z in (forward, reverse)}
    name, ip = pod_identity(5)
    moved = "10.244.201.5"
    primary.commit(forward, removed=[a_record(name, ip)], added=[a_record(name, moved)])
    primary.commit(reverse, removed=[ptr_record(ip, name)], added=[ptr_record(moved, name)])
    new_serials = {z: primary.store.zones[z].serial for z in (forward, reverse)}
    reverse_name = names.to_text(names.reverse_name(moved))
    for secondary in (setup.knot, setup.bind):
        took = secondary.wait_for(
            lambda s=secondary: (
                [d.to_text() for r in ask(s.port, name, "A").answer for d in r] == [moved] and bool(ask(s.port, reverse_name, "PTR").answer)
            )
        )
        print(f"{secondary.name}: the change answered after {took:.2f} s")
    for key in ("knot-xfr.", "bind-xfr."):
        for apex in (forward, reverse):
            done = primary.events.find(type="ixfr", result="incremental", key=key, zone=names.to_text(apex), serial=new_serials[apex])
            assert done and done[-1].client_serial == old_serials[apex] and done[-1].records == 6, key
    serial = new_serials[forward]
    assert re.search(rf"\[{FORWARD}\.\] notify, incoming, remote 127\.0\.0\.1@\d+, serial {serial}", setup.knot.log_text())
    assert re.search(rf"zone {FORWARD}/IN: notify from 127\.0\.0\.1#\d+: serial {serial}", setup.bind.log_text())

    # dnspython asks the primary for the same difference over the real socket: the incremental form.
    key = {k.name: k for k in read_key_file(str(setup.key_file))}["knot-xfr."]
    records = [
        (rrset.rdtype, rdata.to_text())
        for message in dns.query.xfr(
            "127.0.0.1", FORWARD, "IXFR", port=primary.port, serial=old_serials[forward], keyring=key.key, keyname=key.key.name
        )
        for rrset in message.answer
        for rdata in rrset
    ]
    assert [t for t, _ in records] == [
        dns.rdatatype.SOA,
        dns.rdatatype.SOA,
        dns.rdatatype.A,
        dns.rdatatype.SOA,
        dns.rdatatype.A,
        dns.rdatatype.SOA,
    ]
    assert (records[2][1], records[4][1]) == (ip, moved)


def test_a_change_too_big_for_the_journal_falls_back_to_a_full_transfer(setup):
    primary = setup.primary
    forward = names.to_wire(FORWARD)
    old_serial = primary.store.zones[forward].serial
    gone, _ = pod_identity(9)
    removed = [r for r in primary.store.zones[forward].records if r.owner == names.to_wire(gone)]
    bulk = [a_record(f"bulk-{i}.set-9.ns-9.{FORWARD}", f"10.250.{i // 250}.{i % 250}") for i in range(600)]
    assert sum(len(r.owner) + 14 for r in bulk) > JOURNAL_BYTES
    primary.commit(forward, removed=removed, added=bulk)
    assert primary.call(lambda: primary.service.journal.difference(forward, old_serial, primary.store.zones[forward].serial)) is None
    for secondary in (setup.knot, setup.bind):
        secondary.wait_for(
            lambda s=secondary: (
                bool(ask(s.port, f"bulk-599.set-9.ns-9.{FORWARD}", "A").answer) and ask(s.port, gone, "A").rcode() == dns.rcode.NXDOMAIN
            )
        )
        for name, rdtype in [*sample_questions(), (f"bulk-0.set-9.ns-9.{FORWARD}", "A"), (f"bulk-300.set-9.ns-9.{FORWARD}", "A")]:
            assert answer_of(ask(secondary.port, name, rdtype)) == answer_of(ask(primary.port, name, rdtype)), f"{secondary.name}: {name}"
    serial = primary.store.zones[forward].serial
    for key in ("knot-xfr.", "bind-xfr."):
        assert primary.events.find(type="ixfr", result="full", key=key, zone=FORWARD + ".", serial=serial), key


def test_signed_and_unsigned_soa_queries_over_udp(setup):
    key = {k.name: k for k in read_key_file(str(setup.key_file))}["bind-xfr."]
    query = dns.message.make_query(FORWARD, "SOA")
    query.use_tsig(key.key)
    reply = dns.query.udp(query, "127.0.0.1", timeout=3, port=setup.primary.port)  # dnspython checks the TSIG
    assert reply.had_tsig and reply.answer[0].rdtype == dns.rdatatype.SOA
    assert not ask(setup.primary.port, FORWARD, "SOA").had_tsig


def _xfr(port: int, key=None, **kw) -> list:
    kwargs = {"keyring": key.key, "keyname": key.key.name, "keyalgorithm": key.key.algorithm} if key else {}
    return list(dns.query.xfr("127.0.0.1", FORWARD, port=port, timeout=5, **kwargs, **kw))


def test_wrong_unknown_and_missing_keys_and_bad_time_are_refused(setup):
    port = setup.primary.port
    real = {k.name: k for k in read_key_file(str(setup.key_file))}["knot-xfr."]
    wrong_secret = make_key("knot-xfr", "hmac-sha256", b"not the secret" * 2)
    unknown = make_key("who-are-you", "hmac-sha256", real.key.secret)
    with pytest.raises(dns.tsig.PeerBadSignature):
        _xfr(port, wrong_secret)
    with pytest.raises(dns.tsig.PeerBadKey):
        _xfr(port, unknown)
    with pytest.raises(dns.xfr.TransferError) as refused:
        _xfr(port)
    assert refused.value.rcode == dns.rcode.REFUSED
    an_hour_ago = SimpleNamespace(time=lambda: time.time() - 3600)
    with mock.patch("dns.message.time", an_hour_ago), pytest.raises(dns.tsig.PeerBadTime):  # the client signs an hour late
        _xfr(port, real)
    assert len(_xfr(port, real)) >= 1  # and the right key still works
    results = [e.result for e in setup.primary.events.transfers if e.type == "axfr" and e.records == 0]
    assert {"badsig", "badkey", "refused", "badtime"} <= set(results)


def test_a_secondary_with_the_wrong_secret_never_gets_the_zone(setup, tmp_path):
    impostor_keys = generate_keys(tmp_path, "knot-xfr", "notify-key")  # the right names, other secrets
    impostor = Knot(tmp_path / "knot", setup.primary.port, [FORWARD], impostor_keys, "knot-xfr", "notify-key")
    before = len(setup.primary.events.find(result="badsig"))
    with impostor:
        impostor.wait_for(lambda: len(setup.primary.events.find(result="badsig")) > before)
        reply = impostor.ask(FORWARD, "SOA")
        assert reply is not None and reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    assert "TSIG" in impostor.log_text() or "BADSIG" in impostor.log_text().upper()
