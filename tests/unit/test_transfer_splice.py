"""The oracle for splicing stored RRsets into transfer messages: the zone store's rrsets() hands out exactly
the records of records(), and messages spliced from them carry the same records as messages built record
by record (byte for byte when the RRsets do not straddle two messages)."""

from __future__ import annotations

from operator import itemgetter

import dns.message
import pytest

from server.transfer.encoder import pack_messages, pack_pieces
from server.zone import names
from server.zone.changes import body_records
from tests.conftest import ZONE
from tests.helpers import build, sts_pod

QUESTION = names.to_wire(ZONE) + b"\x00\xfc\x00\x01"


def store_of(pods: int, set_size: int = 3, namespaces: int = 4):
    """Pods in sets (set names with several A records), every fifth dual-stack (names with two RRsets)."""
    members = []
    for i in range(pods):
        ips = [f"10.244.{i // 250}.{i % 250 + 1}"] + ([f"fd00:10:244::{i:x}"] if i % 5 == 0 else [])
        members.append(sts_pod(f"s{i // set_size}", i % set_size, ips, f"ns{i % namespaces}"))
    store, _ = build(members)
    return store


def parsed_records(messages: list[bytes]) -> list[tuple]:
    out = []
    for message in messages:
        for rrset in dns.message.from_wire(message, one_rr_per_rrset=True).answer:
            out += [(rrset.name.to_text(), rrset.rdtype, rrset.ttl, rdata.to_text()) for rdata in rrset]
    return out


@pytest.mark.parametrize("zone", [ZONE, "244.10.in-addr.arpa", "4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa"])
def test_rrsets_hand_out_exactly_the_records_of_records(zone):
    snapshot = store_of(600).snapshot(names.to_wire(zone))
    spliced = [record for owner, _, body in snapshot.rrsets() for record in body_records(owner, body)]
    assert spliced == list(snapshot.records()) and spliced


@pytest.mark.parametrize("limit", [512, 4096, 16384, 65535])
def test_spliced_messages_carry_the_records_built_one_by_one(limit):
    snapshot = store_of(3000).snapshot(names.to_wire(ZONE))  # 65535: offsets beyond what a pointer can reach
    pieces = list(pack_pieces(map(itemgetter(0, 2), snapshot.rrsets()), b"\x00\x01", 0x8400, QUESTION, limit))
    one_by_one = list(pack_messages(snapshot.records(), b"\x00\x01", 0x8400, QUESTION, limit))
    assert all(len(message) <= limit for message, _ in pieces)
    assert parsed_records([m for m, _ in pieces]) == parsed_records([m for m, _ in one_by_one])
    assert sum(count for _, count in pieces) == sum(count for _, count in one_by_one) == len(list(snapshot.records()))


def test_spliced_is_byte_for_byte_the_same_when_everything_fits_one_message():
    snapshot = store_of(200).snapshot(names.to_wire(ZONE))
    (spliced,) = pack_pieces(map(itemgetter(0, 2), snapshot.rrsets()), b"\x00\x01", 0x8400, QUESTION, 65535)
    (built,) = pack_messages(snapshot.records(), b"\x00\x01", 0x8400, QUESTION, 65535)
    assert spliced == built


def test_an_rrset_too_big_for_one_message_is_split_into_its_records():
    snapshot = store_of(5000, set_size=5000, namespaces=1).snapshot(names.to_wire(ZONE))  # one set name with 5000 A: 80 KB
    (largest,) = [body for _, _, body in snapshot.rrsets() if len(body) > 65535]
    assert largest
    pieces = list(pack_pieces(map(itemgetter(0, 2), snapshot.rrsets()), b"\x00\x01", 0x8400, QUESTION, 16384))
    assert all(len(message) <= 16384 for message, _ in pieces)
    one_by_one = list(pack_messages(snapshot.records(), b"\x00\x01", 0x8400, QUESTION, 16384))
    assert parsed_records([m for m, _ in pieces]) == parsed_records([m for m, _ in one_by_one])
