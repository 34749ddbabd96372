"""The zone view on its own: any sequence of RRset writes leaves the view a
fresh build of the final records would have, in answers and in storage form."""

from __future__ import annotations

from unittest import mock

import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from server.zone import wire
from server.zone.fastpath import respond
from server.zone.names import to_wire
from server.zone.store import Leaf, Node, ZoneSettings, ZoneStore

ZONE = "z.test"
# Names that are ancestors of one another, so writes make and unmake empty
# non-terminals and turn leaves into nodes and back.
NAMES = [f"{label}{ZONE}" for label in ("a.", "b.a.", "c.b.a.", "d.a.", "e.", "f.e.")]
TYPES = [wire.A, wire.AAAA, wire.TXT]
RDATA = {
    wire.A: [bytes([10, 0, 0, i]) for i in (1, 2)],
    wire.AAAA: [bytes(15) + bytes([i]) for i in (1, 2)],
    wire.TXT: [wire.txt_rdata(t) for t in ("x", "y")],
}

writes = st.lists(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(0, 2)),
    max_size=30,
)


def _view() -> ZoneStore:
    # The first serial is the clock's: two stores made a second apart differ in their SOA alone.
    with mock.patch("time.time", return_value=1_700_000_000.0):
        return ZoneStore(ZoneSettings((ZONE,), ()))


def _apply(view: ZoneStore, name: str, rtype: int, count: int) -> None:
    view.set_rrset(to_wire(name), rtype, RDATA[rtype][:count])


def _shape(view: ZoneStore) -> dict:
    return {name: (type(node).__name__, node.below, sorted(node.items())) for name, node in view.nodes.items()}


@settings(max_examples=300, deadline=None)
@given(writes)
def test_any_write_sequence_equals_a_fresh_build(steps):
    view = _view()
    final: dict[tuple[str, int], int] = {}
    for name, rtype, count in steps:
        _apply(view, name, rtype, count)
        final[(name, rtype)] = count
    fresh = _view()
    for (name, rtype), count in final.items():
        _apply(fresh, name, rtype, count)
    assert _shape(view) == _shape(fresh)
    for name, node in view.nodes.items():
        # One RRset makes a Leaf, names below it or not (an identity with SRV names under it).
        expect_leaf = name != view.zones[to_wire(ZONE)].apex and len(node.types()) == 1
        assert isinstance(node, Leaf if expect_leaf else Node), (name, node)


@settings(max_examples=100, deadline=None)
@given(writes, st.sampled_from(NAMES), st.sampled_from(["A", "AAAA", "TXT", "ANY", "MX"]))
def test_answers_follow_the_writes(steps, qname, qtype):
    view = _view()
    final: dict[tuple[str, int], int] = {}
    for name, rtype, count in steps:
        _apply(view, name, rtype, count)
        final[(name, rtype)] = count
    reply = dns.message.from_wire(respond(dns.message.make_query(qname, qtype).to_wire(), view))
    records = {rtype: count for (name, rtype), count in final.items() if name == qname and count}
    below = any(name.endswith("." + qname) and count for (name, _), count in final.items())
    if not records and not below:
        assert reply.rcode() == dns.rcode.NXDOMAIN
        return
    assert reply.rcode() == dns.rcode.NOERROR
    wanted = records if qtype == "ANY" else {t: c for t, c in records.items() if wire.TYPE_NAMES[t] == qtype}
    assert {rrset.rdtype: len(rrset) for rrset in reply.answer} == wanted


def _records(store: ZoneStore, apex: bytes) -> set:
    """Every record of one zone but its SOA, as the store holds them."""
    return set(store.snapshot(apex).records())


@settings(max_examples=200, deadline=None)
@given(st.lists(writes, min_size=1, max_size=6), st.booleans())
def test_replaying_the_reported_changes_on_a_copy_gives_the_store(commits, snapshot_between):
    """What an IXFR journal consumes: each commit's ZoneChange (old and new serial, records removed and
    added), applied in order to a copy of the zone taken at the start, gives the zone the store holds."""
    store = _view()
    apex = to_wire(ZONE)
    reported = []
    store.add_listener(reported.extend)
    store.commit()
    copy = _records(store, apex)
    serial = store.zones[apex].serial
    for steps in commits:
        for name, rtype, count in steps:
            _apply(store, name, rtype, count)
        if snapshot_between:
            store.snapshot(apex)  # nodes older than a snapshot are copied before a write: same changes
        store.commit()
    for change in reported:
        if change.removed is None:  # the first serial, or too big to work out: a full transfer instead
            continue
        assert change.apex == apex and change.old_serial == serial, "the changes chain serial to serial"
        assert set(change.removed) <= copy, "a removed record was not there"
        assert not set(change.added) & copy, "an added record was there already"
        copy = (copy - set(change.removed)) | set(change.added)
        serial = change.new_serial
    assert serial == store.zones[apex].serial
    assert copy == _records(store, apex)
