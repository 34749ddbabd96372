"""TSIG with dnspython as the client: signed transfers verify message by message, signed queries get
signed answers, and every failed check is answered as RFC 8945 says, with nothing of the zone."""

from __future__ import annotations

import asyncio
import logging
import struct
import time

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.transfer import KeyRing, TransferObserver, TransferService, TransferSettings
from server.transfer.keys import make_key
from tests.fakestore import FORWARD, REVERSE, FakeStore, pod_zones
from tests.xfrclient import KEY_1, KEY_2, PEER, SECRET_2, apply_transfer, collect, empty_zone, parse_all, request, zone_of

NOTAUTH = 9


class Recorder(TransferObserver):
    def __init__(self):
        self.events = []
        self.signed = []

    def transfer_done(self, event):
        self.events.append(event)

    def signed_query(self, result, key):
        self.signed.append((result, key))


def make_service(pods: int = 400, clock=time.time, **settings_kw):
    store = FakeStore()
    pod_zones(store, pods)
    recorder = Recorder()
    settings_kw.setdefault("transfer_keys", ("xfr-key",))
    service = TransferService(TransferSettings(**settings_kw), store, store.answer, recorder, KeyRing([KEY_1, KEY_2]), clock)
    return service, store, recorder


def header(reply: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack("!HHHHHH", reply[:12])


def tsig_error(reply: bytes) -> tuple[int, bytes, int]:
    """(TSIG error, MAC, time signed) of a reply's trailing TSIG, read by hand (dnspython refuses error replies)."""
    message = dns.message.from_wire(reply, keyring=lambda message, name: False)  # parse, do not validate
    rdata = message.tsig[0]
    return rdata.error, rdata.mac, rdata.time_signed


@pytest.mark.parametrize("key", [KEY_1, KEY_2], ids=["hmac-sha256", "hmac-sha512"])
async def test_a_signed_axfr_verifies_message_by_message(key):
    service, store, recorder = make_service(pods=2000, transfer_keys=("xfr-key", "other-key"))
    query = request(FORWARD, "AXFR", key)
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    assert len(messages) >= 3  # the TSIG chain is exercised across messages
    parsed = parse_all(messages, query)  # raises unless every MAC verifies against the one before
    assert all(message.had_tsig for message in parsed)
    zone = apply_transfer(messages, query, empty_zone(FORWARD))
    assert zone == zone_of(store, store.zones[query.question[0].name.to_wire()].apex)
    assert recorder.events[-1].key == key.name and recorder.events[-1].result == "full"


async def test_each_mac_covers_the_one_before():
    service, _, _ = make_service(pods=2000)
    query = request(FORWARD, "AXFR", KEY_1)
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    # Swapping two later messages keeps every message intact but breaks the chain.
    swapped = [messages[0], messages[2], messages[1], *messages[3:]]
    with pytest.raises(dns.tsig.BadSignature):
        parse_all(swapped, query)
    tampered = [messages[0], messages[1][:-200] + bytes([messages[1][-200] ^ 1]) + messages[1][-199:], *messages[2:]]
    with pytest.raises(dns.exception.DNSException):
        parse_all(tampered, query)


@pytest.mark.parametrize("tcp", [False, True])
def test_a_signed_ordinary_query_gets_the_ordinary_answer_signed(tcp):
    service, store, recorder = make_service()
    query = dns.message.make_query(f"app-1.set-1.ns-1.{FORWARD}", "A", use_edns=0)
    query.use_tsig(KEY_2.key)  # any known key signs queries; only transfers need a transfer key
    reply = service.handle(query.to_wire(), PEER, tcp)
    response = dns.message.from_wire(reply, keyring=KEY_2.key, request_mac=query.mac)
    assert response.had_tsig and response.id == query.id
    plain = dns.message.make_query(f"app-1.set-1.ns-1.{FORWARD}", "A", use_edns=0)
    plain.id = query.id
    expected = dns.message.from_wire(store.answer(plain.to_wire(), tcp))
    assert response.answer == expected.answer and response.rcode() == expected.rcode() and response.flags == expected.flags
    assert response.opt is not None
    assert recorder.signed == [("ok", "other-key.")]


def test_a_signed_answer_that_no_longer_fits_udp_is_the_signed_question_with_tc():
    service, store, _ = make_service()
    name = f"many.{FORWARD}"
    zone = store.zones[dns.name.from_text(FORWARD).to_wire()]
    from tests.fakestore import a_record

    for i in range(28):  # 28 A records: 480 bytes of answer, under 512 alone, over it with a TSIG
        zone.records[a_record(name, f"10.1.0.{i}")] = None
    query = dns.message.make_query(name, "A", use_edns=False)
    query.use_tsig(KEY_1.key)
    unsigned = dns.message.make_query(name, "A", use_edns=False)
    assert len(store.answer(unsigned.to_wire())) <= 512
    reply = service.handle(query.to_wire(), PEER, False)
    assert len(reply) <= 512
    response = dns.message.from_wire(reply, keyring=KEY_1.key, request_mac=query.mac)
    assert response.flags & dns.flags.TC and not response.answer and response.question[0].name.to_text() == name + "."
    tcp = dns.message.from_wire(service.handle(query.to_wire(), PEER, True), keyring=KEY_1.key, request_mac=query.mac)
    assert len(tcp.answer[0]) == 28


def test_unsigned_ordinary_queries_are_not_its_business():
    service, _, _ = make_service()
    for query in (dns.message.make_query(FORWARD, "SOA"), dns.message.make_query(FORWARD, "SOA", use_edns=0)):
        assert not service.may_concern(query.to_wire())
        assert service.handle(query.to_wire(), PEER, False) is None
    signed = dns.message.make_query(FORWARD, "SOA", use_edns=0)
    signed.use_tsig(KEY_1.key)
    assert service.may_concern(signed.to_wire())
    assert service.may_concern(request(FORWARD, "AXFR").to_wire()) and service.may_concern(request(FORWARD, "IXFR", serial=1).to_wire())


def assert_learns_nothing(reply: bytes, rcode: int) -> None:
    _, flags, qdcount, ancount, nscount, _ = header(reply)
    assert flags & 0xF == rcode
    assert not flags & 0x0400  # not authoritative for anything
    assert (qdcount, ancount, nscount) == (1, 0, 0)


async def test_unknown_key_is_badkey_unsigned():
    service, _, recorder = make_service()
    stranger = make_key("stranger", "hmac-sha256", b"x" * 32)
    query = request(FORWARD, "AXFR", stranger)
    reply = service.handle(query.to_wire(), PEER, True)
    assert isinstance(reply, bytes)
    assert_learns_nothing(reply, NOTAUTH)
    error, mac, _ = tsig_error(reply)
    assert (error, mac) == (dns.rcode.BADKEY, b"")
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.message.from_wire(reply, keyring=stranger.key, request_mac=query.mac)
    assert recorder.events[-1].result == "badkey" and recorder.events[-1].records == 0


async def test_wrong_secret_is_badsig_unsigned():
    service, _, recorder = make_service()
    impostor = make_key("xfr-key", "hmac-sha256", SECRET_2)
    query = request(FORWARD, "AXFR", impostor)
    reply = service.handle(query.to_wire(), PEER, True)
    assert_learns_nothing(reply, NOTAUTH)
    error, mac, _ = tsig_error(reply)
    assert (error, mac) == (dns.rcode.BADSIG, b"")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.message.from_wire(reply, keyring=impostor.key, request_mac=query.mac)
    assert recorder.events[-1].result == "badsig"


async def test_wrong_algorithm_for_a_known_name_is_badkey():
    service, _, _ = make_service()
    other_algorithm = make_key("xfr-key", "hmac-sha512", KEY_1.key.secret)
    reply = service.handle(request(FORWARD, "AXFR", other_algorithm).to_wire(), PEER, True)
    assert tsig_error(reply)[0] == dns.rcode.BADKEY


def with_mac_length(wire: bytes, key, length: int) -> bytes:
    """A signed request whose full MAC (the TSIG's last field but three) is cut to, or padded to, `length` bytes."""
    full = key.mac_size
    rdlength = len(key.algorithm_wire) + 16 + full
    rdata_start = len(wire) - rdlength
    mac_start = rdata_start + len(key.algorithm_wire) + 10
    mac = wire[mac_start : mac_start + full]
    mac = mac[:length] if length <= full else mac + bytes(length - full)
    new_rdlength = rdlength - full + length
    return (
        wire[: rdata_start - 2]
        + new_rdlength.to_bytes(2, "big")
        + wire[rdata_start : mac_start - 2]
        + length.to_bytes(2, "big")
        + mac
        + wire[mac_start + full :]
    )


async def test_a_truncated_mac_is_badtrunc_and_an_impossible_length_formerr():
    """RFC 8945 §5.2.2.1: a MAC cut to an allowed length (at least max(10, half the hash)) is below our
    policy of full MACs, BADTRUNC unsigned; longer than the hash or shorter than that, FORMERR."""
    service, _, recorder = make_service()
    wire = request(FORWARD, "AXFR", KEY_1).to_wire()
    assert service.handle(with_mac_length(wire, KEY_1, KEY_1.mac_size), PEER, True) is not None
    reply = service.handle(with_mac_length(wire, KEY_1, 16), PEER, True)
    assert_learns_nothing(reply, NOTAUTH)
    assert tsig_error(reply)[:2] == (dns.rcode.BADTRUNC, b"")
    assert recorder.events[-1].result == "badtrunc"
    for length in (8, 0, KEY_1.mac_size + 8):
        reply = service.handle(with_mac_length(wire, KEY_1, length), PEER, True)
        assert_learns_nothing(reply, dns.rcode.FORMERR)
        assert recorder.events[-1].result == "formerr"


async def test_an_edns_request_gets_opt_in_every_refusal_and_edns_version_1_is_badvers():
    """RFC 6891 §7: OPT in the reply to every EDNS request; §6.1.3: a version we do not speak is BADVERS."""
    service, _, recorder = make_service()
    stranger = make_key("stranger", "hmac-sha256", b"x" * 32)
    refused = [
        (request(FORWARD, "AXFR", None, use_edns=0), dns.rcode.REFUSED),  # unsigned, from an untrusted network
        (request("example.com", "AXFR", KEY_1, use_edns=0), NOTAUTH),  # not a zone of ours
        (request(FORWARD, "AXFR", stranger, use_edns=0), NOTAUTH),  # BADKEY
        (request(FORWARD, "IXFR", KEY_1, use_edns=0), dns.rcode.FORMERR),  # no SOA
    ]
    for query, rcode in refused:
        reply = service.handle(query.to_wire(), PEER, True)
        assert_learns_nothing(reply, rcode)
        assert dns.message.from_wire(reply, keyring=lambda m, n: False).edns == 0, (query.question, rcode)
    query = request(FORWARD, "AXFR", KEY_1, use_edns=1)
    reply = dns.message.from_wire(service.handle(query.to_wire(), PEER, True), keyring=KEY_1.key, request_mac=query.mac)
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0
    assert not reply.answer and not reply.authority
    assert recorder.events[-1].result == "badvers"


async def test_an_ixfr_whose_soa_is_of_another_zone_is_formerr():
    """RFC 1995 §3: the authority section holds the client's SOA of the zone asked for."""
    service, _, recorder = make_service()
    query = request(FORWARD, "IXFR", None)
    query.authority.append(dns.rrset.from_text("example.com.", 0, "IN", "SOA", ". . 1 0 0 0 0"))
    query.use_tsig(KEY_1.key)
    reply = service.handle(query.to_wire(), PEER, True)
    assert_learns_nothing(reply, dns.rcode.FORMERR)
    assert recorder.events[-1].result == "formerr"
    query = request(FORWARD, "IXFR", KEY_1, serial=1)  # the same, owned by the zone: answered
    first = parse_all(await collect(service.handle(query.to_wire(), PEER, True)), query, ixfr=True)[0]
    assert first.rcode() == dns.rcode.NOERROR and first.answer[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("skew", [-310, 310, 5000])  # clear of the 300 s fudge even on a slow machine
async def test_a_time_outside_the_fudge_is_badtime_signed_with_the_server_time(skew):
    server_now = time.time() + skew
    service, _, recorder = make_service(clock=lambda: server_now)
    query = request(FORWARD, "AXFR", KEY_1)
    wire = query.to_wire()
    reply = service.handle(wire, PEER, True)
    assert_learns_nothing(reply, NOTAUTH)
    message = dns.message.from_wire(reply, keyring=lambda m, n: False)
    rdata = message.tsig[0]
    assert rdata.error == dns.rcode.BADTIME
    assert rdata.time_signed == query.tsig[0].time_signed  # the client's time, RFC 8945 §5.2.3
    assert int.from_bytes(rdata.other, "big") == int(server_now)
    # Signed with the request's key over the request's MAC: it verifies once the error check is set aside.
    ctx = dns.tsig._digest(
        reply[:10] + b"\x00\x00" + reply[12 : reply.rfind(KEY_1.wire_name)], KEY_1.key, rdata, None, query.mac, None, False
    )
    ctx.verify(rdata.mac)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(reply, keyring=KEY_1.key, request_mac=query.mac)
    assert recorder.events[-1].result == "badtime"


async def test_inside_the_fudge_is_fine():
    service, _, _ = make_service(clock=lambda: time.time() + 290)
    query = request(FORWARD, "AXFR", KEY_1)
    messages = await collect(service.handle(query.to_wire(), PEER, True))
    assert len(parse_all(messages, query)) >= 1


async def test_no_key_is_refused_unless_the_network_is_trusted():
    service, store, recorder = make_service()
    query = request(FORWARD, "AXFR")
    reply = service.handle(query.to_wire(), PEER, True)
    assert_learns_nothing(reply, dns.rcode.REFUSED)
    assert recorder.events[-1].result == "refused" and recorder.events[-1].zone == ""

    trusting, store, _ = make_service(allow_unsigned=("192.0.2.0/24", "2001:db8::/32"))
    for peer in (PEER, ("::ffff:192.0.2.77", 53, 0, 0), ("2001:db8::5", 53, 0, 0)):
        messages = await collect(trusting.handle(query.to_wire(), peer, True))
        assert apply_transfer(messages, query, empty_zone(FORWARD)) == zone_of(store, dns.name.from_text(FORWARD).to_wire())
    assert_learns_nothing(trusting.handle(query.to_wire(), ("198.51.100.1", 53), True), dns.rcode.REFUSED)


async def test_default_policy_refuses_everyone():
    store = FakeStore()
    pod_zones(store, 10)
    service = TransferService(TransferSettings(), store, store.answer, keys=KeyRing([KEY_1]))
    for key in (None, KEY_1):
        reply = service.handle(request(FORWARD, "AXFR", key).to_wire(), ("127.0.0.1", 5353), True)
        assert_learns_nothing(reply, dns.rcode.REFUSED)


async def test_a_known_key_that_is_not_a_transfer_key_is_refused_signed():
    service, _, _ = make_service()
    query = request(FORWARD, "AXFR", KEY_2)
    reply = service.handle(query.to_wire(), PEER, True)
    assert_learns_nothing(reply, dns.rcode.REFUSED)
    assert dns.message.from_wire(reply, keyring=KEY_2.key, request_mac=query.mac).had_tsig


async def test_unauthorised_clients_cannot_tell_served_zones_from_others():
    service, _, _ = make_service()
    served = service.handle(request(FORWARD, "AXFR").to_wire(), PEER, True)
    other = service.handle(request("example.com", "AXFR").to_wire(), PEER, True)
    assert header(served)[1:] == header(other)[1:]
    # With the key, a zone we do not serve is NOTAUTH.
    query = request("example.com", "AXFR", KEY_1)
    assert_learns_nothing(service.handle(query.to_wire(), PEER, True), NOTAUTH)


async def test_axfr_over_udp_and_ixfr_without_soa_are_formerr():
    service, _, _ = make_service()
    assert_learns_nothing(service.handle(request(FORWARD, "AXFR", KEY_1).to_wire(), PEER, False), dns.rcode.FORMERR)
    assert_learns_nothing(service.handle(request(REVERSE, "IXFR", KEY_1).to_wire(), PEER, True), dns.rcode.FORMERR)


def _signed_axfr() -> bytes:
    return request(FORWARD, "AXFR", KEY_1).to_wire()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_hostile_requests_never_break_it(data):
    """Random bytes, and signed requests with bytes changed, cut or added: a reply or None, never an exception."""
    service, _, _ = make_service(pods=5)
    base = data.draw(st.sampled_from([_signed_axfr(), request(FORWARD, "IXFR", KEY_1, serial=3).to_wire(), b""]))
    if base:
        wire = bytearray(base)
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(wire) - 1))
            wire[position] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            wire = wire[: data.draw(st.integers(0, len(wire)))] + data.draw(st.binary(max_size=8))
    else:
        wire = bytearray(data.draw(st.binary(max_size=300)))
    reply = service.handle(bytes(wire), PEER, data.draw(st.booleans()))
    if reply is not None and not isinstance(reply, bytes):
        # Only a request dnspython too finds signed with the key transfers (the ID and the case of
        # the key and algorithm names are outside the MAC, by RFC 8945).
        assert dns.message.from_wire(bytes(wire), keyring={KEY_1.key.name: KEY_1.key}).had_tsig
        asyncio.run(collect(reply))


def test_refusals_are_logged_but_a_flood_is_only_counted(caplog):
    service, _, recorder = make_service()
    caplog.set_level(logging.INFO, logger="pod_identity_dns.transfer")
    for _ in range(50):
        service.handle(request(FORWARD, "IXFR", serial=1).to_wire(), PEER, False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(recorder.events) == 50 and all(e.result == "refused" for e in recorder.events)
    assert len(lines) == 20 and all(line.startswith("transfer IXFR refused zone=- peer=192.0.2.10#40000 key=-") for line in lines)
    service.log._window_start -= 61  # a minute later the next line says how many were left out
    service.handle(request(FORWARD, "IXFR", serial=1).to_wire(), PEER, False)
    assert "30 more not logged" in caplog.records[-2].getMessage()
