"""The bounded section scanner (server/zone/message.py): what it finds, what it refuses, and that its work
stays under its budget for the worst packets there are (tests/hostile.py)."""

from __future__ import annotations

import struct

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import pytest

from server.zone import message
from server.zone.fastpath import respond
from server.zone.names import labels_end, to_wire
from tests import hostile
from tests.helpers import ZONE, build, sts_pod

QUESTION_END = 12 + len(hostile.question())


@pytest.fixture(scope="module")
def store():
    view, _ = build([sts_pod("kafka", 0, "10.244.1.10")])
    return view


def record(owner: bytes, rtype: int = 1, rclass: int = 1, ttl: int = 0, rdata: bytes = b"\x7f\x00\x00\x01") -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def opt_record(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    return record(b"\x00", 41, payload, (version << 16) | (0x8000 if do else 0), options)


def test_a_plain_query_has_no_sections():
    assert message.scan_sections(hostile.plain(), QUESTION_END) == message.Sections(None, -1, False, 0)


def test_opt_fields():
    query = hostile.header(ar=1) + hostile.question() + opt_record(4096, 0, True, b"\x00\x0a\x00\x02ab")
    sections = message.scan_sections(query, QUESTION_END)
    assert sections.opt == message.Opt(QUESTION_END, 4096, 0, True)
    assert sections.last_additional == QUESTION_END
    assert not sections.tsig
    assert sections.steps == message.RECORD_STEPS + 1


def test_tsig_signed_query_from_dnspython_is_found_last():
    keyring = dns.tsigkeyring.from_text({"xfr-key.": "c2VjcmV0c2VjcmV0c2VjcmV0"})
    query = dns.message.make_query(f"{ZONE}.", "IXFR", use_edns=0)
    soa = dns.rrset.from_text(f"{ZONE}.", 0, "IN", "SOA", f"ns.{ZONE}. hostmaster.{ZONE}. 7 3600 600 86400 5")
    query.authority.append(soa)
    query.use_tsig(keyring, keyname="xfr-key.")
    wire = query.to_wire()
    end = labels_end(wire, 12) + 4
    sections = message.scan_sections(wire, end)
    assert sections.tsig
    assert sections.opt is not None
    key, after = message.name_at(wire, sections.last_additional)
    assert key == to_wire("xfr-key")
    assert struct.unpack_from("!HH", wire, after) == (250, 255)
    # Everything before the TSIG is the message the MAC covers (with ARCOUNT one less).
    assert wire[sections.last_additional :].startswith(b"\x07xfr-key\x00")
    assert sections.steps <= 20


def test_name_at_follows_pointers():
    query = hostile.header(ar=1) + hostile.question() + record(b"\x03www\xc0\x14")  # www + kafka.default...
    sections = message.scan_sections(query, QUESTION_END)
    name, after = message.name_at(query, sections.last_additional)
    assert dns.name.from_wire(name, 0)[0] == dns.name.from_text(f"www.kafka.default.{ZONE}")
    assert after == QUESTION_END + 6


def test_binary_labels_are_names():
    query = hostile.header(ar=1) + hostile.question() + record(b"\x04\x00\xff\x80\xc0\x00")
    assert message.scan_sections(query, QUESTION_END).last_additional == QUESTION_END


@pytest.mark.parametrize(
    "owner,reason",
    [
        (b"\xc0" + bytes([QUESTION_END]), "backwards"),  # points at itself
        (b"\xc0\xff", "backwards"),  # forwards
        (b"\x41abc\x00", "extended label"),
        (b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x00", "longer than 255"),
        (b"\x05ab", "cut short"),
    ],
)
def test_bad_names(owner, reason):
    query = hostile.header(ar=1) + hostile.question() + record(owner)
    with pytest.raises(message.Malformed, match=reason):
        message.scan_sections(query, QUESTION_END)


def test_names_through_pointers_may_have_255_bytes_and_no_more():
    room = 255 - len(to_wire(hostile.QNAME))  # labels in place, then a pointer to the question name

    def owner(size: int) -> bytes:
        labels = b""
        while size > 0:
            n = min(63, size - 1)
            labels += bytes([n]) + b"a" * n
            size -= n + 1
        return labels + b"\xc0\x0c"

    query = hostile.header(ar=1) + hostile.question() + record(owner(room))
    assert message.scan_sections(query, QUESTION_END).last_additional == QUESTION_END
    query = hostile.header(ar=1) + hostile.question() + record(owner(room + 2))
    with pytest.raises(message.Malformed, match="longer than 255"):
        message.scan_sections(query, QUESTION_END)


def test_malformed_carries_the_opt_read_before_the_fault():
    query = hostile.header(ar=2) + hostile.question() + opt_record(do=True) + b"\x01"
    with pytest.raises(message.Malformed) as caught:
        message.scan_sections(query, QUESTION_END)
    assert caught.value.opt == message.Opt(QUESTION_END, 1232, 0, True)


def test_find_opt_without_a_usable_question():
    assert message.find_opt(hostile.header(qd=0, ar=1) + opt_record(do=True)).do
    assert message.find_opt(hostile.header(qd=2, ar=1) + hostile.question() * 2 + opt_record()) is not None
    assert message.find_opt(hostile.header(qd=0)) is None
    assert message.find_opt(b"\x00\x01") is None


def test_many_records_are_refused_before_any_is_read():
    query = hostile.tiny_records(4096)
    with pytest.raises(message.Malformed, match="budget") as caught:
        message.scan_sections(query, QUESTION_END)
    assert caught.value.steps == message.MAX_STEPS + 1


def test_as_many_records_as_the_budget_allows_are_read():
    query = hostile.tiny_records(4096, hostile.READ_LIMIT)
    assert message.scan_sections(query, QUESTION_END).steps == message.MAX_STEPS


WORST = [(name, size) for name in hostile.SHAPES for size in (*hostile.UDP_SIZES, hostile.TCP_SIZE)]


@pytest.mark.parametrize("name,size", WORST)
def test_the_work_on_the_worst_packets_stays_under_the_budget(store, name, size):
    packet = hostile.SHAPES[name](size)
    assert len(packet) <= size
    end = labels_end(packet, 12)
    if end > 0 and packet[4:6] == b"\x00\x01":
        try:
            steps = message.scan_sections(packet, end + 4).steps
            assert steps <= message.MAX_STEPS
        except message.Malformed as exc:
            assert exc.steps <= message.MAX_STEPS + 1
    reply = respond(packet, store, size > 4096)
    assert reply is not None and reply[:2] == packet[:2]
    parsed = dns.message.from_wire(reply)
    if name == f"tiny records, {hostile.READ_LIMIT} records":
        assert parsed.rcode() == 0 and parsed.answer  # all read, within the budget: answered
    else:
        assert parsed.rcode() == 1  # FORMERR
    if packet[4:6] == b"\x00\x01" and end > 0:
        assert parsed.question[0].name == dns.name.from_text(hostile.QNAME)


def test_the_deepest_question_is_answered(store):
    for _ in range(20):
        packet = hostile.deep_question()
        parsed = dns.message.from_wire(respond(packet, store))
        assert parsed.rcode() == 3  # NXDOMAIN under the zone
        assert parsed.authority[0].rdtype == dns.rdatatype.SOA
        with_options = hostile.deep_question_with_options()
        parsed = dns.message.from_wire(respond(with_options, store))
        assert parsed.rcode() == 3 and parsed.edns == 0
        one_more = hostile.deep_question_with_options(options=message.MAX_STEPS - message.RECORD_STEPS + 1)
        assert dns.message.from_wire(respond(one_more, store)).rcode() == 1
