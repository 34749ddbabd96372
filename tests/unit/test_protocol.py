"""Header, EDNS and malformed-packet rules of an authoritative server (RFC 1035, 6891, 8906), on raw bytes."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from server.zone.fastpath import respond
from server.zone.names import to_wire
from tests.helpers import ZONE, ask, build, rcode, sts_pod

NAME = f"kafka-0.kafka.default.{ZONE}"


@pytest.fixture(scope="module")
def view():
    pods = [sts_pod("kafka", 0, "10.244.1.10")]
    # A big set: 60 instances make the set name's A RRset larger than 512 bytes.
    pods += [sts_pod("big", i, f"10.244.7.{i + 1}") for i in range(60)]
    view, _ = build(pods)
    view.chaos_txt = {to_wire("version.bind"): "pod-identity-dns 9.9", to_wire("id.server"): "node-a", to_wire("hostname.bind"): "node-a"}
    return view


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name: str = NAME, qtype: int = 1, qclass: int = 1) -> bytes:
    return to_wire(name) + struct.pack("!HH", qtype, qclass)


def opt(payload=1232, version=0, do=False, options=b"", ext_rcode=0) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def flags_of(reply: bytes) -> int:
    return struct.unpack_from("!H", reply, 2)[0]


def test_question_echoed_byte_for_byte_with_0x20_case(view):
    mixed = "KaFkA-0.KAFKA.default.PoDs.ExAmPlE.InTeRnAl"
    raw = _raw_question(mixed)
    reply = respond(header() + raw, view)
    assert reply[12 : 12 + len(raw)] == raw
    message = dns.message.from_wire(reply)
    assert message.answer[0][0].address == "10.244.1.10"


def _raw_question(text: str) -> bytes:
    out = b"".join(bytes([len(label)]) + label.encode() for label in text.split("."))
    return out + b"\x00" + struct.pack("!HH", 1, 1)


@pytest.mark.parametrize("rd", [0, 1])
def test_rd_copied_ra_never_set_aa_on_answers(view, rd):
    reply = respond(header(flags=rd << 8) + question(), view)
    flags = flags_of(reply)
    assert flags & 0x8000 and flags & 0x0400  # QR, AA
    assert bool(flags & 0x0100) == bool(rd)
    assert not flags & 0x0080  # RA


def test_z_ad_cd_and_unknown_flags_are_not_copied(view):
    reply = respond(header(flags=0x0100 | 0x0040 | 0x0020 | 0x0010) + question(), view)
    assert flags_of(reply) & 0x0070 == 0
    assert flags_of(reply) & 0x000F == 0


def test_id_is_copied(view):
    assert respond(header(qid=0xBEEF) + question(), view)[:2] == b"\xbe\xef"


@pytest.mark.parametrize(
    "packet",
    [
        header(flags=0x8100) + question(),  # a response: never answered
        header(flags=0x8000, qd=0),
        b"\x12\x34\x01",  # shorter than a header
        b"",
    ],
)
def test_no_reply_to_responses_or_runts(view, packet):
    assert respond(packet, view) is None


@pytest.mark.parametrize(
    "packet",
    [
        header(qd=0),
        header(qd=2) + question() + question(),
        header() + question()[:-3],  # truncated type/class
        header() + b"\x07kafka-0\x05kaf",  # truncated name
        header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1),  # a pointer in the question
        header() + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01",  # label longer than 63
        header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # name longer than 255
        header(ar=1) + question() + b"\x00\x00\x29",  # OPT cut short
        header(ar=2) + question() + opt() + opt(),  # two OPT records
        header(ar=1) + question() + b"\x01a" + opt()[1:],  # OPT not owned by the root
        header() + question(qtype=41),  # OPT as a question type
    ],
    ids=["qd0", "qd2", "short-type", "short-name", "pointer", "long-label", "long-name", "short-opt", "two-opt", "opt-owner", "qtype-opt"],
)
def test_formerr_for_malformed_queries(view, packet):
    reply = respond(packet, view)
    assert reply is not None
    assert reply[:2] == packet[:2]
    assert flags_of(reply) & 0x000F == 1  # FORMERR
    assert flags_of(reply) & 0x8000
    assert reply[4:12] == b"\x00" * 8  # no sections echoed from a broken packet


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 6, 15])
def test_notimp_for_other_opcodes_without_question(view, opcode):
    reply = respond(header(flags=(opcode << 11) | 0x0100) + question(), view)
    flags = flags_of(reply)
    assert flags & 0x000F == 4  # NOTIMP
    assert (flags >> 11) & 0xF == opcode
    assert flags & 0x0100  # RD copied
    assert reply[4:6] == b"\x00\x00" and len(reply) == 12


def test_edns_reply_has_our_opt_and_payload(view):
    reply = ask(view, NAME, "A", use_edns=0, payload=4096)
    assert reply.edns == 0
    assert reply.payload == 1232
    assert not reply.ednsflags & dns.flags.DO


def test_edns_do_bit_is_copied(view):
    reply = ask(view, NAME, "A", use_edns=0, want_dnssec=True)
    assert reply.ednsflags & dns.flags.DO


def test_no_opt_without_edns(view):
    reply = ask(view, NAME, "A")
    assert reply.edns == -1


def test_badvers_for_edns_version_above_zero(view):
    reply = ask(view, NAME, "A", use_edns=1)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert not reply.answer


def test_unknown_edns_options_are_ignored(view):
    options = [dns.edns.GenericOption(65001, b"hello"), dns.edns.GenericOption(10, b"\x01" * 8)]  # and a cookie
    reply = ask(view, NAME, "A", use_edns=0, options=options)
    assert rcode(reply) == "NOERROR"
    assert reply.answer[0][0].address == "10.244.1.10"
    assert not reply.options


def test_truncated_without_edns_when_over_512(view):
    name = f"big.default.{ZONE}"
    reply = ask(view, name, "A")
    assert reply.flags & dns.flags.TC
    assert not reply.answer
    assert reply.question[0].name == dns.name.from_text(name)


def test_edns_size_decides_truncation(view):
    name = f"big.default.{ZONE}"
    small = ask(view, name, "A", use_edns=0, payload=512)
    assert small.flags & dns.flags.TC and small.edns == 0  # OPT kept on a truncated reply
    large = ask(view, name, "A", use_edns=0, payload=1232)
    assert not large.flags & dns.flags.TC
    assert len(large.answer[0]) == 60


def test_tcp_is_never_truncated_at_512(view):
    reply = ask(view, f"big.default.{ZONE}", "A", tcp=True)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 60


@pytest.mark.parametrize("name,text", [("version.bind", "pod-identity-dns 9.9"), ("id.server", "node-a"), ("hostname.bind", "node-a")])
def test_chaos_txt_tells_which_server_answered(view, name, text):
    reply = ask(view, name, "TXT", rdclass="CH")
    assert rcode(reply) == "NOERROR"
    assert reply.answer[0][0].strings == (text.encode(),)


def test_chaos_unknown_name_refused(view):
    assert rcode(ask(view, "authors.bind", "TXT", rdclass="CH")) == "REFUSED"


def test_other_classes_refused(view):
    assert rcode(ask(view, NAME, "A", rdclass="HS")) == "REFUSED"


def test_case_insensitive_match_of_reverse_and_forward(view):
    assert rcode(ask(view, NAME.upper())) == "NOERROR"
    assert rcode(ask(view, "10.1.244.10.IN-ADDR.ARPA", "PTR")) == "NOERROR"
