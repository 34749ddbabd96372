"""The zone view on its own: any sequence of RRset writes leaves the view a
fresh build of the final records would have, in answers and in storage form."""

from __future__ import annotations

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
        expect_leaf = not node.below and name != view.zones[to_wire(ZONE)].apex and len(node.types()) == 1
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
