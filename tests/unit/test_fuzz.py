"""Property tests: random and mutated packets never crash the answer path or get a reply to a response;
the fast path always agrees byte for byte with the full path; incremental updates equal a fresh build."""

from __future__ import annotations

import ipaddress
import os
import struct

import dns.edns
import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.sources.pods import strip_pod
from server.zone.answer import answer
from server.zone.fastpath import fast_answer, respond
from server.zone.names import to_wire
from tests.helpers import ZONE, build, pod

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

BASE_PODS = [pod(f"k-{i}", f"10.244.{i % 3}.{i + 1}", f"k-{i}", "k") for i in range(6)] + [
    pod("d-0", ["10.244.5.5", "fd00:10:244::5"], "d-0", "d", "other")
]
VIEW, _ = build(BASE_PODS)
VIEW.chaos_txt = {to_wire("version.bind"): "pod-identity-dns test"}

QNAMES = [
    f"k-0.k.default.{ZONE}",
    f"K-1.K.DEFAULT.{ZONE}",
    f"k.default.{ZONE}",
    f"default.{ZONE}",
    f"nope.{ZONE}",
    ZONE,
    f"d-0.d.other.{ZONE}",
    "1.0.244.10.in-addr.arpa",
    "9.9.244.10.in-addr.arpa",
    "244.10.in-addr.arpa",
    "example.com",
    "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa",
    "version.bind",
    ".",
]
QTYPES = ["A", "AAAA", "PTR", "ANY", "SOA", "NS", "MX", "TXT", "AXFR", "TYPE65280", "OPT"]


def _valid_query(qname: str, qtype: str, edns: int, payload: int, do: bool, rd: bool, options: bool, qclass: str = "IN") -> bytes:
    message = dns.message.make_query(
        qname,
        qtype,
        rdclass=qclass,
        use_edns=edns,
        payload=payload,
        want_dnssec=do and edns >= 0,
        options=[dns.edns.GenericOption(65001, b"x")] if options and edns >= 0 else None,
    )
    if not rd:
        message.flags &= ~0x0100
    return message.to_wire()


queries = st.builds(
    _valid_query,
    st.sampled_from(QNAMES),
    st.sampled_from(QTYPES),
    st.sampled_from([-1, 0, 0, 1]),
    st.integers(0, 65535),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["IN", "IN", "IN", "CH", "HS"]),
)


@st.composite
def mutated(draw) -> bytes:
    """A valid query with random bytes flipped, cut, or appended."""
    data = bytearray(draw(queries))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "append", "insert"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif action == "cut" and data:
            data = data[: draw(st.integers(0, len(data)))]
        elif action == "append":
            data += draw(st.binary(max_size=40))
        elif data:
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


packets = st.one_of(st.binary(max_size=700), mutated(), queries)


def _check_reply(packet: bytes, reply: bytes | None, tcp: bool) -> None:
    if len(packet) < 12 or packet[2] & 0x80:
        assert reply is None, "a response or runt packet got a reply"
        return
    assert reply is not None, "a query whose header could be read got no reply"
    assert reply[:2] == packet[:2]
    assert reply[2] & 0x80
    assert len(reply) <= (65535 if tcp else max(512, 1232))
    dns.message.from_wire(reply)  # every reply is well-formed


@FUZZ
@given(packets, st.booleans())
def test_answer_never_raises_and_replies_are_well_formed(packet, tcp):
    _check_reply(packet, respond(packet, VIEW, tcp), tcp)


@FUZZ
@given(packets, st.booleans())
def test_fast_path_agrees_with_full_path_on_any_packet(packet, tcp):
    fast = fast_answer(packet, VIEW, tcp)
    if fast is not None:
        assert fast == answer(packet, VIEW, tcp)


@FUZZ
@given(queries, st.booleans())
def test_fast_path_takes_plain_queries(query, tcp):
    fast = fast_answer(query, VIEW, tcp)
    full = answer(query, VIEW, tcp)
    if fast is not None:
        assert fast == full
    message = dns.message.from_wire(query)
    plain = message.edns <= 0 and not message.options and message.question[0].rdclass == 1 and message.question[0].rdtype not in (41, 252)
    if plain:
        assert fast is not None, "a plain query fell back to the slow path"


# -- incremental updates against a fresh build ---------------------------------

pod_specs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),  # pod name
        st.sampled_from(["h0", "h1", "h2"]),  # hostname
        st.sampled_from(["s", "t"]),  # subdomain
        st.sampled_from(["default", "x"]),  # namespace
        st.lists(st.integers(1, 6), min_size=0, max_size=2, unique=True),  # IPs (last octet, some shared)
        st.booleans(),  # terminating
        st.integers(0, 3),  # creation order
        st.sampled_from(["Running", "Running", "Pending", "Failed"]),
        st.booleans(),  # has hostname at all
    ),
    max_size=8,
)


def _pods_from(specs) -> dict[str, dict]:
    out = {}
    for name, host, sub, ns, octets, terminating, order, phase, named in specs:
        ips = [f"10.244.0.{o}" for o in octets] + ([f"fd00:10:244::{octets[0]}"] if octets and octets[0] % 2 else [])
        out[f"{ns}/{name}"] = pod(
            name,
            ips,
            host if named else None,
            sub if named else None,
            ns,
            created=f"2026-11-0{order + 1}T00:00:00Z",
            deleting="2026-11-09T00:00:00Z" if terminating else None,
            phase=phase,
        )
    return out


def _records(body: bytes) -> list[bytes]:
    """Whole records of an encoded answer, sorted: a set's members may join in any order."""
    out, offset = [], 0
    while offset < len(body):
        end = offset + 12 + int.from_bytes(body[offset + 10 : offset + 12], "big")
        out.append(body[offset:end])
        offset = end
    return sorted(out)


def _snapshot(view) -> dict:
    """Every existing name with its answers and its storage form (a compact Leaf
    wherever one fits, so churn leaves no bulkier Node behind); apexes without
    the SOA, whose serial differs."""
    skip = (b"\x00\x06\x00\x01", b"\x00\xff\x00\x01")
    return {
        name: (
            type(node).__name__,
            {t: (headers, _records(body)) for t, (headers, body) in node.items() if name not in view.zones or t not in skip},
        )
        for name, node in view.nodes.items()
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(pod_specs, min_size=1, max_size=5), st.data())
def test_incremental_updates_equal_a_fresh_build(steps, data):
    view, registry = build([], fallback_ptr=True)
    sink = registry.sink("test")
    for specs in steps:
        pods = _pods_from(specs)
        if data.draw(st.booleans()):
            sink.replace_all([strip_pod(p) for p in pods.values()])
        else:  # the same state reached through single events
            current = {p.uid for p in registry.pods_of("test")}
            wanted = {p["metadata"]["uid"] for p in pods.values()}
            for uid in current - wanted:
                sink.delete(uid)
            for p in pods.values():
                sink.upsert(strip_pod(p))
        fresh, fresh_registry = build(list(pods.values()), fallback_ptr=True)
        assert _snapshot(view) == _snapshot(fresh)
        assert registry.stats() == fresh_registry.stats()
        assert registry.stats()["ptrs"] == sum(1 for node in view.nodes.values() if b"\x00\x0c\x00\x01" in node)
        _assert_one_ptr_each_and_forward_confirmed(view)


def _assert_one_ptr_each_and_forward_confirmed(view) -> None:
    for name, _node in view.nodes.items():
        ptrs = view.rrset(name, 12)
        assert len(ptrs) <= 1
        if ptrs and ptrs[0].endswith(to_wire(ZONE)):
            labels = name.split(b"\x07in-addr")[0] if b"in-addr" in name else None
            if labels is not None:
                octets = []
                rest = labels
                while rest:
                    octets.append(rest[1 : 1 + rest[0]].decode())
                    rest = rest[1 + rest[0] :]
                ip = ipaddress.ip_address(".".join(reversed(octets)))
                assert ip.packed in view.rrset(ptrs[0], 1), "PTR target does not resolve back to the IP"


def test_fast_path_sees_updates_immediately():
    view, registry = build([pod("a", "10.244.1.1", "a", "s")])
    query = dns.message.make_query(f"a.s.default.{ZONE}", "A").to_wire()
    before = fast_answer(query, view)
    registry.sink("test").upsert(strip_pod(pod("a", "10.244.1.2", "a", "s")))
    after = fast_answer(query, view)
    assert before != after
    assert after[-4:] == ipaddress.ip_address("10.244.1.2").packed
    assert after == answer(query, view)


def test_nonexistent_name_cache_is_bounded():
    from server.zone.store import ZONE_CACHE_LIMIT

    view, _ = build([])
    for i in range(ZONE_CACHE_LIMIT + 500):
        query = dns.message.make_query(f"random-{i}.{ZONE}", "A").to_wire()
        assert fast_answer(query, view) is not None
    assert len(view.zone_cache) <= ZONE_CACHE_LIMIT
    assert struct.unpack_from("!H", fast_answer(dns.message.make_query(f"random-1.{ZONE}", "A").to_wire(), view), 2)[0] & 0xF == 3
