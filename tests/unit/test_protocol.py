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


def tsig(owner: bytes = b"\x03key\x00", rclass: int = 255) -> bytes:
    rdata = b"\x0bhmac-sha256\x00" + b"\x00" * 16  # algorithm, time, fudge, MAC size 0, id, error, other
    return owner + struct.pack("!HHIH", 250, rclass, 0, len(rdata)) + rdata


# (packet, question echoed, OPT in the reply): a FORMERR keeps the question whenever it could
# be read (QDCOUNT 1 and the question parsed) and carries our OPT whenever the query's OPT
# was found (RFC 6891 §7), so that clients do not conclude the server lacks EDNS.
FORMERR_CASES = {
    "qd0": (header(qd=0), False, False),
    "qd0-with-opt": (header(qd=0, ar=1) + opt(), False, True),  # dig +header-only
    "qd2": (header(qd=2) + question() + question(), False, False),
    "qd2-with-opt": (header(qd=2, ar=1) + question() + question() + opt(), False, True),
    "short-type": (header() + question()[:-3], False, False),
    "short-name": (header() + b"\x07kafka-0\x05kaf", False, False),
    "pointer": (header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), False, False),
    "long-label": (header() + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01", False, False),
    "long-name": (header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01", False, False),
    "trailing-byte": (header() + question() + b"\x00", True, False),
    "trailing-byte-after-opt": (header(ar=1) + question() + opt() + b"\x00", True, True),
    "short-opt": (header(ar=1) + question() + b"\x00\x00\x29", True, False),
    "opt-data-cut": (header(ar=1) + question() + opt()[:-2] + b"\x00\x04", True, True),
    "two-opt": (header(ar=2) + question() + opt() + opt(), True, True),
    "opt-owner": (header(ar=1) + question() + b"\x01a\x00" + opt()[1:], True, True),
    "opt-in-answer": (header(an=1) + question() + opt(), True, False),
    "opt-bad-option": (header(ar=1) + question() + opt(options=b"\x00\x0a\x00\x09abc"), True, True),
    "opt-option-tail": (header(ar=1) + question() + opt(options=b"\x00\x0a\x00"), True, True),
    "qtype-opt": (header() + question(qtype=41), True, False),
    "qtype-opt-with-opt": (header(ar=1) + question(qtype=41) + opt(), True, True),
    "forward-pointer": (header(ar=2) + question() + b"\xc0\x50" + struct.pack("!HHIH", 1, 1, 0, 0) + opt(), True, False),
    "pointer-to-itself": (header(ar=1) + question() + b"\xc0\x3d" + struct.pack("!HHIH", 1, 1, 0, 0), True, False),
    "extended-label": (header(ar=2) + question() + b"\x41abc\x00" + struct.pack("!HHIH", 1, 1, 0, 0) + opt(), True, False),
    "record-cut": (header(an=1, ar=1) + question() + b"\xc0\x0c\x00\x01", True, False),
    "tsig-not-last": (header(ar=2) + question() + tsig() + opt(), True, False),
    "tsig-not-class-any": (header(ar=2) + question() + opt() + tsig(rclass=1), True, True),
    "tsig-in-answer": (header(an=1) + question() + tsig(), True, False),
}


@pytest.mark.parametrize("case", list(FORMERR_CASES))
def test_formerr_keeps_the_question_and_edns_when_they_could_be_read(view, case):
    packet, with_question, with_opt = FORMERR_CASES[case]
    reply = respond(packet, view)
    assert reply is not None
    assert reply[:2] == packet[:2]
    assert flags_of(reply) & 0x800F == 0x8001  # QR, FORMERR
    assert flags_of(reply) & 0x0100  # RD copied
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", reply, 4)
    assert (ancount, nscount) == (0, 0)
    assert qdcount == with_question
    assert arcount == with_opt
    if with_question:
        raw = question(qtype=struct.unpack_from("!H", packet, 12 + len(to_wire(NAME)))[0])
        assert reply[12 : 12 + len(raw)] == raw
    message = dns.message.from_wire(reply)  # well-formed, whatever the query was
    assert message.edns == (0 if with_opt else -1)
    if with_opt:
        assert message.payload == 1232


def test_formerr_echoes_the_do_bit(view):
    reply = dns.message.from_wire(respond(header(ar=1) + question() + opt(do=True) + b"\x00", view))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.ednsflags & dns.flags.DO


def test_formerr_for_a_header_only_query_with_a_cookie_has_edns(view):
    # What `dig +header-only +cookie` sends: no question, an OPT with a client cookie.
    cookie = struct.pack("!HH", 10, 8) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    reply = respond(header(qd=0, ar=1) + opt(options=cookie), view)
    assert reply == header(flags=0x8101, qd=0, ar=1) + opt()


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


# -- QCLASS ANY (RFC 1034 §3.7.1): it matches the IN data ------------------------------


def test_class_any_is_answered_from_the_in_data(view):
    packet = header() + question(qclass=255)
    reply = respond(packet, view)
    assert reply[12 : 12 + len(question())] == question(qclass=255)  # echoed as sent
    message = dns.message.from_wire(reply)
    assert rcode(message) == "NOERROR"
    assert message.flags & dns.flags.AA
    assert message.answer[0].rdclass == 1 and message.answer[0][0].address == "10.244.1.10"
    # The same records as the IN query, byte for byte.
    assert reply[len(packet) :] == respond(header() + question(), view)[len(packet) :]


def test_class_any_with_edns_and_type_any(view):
    message = dns.message.from_wire(respond(header(ar=1) + question(qtype=255, qclass=255) + opt(), view))
    assert rcode(message) == "NOERROR" and message.edns == 0
    assert message.answer[0][0].address == "10.244.1.10"


@pytest.mark.parametrize(
    "name,qtype,expected",
    [
        (f"nope.{ZONE}", 1, "NXDOMAIN"),
        (f"kafka.default.{ZONE}", 16, "NOERROR"),  # NODATA
        ("example.com", 1, "REFUSED"),
        ("version.bind", 16, "REFUSED"),  # CHAOS data answers only class CH
        (ZONE, 252, "REFUSED"),  # AXFR
    ],
)
def test_class_any_follows_the_in_rules(view, name, qtype, expected):
    message = dns.message.from_wire(respond(header() + question(name, qtype, 255), view))
    assert rcode(message) == expected
    assert message.question[0].rdclass == 255
    if expected in ("NXDOMAIN", "NOERROR") and qtype != 1:
        assert message.authority[0].rdtype == 6  # the SOA


def test_class_any_through_dnspython(view):
    reply = ask(view, NAME, "A", rdclass="ANY", use_edns=0)
    assert rcode(reply) == "NOERROR"
    assert reply.answer[0][0].address == "10.244.1.10"


# -- binary labels (RFC 2181 §11): any byte is valid inside a label -----------------------


def test_binary_label_in_the_additional_section_is_valid(view):
    record = b"\x03\xff\xfe\x80\x00" + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x7f\x00\x00\x01"
    message = dns.message.from_wire(respond(header(ar=2) + question() + record + opt(), view))
    assert rcode(message) == "NOERROR" and message.edns == 0
    assert message.answer[0][0].address == "10.244.1.10"


def test_binary_label_in_the_question_is_nxdomain_in_the_zone(view):
    raw = b"\x03\xff\x00\xfe" + to_wire(ZONE) + struct.pack("!HH", 1, 1)
    reply = respond(header() + raw, view)
    assert reply[12 : 12 + len(raw)] == raw
    assert rcode(dns.message.from_wire(reply)) == "NXDOMAIN"
